"""The numerically safe LRN compute in TE.

For output ``i`` with window ``W(i)`` along the LRN axis::

    y_i = x_i * (bias + alpha * s_i) ** -beta,    s_i = sum_{j in W(i)} x_j ** 2

computed so that no intermediate overflows or underflows unless the result does:

1. ``M = max |x_j|`` over the window (reduction ``lrn_window_max``).
2. ``S = sum (x_j * 2**k) ** 2`` with ``2**k`` the power of two that brings ``M`` near 1
   (reduction ``lrn_window_sumsq``). Scaling by a power of two is exact, so
   ``s = 2**(-2k) * S`` holds to the rounding of the sum alone.
3. ``bias + alpha * s = 2**G * D`` with an integer ``G`` and ``1 <= D < 4``: both terms
   are brought to the larger one's exponent, the smaller one may vanish harmlessly.
4. ``y = x_i * 2**(-beta * G) * D**-beta``. ``beta * G`` is split exactly into an integer
   and a fraction (``beta`` is cut into a short head, whose product with ``G`` is exact,
   and a tail), ``x_i`` is split into mantissa and exponent, and all integer exponents
   are applied once at the end by an overflow- and underflow-correct ``ldexp``.

Powers of two are built by writing the exponent bits (``reinterpret``), which
vectorizes, not by ``ldexp`` (a scalar libm call on CPUs). float16 and bfloat16 are
computed in float32 and rounded once; float32 in float32, float64 in float64.

Non-finite inputs follow one rule (documented in README.md, tested):

* ``beta == 0``: LRN is the identity, ``y = x``.
* a NaN anywhere in the window of ``i`` gives NaN at ``i``;
* otherwise, if the window holds +-Inf: with ``alpha == 0`` the window does not enter
  and ``y = x_i * bias**-beta``; with ``alpha > 0`` the sum is +Inf, so a finite ``x_i``
  gives ``+-0``, and ``x_i = +-Inf`` gives the limit of ``t * (alpha * t**2)**-beta``:
  ``+-Inf`` for ``beta < 1/2``, ``+-0`` for ``beta > 1/2``, NaN for ``beta == 1/2``
  (the limit depends on how many entries are infinite).
* ``x_i == 0`` gives ``x_i`` (a signed zero), also with ``bias == 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from tvm import te, tirx

from .spec import LRNParams, check_dtype

__all__ = ["lrn", "compute_dtype"]

# Bits of beta's head: beta_head * G must be exact for |G| < 2**_G_BITS.
_G_BITS = 12


@dataclass(frozen=True)
class _Format:
    """IEEE binary format of the compute dtype and its bit-level helpers."""

    float: str
    int: str
    mant: int  # stored mantissa bits
    ebias: int

    @property
    def p(self) -> int:  # precision in bits
        return self.mant + 1

    @property
    def emin(self) -> int:
        return 1 - self.ebias

    @property
    def emax(self) -> int:
        return self.ebias

    def i(self, value: int):
        return tirx.const(int(value), self.int)

    def f(self, value: float):
        return tirx.const(float(value), self.float)

    def exponent(self, v):
        """Unbiased exponent of |v|; subnormals and zero report ``emin``."""
        field = (tirx.reinterpret(self.int, v) >> self.i(self.mant)) & self.i(2 * self.ebias + 1)
        return tirx.max(field, self.i(1)) - self.i(self.ebias)

    def pow2(self, e):
        """Exactly ``2**e`` for an integer ``emin <= e <= emax`` (no libm call)."""
        return tirx.reinterpret(self.float, (e + self.i(self.ebias)) << self.i(self.mant))

    def mantissa(self, v):
        """``v`` with its exponent set to 0: in +-[1, 2) for a normal ``v``, sign kept."""
        keep = ~((2 * self.ebias + 1) << self.mant)  # sign and mantissa bits
        bits = tirx.reinterpret(self.int, v) & self.i(keep)
        return tirx.reinterpret(self.float, bits | self.i(self.ebias << self.mant))

    def magnitude_bits(self, v):
        """The bits of |v| as an integer: ordered like |v|, NaN above Inf."""
        return tirx.reinterpret(self.int, v) & self.i((1 << self.sign_shift) - 1)

    def isnan(self, v):
        # Integer compares: tirx.isnan and x != x do not vectorize (or get folded away).
        return self.magnitude_bits(v) > self.i(self.inf_bits)

    def isinf(self, v):
        return self.magnitude_bits(v) == self.i(self.inf_bits)

    @property
    def sign_shift(self) -> int:  # position of the sign bit
        return self.mant + (2 * self.ebias + 1).bit_length()

    @property
    def inf_bits(self) -> int:
        return (2 * self.ebias + 1) << self.mant

    def signed_zero(self, v):
        """+0 or -0 with the sign of ``v`` (``v * 0`` is folded to +0 by TVM's simplifier)."""
        sign = -(1 << self.sign_shift)  # only the sign bit set
        return tirx.reinterpret(self.float, tirx.reinterpret(self.int, v) & self.i(sign))

    def clamp(self, e, lo: int, hi: int | None = None):
        e = tirx.max(e, self.i(lo))
        return e if hi is None else tirx.min(e, self.i(hi))

    def ldexp(self, m, n):
        """``m * 2**n`` for ``1 <= |m| < 2`` and any integer ``n``, rounded once.

        Exponents beyond the range are clamped where the result is 0 or Inf anyway; a
        subnormal result is produced by one final multiplication, so it is rounded once.
        """
        n = self.clamp(n, self.emin - self.p - 2, self.emax + 1)
        shift = tirx.Select(n <= self.i(self.emin), self.i(-(self.p + 2)), self.i(1))
        return (m * self.pow2(n - shift)) * self.pow2(shift)


_FORMATS = {
    "float32": _Format("float32", "int32", 23, 127),
    "float64": _Format("float64", "int64", 52, 1023),
}


#: Above this beta, inputs of up to 32 bits are computed in float64: the result's
#: relative error is about beta times that of the window sum, so float32 arithmetic
#: would no longer meet the 8-ulp bound.
BETA_FLOAT32_MAX = 2.0


def compute_dtype(dtype: str, beta: float = 0.75) -> str:
    """The dtype LRN computes in for inputs of ``dtype`` and exponent ``beta``.

    float64 for float64 inputs and for ``beta > BETA_FLOAT32_MAX``, else float32.
    """
    if check_dtype(dtype) == "float64" or beta > BETA_FLOAT32_MAX:
        return "float64"
    return "float32"


def _split(value: float, fmt: _Format) -> tuple[float, int]:
    """``value > 0`` as ``m * 2**e`` with ``1 <= m < 2`` (m rounded to the format)."""
    m, e = math.frexp(value)
    m = float(np.array(2 * m, dtype=fmt.float))
    if m >= 2.0:  # rounding carried into the exponent
        m, e = m / 2, e + 1
    return m, e - 1


def _split_beta(beta: float, fmt: _Format) -> tuple[float, float]:
    """``beta = head + tail`` with ``head * G`` exact for ``|G| < 2**_G_BITS``."""
    if beta == 0:
        return 0.0, 0.0
    bits = fmt.p - _G_BITS
    m, e = math.frexp(beta)
    head = math.ldexp(round(math.ldexp(m, bits)), e - bits)
    return head, beta - head


def _window(shape, axis: int, lo: int):
    """Index helpers: the window position ``r`` of output ``idx`` and its validity."""
    extent = shape[axis]

    def at(idx, r):
        j = idx[axis] + r - lo
        return j, tirx.all(j >= 0, j < extent)

    return at


def lrn(data: te.Tensor, params: LRNParams, *, safe_scaling: bool = True) -> te.Tensor:
    """Numerically safe LRN of ``data`` along ``params.axis``.

    Parameters
    ----------
    data : te.Tensor
        Input of any rank >= 1, static or symbolic shape, dtype float16, bfloat16,
        float32 or float64. Symbolic dimensions should be int64 (as Relax makes them) so
        that flat indices of tensors with 2**31 or more elements do not overflow.
    params : LRNParams
        Canonical parameters (see :func:`tvm_lrn.spec.canonicalize`).
    safe_scaling : bool
        Only for benchmarks: ``False`` builds the same kernel without the power-of-two
        scaling (the unsafe textbook form), to measure what the scaling costs.

    Returns
    -------
    te.Tensor
        Same shape and dtype as ``data``; blocks ``lrn_window_max``,
        ``lrn_window_sumsq`` and ``lrn``.
    """
    dtype = check_dtype(data.dtype)
    params = params.with_axis(len(data.shape))
    fmt = _FORMATS[compute_dtype(dtype, params.beta)]
    shape, axis = data.shape, params.axis
    at = _window(shape, axis, params.lo)
    index_dtype = shape[axis].dtype if hasattr(shape[axis], "dtype") else "int32"

    def x(*idx):
        if dtype == "bfloat16":
            # Widen by moving the bits (exact); TVM 0.27's bfloat16 legalization corrupts
            # some bfloat16 loads (e.g. inside let bindings that passes may introduce).
            bits = tirx.reinterpret("uint16", data(*idx)).astype("uint32")
            return tirx.reinterpret("float32", bits << tirx.const(16, "uint32")).astype(fmt.float)
        return data(*idx).astype(fmt.float)

    def reduce_axis(name):
        zero, size = tirx.const(0, index_dtype), tirx.const(params.size, index_dtype)
        return te.reduce_axis((zero, size), name=name)

    def windowed(idx, r):
        j, valid = at(idx, r)
        shifted = list(idx)
        shifted[axis] = j
        return x(*shifted), valid

    if params.beta == 0:  # (...)**0 == 1 even for NaN/Inf: LRN is the identity
        return te.compute(shape, lambda *idx: data(*idx), name="lrn", tag="lrn")
    if not safe_scaling:
        return _unsafe_lrn(data, params, fmt, windowed, reduce_axis)

    r_max = reduce_axis("r_max")

    def window_max(*idx):
        value, valid = windowed(idx, r_max)
        return te.max(tirx.if_then_else(valid, tirx.abs(value), fmt.f(0.0)), axis=r_max)

    wmax = te.compute(shape, window_max, name="lrn_window_max")

    def scale_exponent(m):
        # 2**k brings the window maximum into [1, 4); clamped so that 2**k is normal.
        return fmt.clamp(-fmt.exponent(m), fmt.emin, fmt.emax - 1)

    r_sum = reduce_axis("r_sum")

    def window_sumsq(*idx):
        value, valid = windowed(idx, r_sum)
        scaled = value * fmt.pow2(scale_exponent(wmax(*idx)))
        return te.sum(tirx.if_then_else(valid, scaled * scaled, fmt.f(0.0)), axis=r_sum)

    sumsq = te.compute(shape, window_sumsq, name="lrn_window_sumsq")

    def output(*idx):
        y = _finish(x(*idx), wmax(*idx), sumsq(*idx), scale_exponent(wmax(*idx)), params, fmt)
        return y.astype(dtype)

    return te.compute(shape, output, name="lrn", tag="lrn")


def _finish(xi, wmax, sumsq, k, params: LRNParams, fmt: _Format):
    """``x_i * (bias + alpha * 2**(-2k) * sumsq) ** -beta`` with exact exponent handling."""
    alpha, beta, bias = params.alpha, params.beta, params.bias
    big = 1 << 30  # an exponent that loses every max(): "this term is absent"

    # bias + alpha * s = 2**G * D, 1 <= D < 4.
    if alpha > 0:
        m_alpha, e_alpha = _split(alpha, fmt)
        a = fmt.f(m_alpha) * sumsq  # alpha*s = a * 2**(e_alpha - 2k), a >= 2**-2p
        e_a = fmt.exponent(a) + fmt.i(e_alpha) - fmt.i(2) * k
    else:
        a, e_a = fmt.f(0.0), fmt.i(-big)
    if bias > 0:
        m_bias, e_bias = _split(bias, fmt)
    else:
        m_bias, e_bias = 0.0, -big
    g = tirx.max(e_a, fmt.i(e_bias))
    term_a = a * fmt.pow2(
        fmt.clamp(fmt.i(e_alpha if alpha > 0 else 0) - fmt.i(2) * k - g, fmt.emin, fmt.emax)
    )
    term_b = fmt.f(m_bias) * fmt.pow2(fmt.clamp(fmt.i(e_bias) - g, fmt.emin, 0))
    d = term_a + term_b

    # x_i = m_x * 2**e_x; a subnormal x_i is first scaled up by 2**p (exact).
    subnormal = tirx.abs(xi) < fmt.f(2.0**fmt.emin)
    xn = tirx.Select(subnormal, xi * fmt.f(2.0**fmt.p), xi)
    e_x = fmt.exponent(xn) - tirx.Select(subnormal, fmt.i(fmt.p), fmt.i(0))

    # (2**G * D)**-beta = w * 2**n_w, and y = m_x * w * 2**(e_x + n_w), rounded once.
    w, n_w = _power(d, g, beta, fmt)
    v = fmt.mantissa(xn) * w
    y = fmt.ldexp(fmt.mantissa(v), e_x + n_w + fmt.exponent(v))

    # Special values, in increasing priority (see the module docstring).
    y = tirx.Select(xi == fmt.f(0.0), xi, y)
    y = tirx.Select(fmt.isinf(wmax), _inf_rule(xi, y, params, fmt), y)
    return tirx.Select(fmt.isnan(sumsq), fmt.f(math.nan), y)


#: beta = k/4 for these k: the power is taken with square roots and a division.
_QUARTER_BETAS = {0.25: 1, 0.5: 2, 0.75: 3, 1.0: 4}


def _power(d, g, beta: float, fmt: _Format):
    """``(2**g * d)**-beta`` as ``(w, n)`` with ``w * 2**n`` equal to it, ``w`` moderate.

    ``g`` is an integer exponent of any size and ``1 <= d < 4``. The quarter powers
    (beta = 0.25, 0.5, 0.75, 1: AlexNet, GoogLeNet, TensorFlow's default) use square roots
    and a division, which vectorize on CPUs; other betas call pow and exp2.
    """
    quarters = _QUARTER_BETAS.get(beta)
    if quarters is not None:
        # 2**g * d = 2**(4q) * u with u = 2**(g mod 4) * d in [1, 32): then
        # u**(-k/4) needs only correctly rounded square roots and one division.
        q = g >> fmt.i(2)
        u = d * fmt.pow2(g & fmt.i(3))
        one = fmt.f(1.0)
        if quarters == 4:
            w = one / u
        elif quarters == 2:
            w = one / tirx.sqrt(u)
        else:
            root2 = tirx.sqrt(u)
            root4 = tirx.sqrt(root2)
            w = one / root4 if quarters == 1 else one / (root2 * root4)
        return w, fmt.i(-quarters) * q

    # 2**(-beta*g) = 2**(n_beta + frac): -head*g is exact, so its integer part is too.
    head, tail = _split_beta(beta, fmt)
    g_float = g.astype(fmt.float)
    head_g = fmt.f(-head) * g_float
    n_beta = tirx.floor(head_g)
    frac = (head_g - n_beta) - fmt.f(tail) * g_float
    # libm pow and exp2: accurate, scalar calls on CPUs. w stays normal for beta up to
    # several hundred (float32 is only used for beta <= BETA_FLOAT32_MAX).
    if beta <= 250:
        return tirx.pow(d, fmt.f(-beta)) * tirx.exp2(frac), n_beta.astype(fmt.int)
    z = frac - fmt.f(beta) * tirx.log2(d)
    n_z = tirx.floor(z)
    return tirx.exp2(z - n_z), (n_beta + n_z).astype(fmt.int)


def _inf_rule(xi, finite_y, params: LRNParams, fmt: _Format):
    """Output where the window holds +-Inf (and no NaN)."""
    x_inf = fmt.isinf(xi)
    if params.alpha == 0:  # the window does not enter the formula
        return tirx.Select(x_inf, xi, finite_y)
    signed_zero = fmt.signed_zero(xi)
    if params.beta < 0.5:
        at_inf = xi
    elif params.beta > 0.5:
        at_inf = signed_zero
    else:
        at_inf = fmt.f(math.nan)
    return tirx.Select(x_inf, at_inf, signed_zero)


def _unsafe_lrn(data, params, fmt, windowed, reduce_axis):
    """The textbook form (square, sum, pow in the compute dtype): for benchmarks only."""
    r = reduce_axis("r_sum")

    def window_sumsq(*idx):
        value, valid = windowed(idx, r)
        return te.sum(tirx.if_then_else(valid, value * value, fmt.f(0.0)), axis=r)

    sumsq = te.compute(data.shape, window_sumsq, name="lrn_window_sumsq")

    def output(*idx):
        d = fmt.f(params.bias) + fmt.f(params.alpha) * sumsq(*idx)
        y = data(*idx).astype(fmt.float) * tirx.pow(d, fmt.f(-params.beta))
        return y.astype(data.dtype)

    return te.compute(data.shape, output, name="lrn", tag="lrn")
