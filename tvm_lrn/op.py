"""The ``relax.tvm_lrn`` operator: registration, builders, type inference, legalization.

The op carries the canonical parameters (``lo``, ``hi``, ``alpha``, ``beta``, ``bias``,
``axis``; see :class:`tvm_lrn.spec.LRNParams`) as call attributes, so a printed module
shows exactly what the kernel computes whatever convention the model came from. It is
named ``relax.<flat_name>`` because only that prefix prints as ``R.tvm_lrn(...)``; the
builder :func:`tvm_lrn` is installed on ``tvm.relax.script`` (and its parser) so printed
modules parse back.

Legalization builds :func:`tvm_lrn.compute.lrn` (in the safe form for the target:
:func:`form_for`) into a PrimFunc named ``lrn`` that carries the parameters as
``tvm_lrn.*`` attributes (how the strategy, the tuner and :mod:`tvm_lrn.build` recognize
LRN kernels) and
``op_pattern = kOpaque`` so that FuseOps leaves it alone and the attributes survive.
"""

from __future__ import annotations

import tvm
import tvm.relax.script as _relax_script
import tvm.relax.script.parser as _relax_parser
from tvm import relax, te
from tvm.target import Target

from . import compute, intrin
from .spec import LRNParams, canonicalize, check_canonical, check_dtype

__all__ = [
    "ATTR_KEYS",
    "OP_NAME",
    "OP_PATTERN_OPAQUE",
    "PRIMFUNC_ATTR_PREFIX",
    "PRIMFUNC_NAME",
    "form_for",
    "is_lrn_primfunc",
    "lrn_compute",
    "lrn_primfunc",
    "local_response_norm",
    "params_from_attrs",
    "params_from_call",
    "tvm_lrn",
]

#: Registered name of the operator (prints as ``R.tvm_lrn``).
OP_NAME = "relax.tvm_lrn"
#: The canonical parameters, in the order the call attributes are built.
ATTR_KEYS = ("lo", "hi", "alpha", "beta", "bias", "axis")
#: Prefix of the PrimFunc attributes that mark a legalized LRN kernel.
PRIMFUNC_ATTR_PREFIX = "tvm_lrn."
#: Name hint of the legalized PrimFunc.
PRIMFUNC_NAME = "lrn"
#: ``relay::OpPatternKind::kOpaque``: FuseOps never groups a function with this pattern.
OP_PATTERN_OPAQUE = 8

_INT_KEYS = ("lo", "hi", "axis")
_FLOAT_KEYS = ("alpha", "beta", "bias")


# --------------------------------------------------------------------------- parameters


def _check_canonical(*values) -> LRNParams:
    """Validate canonical parameters (the parser and hand-built calls bypass canonicalize)."""
    plain = [v.value if isinstance(v, (tvm.tirx.IntImm, tvm.tirx.FloatImm)) else v for v in values]
    return check_canonical(*plain)


def params_from_attrs(attrs) -> LRNParams:
    """Read :class:`LRNParams` from call attributes or PrimFunc attributes.

    Parameters
    ----------
    attrs : tvm.ir.DictAttrs, Map or dict
        Either the op's call attributes (keys ``lo`` ... ``axis``) or a PrimFunc's
        attributes (keys ``tvm_lrn.lo`` ... ``tvm_lrn.axis``).

    Returns
    -------
    LRNParams
    """
    keys = list(attrs.keys())
    prefix = PRIMFUNC_ATTR_PREFIX if PRIMFUNC_ATTR_PREFIX + "lo" in keys else ""
    missing = [k for k in ATTR_KEYS if prefix + k not in keys]
    if missing:
        raise ValueError(f"LRN attributes missing: {', '.join(prefix + k for k in missing)}")
    return _check_canonical(*(attrs[prefix + k] for k in ATTR_KEYS))


def params_from_call(call: relax.Call) -> LRNParams:
    """The canonical parameters of a ``relax.tvm_lrn`` call (axis as stored)."""
    if call.attrs is None:
        raise ValueError(f"{OP_NAME} call has no attributes")
    return params_from_attrs(call.attrs)


