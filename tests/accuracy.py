"""The one tolerance table of the test suite and the ulp-error measure it is checked with."""

from __future__ import annotations

import copy

import ml_dtypes
import numpy as np

# Norm-wise error max|got - truth| / max|truth| (inf if got is not finite): whole models
# carry near-zero outputs whose own relative error means nothing.
from tvm_lrn.reference import relative_error as rel_err

#: Maximum error in ulp of the output dtype where the exact result is a normal number.
ULP_BOUND = {"float16": 1, "bfloat16": 1, "float32": 8, "float64": 8}

#: Worst ulp error seen per dtype in this test session (printed in the terminal summary).
WORST_ULP: dict[str, float] = {}

#: Relative tolerance against torch.nn.functional.local_response_norm (float32).
TORCH_RTOL = {"float32": 1e-6, "float64": 1e-12}


def np_dtype(name: str) -> np.dtype:
    """numpy dtype for a dtype name, bfloat16 included."""
    return np.dtype(ml_dtypes.bfloat16) if name == "bfloat16" else np.dtype(name)


def format_info(name: str):
    """(mantissa bits, smallest normal, largest finite) of a float dtype."""
    fi = ml_dtypes.finfo(np_dtype(name))
    return int(fi.nmant), float(fi.smallest_normal), float(fi.max)


def check_against_exact(out: np.ndarray, exact: np.ndarray, dtype: str) -> float:
    """Assert the numerical contract of ``out`` (dtype) against the wide ``exact`` values.

    * where the exact result is a normal number of ``dtype``: at most ULP_BOUND ulp;
    * where it exceeds the largest finite number: +-Inf of the right sign;
    * where it is below the smallest normal: absolute error at most the smallest normal;
    * NaN exactly where the exact result is NaN; equal infinities where it is infinite.

    Returns the worst ulp error seen over the normal range.
    """
    nmant, tiny, big = format_info(dtype)
    got = out.astype(np.float64) if dtype != "float64" else out.astype(np.longdouble)
    ex = exact.astype(got.dtype)
    assert got.shape == ex.shape
    nan_ex = np.isnan(ex)
    np.testing.assert_array_equal(np.isnan(got), nan_ex, err_msg="NaN where not expected")
    with np.errstate(all="ignore"):
        mag = np.abs(ex)
        overflow = ~nan_ex & (mag > big * (1 + 2.0 ** -(nmant + 1)))
        normal = ~nan_ex & ~overflow & (mag >= tiny)
        small = ~nan_ex & ~overflow & (mag < tiny)
        right_inf = np.isinf(got[overflow]) & (np.sign(got[overflow]) == np.sign(ex[overflow]))
        assert np.all(right_inf), "overflowing results must be +-Inf with the right sign"
        ulp = np.exp2(np.floor(np.log2(mag[normal])) - nmant)
        err = np.abs(got[normal] - ex[normal]) / ulp
        worst = float(np.max(err)) if err.size else 0.0
        WORST_ULP[dtype] = max(WORST_ULP.get(dtype, 0.0), worst)
        bound = ULP_BOUND[dtype]
        if worst > bound:
            i = int(np.argmax(err))
            raise AssertionError(
                f"{dtype}: {worst:.2f} ulp > {bound} "
                f"(got {got[normal][i]!r}, exact {ex[normal][i]!r})"
            )
        assert np.all(np.abs(got[small] - ex[small]) <= tiny), "error above the smallest normal"
    return worst


def float32_bound(net, x) -> float:
    """Error bound for a float32 run of ``net`` on ``x * 1e21``, from float32 itself.

    Past about 1e3 the LRN denominator is dominated by ``alpha * s`` and the nets are
    positively homogeneous, so ``x * 1e6`` is in the same regime without overflowing:
    there torch float32 eager shows how much float32 rounding before an LRN (near-zero
    conv outputs end up divided by a tiny window sum) is amplified. AlexNet's second LRN
    makes that ~1e-4; the GoogLeNet stem stays ~5e-7. A correct LRN stays within a small
    multiple of it (the LRN alone is checked to a few ulp in test_frontend_torch).
    """
    import torch

    f64 = copy.deepcopy(net).double()
    f32 = copy.deepcopy(net).float()
    with torch.no_grad():
        x6 = x * 1e6
        err = rel_err(f32(x6.float()).numpy(), f64(x6.double()).numpy())
    return min(1e-3, max(1e-5, 10 * err))
