"""The scaled form: blocks ``lrn_window_max``, ``lrn_window_sumsq`` and ``lrn``.

It applies everywhere (the steps are those of :mod:`tvm_lrn.compute.forms`): the window
sum is taken of inputs scaled by a power of two, and every exponent is applied once, at
the end, by an overflow- and underflow-correct ``ldexp``.
"""

from __future__ import annotations

import math

import numpy as np
from tvm import te, tirx

from ..spec import LRNParams
from .fast import QUARTER_BETAS, inf_window_output
from .formats import NumberFormat
from .window import WindowedInput

__all__ = ["scaled_lrn"]

# Bits of beta's head: beta_head * G must be exact for |G| < 2**_G_BITS.
_G_BITS = 12


def _split_significand(value: float, fmt: NumberFormat) -> tuple[float, int]:
    """``value > 0`` as ``m * 2**e`` with ``1 <= m < 2`` (m rounded to the format)."""
    m, e = math.frexp(value)
    m = float(np.array(2 * m, dtype=fmt.float_dtype))
    if m >= 2.0:  # rounding carried into the exponent
        m, e = m / 2, e + 1
    return m, e - 1


def _split_beta(beta: float, fmt: NumberFormat) -> tuple[float, float]:
    """``beta = head + tail`` with ``head * G`` exact for ``|G| < 2**_G_BITS``."""
    if beta == 0:
        return 0.0, 0.0
    bits = fmt.precision - _G_BITS
    m, e = math.frexp(beta)
    head = math.ldexp(round(math.ldexp(m, bits)), e - bits)
    return head, beta - head


def scaled_lrn(source: WindowedInput) -> te.Tensor:
    """The scaled form of LRN of ``source``."""
    fmt, shape = source.fmt, source.shape
    r_max = source.reduce_axis("r_max")

    def window_max(*idx):
        value, valid = source.window_value(idx, r_max)
        return te.max(fmt.masked(valid, tirx.abs(value)), axis=r_max)

    wmax = te.compute(shape, window_max, name="lrn_window_max")

    def scale_exponent(m):
        # 2**k brings the window maximum into [1, 4); clamped so that 2**k is normal.
        return fmt.clamp(-fmt.exponent(m), fmt.emin, fmt.emax - 1)

    r_sum = source.reduce_axis("r_sum")

    def window_sumsq(*idx):
        value, valid = source.window_value(idx, r_sum)
        scaled = value * fmt.pow2(scale_exponent(wmax(*idx)))
        return te.sum(fmt.masked(valid, scaled * scaled), axis=r_sum)

    sumsq = te.compute(shape, window_sumsq, name="lrn_window_sumsq")

    def output(*idx):
        k = scale_exponent(wmax(*idx))
        y = _scaled_output(source.value(*idx), wmax(*idx), sumsq(*idx), k, source.params, fmt)
        return y.astype(source.data.dtype)

    return te.compute(shape, output, name="lrn", tag="lrn")


def _denominator(sumsq, k, params: LRNParams, fmt: NumberFormat):
    """``bias + alpha * 2**(-2k) * sumsq`` as ``(G, D)``: ``2**G * D``, ``1 <= D < 4``."""
    alpha, bias = params.alpha, params.bias
    big = 1 << 30  # an exponent that loses every max(): "this term is absent"
    if alpha > 0:
        m_alpha, e_alpha = _split_significand(alpha, fmt)
        a = fmt.float_const(m_alpha) * sumsq  # alpha*s = a * 2**(e_alpha - 2k), a >= 2**-2p
        e_a = fmt.exponent(a) + fmt.int_const(e_alpha) - fmt.int_const(2) * k
    else:
        a, e_a = fmt.float_const(0.0), fmt.int_const(-big)
    if bias > 0:
        m_bias, e_bias = _split_significand(bias, fmt)
    else:
        m_bias, e_bias = 0.0, -big
    g = tirx.max(e_a, fmt.int_const(e_bias))
    shift_a = fmt.int_const(e_alpha if alpha > 0 else 0) - fmt.int_const(2) * k - g
    term_a = a * fmt.pow2(fmt.clamp(shift_a, fmt.emin, fmt.emax))
    term_b = fmt.float_const(m_bias) * fmt.pow2(fmt.clamp(fmt.int_const(e_bias) - g, fmt.emin, 0))
    return g, term_a + term_b


