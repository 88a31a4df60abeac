"""The range guard of the guarded form: block ``lrn_range``.

It holds the largest input magnitude of each guard block
(:func:`~tvm_lrn.compute.geometry.guard_block`), halo channels included, as integer bits,
so NaN and Inf are out of range. When the LRN axis is the last one (channels-last) a
guard block is a row along it; when a dimension is symbolic, everything behind one
leading index. The form itself: :mod:`tvm_lrn.compute.forms`.
"""

from __future__ import annotations

import numpy as np
from tvm import te, tirx

from .geometry import guard_block
from .window import WindowedInput

__all__ = ["range_guard"]


def range_guard(source: WindowedInput, limit: float):
    """``in_range(idx)``: whether no input of the guard block of output ``idx`` exceeds
    ``limit`` in magnitude.

    Parameters
    ----------
    source : WindowedInput
        The input.
    limit : float
        The largest magnitude in range (:func:`~tvm_lrn.compute.forms.input_limit`).

    Returns
    -------
    callable
        ``in_range(idx)``, a boolean PrimExpr read from the block ``lrn_range``.
    """
    fmt, shape, axis = source.fmt, source.shape, source.axis
    limit_bits = fmt.int_const(int(np.array(limit, dtype=fmt.float_dtype).view(fmt.int_dtype)))
    if axis == len(shape) - 1:
        return _row_guard(source, limit_bits)
    block = guard_block(shape, axis, source.params.size)
    rest = [te.reduce_axis((0, shape[d]), name=f"r_range{d}") for d in range(axis + 2, len(shape))]
    if block is None:
        return _leading_index_guard(source, limit_bits, rest)
    return _block_guard(source, limit_bits, block, rest)


def _row_guard(source: WindowedInput, limit_bits):
    """Channels-last: one flag per row along the LRN axis."""
    fmt, shape, axis = source.fmt, source.shape, source.axis
    r_row = te.reduce_axis((0, shape[axis]), name="r_range")
    lead = list(shape[:axis]) or [1]

    def row_range(*g):
        idx = [*g[:axis], r_row]
        return te.max(fmt.magnitude_bits(source.value(*idx)), axis=r_row)

    ranges = te.compute(lead, row_range, name="lrn_range")
    return lambda idx: ranges(*(idx[:axis] or [0])) <= limit_bits


def _leading_index_guard(source: WindowedInput, limit_bits, rest):
    """A symbolic dimension: one flag per leading index (the channels and the plane)."""
    fmt, shape, axis = source.fmt, source.shape, source.axis
    r_c = te.reduce_axis((0, shape[axis]), name="r_range_c")
    r_rows = te.reduce_axis((0, shape[axis + 1]), name="r_range_rows")

    def whole_range(*g):
        idx = [*g[:axis], r_c, r_rows, *rest]
        return te.max(fmt.magnitude_bits(source.value(*idx)), axis=[r_c, r_rows, *rest])

    ranges = te.compute([*shape[:axis], 1, 1], whole_range, name="lrn_range")
    return lambda idx: ranges(*idx[:axis], 0, 0) <= limit_bits


def _block_guard(source: WindowedInput, limit_bits, block: tuple[int, int], rest):
    """Static shapes: one flag per guard block of ``(channels, rows)``."""
    fmt, shape, axis, params = source.fmt, source.shape, source.axis, source.params
    count, first = shape[axis], shape[axis + 1]
    channels, rows = block
    halo = 0 if channels == int(count) else params.size - 1
    # Constants of the shape's index type (int64 when Relax legalizes).
    dtype = str(first.ty) if hasattr(first, "ty") else "int32"
    r_c = te.reduce_axis((tirx.const(0, dtype), tirx.const(channels + halo, dtype)), "r_range_c")
    r_rows = te.reduce_axis((tirx.const(0, dtype), tirx.const(rows, dtype)), "r_range_rows")

    def block_range(*g):
        c = g[axis] * channels + r_c
        if halo:  # the channels the block's windows reach, clamped (still in a window)
            c = tirx.max(tirx.min(c - params.lo, count - 1), 0)
        idx = [*g[:axis], c, g[axis + 1] * rows + r_rows, *rest]
        return te.max(fmt.magnitude_bits(source.value(*idx)), axis=[r_c, r_rows, *rest])

    blocks = [int(count) // channels, int(first) // rows]
    ranges = te.compute([*shape[:axis], *blocks], block_range, name="lrn_range")

    def in_range(idx):
        return ranges(*idx[:axis], idx[axis] // channels, idx[axis + 1] // rows) <= limit_bits

    return in_range