def _call_attrs(params: LRNParams) -> dict:
    # ints as int32 IntImm: that is what the printed literal parses back to, so the
    # TVMScript round trip is structurally equal; floats stay Python (double) floats,
    # which the printer writes with repr() precision.
    attrs = {}
    for key in ATTR_KEYS:
        value = getattr(params, key)
        attrs[key] = tvm.tirx.IntImm("int32", value) if key in _INT_KEYS else float(value)
    return attrs


def primfunc_attrs(params: LRNParams) -> dict:
    """The attributes a legalized LRN PrimFunc carries (``tvm_lrn.*`` and ``op_pattern``)."""
    attrs = {PRIMFUNC_ATTR_PREFIX + k: v for k, v in params.as_attrs().items()}
    attrs["op_pattern"] = OP_PATTERN_OPAQUE
    return attrs


def is_lrn_primfunc(func) -> bool:
    """Whether ``func`` is a PrimFunc produced by legalizing ``relax.tvm_lrn``."""
    if not isinstance(func, tvm.tirx.PrimFunc) or func.attrs is None:
        return False
    keys = set(func.attrs.keys())
    return all(PRIMFUNC_ATTR_PREFIX + k in keys for k in ATTR_KEYS)


# --------------------------------------------------------------------------- types


def _tensor_type(expr, what: str) -> relax.TensorType:
    ty = getattr(expr, "ty", None)
    if not isinstance(ty, relax.TensorType):
        raise TypeError(f"{what} needs a tensor input, got {type(ty).__name__ if ty else expr!r}")
    return ty


def _check_input_type(ty: relax.TensorType, what: str) -> int:
    """Check dtype and rank of the input type; return the rank."""
    check_dtype(str(ty.dtype))
    ndim = int(ty.ndim)
    if ndim < 0:
        raise ValueError(f"{what} needs a tensor of known rank, got a tensor of unknown rank")
    if ndim == 0:
        raise ValueError(f"LRN needs a tensor of rank >= 1, got rank {ndim}")
    return ndim


def _infer_type(call: relax.Call, bb: relax.BlockBuilder) -> relax.TensorType:
    if len(call.args) != 1:
        raise ValueError(f"{OP_NAME} takes exactly 1 argument, got {len(call.args)}")
    ty = _tensor_type(call.args[0], OP_NAME)
    ndim = _check_input_type(ty, OP_NAME)
    params = params_from_call(call)
    if not 0 <= params.axis < ndim:
        raise ValueError(f"axis {params.axis} is out of range for a tensor of rank {ndim}")
    # Same shape and dtype as the input; symbolic dims pass through unchanged, and an
    # unknown shape of known rank stays ndim-only.
    if ty.shape is not None:
        return relax.TensorType(ty.shape, ty.dtype, ty.vdevice)
    return relax.TensorType(ndim=ndim, dtype=ty.dtype, vdevice=ty.vdevice)


# --------------------------------------------------------------------------- legalization


def form_for(target, shape=None, axis: int | None = None) -> str:
    """The safe form (:mod:`tvm_lrn.compute.forms`) that suits ``target`` and the input.

    Parameters
    ----------
    target : tvm.target.Target or None
        The compilation target, if known.
    shape : sequence of int or PrimExpr, optional
        The input shape (CPUs: see below).
    axis : int, optional
        The LRN axis, non-negative (with ``shape``).

    Returns
    -------
    str
        ``"checked"`` for GPU targets with float64 (CUDA, ROCm, and others that declare
        ``supports_float64``): their threads take a branch per output cheaply;
        ``"scaled"`` for other GPU targets (no float64 for the fallback). CPUs:
        ``"checked"`` where the CPU schedule computes the input in plane chunks
        (:func:`tvm_lrn.compute.plane_chunk`), ``"guarded"`` elsewhere (symbolic or
        channels-last shapes). The first two fall back to ``"scaled"`` where they do not
        apply (:func:`tvm_lrn.compute.resolve_form`).
    """
    if target is None or "gpu" not in target.keys:
        planes = shape is not None and axis is not None and compute.plane_chunk(shape, axis)
        return "checked" if planes else "guarded"
    float64 = target.kind.name in ("cuda", "rocm") or target.attrs.get("supports_float64")
    return "checked" if float64 else "scaled"


