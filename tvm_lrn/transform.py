"""Relax passes that turn decomposed LRN subgraphs into the ``relax.tvm_lrn`` operator.

TVM 0.27 has no LRN op, so every importer spells LRN as an unsafe chain of ordinary ops::

    sq  = x * x                      (or square(x), or power(x, 2))
    s   = [reshape-likes] -> [pad] -> avg_poolNd -> [reshape-likes]   (window mean of sq)
    out = x / power(s * alpha + bias, beta)     (operands of * and + in either order)

* torch.export (``from_exported_program``): ``multiply -> expand_dims|reshape -> nn.pad ->
  avg_pool2d|3d -> squeeze -> [reshape] -> multiply -> add -> power -> divide``; the window
  ``[i - size//2, i + (size-1)//2]`` comes from the explicit pad.
* TVM's FX importer (hand-written LRN modules, as in the classic Caffe ports):
  ``power(x, 2) -> expand_dims -> avg_pool3d(padding=...) -> squeeze -> ...``.
* ONNX importer: ``multiply -> expand_dims -> avg_pool2d|3d(padding=size//2) -> squeeze -> ...``.
* TFLite importer: ``square -> reshape(-1, C, 1, 1) -> avg_pool2d(layout=NHWC) -> reshape ->
  add(bias, multiply(alpha, .)) -> power -> divide``.

Rather than one rigid pattern per importer, :func:`FuseLRN` anchors on the elementwise tail
with :mod:`tvm.relax.dpl` and then checks the window part semantically: the tensor that is
pooled must be a row-major reshape of ``x * x`` in which the pooled dimension is exactly one
axis of ``x`` (same extent, same product of the leading extents), the pool must average a
zero-padded window of stride 1 with the padding counted, everything else must be untouched,
and the result must come back to ``x``'s shape. That catches every importer's form and
refuses lookalikes (a pooled tensor that is not the square of the divided one, a pool over
a different axis or in another layout, padding that is not counted, constants that are not
scalars or give a negative or zero denominator...). The window ``lo``/``hi`` is read from
the pad op and the pool padding, ``alpha_eff = alpha / size`` because the pool averages.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard
from tvm.sym.analyzer import Analyzer

from .op import tvm_lrn
from .spec import LRNParams

__all__ = ["FuseLRN", "LRNMatch", "find_lrn", "fuse_lrn"]

# Ops that only reinterpret the row-major element order: the pooled dimension keeps its
# neighbours, so a window along it is a window along the matching axis of ``x``.
_RESHAPE_LIKE = ("relax.reshape", "relax.expand_dims", "relax.squeeze", "relax.flatten")
_POOLS = {"relax.nn.avg_pool1d": 1, "relax.nn.avg_pool2d": 2, "relax.nn.avg_pool3d": 3}
# Index of the first spatial dimension for each pool layout the importers use.
_LAYOUT_SPATIAL_START = {"NCW": 2, "NCHW": 2, "NCDHW": 2, "NWC": 1, "NHWC": 1, "NDHWC": 1}


@dataclass(frozen=True)
class LRNMatch:
    """One decomposed LRN found in a Relax function.

    Attributes
    ----------
    params : LRNParams
        Canonical parameters (``alpha`` is the effective one, ``axis`` non-negative).
    size : int
        Window length ``lo + hi + 1``.
    alpha : float
        The framework alpha as written in the graph (``params.alpha * size``).
    convention : str
        ``"torch"`` (``lo = hi + 1``, even size), ``"onnx"`` (``hi = lo + 1``), ``"caffe"``
        (odd size, symmetric; every convention agrees there) or ``"custom"`` for any other
        split of the window.
    dtype : str
        Element type of the normalized tensor.
    """

    params: LRNParams
    size: int
    alpha: float
    convention: str
    dtype: str


def _convention(lo: int, hi: int) -> str:
    if lo == hi:
        return "caffe"
    if lo == hi + 1:
        return "torch"
    if hi == lo + 1:
        return "onnx"
    return "custom"


# --------------------------------------------------------------------------- helpers


def _scalar(const, exact_scalars=None) -> float | None:
    """The value of a one-element numeric constant, else None.

    ``exact_scalars`` maps ``(dtype, value rounded to dtype)`` to the value the model was
    written with: importers round Python scalars to the tensor dtype (bfloat16 keeps 8
    bits, so ``beta=0.6`` becomes 0.6015625), and the op can use the exact value instead.
    """
    if not isinstance(const, tvm.ir.expr.Constant):
        return None
    arr = const.value.numpy()
    if arr.size != 1 or arr.dtype.kind == "b":
        return None
    value = float(np.asarray(arr, dtype=np.float64).reshape(()))
    if exact_scalars:
        value = exact_scalars.get((str(const.ty.dtype), value), value)
    return value if math.isfinite(value) else None


def _op_name(expr) -> str | None:
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
        return expr.op.name
    return None


def _resolve(expr, var2val):
    """Follow variable bindings to the bound expression (calls are left as they are)."""
    seen = 0
    while isinstance(expr, relax.Var) and expr in var2val and seen < 64:
        expr = var2val[expr]
        seen += 1
    return expr


def _static_shape(expr):
    """The shape of ``expr``'s tensor type as a list of PrimExprs, or None if unknown."""
    ty = getattr(expr, "ty", None)
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        return None
    shape = ty.shape
    if not isinstance(shape, relax.ShapeExpr):
        return None
    return list(shape.values)


