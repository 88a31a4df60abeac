"""Exact LRN reference in numpy, independent of TVM.

Inputs of up to 32 bits are computed in float64: squares of float32 values are exact
there and their sums cannot overflow or underflow. float64 inputs are computed in the
x86 80-bit extended type (``np.longdouble``, 64-bit mantissa, 15-bit exponent) where
the platform has it, else element by element with mpmath. The denominator and the
power are evaluated with exact power-of-two scaling (``frexp``/``ldexp``), so the
result is exact to well under one ulp of the input dtype over the whole finite range.

Non-finite inputs follow the rule documented in :mod:`tvm_lrn.compute`.
"""

from __future__ import annotations

import math

import numpy as np

from .spec import LRNParams, canonicalize, check_dtype

__all__ = ["lrn", "lrn_exact", "relative_error", "wide_dtype"]


def wide_dtype(dtype) -> np.dtype | None:
    """The numpy dtype the reference computes inputs of ``dtype`` in.

    Returns None for float64 inputs on platforms without an extended ``long double``;
    the reference then uses mpmath.
    """
    if check_dtype(_dtype_name(dtype)) != "float64":
        return np.dtype(np.float64)
    if np.finfo(np.longdouble).nmant >= 63:
        return np.dtype(np.longdouble)
    return None


def relative_error(got, truth) -> float:
    """``max |got - truth| / max |truth|`` in float64; inf where ``got`` is not finite
    (how far a whole model's output is from its float64 reference)."""
    got = np.asarray(got, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if got.shape != truth.shape:
        raise ValueError(f"shapes differ: {got.shape} against the reference's {truth.shape}")
    if not np.all(np.isfinite(got)):
        return float("inf")
    diff = float(np.max(np.abs(got - truth), initial=0.0))
    scale = float(np.max(np.abs(truth), initial=0.0))
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))


def _dtype_name(dtype) -> str:
    return dtype if isinstance(dtype, str) else np.dtype(dtype).name


def lrn(x, size, alpha=1e-4, beta=0.75, bias=1.0, axis=1, convention="torch") -> np.ndarray:
    """LRN of ``x`` rounded once to ``x``'s dtype.

    Parameters
    ----------
    x : numpy.ndarray
        float16, bfloat16 (``ml_dtypes``), float32 or float64, rank >= 1.
    size, alpha, beta, bias, axis, convention
        As in :func:`tvm_lrn.spec.canonicalize`.

    Returns
    -------
    numpy.ndarray
        Same shape and dtype as ``x``.
    """
    x = np.asarray(x)
    params = canonicalize(size, alpha, beta, bias, axis, convention, ndim=x.ndim)
    return lrn_exact(x, params).astype(x.dtype)


def lrn_exact(x: np.ndarray, params: LRNParams) -> np.ndarray:
    """LRN of ``x`` in the wide dtype (see :func:`wide_dtype`), not rounded to ``x.dtype``.

    Parameters
    ----------
    x : numpy.ndarray
        Input of a float dtype accepted by LRN.
    params : LRNParams
        Canonical parameters.

    Returns
    -------
    numpy.ndarray
        float64 (inputs up to 32 bits) or ``np.longdouble`` values of the exact result.
    """
    x = np.asarray(x)
    check_dtype(_dtype_name(x.dtype))
    params = params.with_axis(x.ndim)
    wide = wide_dtype(x.dtype)
    if wide is None:
        return _lrn_mpmath(x, params)
    xw = np.moveaxis(x.astype(wide), params.axis, 0)
    with np.errstate(all="ignore"):
        y = _lrn_wide(xw, params)
    return np.moveaxis(y, 0, params.axis)


