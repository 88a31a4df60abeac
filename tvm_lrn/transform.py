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

import warnings
from dataclasses import dataclass

import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard
from tvm.sym.analyzer import Analyzer

from .op import tvm_lrn
from .spec import LRNParams
from .window_match import (
    match_window,
    op_name,
    resolve,
    same_shape,
    scalar,
    static_shape,
    tensor_dtype,
    unwrap_reshapes,
)

__all__ = ["FuseLRN", "LRNMatch", "find_lrn", "fuse_lrn"]


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
    call = resolve(matched, var2val)
    if op_name(call) == "relax.divide":
        x, sign = call.args[0], 1.0
    elif op_name(call) == "relax.multiply":
        a, b = call.args
        x = b if resolve(a, var2val).same_as(m[pats["den"]]) else a
        sign = -1.0  # x * d**(-beta)
    else:
        return None
    alpha_c, bias_c, beta_c = (scalar(m[pats[k]], exact_scalars) for k in ("alpha", "bias", "beta"))
    if alpha_c is None or bias_c is None or beta_c is None:
        return None
    beta = sign * beta_c
    dtype = tensor_dtype(x)
    if dtype is None or tensor_dtype(matched) != dtype:
        return None
    window = match_window(m[pats["s"]], x, var2val)
    if window is None:
        return None
    axis, lo, hi = window
    size = lo + hi + 1
    alpha_eff = alpha_c / size
    # Only what the op computes: non-negative parameters and a denominator that is never 0.
    if alpha_eff < 0 or bias_c < 0 or beta < 0 or (alpha_eff == 0 and bias_c == 0):
        return None
    # The output must keep x's shape (a broadcasting constant could have grown it).
    out_shape, x_shape = static_shape(matched), static_shape(x)
    if out_shape is None or not same_shape(Analyzer(), out_shape, x_shape):
        return None
    params = LRNParams(lo, hi, alpha_eff, beta, bias_c, axis)
    return x, LRNMatch(params, size, alpha_c, _convention(lo, hi), dtype)


def _warn_if_lookalike(matched, s_expr, var2val) -> None:
    """Warn when a tail ``x / (pool * alpha + bias) ** beta`` over an average pool is not
    fused: the model keeps the unsafe chain, and the user should know where."""
    pool = unwrap_reshapes(s_expr, var2val)
    if not (op_name(pool) or "").startswith("relax.nn.avg_pool"):
        return

    def name_of(expr) -> str:
        bound = [var.name for var, value in var2val.items() if value.same_as(expr)]
        return bound[0] if bound else "?"

    tail, pooled = name_of(resolve(matched, var2val)), name_of(pool)
    warnings.warn(
        f"FuseLRN: {tail} = x / ({pooled} * alpha + bias) ** beta, with {pooled} an "
        f"average pool, looks like LRN but is not one it can prove (the pooled tensor, its "
        f"window or padding, or the constants differ); it stays as ordinary, unsafe ops",
        stacklevel=2,
    )


def _rewrite_function(
    func: relax.Function, found: list | None = None, exact_scalars: dict | None = None
) -> relax.Function:
    pattern, pats = _tail_pattern()
    var2val = relax.analysis.get_var2val(func)

    def callback(matched, m):
        hit = _match(matched, m, pats, var2val, exact_scalars)
        if hit is None:
            _warn_if_lookalike(matched, m[pats["s"]], var2val)
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