def _dtype(expr) -> str | None:
    ty = getattr(expr, "ty", None)
    return str(ty.dtype) if isinstance(ty, relax.TensorType) else None


def _prod(dims):
    out = tvm.tirx.IntImm("int64", 1)
    for d in dims:
        out = out * d
    return out


def _same_shape(ana, a, b) -> bool:
    return len(a) == len(b) and all(ana.can_prove_equal(p, q) for p, q in zip(a, b, strict=True))


def _is_square_of(expr, x, var2val) -> bool:
    """Whether ``expr`` computes ``x * x`` (multiply, square or power with exponent 2)."""
    expr = _resolve(expr, var2val)
    name = _op_name(expr)
    if name == "relax.multiply":
        return expr.args[0].same_as(x) and expr.args[1].same_as(x)
    if name == "relax.square":
        return expr.args[0].same_as(x)
    if name == "relax.power":
        return expr.args[0].same_as(x) and _scalar(expr.args[1]) == 2.0
    return False


def _ints(values) -> list[int]:
    return [int(v) for v in values]


def _unwrap_reshapes(expr, var2val):
    """The bound expression below a chain of reshape-likes (``expr`` itself if none)."""
    expr = _resolve(expr, var2val)
    while _op_name(expr) in _RESHAPE_LIKE:
        expr = _resolve(expr.args[0], var2val)
    return expr


class _AvgPool(NamedTuple):
    """A stride-1, undilated average pool, per spatial dim of the pooled tensor."""

    spatial: list[int]  # the pooled tensor's dims that the pool walks
    size: list[int]
    before: list[int]  # the pool's own padding
    after: list[int]
    counts_padding: bool


def _avg_pool(call) -> _AvgPool | None:
    nsp = _POOLS.get(_op_name(call))
    if nsp is None:
        return None
    a = call.attrs
    start = _LAYOUT_SPATIAL_START.get(str(a.layout))
    if start is None or len(str(a.layout)) != nsp + 2:
        return None
    if str(a.out_layout) not in ("", str(a.layout)):
        return None
    pool_size, strides = _ints(a.pool_size), _ints(a.strides)
    dilation, padding = _ints(a.dilation), _ints(a.padding)
    if any(s != 1 for s in strides) or any(d != 1 for d in dilation):
        return None
    spatial = [start + i for i in range(nsp)]
    return _AvgPool(spatial, pool_size, padding[:nsp], padding[nsp:], bool(a.count_include_pad))


def _strip_zero_pad(expr, var2val, rank: int):
    """``(unpadded tensor, pad before, pad after)`` through an optional ``nn.pad`` with
    zeros (no pad: all widths 0); None for any other padding."""
    padded = _resolve(expr, var2val)
    if _op_name(padded) != "relax.nn.pad":
        return expr, [0] * rank, [0] * rank
    pa = padded.attrs
    if str(pa.pad_mode) != "constant" or float(pa.pad_value) != 0.0:
        return None
    width = _ints(pa.pad_width)
    return padded.args[0], width[0::2], width[1::2]


