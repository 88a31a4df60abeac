"""The three safe forms of the LRN compute, and which one applies.

This is the one description of the forms; the rest of the project points here.

For output ``i`` with window ``W(i)`` along the LRN axis::

    y_i = x_i * (bias + alpha * s_i) ** -beta,    s_i = sum_{j in W(i)} x_j ** 2

computed so that no intermediate overflows or underflows unless the result does.
float16 and bfloat16 are computed in float32 and rounded once; float32 in float32 (in
float64 when ``beta > BETA_FLOAT32_MAX``); float64 in float64
(:func:`~tvm_lrn.compute.formats.compute_dtype`). Zeros, NaN and Inf follow the rule of
README.md ("Zeros, NaN and Inf") in every form. All three forms meet the same contract,
and the tests run each; :func:`tvm_lrn.op.form_for` picks one per target and shape.

**The fast path and its fallback.** Where every window sum is at most :func:`sum_bound`
(a bound derived from ``bias``, ``alpha``, ``beta`` and the window length), the
textbook formula in float32 cannot overflow or underflow: that is the fast path
(:func:`~tvm_lrn.compute.fast.plain_formula`, each window sum computed in the output's
own loop; the quarter betas with square roots and one division, or with the refined
reciprocal square root estimate of :mod:`tvm_lrn.intrin`). Elsewhere (huge values,
Inf, NaN) the output is computed in float64 from the window itself, unrolled
(:func:`~tvm_lrn.compute.fast.float64_fallback`): float64 holds the square of any
float32 number, so nothing can overflow or underflow there. Two forms make that choice:

* **checked** (block ``lrn`` alone): each output checks its own float32 window sum
  against the bound (NaN compares false). One branch per output, which a GPU thread
  takes cheaply, and no pass over the tensor before the outputs. On CPUs a branch per
  output would stop the loops from vectorizing, so the CPU schedule computes each task
  (a block of channels times a plane chunk) with the fast path alone while it keeps the
  largest window sum, and computes the task again, per output, only when that sum fails
  the check (:mod:`tvm_lrn.strategy.cpu`).
* **guarded** (blocks ``lrn_range``, ``lrn``): the largest input magnitude of each guard
  block (:func:`~tvm_lrn.compute.geometry.guard_block`: a run of channels, with the
  ``size - 1`` halo channels their windows reach, times a chunk of rows of the plane; a
  row along the axis when it is the last one), as integer bits, so that NaN and Inf
  compare above every number (:mod:`tvm_lrn.compute.guard`). Where it is at most
  :func:`input_limit`, no window sum of the block can exceed the bound and the fast path
  is taken; elsewhere the block is computed in float64. One branch per block, not per
  element, and the guard reads inputs, not window sums, so the sums need no buffer.

Both apply to float32 compute with windows up to :data:`MAX_UNROLLED_WINDOW` and
ordinary ``bias``/``alpha`` (:func:`resolve_form`); elsewhere they give the scaled form.

**scaled** (blocks ``lrn_window_max``, ``lrn_window_sumsq``, ``lrn``; always applies:
float64 inputs, float32 with ``beta > 1``, long windows, extreme ``bias``, and GPU
targets without float64; :mod:`tvm_lrn.compute.scaled`):

1. ``M = max |x_j|`` over the window.
2. ``S = sum (x_j * 2**k) ** 2`` with ``2**k`` the power of two that brings ``M`` near 1.
   Scaling by a power of two is exact, so ``s = 2**(-2k) * S`` holds to the rounding of
   the sum alone.
3. ``bias + alpha * s = 2**G * D`` with an integer ``G`` and ``1 <= D < 4``: both terms
   are brought to the larger one's exponent, the smaller one may vanish harmlessly.
4. ``y = x_i * 2**(-beta * G) * D**-beta``. ``beta * G`` is split exactly into an integer
   and a fraction (``beta`` is cut into a short head, whose product with ``G`` is exact,
   and a tail), ``x_i`` is split into mantissa and exponent, and all integer exponents
   are applied once at the end by an overflow- and underflow-correct ``ldexp``.
"""

from __future__ import annotations

import math

import numpy as np

