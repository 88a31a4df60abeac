"""The numpy reference against mpmath (arbitrary precision) and hand-derived special cases."""

import math

import mpmath
import numpy as np
import pytest
from accuracy import format_info
from inputs import log_uniform

from tvm_lrn import canonicalize, reference

PARAMS = [
    dict(size=5, alpha=1e-4, beta=0.75, bias=1.0),
    dict(size=4, alpha=1.0, beta=0.5, bias=0.0),
    dict(size=3, alpha=1e-30, beta=1.5, bias=0.0),
    dict(size=2, alpha=1e30, beta=0.1, bias=1e30),
    dict(size=7, alpha=3.0, beta=7.25, bias=1e-20),
]


def mp_lrn(x, p):
    """Arbitrary-precision LRN along axis 0 of a 1-D float array (finite inputs)."""
    out = []
    with mpmath.workprec(200):
        for i in range(len(x)):
            window = x[max(0, i - p.lo) : i + p.hi + 1]
            s = mpmath.fsum(mpmath.mpf(float(v)) ** 2 for v in window)
            d = mpmath.mpf(p.bias) + mpmath.mpf(p.alpha) * s
            out.append(mpmath.mpf(float(x[i])) * d ** -mpmath.mpf(p.beta) if x[i] != 0 else 0)
    return out


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("kw", PARAMS)
@pytest.mark.parametrize("convention", ["torch", "onnx"])
def test_reference_matches_mpmath(dtype, kw, convention):
    rng = np.random.default_rng(7)
    x = log_uniform(rng, 24, dtype)
    x[3:6] = x[3:6].astype(np.float64) * 0 + float(format_info(dtype)[2])  # largest values
    p = canonicalize(**kw, axis=0, convention=convention)
    got = reference.lrn_exact(x, p)
    exact = mp_lrn(x, p)
    # The reference must be far more accurate than the contract it checks (8 ulp at most):
    # a few ulp of its own wide type relative to the exact value, times beta, which
    # amplifies the rounding of the window sum (the condition number of x**-beta).
    rel = 2.0 ** -(np.finfo(got.dtype).nmant - 2) * max(1.0, p.beta)
    for g, e in zip(got, exact, strict=True):
        e_wide = got.dtype.type(mpmath.nstr(e, 40)) if e != 0 else got.dtype.type(0)
        if np.isinf(e_wide) or abs(e_wide) < np.finfo(got.dtype).smallest_normal:
            assert g == e_wide or abs(g - e_wide) < np.finfo(got.dtype).smallest_normal
        else:
            assert abs(g - e_wide) <= rel * abs(e_wide), (g, e_wide)


def test_reference_is_plain_formula_on_ordinary_values():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)
    got = reference.lrn(x, 3, alpha=1e-2, beta=0.75, bias=2.0, axis=1)
    x64 = x.astype(np.float64)
    sq = np.pad(x64**2, ((0, 0), (1, 1), (0, 0)))
    want = x64 / (2.0 + 1e-2 / 3 * (sq[:, :-2] + sq[:, 1:-1] + sq[:, 2:])) ** 0.75
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=1e-7)


def test_reference_special_values():
    nan, inf = math.nan, math.inf
    x = np.array([1.0, 0.0, -0.0, nan, 2.0, 3.0, 4.0, inf, -5.0, 6.0, 7.0, 8.0], np.float32)
    y = reference.lrn(x, 3, alpha=1.0, beta=0.75, bias=1.0, axis=0)
    assert np.isnan(y[2:5]).all()  # windows holding x[3] = NaN
    assert not np.isnan(y[[0, 1, 5, 9, 10, 11]]).any()
    assert y[1] == 0 and not np.signbit(y[1])
    assert y[6] == 0 and y[8] == 0 and np.signbit(y[8])  # finite next to Inf: signed zero
    assert y[7] == 0  # Inf itself, beta > 1/2: the limit is 0
    y_low = reference.lrn(x, 3, alpha=1.0, beta=0.25, bias=1.0, axis=0)
    assert y_low[7] == inf
    assert np.isnan(reference.lrn(x, 3, alpha=1.0, beta=0.5, bias=1.0, axis=0)[7])
    # beta == 0: identity, even next to NaN
    np.testing.assert_array_equal(reference.lrn(x, 3, beta=0.0, axis=0), x)
    # alpha == 0: the window does not enter, only NaN does
    y0 = reference.lrn(x, 3, alpha=0.0, beta=1.0, bias=4.0, axis=0)
    assert y0[6] == 1.0 and y0[7] == inf and np.isnan(y0[4])
    # zeros with bias == 0
    z = np.zeros(5, np.float32)
    np.testing.assert_array_equal(reference.lrn(z, 3, alpha=1.0, beta=0.75, bias=0.0, axis=0), z)