def _pooled_window(pool: _AvgPool, pad_before, pad_after):
    """``(dim, lo, hi)``: the one dim with a window, which pad and pool pad with zeros.

    Every other dim must be left as it is (pool size 1, no padding); None otherwise.
    """
    nsp = len(pool.spatial)
    windowed = [
        i
        for i in range(nsp)
        if pool.size[i] != 1
        or pool.before[i]
        or pool.after[i]
        or pad_before[pool.spatial[i]]
        or pad_after[pool.spatial[i]]
    ]
    if len(windowed) > 1:
        return None
    if any(pad_before[d] or pad_after[d] for d in range(nsp + 2) if d not in pool.spatial):
        return None
    i = windowed[0] if windowed else 0
    dim = pool.spatial[i]
    lo = pad_before[dim] + pool.before[i]
    hi = pad_after[dim] + pool.after[i]
    if lo + hi != pool.size[i] - 1:
        return None
    # Padding added by the pool itself is only zeros if it is counted in the mean.
    if (pool.before[i] or pool.after[i]) and not pool.counts_padding:
        return None
    return dim, lo, hi


def _axis_walked(ana, x_shape, p_shape, dim: int) -> int | None:
    """The axis of ``x`` that dim ``dim`` of its row-major reshape ``p_shape`` walks.

    Reshapes keep the element order, so it is the axis with the same extent and the same
    number of leading elements.
    """
    lead = _prod(p_shape[:dim])
    for axis, extent in enumerate(x_shape):
        if ana.can_prove_equal(extent, p_shape[dim]) and ana.can_prove_equal(
            _prod(x_shape[:axis]), lead
        ):
            return axis
    return None


def _match_window(s_expr, x, var2val):
    """Check that ``s_expr`` is the zero-padded window mean of ``x * x`` along one axis.

    Returns ``(axis, lo, hi)`` or None.
    """
    x_shape, s_shape = _static_shape(x), _static_shape(s_expr)
    if x_shape is None or s_shape is None:
        return None
    ana = Analyzer()
    # The result has to line up with x element by element.
    if not _same_shape(ana, s_shape, x_shape):
        return None
    call = _unwrap_reshapes(s_expr, var2val)
    pool = _avg_pool(call)
    if pool is None:
        return None
    rank = len(pool.spatial) + 2
    unpadded = _strip_zero_pad(call.args[0], var2val, rank)
    if unpadded is None:
        return None
    # pooled_in is the unpadded tensor: its shape relates the pooled dim to an axis of x.
    pooled_in, pad_before, pad_after = unpadded
    p_shape = _static_shape(pooled_in)
    if p_shape is None or len(p_shape) != rank or len(pad_before) != rank:
        return None
    if not _is_square_of(_unwrap_reshapes(pooled_in, var2val), x, var2val):
        return None
    window = _pooled_window(pool, pad_before, pad_after)
    if window is None:
        return None
    dim, lo, hi = window
    axis = _axis_walked(ana, x_shape, p_shape, dim)
    return None if axis is None else (axis, lo, hi)


# --------------------------------------------------------------------------- pattern


def _tail_pattern():
    """dpl pattern of the elementwise tail ``x / (s*alpha + bias)**beta`` and its variants."""
    x, s = wildcard(), wildcard()
    alpha, bias, beta = is_const(), is_const(), is_const()
    scaled = is_op("relax.multiply")(s, alpha) | is_op("relax.multiply")(alpha, s)
    shifted = is_op("relax.add")(scaled, bias) | is_op("relax.add")(bias, scaled)
    den = is_op("relax.power")(shifted, beta)
    # x / den**beta, or x * den**(-beta) as some exporters write it.
    divide = is_op("relax.divide")(x, den)
    times = is_op("relax.multiply")(x, den) | is_op("relax.multiply")(den, x)
    return divide | times, {"s": s, "alpha": alpha, "bias": bias, "beta": beta, "den": den}


def _match(matched, m, pats, var2val, exact_scalars) -> tuple[relax.Expr, LRNMatch] | None:
    """Validate one dpl match; return ``(x, LRNMatch)`` if it is an LRN, else None."""
    # dpl reports the bound *value* for a wildcard that matched a variable; the LRN input
    # must be the variable itself (the one ``x * x`` squares), so take it from the call.
    # (The match may also be an alias binding ``gv = lv``; look through it.)
    call = _resolve(matched, var2val)
    if _op_name(call) == "relax.divide":
        x, sign = call.args[0], 1.0
    elif _op_name(call) == "relax.multiply":
        a, b = call.args
        x = b if _resolve(a, var2val).same_as(m[pats["den"]]) else a
        sign = -1.0  # x * d**(-beta)
    else:
        return None
    alpha_c, bias_c, beta_c = (
        _scalar(m[pats[k]], exact_scalars) for k in ("alpha", "bias", "beta")
    )
    if alpha_c is None or bias_c is None or beta_c is None:
        return None
    beta = sign * beta_c
    dtype = _dtype(x)
    if dtype is None or _dtype(matched) != dtype:
        return None
    window = _match_window(m[pats["s"]], x, var2val)
    if window is None:
        return None
    axis, lo, hi = window
    size = lo + hi + 1
    alpha_eff = alpha_c / size
    # Only what the op computes: non-negative parameters and a denominator that is never 0.
    if alpha_eff < 0 or bias_c < 0 or beta < 0 or (alpha_eff == 0 and bias_c == 0):
        return None
    # The output must keep x's shape (a broadcasting constant could have grown it).
    out_shape, x_shape = _static_shape(matched), _static_shape(x)
    if out_shape is None or not _same_shape(Analyzer(), out_shape, x_shape):
        return None
    params = LRNParams(lo, hi, alpha_eff, beta, bias_c, axis)
    return x, LRNMatch(params, size, alpha_c, _convention(lo, hi), dtype)