from ..spec import LRNParams, check_dtype
from .formats import NumberFormat, compute_dtype, number_format

__all__ = ["FORMS", "MAX_UNROLLED_WINDOW", "input_limit", "resolve_form", "sum_bound"]

#: The safe forms, in the order of the description above.
FORMS = ("guarded", "checked", "scaled")

#: Longest window the float64 fallback of the guarded and checked forms unrolls (one
#: load per step).
MAX_UNROLLED_WINDOW = 32


def resolve_form(dtype: str, params: LRNParams, form: str) -> str:
    """The safe form that is built for ``form``: ``"scaled"`` where the guarded and
    checked forms do not apply and for ``beta == 0`` (the identity whatever the form),
    else ``form`` itself.

    Parameters
    ----------
    dtype : str
        Input dtype.
    params : LRNParams
        Canonical parameters.
    form : {"guarded", "checked", "scaled"}
        The form asked for.

    Returns
    -------
    str
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if params.beta == 0:
        return "scaled"
    fmt = number_format(compute_dtype(check_dtype(dtype), params.beta))
    return form if form != "scaled" and _fast_path_applies(params, fmt) else "scaled"


def _fast_path_applies(params: LRNParams, fmt: NumberFormat) -> bool:
    """Whether the guarded and checked forms (float32 fast path, float64 fallback) serve
    ``params``.

    They need float32 compute (inputs of at most 32 bits, ``beta <= 1``), a window
    short enough to unroll, a fast range (:func:`sum_bound`), and parameters for which
    float64 holds every intermediate of the fallback: squares of float32 numbers lie in
    ``2**[-298, 256]``, so ``bias`` and ``alpha`` only must not be absurdly small
    (``d`` would become subnormal) or large.
    """
    if fmt.float_dtype != "float32" or params.size > MAX_UNROLLED_WINDOW:
        return False
    if sum_bound(params, fmt) is None:
        return False
    alpha_ok = params.alpha == 0 or 2.0**-700 <= params.alpha <= 2.0**700
    return params.bias >= 2.0**-1000 and alpha_ok  # (bias > 0: sum_bound has a range)


def sum_bound(params: LRNParams, fmt: NumberFormat) -> float | None:
    """Largest window sum of squares up to which the plain formula is exact enough.

    With ``s <= S`` (so every ``|x_j| <= sqrt(S)`` in the window): ``s`` itself,
    ``d = bias + alpha * s``, ``d**-beta`` and ``y`` all stay within
    ``2**(+-(emax - p))``, far from overflow and from the subnormals, and squares that
    underflow are below ``2**-(p + 8)`` of ``bias``, so they cannot change ``d``. None
    when the parameters leave no such range (``bias`` tiny or huge, or ``beta`` so large
    that ``d**-beta`` underflows at once).
    """
    alpha, beta, bias = params.alpha, params.beta, params.bias
    if bias <= 0:
        return None
    span = fmt.emax - fmt.precision  # 2**span: comfortably inside the normal range
    log_bias = math.log2(bias)
    if log_bias < -span or -beta * log_bias > span:
        return None
    # |y| <= sqrt(s) * bias**-beta <= 2**span, and s well below overflow.
    log_s = min(2 * (span + beta * log_bias), span)
    if alpha > 0:
        log_alpha = math.log2(alpha)
        if log_alpha + math.log2(params.size) - log_bias > -fmt.emin - 8:
            return None  # underflowed squares could matter next to bias
        d_max = min(span, span / beta) - 1  # d**-beta stays normal
        if log_bias >= d_max:
            return None
        log_s = min(log_s, d_max - log_alpha)  # alpha * s <= 2**d_max
    log_s = math.floor(log_s)
    return None if log_s < -40 else 2.0**log_s


def input_limit(params: LRNParams, fmt: NumberFormat) -> float:
    """Largest input magnitude up to which every window sum stays within
    :func:`sum_bound`: ``size * limit**2 <= bound``, exactly (float64 holds these
    products of float32 numbers)."""
    bound, size = sum_bound(params, fmt), params.size
    limit = float(np.sqrt(np.float32(bound / size)))
    while size * limit * limit > bound:
        limit = float(np.nextafter(np.float32(limit), np.float32(0)))
    return limit
