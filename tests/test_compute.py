"""The safe LRN kernel (through tvm_lrn.run) against the exact reference, torch and ONNX."""

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import tvm
from accuracy import TORCH_RTOL, check_against_exact, format_info, np_dtype
from inputs import extremes, log_uniform
from tvm import te, tirx

import tvm_lrn
from tvm_lrn import canonicalize, compute, eager, op, reference

DTYPES = ["float16", "bfloat16", "float32", "float64"]

# (size, alpha, beta, bias): ordinary, bias 0, tiny and huge alpha/bias, large beta, alpha 0.
PARAMS = [
    (5, 1e-4, 0.75, 1.0),
    (3, 1.0, 0.5, 0.0),
    (4, 1e-30, 1.5, 0.0),
    (8, 2e-5, 0.25, 2.0),
    (1, 3.0, 1.0, 1e-20),
    (7, 1e30, 0.1, 1e30),
    (2, 0.0, 0.75, 3.0),
    (6, 1e-4, 2.5, 1.0),
]


def run_and_check(x, size, alpha, beta, bias, axis=1, convention="torch"):
    y = tvm_lrn.run(
        x, size=size, alpha=alpha, beta=beta, bias=bias, axis=axis, convention=convention
    )
    assert y.dtype == x.dtype and y.shape == x.shape
    p = canonicalize(size, alpha, beta, bias, axis, convention, ndim=x.ndim)
    return check_against_exact(y, reference.lrn_exact(x, p), x.dtype.name), y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("size, alpha, beta, bias", PARAMS)
@pytest.mark.usefixtures("safe_form")
def test_whole_range_against_reference(dtype, size, alpha, beta, bias):
    """Magnitudes from the smallest subnormal to the largest value, windows mixing both."""
    x = extremes(np.random.default_rng(size), (2, 11, 3, 5), dtype)
    run_and_check(x, size, alpha, beta, bias)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta", [0.75, 0.5, 1.0])
@pytest.mark.usefixtures("safe_form")
def test_tiny_inputs_with_bias_zero(dtype, beta):
    """bias = 0 with tiny x: the exact result is large (x**(1-2beta)); others give Inf/NaN."""
    _, tiny, _ = format_info(dtype)
    x = log_uniform(
        np.random.default_rng(1), (3, 9, 4), dtype, lo=math.log2(tiny) - 6, hi=math.log2(tiny) + 20
    )
    run_and_check(x, 5, 1e-4, beta, 0.0)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.usefixtures("safe_form")
def test_large_values_that_overflow_torch(dtype):
    big = 1e20 if dtype == "float32" else 300.0
    x = (np.random.default_rng(2).uniform(0.5, 1.0, (1, 16, 8, 8)) * big).astype(dtype)
    if dtype == "float32":
        naive = F.local_response_norm(torch.from_numpy(x), 5).numpy()
    else:  # torch has no float16 LRN on CPU: the same formula in float16 with numpy
        with np.errstate(over="ignore"):
            sq = np.pad(x * x, ((0, 0), (2, 2), (0, 0), (0, 0)))
            s = sum(sq[:, i : i + 16] for i in range(5))
            naive = x / (1 + np.float16(1e-4 / 5) * s) ** 0.75
    assert (~np.isfinite(naive) | (naive == 0)).all()  # what the unsafe form gives
    worst, y = run_and_check(x, 5, 1e-4, 0.75, 1.0)
    assert np.isfinite(y).all() and (y != 0).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.usefixtures("safe_form")
