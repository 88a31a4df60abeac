"""Property test: any rank, axis, shape, size, convention, parameters, dtype and magnitude."""

import math
import os

import numpy as np
import pytest
from accuracy import check_against_exact, format_info, np_dtype
from conftest import SAFE_FORMS, forced_form
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tvm_lrn
from tvm_lrn import canonicalize, reference

# CI runs at least 300 examples; LRN_PROPERTY_EXAMPLES raises or lowers that locally.
EXAMPLES = int(os.environ.get("LRN_PROPERTY_EXAMPLES", "300"))


@st.composite
def lrn_cases(draw):
    dtype = draw(st.sampled_from(["float16", "bfloat16", "float32", "float64"]))
    ndim = draw(st.integers(1, 5))
    shape = tuple(draw(st.lists(st.integers(1, 6), min_size=ndim, max_size=ndim)))
    axis = draw(st.integers(-ndim, ndim - 1))
    convention = draw(st.sampled_from(["torch", "onnx", "tensorflow", "caffe"]))
    odd_only = convention in ("tensorflow", "caffe")
    size = draw(st.integers(0, 4).map(lambda k: 2 * k + 1) if odd_only else st.integers(1, 9))
    alpha = draw(st.sampled_from([0.0, 1e-4, 1e-2, 1.0, 3.0, 1e-30, 1e30, 0.0146]))
    # A general beta takes another code path than the quarters: any value is drawn.
    beta = draw(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0]) | st.floats(0.01, 3.0))
    bias = draw(st.sampled_from([0.0, 1.0, 2.0, 1e-20, 1e20, 9.34]) if alpha else st.just(1.0))
    nmant, tiny, big = format_info(dtype)
    lo = draw(st.floats(math.log2(tiny) - nmant, math.log2(big)))
    hi = draw(st.floats(lo, math.log2(big)))
    seed = draw(st.integers(0, 2**32 - 1))
    form = draw(st.sampled_from(sorted(SAFE_FORMS)))
    return dtype, shape, axis, convention, size, alpha, beta, bias, lo, hi, seed, form


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(lrn_cases())
def test_lrn_matches_reference(case):
    dtype, shape, axis, convention, size, alpha, beta, bias, lo, hi, seed, form = case
    rng = np.random.default_rng(seed)
    e = rng.uniform(lo, hi, shape)
    x = (np.exp2(e) * rng.choice([-1.0, 1.0], shape)).astype(np_dtype(dtype))
    x[rng.random(shape) < 0.1] = 0
    with forced_form(form):
        y = tvm_lrn.run(
            x, size=size, alpha=alpha, beta=beta, bias=bias, axis=axis, convention=convention
        )
    p = canonicalize(size, alpha, beta, bias, axis, convention, ndim=len(shape))
    check_against_exact(y, reference.lrn_exact(x, p), dtype)


def _check_float32_run(x, form=None, **kw):
    """``tvm_lrn.run(x, **kw)`` (torch convention, axis 1) against the exact reference."""
    if form is None:
        y = tvm_lrn.run(x, **kw)
    else:
        with forced_form(form):
            y = tvm_lrn.run(x, **kw)
    p = canonicalize(**kw, axis=1, convention="torch", ndim=x.ndim)
    check_against_exact(y, reference.lrn_exact(x, p), "float32")


def test_general_beta_in_float32_keeps_the_bound():
    """A non-quarter beta above 1 with large window sums: once 10 ulp from the exact
    result (float32 beta in the power, and the window sum's rounding amplified)."""
    x = (np.random.default_rng(0).standard_normal((2, 11, 5, 1)) * 527).astype(np.float32)
    kw = dict(size=7, alpha=0.014642637918905686, beta=1.7339722587173596, bias=9.340190947246645)
    _check_float32_run(x, **kw)


# The forms whose fast path computes the power in float32 (the scaled form has its own).
@pytest.mark.parametrize("form", ["checked", "guarded"])
def test_general_beta_below_one_in_float32(form):
    """Betas up to 1 stay in float32 (the power in float64): long windows of values
    near the top of the fast path's range (``d`` about 1e28), where beta rounded to
    float32 would be off by ``ln d * 2**-25``, in both forms with a float32 fast path."""
    x = (np.random.default_rng(1).standard_normal((2, 40, 6, 5)) * 1e13).astype(np.float32)
    _check_float32_run(x, form, size=31, alpha=0.5, beta=0.9, bias=1.0)