def lrn_compute(
    data: te.Tensor,
    params: LRNParams,
    *,
    form: str | None = None,
    safe_scaling: bool = True,
    rsqrt_estimate: bool | None = None,
) -> te.Tensor:
    """:func:`tvm_lrn.compute.lrn` for the current target (``Target.current()``).

    ``form=None`` takes :func:`form_for` the target and shape, ``rsqrt_estimate=None``
    the refined square-root estimate where the target has it
    (:func:`tvm_lrn.intrin.has_rsqrt_estimate`); ``safe_scaling`` as in
    :func:`tvm_lrn.compute.lrn`.
    """
    target = Target.current(allow_none=True)
    params = params.with_axis(len(data.shape))
    if form is None:
        form = form_for(target, data.shape, params.axis)
    if rsqrt_estimate is None:
        rsqrt_estimate = intrin.has_rsqrt_estimate(target)
    return compute.lrn(
        data, params, form=form, rsqrt_estimate=rsqrt_estimate, safe_scaling=safe_scaling
    )


def lrn_primfunc(
    shape,
    dtype: str,
    params: LRNParams,
    *,
    form: str | None = None,
    safe_scaling: bool = True,
    rsqrt_estimate: bool | None = None,
) -> tvm.tirx.PrimFunc:
    """The LRN PrimFunc ``(x, y)`` of ``shape``, tagged with ``tvm_lrn.*`` attributes.

    The one builder of LRN kernels: legalization, :func:`tvm_lrn.run`, the tuner and the
    benchmarks all build through it.

    Parameters
    ----------
    shape : sequence of int, IntImm, None or PrimExpr
        Constant dimensions stay static int64 extents; every other one (None, a symbolic
        variable or expression such as ``2 * n``) becomes its own int64 variable, so the
        kernel serves every value of it.
    dtype : str
        Input dtype.
    params : LRNParams
        Canonical parameters; the axis is checked against ``len(shape)``.
    form, safe_scaling, rsqrt_estimate
        As in :func:`lrn_compute`: by default what suits ``Target.current()``, which
        ``tvm.compile`` sets while it legalizes.

    Returns
    -------
    tvm.tirx.PrimFunc
        Exported as ``main`` (its ``global_symbol``, which legalization drops), with
        the attributes of :func:`primfunc_attrs`.
    """
    params = params.with_axis(len(shape))
    if isinstance(shape[params.axis], int | tvm.tirx.IntImm):
        params = params.clamped(int(shape[params.axis]))  # constant compile time
    dims = [
        tvm.tirx.IntImm("int64", int(d))
        if isinstance(d, int | tvm.tirx.IntImm)
        else te.var(f"n{i}", dtype="int64")
        for i, d in enumerate(shape)
    ]
    data = te.placeholder(dims, check_dtype(dtype), name="x")
    out = lrn_compute(
        data, params, form=form, safe_scaling=safe_scaling, rsqrt_estimate=rsqrt_estimate
    )
    # Not bb.call_te: it always builds with index_dtype_override="int64", which also widens
    # the int32 exponent arithmetic of the safe compute (bit-casts to float32) into int64
    # and LLVM then rejects the i64 -> float bitcast. Relax shapes are int64 already, so
    # the plain create_prim_func gets 64-bit indexing without the override.
    return te.create_prim_func([data, out]).with_attrs(primfunc_attrs(params))


