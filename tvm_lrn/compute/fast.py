"""The float32 fast path and its float64 fallback: the checked and guarded forms.

What the forms are and when each applies: :mod:`tvm_lrn.compute.forms`.
"""

from __future__ import annotations

import math

from tvm import te, tirx

from .. import intrin
from ..spec import LRNParams
from .formats import NumberFormat, number_format
from .forms import input_limit, sum_bound
from .guard import range_guard
from .window import WindowedInput

__all__ = [
    "QUARTER_BETAS",
    "checked_lrn",
    "fast_path_only_lrn",
    "float64_fallback",
    "guarded_lrn",
    "inf_window_output",
    "plain_formula",
]

#: beta = k/4 for these k: the power is taken with square roots and a division.
QUARTER_BETAS = {0.25: 1, 0.5: 2, 0.75: 3, 1.0: 4}


def plain_formula(xi, sumsq, params: LRNParams, fmt: NumberFormat, estimate: bool = False):
    """``x_i * (bias + alpha * sumsq) ** -beta`` as written: the fast path of one output.

    Parameters
    ----------
    xi, sumsq : PrimExpr
        The input at the output's position and its window sum of squares, in ``fmt``.
    params : LRNParams
        Canonical parameters.
    fmt : NumberFormat
        The format to compute in.
    estimate : bool
        float32 only: take the quarter powers from the refined reciprocal square root
        ``r = d**-0.5`` (:func:`tvm_lrn.intrin.refined_rsqrt`) and at most one correctly
        rounded root of it, ``d**-0.75 = r * sqrt(r)``; only for code built for a target
        that has the estimate (:func:`tvm_lrn.intrin.has_rsqrt_estimate`).

    Returns
    -------
    PrimExpr
    """
    d = fmt.float_const(params.bias)
    if params.alpha > 0:
        d = d + fmt.float_const(params.alpha) * sumsq
    quarters = QUARTER_BETAS.get(params.beta)
    if quarters is None:
        return _general_power(xi, d, params.beta, fmt)
    if quarters == 4:
        return xi / d
    if estimate:
        r = intrin.refined_rsqrt(d)
        if quarters == 2:
            return xi * r
        root = tirx.sqrt(r)  # d**-0.25
        return xi * root if quarters == 1 else xi * (r * root)
    if quarters == 2:
        return xi / tirx.sqrt(d)
    root4 = tirx.sqrt(tirx.sqrt(d))
    return xi / root4 if quarters == 1 else xi / (tirx.sqrt(d) * root4)


def _general_power(xi, d, beta: float, fmt: NumberFormat):
    """``xi * d**-beta`` for a beta that is not a quarter.

    In float32 the power is taken in float64 and the product rounded once: beta itself
    rounded to float32 is off by up to 2**-25 relative, which ``d**-beta`` turns into a
    relative error of ``|ln d|`` times that (about 5 ulp at ``d = 1e5``).
    """
    if fmt.float_dtype != "float32":
        return xi * tirx.pow(d, fmt.float_const(-beta))
    wide = "float64"
    power = tirx.pow(d.astype(wide), tirx.const(-beta, wide))
    return (xi.astype(wide) * power).astype(fmt.float_dtype)


def inf_window_output(xi, finite_y, params: LRNParams, fmt: NumberFormat):
    """The output where the window holds +-Inf (and no NaN), by the rule of README.md
    ("Zeros, NaN and Inf"): ``finite_y`` is the formula's value, used where
    ``alpha == 0`` and ``x_i`` is finite."""
    x_inf = fmt.isinf(xi)
    if params.alpha == 0:  # the window does not enter the formula
        return tirx.Select(x_inf, xi, finite_y)
    signed_zero = fmt.signed_zero(xi)
    if params.beta < 0.5:
        at_inf = xi
    elif params.beta > 0.5:
        at_inf = signed_zero
    else:
        at_inf = fmt.float_const(math.nan)
    return tirx.Select(x_inf, at_inf, signed_zero)


def float64_fallback(source: WindowedInput, idx):
    """LRN at ``idx`` in float64 from the window itself, unrolled: float64 holds the
    square of any float32 number, so nothing overflows or underflows."""
    wide, params = number_format("float64"), source.params
    s = source.sum_of_squares(idx, wide)
    xi = source.value(*idx).astype(wide.float_dtype)
    y = plain_formula(xi, s, params, wide)
    # Special values (README.md). NaN and Inf mostly propagate by themselves: a NaN
    # makes s NaN, an Inf makes s Inf and a finite x_i / Inf**beta a signed zero.
    if params.alpha > 0:
        y = tirx.Select(wide.isinf(xi), inf_window_output(xi, y, params, wide), y)
    y = tirx.Select(xi == wide.float_const(0.0), xi, y)  # also 0 / 0 when bias == 0
    return tirx.Select(wide.isnan(s), wide.float_const(math.nan), y)


def _fast_or_fallback(source: WindowedInput, estimate: bool, takes_fast_path):
    """Block ``lrn``: the fast path where ``takes_fast_path(idx, sumsq)``, else the
    float64 fallback."""
    fmt, params = source.fmt, source.params

    def output(*idx):
        sumsq = source.sum_of_squares(idx, fmt)
        fast = plain_formula(source.value(*idx), sumsq, params, fmt, estimate)
        wide = float64_fallback(source, idx).astype(fmt.float_dtype)
        safe = takes_fast_path(idx, sumsq)
        return tirx.if_then_else(safe, fast, wide).astype(source.data.dtype)

    return te.compute(source.shape, output, name="lrn", tag="lrn")


def checked_lrn(source: WindowedInput, estimate: bool) -> te.Tensor:
    """The checked form: each output checks its own window sum against
    :func:`~tvm_lrn.compute.forms.sum_bound`."""
    bound = source.fmt.float_const(sum_bound(source.params, source.fmt))
    return _fast_or_fallback(source, estimate, lambda idx, sumsq: sumsq <= bound)


def guarded_lrn(source: WindowedInput, estimate: bool) -> te.Tensor:
    """The guarded form: the range guard of each guard block decides for its outputs."""
    limit = input_limit(source.params, source.fmt)
    in_range = range_guard(source, limit)
    return _fast_or_fallback(source, estimate, lambda idx, sumsq: in_range(idx))


def fast_path_only_lrn(source: WindowedInput, estimate: bool) -> te.Tensor:
    """The fast path alone, without range guard, check or fallback: not safe, for
    benchmarks only (what the safety costs)."""
    fmt, params = source.fmt, source.params

    def output(*idx):
        sumsq = source.sum_of_squares(idx, fmt)
        return plain_formula(source.value(*idx), sumsq, params, fmt, estimate).astype(
            source.data.dtype
        )

    return te.compute(source.shape, output, name="lrn", tag="lrn")