def _rewrite_function(
    func: relax.Function, found: list | None = None, exact_scalars: dict | None = None
) -> relax.Function:
    pattern, pats = _tail_pattern()
    var2val = relax.analysis.get_var2val(func)

    def callback(matched, m):
        hit = _match(matched, m, pats, var2val, exact_scalars)
        if hit is None:
            return matched
        x, info = hit
        if found is not None:
            found.append(info)
        p = info.params
        return tvm_lrn(x, p.lo, p.hi, p.alpha, p.beta, p.bias, p.axis)

    return rewrite_call(pattern, callback, func)


def find_lrn(mod_or_func, exact_scalars: dict | None = None) -> list[LRNMatch]:
    """List the decomposed LRN subgraphs :func:`FuseLRN` would rewrite (nothing is changed).

    Parameters
    ----------
    mod_or_func : tvm.IRModule or relax.Function
    exact_scalars : dict, optional
        As in :func:`FuseLRN`.

    Returns
    -------
    list of LRNMatch
        In the order the rewriter meets them.
    """
    funcs = (
        [f for _, f in mod_or_func.functions_items() if isinstance(f, relax.Function)]
        if isinstance(mod_or_func, tvm.IRModule)
        else [mod_or_func]
    )
    found: list[LRNMatch] = []
    for func in funcs:
        _rewrite_function(func, found, exact_scalars)
    return found


def _rewrite_pass(exact_scalars: dict | None) -> tvm.transform.Pass:
    @tvm.transform.module_pass(opt_level=0, name="tvm_lrn.FuseLRNRewrite")
    def rewrite(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        updates = {}
        for gvar, func in mod.functions_items():
            if isinstance(func, relax.Function):
                new = _rewrite_function(func, None, exact_scalars)
                if not new.same_as(func):
                    updates[gvar] = new
        if not updates:
            return mod
        mod = mod.clone()  # a pass must not mutate the module it was given
        for gvar, func in updates.items():
            mod[gvar] = func
        return mod

    return rewrite


def FuseLRN(exact_scalars: dict | None = None) -> tvm.transform.Pass:  # noqa: N802
    """Rewrite every decomposed LRN subgraph of a Relax module into ``relax.tvm_lrn``.

    Handles the forms emitted by TVM's PyTorch importers (``from_exported_program`` and
    ``from_fx``), its ONNX importer and its TFLite importer, for any rank, axis, window size
    (odd and even) and float dtype, with static or symbolic shapes. Lookalikes that do not
    compute an LRN are left unchanged. Dead bindings are removed afterwards.

    Parameters
    ----------
    exact_scalars : dict, optional
        ``{(dtype, rounded value): exact value}``. Importers store ``alpha``, ``beta`` and
        ``bias`` as constants of the tensor dtype; when the model's own (unrounded) values
        are known, as :func:`tvm_lrn.from_torch` knows them from the exported graph, the op
        uses those instead. Values without an entry are taken as they are.

    Returns
    -------
    tvm.transform.Pass
        A module pass: ``mod = FuseLRN()(mod)``.
    """
    return tvm.transform.Sequential(
        [_rewrite_pass(exact_scalars), relax.transform.DeadCodeElimination()],
        name="tvm_lrn.FuseLRN",
    )


def fuse_lrn(mod: tvm.IRModule, exact_scalars: dict | None = None) -> tvm.IRModule:
    """Apply :func:`FuseLRN` to ``mod`` and return the rewritten module."""
    return FuseLRN(exact_scalars)(mod)
