"""Whether a Relax expression is the zero-padded window mean of ``x * x`` along one axis.

This is the semantic half of :func:`tvm_lrn.transform.FuseLRN`: importers write the
window sum of LRN as ``[reshape-likes] -> [pad] -> avg_poolNd -> [reshape-likes]`` of
``x * x`` in many layouts, and :func:`match_window` accepts exactly those that average a
zero-padded, stride-1 window along one axis of ``x`` with the padding counted.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import tvm
from tvm import relax
from tvm.sym.analyzer import Analyzer

__all__ = [
    "avg_pool_of",
    "match_window",
    "op_name",
    "resolve",
    "same_shape",
    "scalar",
    "static_shape",
    "tensor_dtype",
    "unwrap_reshapes",
]

# Ops that only reinterpret the row-major element order: the pooled dimension keeps its
# neighbours, so a window along it is a window along the matching axis of ``x``.
_RESHAPE_LIKE = ("relax.reshape", "relax.expand_dims", "relax.squeeze", "relax.flatten")
_POOLS = {"relax.nn.avg_pool1d": 1, "relax.nn.avg_pool2d": 2, "relax.nn.avg_pool3d": 3}
# Index of the first spatial dimension for each pool layout the importers use.
_LAYOUT_SPATIAL_START = {"NCW": 2, "NCHW": 2, "NCDHW": 2, "NWC": 1, "NHWC": 1, "NDHWC": 1}


def scalar(const, exact_scalars=None) -> float | None:
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


def op_name(expr) -> str | None:
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
        return expr.op.name
    return None


def resolve(expr, var2val):
    """Follow variable bindings to the bound expression (calls are left as they are)."""
    seen = 0
    while isinstance(expr, relax.Var) and expr in var2val and seen < 64:
        expr = var2val[expr]
        seen += 1
    return expr


def static_shape(expr):
    """The shape of ``expr``'s tensor type as a list of PrimExprs, or None if unknown."""
    ty = getattr(expr, "ty", None)
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        return None
    shape = ty.shape
    if not isinstance(shape, relax.ShapeExpr):
        return None
    return list(shape.values)


def tensor_dtype(expr) -> str | None:
    ty = getattr(expr, "ty", None)
    return str(ty.dtype) if isinstance(ty, relax.TensorType) else None


def _prod(dims):
    out = tvm.tirx.IntImm("int64", 1)
    for d in dims:
        out = out * d
    return out


def same_shape(ana, a, b) -> bool:
    return len(a) == len(b) and all(ana.can_prove_equal(p, q) for p, q in zip(a, b, strict=True))


def _is_square_of(expr, x, var2val) -> bool:
    """Whether ``expr`` computes ``x * x`` (multiply, square or power with exponent 2)."""
    expr = resolve(expr, var2val)
    name = op_name(expr)
    if name == "relax.multiply":
        return expr.args[0].same_as(x) and expr.args[1].same_as(x)
    if name == "relax.square":
        return expr.args[0].same_as(x)
    if name == "relax.power":
        return expr.args[0].same_as(x) and scalar(expr.args[1]) == 2.0
    return False


def _ints(values) -> list[int]:
    return [int(v) for v in values]


def unwrap_reshapes(expr, var2val):
    """The bound expression below a chain of reshape-likes (``expr`` itself if none)."""
    expr = resolve(expr, var2val)
    while op_name(expr) in _RESHAPE_LIKE:
        expr = resolve(expr.args[0], var2val)
    return expr


class _AvgPool(NamedTuple):
    """A stride-1, undilated average pool, per spatial dim of the pooled tensor."""

    spatial: list[int]  # the pooled tensor's dims that the pool walks
    size: list[int]
    before: list[int]  # the pool's own padding
    after: list[int]
    counts_padding: bool


def avg_pool_of(call) -> _AvgPool | None:
    nsp = _POOLS.get(op_name(call))
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
    padded = resolve(expr, var2val)
    if op_name(padded) != "relax.nn.pad":
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


def match_window(s_expr, x, var2val):
    """Check that ``s_expr`` is the zero-padded window mean of ``x * x`` along one axis.

    Returns ``(axis, lo, hi)`` or None.
    """
    x_shape, s_shape = static_shape(x), static_shape(s_expr)
    if x_shape is None or s_shape is None:
        return None
    ana = Analyzer()
    # The result has to line up with x element by element.
    if not same_shape(ana, s_shape, x_shape):
        return None
    call = unwrap_reshapes(s_expr, var2val)
    pool = avg_pool_of(call)
    if pool is None:
        return None
    rank = len(pool.spatial) + 2
    unpadded = _strip_zero_pad(call.args[0], var2val, rank)
    if unpadded is None:
        return None
    # pooled_in is the unpadded tensor: its shape relates the pooled dim to an axis of x.
    pooled_in, pad_before, pad_after = unpadded
    p_shape = static_shape(pooled_in)
    if p_shape is None or len(p_shape) != rank or len(pad_before) != rank:
        return None
    if not _is_square_of(unwrap_reshapes(pooled_in, var2val), x, var2val):
        return None
    window = _pooled_window(pool, pad_before, pad_after)
    if window is None:
        return None
    dim, lo, hi = window
    axis = _axis_walked(ana, x_shape, p_shape, dim)
    return None if axis is None else (axis, lo, hi)