def _window_sum(v: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """``out[i] = sum(v[j] for j in [i - lo, i + hi] if 0 <= j < len(v))`` along axis 0.

    A plain sum of shifted copies: never a running sum that subtracts what leaves.
    """
    out = np.zeros_like(v)
    c = v.shape[0]
    for offset in range(max(-lo, 1 - c), min(hi, c - 1) + 1):  # offsets past the edge add 0
        dst = slice(max(0, -offset), min(c, c - offset))
        src = slice(max(0, offset), min(c, c + offset))
        out[dst] += v[src]
    return out


def _split_beta(beta: float, bits: int) -> tuple[float, float]:
    if beta == 0:
        return 0.0, 0.0
    m, e = math.frexp(beta)
    head = math.ldexp(round(math.ldexp(m, bits)), e - bits)
    return head, beta - head


def _lrn_wide(xw: np.ndarray, p: LRNParams) -> np.ndarray:
    wide = xw.dtype
    if p.beta == 0:
        return xw.copy()
    nan_in = _window_sum(np.isnan(xw).astype(wide), p.lo, p.hi) > 0
    inf_in = _window_sum(np.isinf(xw).astype(wide), p.lo, p.hi) > 0
    finite = np.where(np.isfinite(xw), xw, 0)
    s = _window_sum(finite * finite, p.lo, p.hi)

    # bias + alpha * s = 2**g * d with d in [0.5, 2): exact scaling, nothing overflows.
    neg = np.full(s.shape, -(1 << 40), dtype=np.int64)
    if p.alpha > 0:
        m_s, e_s = np.frexp(s)
        m_a, e_a = math.frexp(p.alpha)
        t = m_s * wide.type(m_a)
        e_t = np.where(s > 0, e_s.astype(np.int64) + e_a, neg)
    else:
        t, e_t = np.zeros_like(s), neg
    if p.bias > 0:
        m_b, e_b = math.frexp(p.bias)
    else:
        m_b, e_b = 0.0, -(1 << 40)
    g = np.maximum(e_t, e_b)
    low = -(1 << 20)  # far below any exponent that can still matter
    d = np.ldexp(t, np.maximum(e_t - g, low)) + np.ldexp(wide.type(m_b), np.maximum(e_b - g, low))

    # y = x * 2**(-beta*g) * d**-beta, with -beta*g split exactly into integer + fraction.
    head, tail = _split_beta(p.beta, np.finfo(wide).nmant + 1 - 13)
    gw = g.astype(wide)
    head_g = -wide.type(head) * gw
    n = np.floor(head_g)
    frac = (head_g - n) - wide.type(tail) * gw
    m_x, e_x = np.frexp(np.where(np.isfinite(xw), xw, 0))
    if p.beta <= 400:
        v = m_x * np.power(d, -wide.type(p.beta)) * np.exp2(frac)
        n_extra = 0
    else:
        z = frac - wide.type(p.beta) * np.log2(d)
        n_extra = np.floor(z)
        v = m_x * np.exp2(z - n_extra)
        n_extra = n_extra.astype(np.int64)
    exponent = e_x.astype(np.int64) + n.astype(np.int64) + n_extra
    y = np.ldexp(v, np.clip(exponent, -(1 << 30), 1 << 30))

    # Special values, in the same priority as the compute.
    y = np.where(xw == 0, xw, y)
    y = np.where(inf_in, _inf_rule(xw, y, p), y)
    return np.where(nan_in, wide.type(np.nan), y)


def _inf_rule(xw, finite_y, p: LRNParams):
    x_inf = np.isinf(xw)
    if p.alpha == 0:
        return np.where(x_inf, xw, finite_y)
    if p.beta < 0.5:
        at_inf = xw
    elif p.beta > 0.5:
        at_inf = np.copysign(xw.dtype.type(0), xw)
    else:
        at_inf = np.full_like(xw, np.nan)
    return np.where(x_inf, at_inf, np.copysign(xw.dtype.type(0), xw))


def _lrn_mpmath(x: np.ndarray, p: LRNParams) -> np.ndarray:
    """Element-wise fallback for float64 inputs where ``long double`` is not extended."""
    import mpmath

    xs = np.moveaxis(x.astype(np.float64), p.axis, 0)
    out = np.empty(xs.shape, dtype=np.float64)
    c = xs.shape[0]
    with mpmath.workprec(160):
        for idx in np.ndindex(xs.shape):
            i = idx[0]
            window = [xs[(j,) + idx[1:]] for j in range(max(0, i - p.lo), min(c, i + p.hi + 1))]
            out[idx] = _lrn_scalar_mp(xs[idx], window, p, mpmath)
    return np.moveaxis(out, 0, p.axis)


def _lrn_scalar_mp(xi: float, window: list[float], p: LRNParams, mpmath) -> float:
    if p.beta == 0:
        return xi
    if any(math.isnan(v) for v in window):
        return math.nan
    if any(math.isinf(v) for v in window):
        if p.alpha > 0:
            if not math.isinf(xi):
                return math.copysign(0.0, xi)
            return xi if p.beta < 0.5 else math.copysign(0.0, xi) if p.beta > 0.5 else math.nan
        if math.isinf(xi):
            return xi
        window = []  # alpha == 0: the window does not enter
    if xi == 0:
        return xi
    s = mpmath.fsum(mpmath.mpf(v) ** 2 for v in window)
    d = mpmath.mpf(p.bias) + mpmath.mpf(p.alpha) * s
    return float(mpmath.mpf(xi) * d ** (-mpmath.mpf(p.beta)))