def _legalize(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
    params = params_from_call(call)
    x = call.args[0]
    ty = _tensor_type(x, OP_NAME)
    if not isinstance(ty.shape, relax.ShapeExpr):
        # Only the rank is known, but call_tir needs a shape: bind the dimensions to fresh
        # symbolic variables at run time (match_cast checks nothing beyond the rank).
        dims = [tvm.tirx.Var(f"lrn_n{i}", "int64") for i in range(int(ty.ndim))]
        x = bb.match_cast(x, relax.TensorType(dims, ty.dtype, ty.vdevice))
        ty = x.ty
    func = lrn_primfunc(ty.shape.values, str(ty.dtype), params)
    # Unnamed: AttachGlobalSymbol names it after its GlobalVar (two "main"s would clash).
    gvar = bb.add_func(func.without_attr("global_symbol"), PRIMFUNC_NAME)
    return relax.call_tir(gvar, [x], relax.TensorType(ty.shape, ty.dtype, ty.vdevice))


tvm.ir.register_op_attr(OP_NAME, "FInferType", _infer_type)
tvm.ir.register_op_attr(OP_NAME, "FPurity", True)
tvm.ir.register_op_attr(OP_NAME, "FLegalize", _legalize)
# LegalizeOps skips calls whose argument shapes are unknown unless told otherwise; the
# legalization binds unknown dims itself (match_cast), so a rank-only input compiles too.
tvm.ir.register_op_attr(OP_NAME, "RequiresArgumentShapes", False)
_OP = tvm.ir.Op.get(OP_NAME)
_OP.set_num_inputs(1)


# --------------------------------------------------------------------------- builders


def tvm_lrn(x: relax.Expr, lo, hi, alpha, beta, bias, axis) -> relax.Call:
    """Build ``R.tvm_lrn`` from canonical parameters (the form TVMScript prints).

    Parameters
    ----------
    x : relax.Expr
        A tensor of dtype float16, bfloat16, float32 or float64 and known rank >= 1.
    lo, hi : int
        Window ``[i - lo, i + hi]`` along ``axis``; non-negative.
    alpha : float
        Effective alpha (already divided by the window size where a convention does so).
    beta, bias : float
        Finite and non-negative; ``alpha`` and ``bias`` may not both be 0.
    axis : int
        Normalized axis; negative values count from the end.

    Returns
    -------
    relax.Call
        A call of ``relax.tvm_lrn`` with the axis made non-negative.
    """
    params = _check_canonical(lo, hi, alpha, beta, bias, axis)
    ty = _tensor_type(x, "LRN") if getattr(x, "ty", None) is not None else None
    if ty is not None:
        params = params.with_axis(_check_input_type(ty, "LRN"))
    elif params.axis < 0:
        raise ValueError("LRN with a negative axis needs an input of known rank")
    return relax.Call(_OP, [x], attrs=_call_attrs(params))


def local_response_norm(
    x: relax.Expr, size, alpha=1e-4, beta=0.75, bias=1.0, axis=1, convention="torch"
) -> relax.Call:
    """Build a numerically safe LRN over ``axis`` of ``x``.

    Every parameter is validated here, so an invalid LRN fails when the model is built,
    with a message naming the parameter.

    Parameters
    ----------
    x : relax.Expr
        A tensor (a ``relax.Var`` or a normalized expression) of dtype float16, bfloat16,
        float32 or float64 and known rank >= 1; dimensions may be symbolic.
    size : int
        Window length (``2 * depth_radius + 1`` under ``"tensorflow"``).
    alpha, beta, bias : float
        As the convention defines them; finite, non-negative, not ``alpha == bias == 0``.
    axis : int
        The normalized axis; negative counts from the end.
    convention : {"torch", "onnx", "tensorflow", "caffe"}
        Which framework's definition of ``size`` and ``alpha`` to follow.

    Returns
    -------
    relax.Call
        ``R.tvm_lrn(x, lo=..., hi=..., alpha=..., beta=..., bias=..., axis=...)`` with the
        canonical parameters.

    Examples
    --------
    >>> x = relax.Var("x", relax.TensorType((1, 16, 8, 8), "float32"))
    >>> call = local_response_norm(x, 5, alpha=1e-4, beta=0.75, bias=2.0)
    """
    ndim = _check_input_type(_tensor_type(x, "LRN"), "LRN")
    params = canonicalize(size, alpha, beta, bias, axis, convention, ndim=ndim)
    return relax.Call(_OP, [x], attrs=_call_attrs(params))


# Let TVMScript print and parse the op: `R.tvm_lrn(x, lo=..., ...)` resolves through both
# the decorator parser (tvm.relax.script) and tvm.script.from_source (its parser module).
_relax_script.tvm_lrn = tvm_lrn
_relax_parser.tvm_lrn = tvm_lrn