def _scaled_output(xi, wmax, sumsq, k, params: LRNParams, fmt: NumberFormat):
    """``x_i * (bias + alpha * 2**(-2k) * sumsq) ** -beta`` with exact exponent handling."""
    g, d = _denominator(sumsq, k, params, fmt)

    # x_i = m_x * 2**e_x; a subnormal x_i is first scaled up by 2**p (exact).
    p = fmt.precision
    subnormal = tirx.abs(xi) < fmt.float_const(2.0**fmt.emin)
    xn = tirx.Select(subnormal, xi * fmt.float_const(2.0**p), xi)
    e_x = fmt.exponent(xn) - tirx.Select(subnormal, fmt.int_const(p), fmt.int_const(0))

    # (2**G * D)**-beta = w * 2**n_w, and y = m_x * w * 2**(e_x + n_w), rounded once.
    w, n_w = _power(d, g, params.beta, fmt)
    v = fmt.mantissa(xn) * w
    y = fmt.ldexp(fmt.mantissa(v), e_x + n_w + fmt.exponent(v))

    # Special values (README.md, "Zeros, NaN and Inf"), in increasing priority.
    y = tirx.Select(xi == fmt.float_const(0.0), xi, y)
    y = tirx.Select(fmt.isinf(wmax), inf_window_output(xi, y, params, fmt), y)
    return tirx.Select(fmt.isnan(sumsq), fmt.float_const(math.nan), y)


def _power(d, g, beta: float, fmt: NumberFormat):
    """``(2**g * d)**-beta`` as ``(w, n)`` with ``w * 2**n`` equal to it, ``w`` moderate.

    ``g`` is an integer exponent of any size and ``1 <= d < 4``. The quarter powers
    (beta = 0.25, 0.5, 0.75, 1: AlexNet, GoogLeNet, TensorFlow's default) use square roots
    and a division, which vectorize on CPUs; other betas call pow and exp2.
    """
    quarters = QUARTER_BETAS.get(beta)
    if quarters is not None:
        # 2**g * d = 2**(4q) * u with u = 2**(g mod 4) * d in [1, 32): then
        # u**(-k/4) needs only correctly rounded square roots and one division.
        q = g >> fmt.int_const(2)
        u = d * fmt.pow2(g & fmt.int_const(3))
        one = fmt.float_const(1.0)
        if quarters == 4:
            w = one / u
        elif quarters == 2:
            w = one / tirx.sqrt(u)
        else:
            root2 = tirx.sqrt(u)
            root4 = tirx.sqrt(root2)
            w = one / root4 if quarters == 1 else one / (root2 * root4)
        return w, fmt.int_const(-quarters) * q

    # 2**(-beta*g) = 2**(n_beta + frac): -head*g is exact, so its integer part is too.
    head, tail = _split_beta(beta, fmt)
    g_float = g.astype(fmt.float_dtype)
    head_g = fmt.float_const(-head) * g_float
    n_beta = tirx.floor(head_g)
    frac = (head_g - n_beta) - fmt.float_const(tail) * g_float
    # libm pow and exp2: accurate, scalar calls on CPUs. w stays normal for beta up to
    # several hundred (float32 is only used for beta <= BETA_FLOAT32_MAX).
    if beta <= 250:
        return tirx.pow(d, fmt.float_const(-beta)) * tirx.exp2(frac), n_beta.astype(fmt.int_dtype)
    z = frac - fmt.float_const(beta) * tirx.log2(d)
    n_z = tirx.floor(z)
    return tirx.exp2(z - n_z), (n_beta + n_z).astype(fmt.int_dtype)
