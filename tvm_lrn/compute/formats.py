"""The floating-point formats LRN computes in, and TIR helpers on their bits.

Powers of two are built by writing the exponent bits (``reinterpret``), which
vectorizes, not by ``ldexp`` (a scalar libm call on CPUs); NaN and Inf are told apart by
integer compares of the bits, which vectorize too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import tirx

from ..spec import check_dtype

__all__ = ["BETA_FLOAT32_MAX", "NumberFormat", "compute_dtype", "number_format"]


@dataclass(frozen=True)
class NumberFormat:
    """An IEEE binary format (float32 or float64) and TIR expressions on its bits.

    Attributes
    ----------
    float_dtype : str
        The floating-point dtype.
    int_dtype : str
        The integer dtype of the same width, which holds its bits.
    mantissa_bits : int
        Stored mantissa bits (23 or 52).
    exponent_bias : int
        The exponent bias (127 or 1023).
    """

    float_dtype: str
    int_dtype: str
    mantissa_bits: int
    exponent_bias: int

    @property
    def precision(self) -> int:
        """Significand bits, the implicit leading one included."""
        return self.mantissa_bits + 1

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal number."""
        return 1 - self.exponent_bias

    @property
    def emax(self) -> int:
        """Exponent of the largest finite number."""
        return self.exponent_bias

    @property
    def sign_shift(self) -> int:
        """Position of the sign bit."""
        return self.mantissa_bits + (2 * self.exponent_bias + 1).bit_length()

    @property
    def inf_bits(self) -> int:
        """The bits of +Inf."""
        return (2 * self.exponent_bias + 1) << self.mantissa_bits

    def int_const(self, value: int):
        """``value`` as a constant of :attr:`int_dtype`."""
        return tirx.const(int(value), self.int_dtype)

    def float_const(self, value: float):
        """``value`` as a constant of :attr:`float_dtype`, with exactly its bits."""
        value = float(value)
        if self.float_dtype == "float64" and not value.is_integer():
            # TVM's CUDA codegen prints float64 constants in fixed notation with 15
            # decimals: 1e-30 becomes 0 and 2e-5/3 loses its last digits. Their bits are
            # exact on every backend (and the compiler folds them).
            bits = int(np.array(value, dtype=np.float64).view(np.int64))
            return tirx.reinterpret("float64", tirx.const(bits, "int64"))
        return tirx.const(value, self.float_dtype)

    def exponent(self, v):
        """Unbiased exponent of |v|; subnormals and zero report ``emin``."""
        field = tirx.reinterpret(self.int_dtype, v) >> self.int_const(self.mantissa_bits)
        field = field & self.int_const(2 * self.exponent_bias + 1)
        return tirx.max(field, self.int_const(1)) - self.int_const(self.exponent_bias)

    def pow2(self, e):
        """Exactly ``2**e`` for an integer ``emin <= e <= emax`` (no libm call)."""
        biased = (e + self.int_const(self.exponent_bias)) << self.int_const(self.mantissa_bits)
        return tirx.reinterpret(self.float_dtype, biased)

    def mantissa(self, v):
        """``v`` with its exponent set to 0: in +-[1, 2) for a normal ``v``, sign kept."""
        keep = ~((2 * self.exponent_bias + 1) << self.mantissa_bits)  # sign and mantissa
        bits = tirx.reinterpret(self.int_dtype, v) & self.int_const(keep)
        one = self.int_const(self.exponent_bias << self.mantissa_bits)
        return tirx.reinterpret(self.float_dtype, bits | one)

    def magnitude_bits(self, v):
        """The bits of |v| as an integer: ordered like |v|, NaN above Inf."""
        magnitude = self.int_const((1 << self.sign_shift) - 1)
        return tirx.reinterpret(self.int_dtype, v) & magnitude

    def isnan(self, v):
        """Whether ``v`` is NaN."""
        # Integer compares: tirx.isnan and x != x do not vectorize (or get folded away).
        return self.magnitude_bits(v) > self.int_const(self.inf_bits)

    def isinf(self, v):
        """Whether ``v`` is +-Inf."""
        return self.magnitude_bits(v) == self.int_const(self.inf_bits)

    def masked(self, valid, v):
        """``v`` where ``valid``, else +0, by clearing bits (also for NaN and Inf).

        Not a ``Select``: TVM's simplifier assumes a select's condition inside its
        branches and would drop the clamp of the window load index there, although
        both branches are evaluated (out-of-bounds loads at the padding).
        """
        keep = tirx.Select(valid, self.int_const(-1), self.int_const(0))
        return tirx.reinterpret(self.float_dtype, tirx.reinterpret(self.int_dtype, v) & keep)

    def signed_zero(self, v):
        """+0 or -0 with the sign of ``v`` (``v * 0`` is folded to +0 by TVM's simplifier)."""
        sign = self.int_const(-(1 << self.sign_shift))  # only the sign bit set
        return tirx.reinterpret(self.float_dtype, tirx.reinterpret(self.int_dtype, v) & sign)

    def clamp(self, e, lo: int, hi: int | None = None):
        """The integer ``e`` clamped to ``[lo, hi]`` (``hi`` None: no upper bound)."""
        e = tirx.max(e, self.int_const(lo))
        return e if hi is None else tirx.min(e, self.int_const(hi))

    def ldexp(self, m, n):
        """``m * 2**n`` for ``1 <= |m| < 2`` and any integer ``n``, rounded once.

        Exponents beyond the range are clamped where the result is 0 or Inf anyway; a
        subnormal result is produced by one final multiplication, so it is rounded once.
        """
        n = self.clamp(n, self.emin - self.precision - 2, self.emax + 1)
        tiny_shift = self.int_const(-(self.precision + 2))
        shift = tirx.Select(n <= self.int_const(self.emin), tiny_shift, self.int_const(1))
        return (m * self.pow2(n - shift)) * self.pow2(shift)


_FORMATS = {
    "float32": NumberFormat("float32", "int32", 23, 127),
    "float64": NumberFormat("float64", "int64", 52, 1023),
}


def number_format(dtype: str) -> NumberFormat:
    """The :class:`NumberFormat` of a compute dtype.

    Parameters
    ----------
    dtype : {"float32", "float64"}
        A dtype LRN computes in (see :func:`compute_dtype`).

    Returns
    -------
    NumberFormat
    """
    try:
        return _FORMATS[str(dtype)]
    except KeyError:
        raise ValueError(f"LRN computes in float32 or float64, not {dtype!r}") from None


#: Above this beta, inputs of up to 32 bits are computed in float64: the result's
#: relative error is about beta times that of the float32 window sum, which for betas
#: above 1 and windows of 9 or more squares already reaches the 8-ulp bound
#: (tests/test_property.py draws such cases).
BETA_FLOAT32_MAX = 1.0


def compute_dtype(dtype: str, beta: float = 0.75) -> str:
    """The dtype LRN computes in for inputs of ``dtype`` and exponent ``beta``.

    float64 for float64 inputs and for ``beta > BETA_FLOAT32_MAX``, else float32.
    """
    if check_dtype(dtype) == "float64" or beta > BETA_FLOAT32_MAX:
        return "float64"
    return "float32"