def test_zero_gives_zero(dtype):
    x = np.zeros((2, 5, 3), np_dtype(dtype))
    x[0, 1, 1] = np_dtype(dtype).type(-0.0)
    x[1, 2, 0] = np_dtype(dtype).type(3.0)  # zeros next to a non-zero
    for bias in (0.0, 1.0):
        y = tvm_lrn.run(x, size=3, alpha=1.0, beta=0.75, bias=bias)
        assert np.isfinite(y.astype(np.float64)).all()
        zeros = x.astype(np.float64) == 0
        assert (y.astype(np.float64)[zeros] == 0).all()
        np.testing.assert_array_equal(np.signbit(y[zeros]), np.signbit(x[zeros]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta", [0.0, 0.25, 0.5, 0.75])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.usefixtures("safe_form")
def test_nan_and_inf_follow_the_rule(dtype, beta, alpha):
    """NaN only where the window holds it; Inf by the documented rule (see compute.py)."""
    nan, inf = math.nan, math.inf
    row = [1.0, 0.0, -0.0, nan, 2.0, 3.0, 4.0, inf, -5.0, 6.0, 7.0, -inf, 8.0, 9.0, 10.0, 11.0]
    x = np.array([row, row[::-1]], np.float64).astype(np_dtype(dtype)).reshape(2, 16, 1)
    bias = 1.0
    y = tvm_lrn.run(x, size=3, alpha=alpha, beta=beta, bias=bias)
    exact = reference.lrn_exact(x, canonicalize(3, alpha, beta, bias, 1, ndim=3))
    check_against_exact(y, exact, dtype)  # NaN where exact is NaN, Inf where it is Inf
    zero = exact == 0
    assert (y.astype(np.float64)[zero] == 0).all()
    np.testing.assert_array_equal(np.signbit(y[zero]), np.signbit(exact[zero]))
    if beta > 0:
        assert np.isnan(y[0, 2:5].astype(np.float64)).all()
        assert not np.isnan(y[0, [0, 1, 5, 13, 14, 15]].astype(np.float64)).any()


TORCH_CASES = [
    # (shape, size): N != C, C = 1, size > C, 3-D, 4-D, 5-D
    ((2, 7, 5, 4), 1),
    ((2, 7, 5, 4), 2),
    ((3, 7, 5), 3),
    ((2, 7, 5, 4), 4),
    ((1, 7, 3, 2, 2), 5),
    ((2, 7, 5), 6),
    ((2, 7, 4, 4), 7),
    ((3, 7, 2, 3, 2), 8),
    ((2, 1, 4, 4), 3),
    ((2, 1, 4, 4), 4),
    ((2, 3, 6), 7),
    ((4, 2, 3, 3), 8),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape, size", TORCH_CASES)
def test_equals_torch(dtype, shape, size):
    rng = np.random.default_rng(size)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    kw = dict(alpha=2e-2, beta=0.75, k=1.5)
    want = F.local_response_norm(torch.from_numpy(x), size, **kw).numpy()
    got = tvm_lrn.run(torch.from_numpy(x), size=size, alpha=2e-2, beta=0.75, bias=1.5)
    assert isinstance(got, torch.Tensor) and got.dtype == getattr(torch, dtype)
    np.testing.assert_allclose(got.numpy(), want, rtol=TORCH_RTOL[dtype], atol=0)


@pytest.mark.parametrize("size", [2, 4, 6, 8])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_even_sizes_follow_the_onnx_formula(size, dtype):
    """ONNX's window for even sizes is [c - (size-1)//2, c + size//2]: torch's mirrored."""
    x = (np.random.default_rng(size).standard_normal((2, 9, 3)) * 4).astype(dtype)
    alpha, beta, bias = 1e-1, 0.75, 1.0
    x64 = x.astype(np.float64)
    sq = np.zeros_like(x64)
    for c in range(9):
        lo, hi = max(0, c - (size - 1) // 2), min(8, c + math.ceil((size - 1) / 2))
        sq[:, c] = (x64[:, lo : hi + 1] ** 2).sum(axis=1)
    want = x64 / (bias + alpha / size * sq) ** beta
    got = tvm_lrn.run(x, size=size, alpha=alpha, beta=beta, bias=bias, convention="onnx")
    np.testing.assert_allclose(got, want, rtol=TORCH_RTOL[dtype])
    torch_form = tvm_lrn.run(x, size=size, alpha=alpha, beta=beta, bias=bias)
    assert not np.allclose(torch_form, got, rtol=1e-3)  # the two windows really differ


@pytest.mark.parametrize("convention, size", [("tensorflow", 5), ("caffe", 3)])
def test_tensorflow_and_caffe(convention, size):
    x = (np.random.default_rng(3).standard_normal((2, 6, 5)) * 2).astype(np.float32)
    x64 = x.astype(np.float64)
    r = size // 2
    sq = np.pad(x64**2, ((0, 0), (r, r), (0, 0)))
    s = sum(sq[:, i : i + 6] for i in range(size))
    alpha = 0.3
    alpha_eff = alpha if convention == "tensorflow" else alpha / size
    want = x64 * (2.0 + alpha_eff * s) ** -0.5
    got = tvm_lrn.run(x, size=size, alpha=alpha, beta=0.5, bias=2.0, convention=convention)
    np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize(
    "shape, axis",
    [
        ((13,), 0),
        ((4, 9), -1),
        ((2, 3, 4, 6), 3),
        ((2, 5, 3, 2, 3), 2),
        ((6, 2, 3), 0),
        ((3, 8, 1), -2),
    ],
)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.usefixtures("safe_form")
def test_any_rank_and_axis(shape, axis, dtype):
    """Ranks 1 to 5, first, middle and last axes (channels-last), negative axes."""
    x = extremes(np.random.default_rng(len(shape)), shape, dtype, axis=axis)
    run_and_check(x, 3, 1e-2, 0.75, 1.0, axis=axis)


def test_one_model_per_shape_is_compiled_and_reused():
    """run() compiles once per shape (the kernel of a compiled model), then reuses it."""
    eager.model.cache_clear()
    for shape in [(1, 4, 3, 3), (5, 2, 7, 1), (1, 4, 3, 3)]:
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        y = tvm_lrn.run(x, size=3)
        np.testing.assert_allclose(y, reference.lrn(x, 3), rtol=1e-6)
    info = eager.model.cache_info()
    assert (info.misses, info.hits) == (2, 1)


def test_empty_tensor():
    x = np.zeros((2, 0, 3), np.float32)
    assert tvm_lrn.run(x, size=3).shape == (2, 0, 3)


def test_torch_in_torch_out_bfloat16():
    x = torch.randn(2, 6, 3, dtype=torch.bfloat16) * 1e30
    y = tvm_lrn.run(x, size=5, bias=0.0, alpha=1.0)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.bfloat16
    p = canonicalize(5, 1.0, 0.75, 0.0, 1, ndim=3)
    xn = x.float().numpy().astype(np_dtype("bfloat16"))
    check_against_exact(
        y.float().numpy().astype(np_dtype("bfloat16")), reference.lrn_exact(xn, p), "bfloat16"
    )


@pytest.mark.parametrize(
    "x, exc, match",
    [
        (np.zeros((2, 3), np.int8), TypeError, "floating-point input"),
        (np.zeros((2, 3), np.int32), TypeError, "floating-point input"),
        (np.zeros((2, 3), bool), TypeError, "floating-point input"),
        (np.float32(1.0), ValueError, "rank >= 1"),
    ],
)
def test_run_rejects_invalid_input(x, exc, match):
    with pytest.raises(exc, match=match):
        tvm_lrn.run(x, size=3)


def test_run_rejects_axis_out_of_range():
    with pytest.raises(ValueError, match="axis 3 is out of range"):
        tvm_lrn.run(np.zeros((2, 3, 4), np.float32), size=3, axis=3)


# ---------------------------------------------------------------- the guarded form


def _fast_limit(size, alpha, beta, bias):
    """The largest input magnitude the guarded form takes its float32 fast path for."""
    p = canonicalize(size, alpha, beta, bias, ndim=4)
    return compute.input_limit(p, compute.number_format("float32"))


@pytest.mark.parametrize("size, alpha, beta, bias", [(5, 1e-4, 0.75, 1.0), (3, 1.0, 1.0, 1e-6)])
def test_input_limit_bounds_every_window_sum(size, alpha, beta, bias):
    """Inputs up to the limit keep every window sum within the fast range, exactly: the
    limit is the largest float32 for which that holds."""
    p = canonicalize(size, alpha, beta, bias, ndim=4)
    bound = compute.sum_bound(p, compute.number_format("float32"))
    limit = _fast_limit(size, alpha, beta, bias)
    above = float(np.nextafter(np.float32(limit), np.float32(np.inf)))
    assert np.float32(limit) == limit
    assert p.size * limit * limit <= bound < p.size * above * above


@pytest.mark.parametrize(
    "value", [3e30, -2e19, np.inf, -np.inf, np.nan, 1e-40, 0.0], ids=lambda v: f"{v:g}"
)
def test_guard_falls_back_per_block(value):
    """Each image holds one value outside the fast range (one of them at the edge of the
    window padding): their guard blocks take the float64 fallback, and every output is
    exact."""
    x = (np.random.default_rng(3).standard_normal((2, 12, 9, 11)) * 4).astype(np.float32)
    x[0, 5, 4, 7] = value
    x[1, 0, 0, 0] = value  # at the edge of the window padding
    worst, y = run_and_check(x, 5, 1e-4, 0.75, 1.0)
    assert worst <= 8


@pytest.mark.parametrize("factor", [0.25, 0.999, 1.001, 4.0])
@pytest.mark.parametrize("size, alpha, beta, bias", [(5, 1e-4, 0.75, 1.0), (3, 1.0, 1.0, 1e-6)])
def test_guard_boundary(size, alpha, beta, bias, factor):
    """Inputs just below and just above the fast-path limit are both exact."""
    limit = _fast_limit(size, alpha, beta, bias)
    rng = np.random.default_rng(4)
    x = rng.uniform(0.9, 1.0, (1, 8, 6, 6)) * rng.choice([-1.0, 1.0], (1, 8, 6, 6))
    x = (x * limit * factor).astype(np.float32)
    x[0, 3, 2, 1] = np.float32(limit * factor)  # the largest magnitude, on either side
    run_and_check(x, size, alpha, beta, bias)


@pytest.mark.parametrize("form", ["guarded", "checked"])
def test_safe_forms_chosen_per_parameters(form):
    """The guarded and checked forms serve float32 compute with short windows and
    ordinary bias/alpha; float64 compute, long windows and tiny bias take the scaled
    form."""

    def blocks(dtype, form=form, **kw):
        p = canonicalize(ndim=4, **{"size": 5, **kw})
        names = re.findall(
            r'T\.sblock\("(\w+)"\)', op.lrn_primfunc([None] * 4, dtype, p, form=form).script()
        )
        return set(names) - {"root"}

    fast = {"lrn_range", "lrn"} if form == "guarded" else {"lrn"}
    scaled = {"lrn_window_max", "lrn_window_sumsq", "lrn"}
    for dtype in ("float16", "bfloat16", "float32"):
        assert blocks(dtype) == fast
        assert blocks(dtype, form="scaled") == scaled
    assert blocks("float64") == scaled
    assert blocks("float32", beta=2.5) == scaled  # computed in float64
    assert blocks("float32", size=compute.MAX_UNROLLED_WINDOW + 1) == scaled
    assert blocks("float32", bias=1e-30) == fast
    assert blocks("float32", bias=1e-35) == scaled  # below 2**-103: no fast range left
    assert blocks("float32", bias=0.0) == scaled


def test_form_follows_the_target():
    """Without a form, the compute takes the current target's: checked on GPUs; on CPUs
    checked for static planes (the plane schedule speculates), else guarded."""
    x = te.placeholder((2, 8, 4, 4), "float32", name="x")
    p = canonicalize(5, ndim=4)
    assert op.form_for(None) == "guarded"
    n = tirx.Var("n", "int64")
    assert op.form_for(None, (n, 96, 55, 55), 1) == "checked"  # symbolic batch
    assert op.form_for(None, (1, 96, n, 55), 1) == "guarded"  # symbolic plane
    assert op.form_for(None, (1, 55, 55, 96), 3) == "guarded"  # channels-last
    assert op.form_for(None, (2, 8, 65537), 1) == "guarded"  # a prime row > PLANE_MAX
    assert op.form_for(None, (4, 3, 256, 256), 1) == "checked"  # rows are chunked
    assert op.form_for(None, (1, 96, 0, 55), 1) == "guarded"  # empty plane
    assert op.form_for(tvm.target.Target("metal")) == "scaled"  # no float64
    vulkan = {"kind": "vulkan", "supports_float64": True}
    assert op.form_for(tvm.target.Target(vulkan)) == "checked"
    with tvm.target.Target({"kind": "cuda", "arch": "sm_90"}):
        assert op.form_for(tvm.target.Target.current()) == "checked"
        assert op.lrn_compute(x, p).op.input_tensors == [x]  # no guard tensor
    with tvm.target.Target("llvm"):
        assert op.lrn_compute(x, p).op.input_tensors == [x]
        last = te.placeholder((2, 4, 4, 8), "float32", name="x")
        guarded = op.lrn_compute(last, canonicalize(5, axis=-1, ndim=4))
        assert [t.op.name for t in guarded.op.input_tensors] == ["lrn_range", "x"]
    with pytest.raises(ValueError, match="form must be one of"):
        compute.lrn(x, p, form="fast")
    # where neither fast form applies, both resolve to the scaled form's kernel
    assert compute.resolve_form("float32", p, "checked") == "checked"
    assert compute.resolve_form("float64", p, "checked") == "scaled"
    assert compute.resolve_form("float32", canonicalize(5, bias=0.0, ndim=4), "guarded") == "scaled"
    assert compute.resolve_form("float32", canonicalize(5, beta=0.0, ndim=4), "checked") == "scaled"
