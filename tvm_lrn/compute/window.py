"""How the safe forms read the input: in the compute format, one window position at a time."""

from __future__ import annotations

from tvm import te, tirx

from ..spec import LRNParams, check_dtype
from .formats import NumberFormat

__all__ = ["WindowedInput"]


class WindowedInput:
    """The input tensor of one LRN, read in its compute format.

    Parameters
    ----------
    data : te.Tensor
        The input.
    params : LRNParams
        Canonical parameters, the axis non-negative.
    fmt : NumberFormat
        The format LRN computes in.
    """

    def __init__(self, data: te.Tensor, params: LRNParams, fmt: NumberFormat):
        self.data, self.params, self.fmt = data, params, fmt
        self.dtype = check_dtype(data.dtype)
        self.shape, self.axis = data.shape, params.axis
        extent = self.shape[self.axis]
        self.index_dtype = extent.dtype if hasattr(extent, "dtype") else "int32"

    def value(self, *idx):
        """The input at ``idx``, converted to the compute format (exactly)."""
        if self.dtype == "bfloat16":
            # Widen by moving the bits (exact); TVM 0.27's bfloat16 legalization corrupts
            # some bfloat16 loads (e.g. inside let bindings that passes may introduce).
            bits = tirx.reinterpret("uint16", self.data(*idx)).astype("uint32")
            widened = tirx.reinterpret("float32", bits << tirx.const(16, "uint32"))
            return widened.astype(self.fmt.float_dtype)
        return self.data(*idx).astype(self.fmt.float_dtype)

    def window_value(self, idx, r):
        """``(value, valid)``: the input at window position ``r`` of output ``idx``, and
        whether that position lies inside the axis (else the value is to be ignored).

        The load index is clamped into the axis and the zero padding is applied to the
        result with a bit mask (:meth:`NumberFormat.masked`): every load is in bounds and
        vectorizes, also when the LRN axis is the vectorized one (a lazy
        ``if_then_else`` would make TVM scalarize such loops).
        """
        axis, extent = self.axis, self.shape[self.axis]
        j = idx[axis] + r - self.params.lo
        valid = tirx.all(j >= 0, j < extent)
        shifted = list(idx)
        shifted[axis] = tirx.max(tirx.min(j, extent - 1), 0)
        return self.value(*shifted), valid

    def reduce_axis(self, name: str):
        """A reduction axis over the window positions, in the shape's index dtype."""
        zero = tirx.const(0, self.index_dtype)
        size = tirx.const(self.params.size, self.index_dtype)
        return te.reduce_axis((zero, size), name=name)

    def sum_of_squares(self, idx, fmt: NumberFormat):
        """The window sum of squares at ``idx`` in ``fmt``, unrolled, in the order of
        ``te.sum``."""
        s = None
        for r in range(self.params.size):
            value, valid = self.window_value(idx, r)
            value = value.astype(fmt.float_dtype)
            term = fmt.masked(valid, value * value)
            s = term if s is None else s + term
        return s
