"""tvm_lrn.compile: compile Relax modules holding R.tvm_lrn, run them, check the numbers.

Every result is checked against the independent numpy reference (tvm_lrn.reference)
with the tolerance table of tests/accuracy.py. CUDA is only compiled (no GPU needed).
"""

from __future__ import annotations

import logging
import re
import shutil
import types

import ml_dtypes
import numpy as np
import pytest
import torch
import tvm
from accuracy import check_against_exact, format_info, np_dtype
from tvm import relax
from tvm.target import Target

import tvm_lrn
from tvm_lrn import op, reference
from tvm_lrn.spec import canonicalize

CUDA = Target({"kind": "cuda", "arch": "sm_80"})


def tensor(shape, dtype="float32", name="x"):
    dims = [tvm.tirx.Var(d, "int64") if isinstance(d, str) else d for d in shape]
    return relax.Var(name, relax.TensorType(dims, dtype))


def lrn_module(shape, dtype="float32", post=(), **kw):
    """``main(x) = post(lrn(x))`` built with the public builder."""
    x = tensor(shape, dtype)
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(tvm_lrn.local_response_norm(x, **kw))
            for f in post:
                y = bb.emit(f(y))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def wide_range(rng, shape, dtype):
    """Half moderate values, half log-uniform over most of the dtype's normal range, and
    a few zeros: windows then mix magnitudes that overflow a naive x*x."""
    nmant, tiny, big = format_info(dtype)
    lo, hi = np.log2(tiny) + 1, np.log2(big) - 0.5
    wide = np.exp2(rng.uniform(lo, hi, shape)) * rng.choice([-1.0, 1.0], shape)
    moderate = rng.standard_normal(shape) * 4
    x = np.where(rng.random(shape) < 0.5, wide, moderate)
    x[rng.random(shape) < 0.05] = 0.0
    return np.clip(x, -big, big).astype(np_dtype(dtype))


def exact_lrn(x, params):
    """reference.lrn_exact, with the LRN axis zero-padded to at least the window length.

    Zero padding does not change LRN (the window is zero padded by definition); it keeps
    the reference away from windows longer than the axis, which its shifted-sum helper
    mishandled when this was written (see the report of the build/op work).
    """
    params = params.with_axis(x.ndim)
    c = x.shape[params.axis]
    if params.size <= c:
        return reference.lrn_exact(x, params)
    pad = [(0, 0)] * x.ndim
    pad[params.axis] = (params.lo, params.hi)
    exact = reference.lrn_exact(np.pad(x, pad), params)
    return np.take(exact, np.arange(params.lo, params.lo + c), axis=params.axis)


def check(out, x, params, dtype):
    assert out.dtype == np_dtype(dtype)
    assert out.shape == x.shape
    return check_against_exact(out, exact_lrn(x, params), dtype)


# ------------------------------------------------------------------- numerics on CPU

CONVENTIONS = {
    # convention: (size, alpha, beta, bias); even sizes where allowed
    "torch": (4, 1e-3, 0.75, 1.0),
    "onnx": (4, 2e-3, 0.75, 2.0),
    "tensorflow": (5, 1e-4, 0.5, 1.0),
    "caffe": (3, 5e-4, 0.75, 1.0),
}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
@pytest.mark.parametrize("convention", list(CONVENTIONS))
def test_compile_run_matches_reference(dtype, convention):
    size, alpha, beta, bias = CONVENTIONS[convention]
    shape = (2, 9, 3, 5)
    model = tvm_lrn.compile(
        lrn_module(
            shape, dtype, size=size, alpha=alpha, beta=beta, bias=bias, convention=convention
        ),
        "llvm",
    )
    x = wide_range(np.random.default_rng(7), shape, dtype)
    out = model(x)
    assert isinstance(out, np.ndarray)
    params = canonicalize(size, alpha, beta, bias, 1, convention, ndim=4)
    check(out, x, params, dtype)
    # and against the rounded public reference, which must be within the same bound
    ref = reference.lrn(x, size, alpha, beta, bias, 1, convention)
    assert ref.dtype == out.dtype


@pytest.mark.parametrize(
    ("shape", "axis", "size"),
    [
        ((11,), 0, 5),  # rank 1
        ((4, 7), -1, 3),  # rank 2, negative axis
        ((3, 6, 5), 1, 2),  # rank 3, even size
        ((2, 3, 4, 5), -3, 9),  # size > C
        ((2, 1, 4, 4), 1, 5),  # C == 1
        ((2, 3, 2, 2, 5), 4, 3),  # rank 5, last axis
        ((5, 2, 3), 0, 1),  # size 1, axis 0
    ],
)
def test_ranks_axes_and_window_edges(shape, axis, size):
    dtype = "float32"
    model = tvm_lrn.compile(lrn_module(shape, dtype, size=size, axis=axis, bias=1.5), "llvm")
    x = wide_range(np.random.default_rng(len(shape) * 10 + size), shape, dtype)
    params = canonicalize(size, 1e-4, 0.75, 1.5, axis, "torch", ndim=len(shape))
    check(model(x), x, params, dtype)


def test_symbolic_shape_runs_for_several_sizes():
    model = tvm_lrn.compile(lrn_module(("n", 16, 8, 8), "float32", size=5, alpha=1e-2), "llvm")
    params = canonicalize(5, 1e-2, ndim=4)
    rng = np.random.default_rng(3)
    for n in (1, 3):
        x = wide_range(rng, (n, 16, 8, 8), "float32")
        check(model(x), x, params, "float32")


def test_rank_only_input_compiles_and_runs():
    x = relax.Var("x", relax.TensorType(ndim=3, dtype="float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        y = bb.emit(tvm_lrn.local_response_norm(x, 3, alpha=0.3, axis=-1))
        bb.emit_func_output(y)
    model = tvm_lrn.compile(bb.get(), "llvm")
    rng = np.random.default_rng(12)
    for shape in ((2, 3, 4), (1, 1, 9)):
        xn = wide_range(rng, shape, "float32")
        check(model(xn), xn, canonicalize(3, 0.3, axis=2, ndim=3), "float32")


def test_symbolic_channel_axis():
    model = tvm_lrn.compile(lrn_module((2, "c", 3), "float16", size=3), "llvm")
    params = canonicalize(3, ndim=3)
    rng = np.random.default_rng(4)
    for c in (1, 2, 7):
        x = wide_range(rng, (2, c, 3), "float16")
        check(model(x), x, params, "float16")


def test_large_inputs_do_not_overflow_float16():
    """|x| ~ 6e4: a naive float16 x*x is Inf; the exact LRN is a normal number."""
    model = tvm_lrn.compile(lrn_module((1, 8, 2, 2), "float16", size=5, alpha=1.0), "llvm")
    x = np.full((1, 8, 2, 2), 60000.0, np.float16)
    x[:, ::2] *= -1
    out = model(x)
    assert np.all(np.isfinite(out)) and np.all(out != 0)
    check(out, x, canonicalize(5, 1.0, ndim=4), "float16")


def test_mixed_with_other_ops_and_tuple_output():
    """lrn -> add -> relu plus the lrn itself as a tuple output; CPU and fused pipelines."""
    x = tensor((2, 6, 4), "float32")
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(tvm_lrn.local_response_norm(x, 3, alpha=0.1, bias=2.0))
            z = bb.emit(relax.op.nn.relu(relax.op.add(y, relax.const(-0.1, "float32"))))
            out = bb.emit_output(relax.Tuple([z, y]))
        bb.emit_func_output(out)
    model = tvm_lrn.compile(bb.get(), "llvm")
    xn = np.random.default_rng(5).standard_normal((2, 6, 4)).astype("float32") * 100
    z, y = model(xn)
    params = canonicalize(3, 0.1, 0.75, 2.0, 1, ndim=3)
    check(y, xn, params, "float32")
    np.testing.assert_allclose(z, np.maximum(y - np.float32(0.1), 0), rtol=1e-6, atol=0)
    assert list(model.schedule_sources) == ["lrn"]


# ------------------------------------------------------------------- torch / numpy / tvm


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_torch_in_torch_out(dtype):
    model = tvm_lrn.compile(lrn_module((2, 8, 3, 3), dtype, size=5, bias=2.0), "llvm")
    t = torch.randn(2, 8, 3, 3, dtype=getattr(torch, dtype)) * 50
    out = model(t)
    assert isinstance(out, torch.Tensor)
    assert out.dtype == t.dtype and out.shape == t.shape
    x = t.float().numpy().astype(np_dtype(dtype))
    check(out.float().numpy().astype(np_dtype(dtype)), x, canonicalize(5, bias=2.0, ndim=4), dtype)
    # a non-contiguous view and a view with an odd storage offset are handled too
    big = torch.randn(2, 8, 3, 6) * 50
    view = big[..., ::2].to(getattr(torch, dtype))
    np.testing.assert_array_equal(
        model(view).float().numpy(), model(view.contiguous()).float().numpy()
    )
    flat = torch.randn(1 + 2 * 8 * 9).to(getattr(torch, dtype))
    odd = flat[1:].view(2, 8, 3, 3)
    np.testing.assert_array_equal(model(odd).float().numpy(), model(odd.clone()).float().numpy())


def test_numpy_and_tvm_tensor_inputs():
    model = tvm_lrn.compile(lrn_module((3, 4), "float64", size=3, axis=0), "llvm")
    x = np.random.default_rng(6).standard_normal((3, 4)) * 1e200
    out = model(x)
    assert isinstance(out, np.ndarray)
    check(out, x, canonicalize(3, axis=0, ndim=2), "float64")
    tvm_out = model(tvm.runtime.tensor(x))
    assert isinstance(tvm_out, tvm.runtime.Tensor)
    np.testing.assert_array_equal(tvm_out.numpy(), out)


def test_bfloat16_numpy_in_numpy_out():
    model = tvm_lrn.compile(lrn_module((2, 5), "bfloat16", size=3, axis=1), "llvm")
    x = wide_range(np.random.default_rng(8), (2, 5), "bfloat16")
    out = model(x)
    assert out.dtype == np.dtype(ml_dtypes.bfloat16)
    check(out, x, canonicalize(3, ndim=2), "bfloat16")


# ------------------------------------------------------------------- targets, export


@pytest.mark.parametrize(
    "target",
    [
        {"kind": "llvm"},
        Target({"kind": "llvm", "num-cores": 2}),
        "cpu",
    ],
    ids=["dict", "Target", "host"],
)
def test_target_forms(target):
    model = tvm_lrn.compile(lrn_module((1, 4, 2), size=3), target)
    assert model.target.kind.name == "llvm"
    x = np.linspace(-3, 3, 8, dtype="float32").reshape(1, 4, 2)
    check(model(x), x, canonicalize(3, ndim=3), "float32")


def test_export_library_round_trip(tmp_path):
    model = tvm_lrn.compile(lrn_module((2, 7, 3), "float16", size=5, alpha=0.5), "llvm")
    path = tmp_path / "lrn_model.so"
    model.export_library(path)
    assert path.exists()
    loaded = tvm_lrn.load_module(path)
    assert type(loaded) is type(model)
    assert loaded.schedule_sources == model.schedule_sources
    assert loaded.target is not None and loaded.target.kind.name == "llvm"
    x = wide_range(np.random.default_rng(9), (2, 7, 3), "float16")
    out = loaded(x)
    np.testing.assert_array_equal(out, model(x))
    check(out, x, canonicalize(5, 0.5, ndim=3), "float16")
    # also without the metadata file next to it
    (tmp_path / ("lrn_model.so" + tvm_lrn.library.METADATA_SUFFIX)).unlink()
    bare = tvm_lrn.load_module(str(path), device=tvm.cpu())
    assert bare.target is None
    np.testing.assert_array_equal(bare(x), out)


def test_cuda_compile_has_lrn_kernel():
    """No GPU needed: the CUDA module keeps its source."""
    mod = lrn_module((2, 16, 8, 8), "float16", size=5, post=(relax.op.nn.relu,))
    model = tvm_lrn.compile(mod, CUDA)
    assert model.target.kind.name == "cuda"
    src = model.source()
    kernels = set(re.findall(r"__global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(", src))
    assert any(k.startswith("lrn") for k in kernels), kernels
    # the relu is scheduled by DLight into its own kernel; the LRN kernel is not fused
    assert any("relu" in k and "lrn" not in k for k in kernels), kernels
    assert "blockIdx.x" in src
    assert model.schedule_sources["lrn"] in ("rule:gpu", "dlight")
    if shutil.which("nvcc"):  # the source must also be valid CUDA (PTX only, no GPU)
        from tvm.support import nvcc

        with CUDA:
            ptx = bytes(nvcc.compile_cuda(src, target_format="ptx", compiler="nvcc")).decode()
        assert re.search(r"\.entry\s+lrn", ptx)


def test_registered_relax_pipeline():
    mod = lrn_module((1, 6), size=3)
    ex = tvm.compile(mod, target=Target("llvm"), relax_pipeline="tvm_lrn")
    vm = relax.VirtualMachine(ex, tvm.cpu())
    x = np.arange(-3, 3, dtype="float32").reshape(1, 6)
    check(vm["main"](tvm.runtime.tensor(x)).numpy(), x, canonicalize(3, ndim=2), "float32")


def test_compile_rejects_non_modules():
    with pytest.raises(TypeError, match="IRModule"):
        tvm_lrn.compile("not a module")


# ------------------------------------------------------------------- schedule sources


def _parallel_rule(calls):
    def rule(func, target):
        calls.append(target.kind.name)
        sch = tvm.s_tir.Schedule(func)
        block = sch.get_sblock("lrn")
        sch.parallel(sch.get_loops(block)[0])
        return sch

    return rule


def test_user_rule_is_used_and_recorded(caplog):
    calls = []
    mod = lrn_module((3, 8, 4), size=5, alpha=0.2)
    with caplog.at_level(logging.INFO, logger="tvm_lrn"):
        model = tvm_lrn.compile(mod, "llvm", rule=_parallel_rule(calls))
    assert calls == ["llvm"]
    assert model.schedule_sources == {"lrn": "user-rule"}
    assert any("user-rule" in r.getMessage() for r in caplog.records)
    x = wide_range(np.random.default_rng(10), (3, 8, 4), "float32")
    check(model(x), x, canonicalize(5, 0.2, ndim=3), "float32")


def test_dlight_rule_and_bad_rule():
    from tvm.s_tir import dlight as dl

    @dl.ScheduleRule.from_callable("ParallelLRN")
    def parallel(func, target, tunable):
        return _parallel_rule([])(func, target)

    model = tvm_lrn.compile(lrn_module((3, 5), size=3), "llvm", rule=parallel)
    assert model.schedule_sources == {"lrn": "user-rule"}
    x = np.linspace(-9, 9, 15, dtype="float32").reshape(3, 5)
    check(model(x), x, canonicalize(3, ndim=2), "float32")
    with pytest.raises(TypeError, match="rule must be a callable"):
        tvm_lrn.compile(lrn_module((3, 5), size=3), "llvm", rule="fast")


def test_user_rule_returning_none_falls_back():
    model = tvm_lrn.compile(lrn_module((1, 4), size=3), "llvm", rule=lambda f, t: None)
    assert model.schedule_sources["lrn"] in ("rule:cpu", "unscheduled")


def test_default_schedule_source_is_logged(caplog):
    with caplog.at_level(logging.INFO, logger="tvm_lrn"):
        model = tvm_lrn.compile(lrn_module((1, 4), size=3), "llvm")
    assert model.schedule_sources["lrn"] in ("rule:cpu", "unscheduled")
    assert any("lrn" in r.getMessage() and r.name == "tvm_lrn" for r in caplog.records)


@pytest.fixture
def fake_tune(monkeypatch):
    """A stand-in tvm_lrn.tune whose database holds every LRN workload."""
    seen = {}
    fake = types.ModuleType("tvm_lrn.tune")

    def query_database(func, target, database):
        seen.setdefault("queries", []).append((op.params_from_attrs(func.attrs), database))
        sch = tvm.s_tir.Schedule(func)
        sch.parallel(sch.get_loops(sch.get_sblock("lrn"))[0])
        return sch.mod["main"], f"database:{database}"

    def shipped_database(target):
        seen.setdefault("shipped", []).append(target.kind.name)
        return "/shipped/llvm"

    fake.query_database = query_database
    fake.shipped_database = shipped_database
    fake.load_database = lambda database: (database, str(database))
    monkeypatch.setattr(tvm_lrn.build, "tune", fake)
    return seen


def test_database_hook_explicit(fake_tune):
    model = tvm_lrn.compile(lrn_module((2, 5, 3), size=3), "llvm", database="/tmp/db")
    assert model.schedule_sources == {"lrn": "database:/tmp/db"}
    assert fake_tune["queries"][0] == (canonicalize(3, ndim=3), "/tmp/db")
    assert "shipped" not in fake_tune
    x = wide_range(np.random.default_rng(11), (2, 5, 3), "float32")
    check(model(x), x, canonicalize(3, ndim=3), "float32")


def test_database_hook_shipped(fake_tune):
    model = tvm_lrn.compile(lrn_module((2, 5), size=3), "llvm")
    assert set(fake_tune["shipped"]) == {"llvm"}  # checked up front, then applied
    assert model.schedule_sources == {"lrn": "database:/shipped/llvm"}


def test_missing_database_is_reported_early(tmp_path):
    tune = pytest.importorskip("tvm_lrn.tune")
    if not hasattr(tune, "load_database"):
        pytest.skip("tvm_lrn.tune has no load_database")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        tvm_lrn.compile(lrn_module((2, 5), size=3), "llvm", database=tmp_path / "nowhere")


def test_compile_takes_a_torch_module_with_example_args():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, bias=False), torch.nn.LocalResponseNorm(4))
    x = torch.randn(2, 3, 7, 7)
    compiled = tvm_lrn.compile(model, "llvm", example_args=(x,))
    assert compiled.schedule_sources == {"lrn": "rule:cpu"}
    with torch.no_grad():
        want = model.double()(x.double()).float()
    np.testing.assert_allclose(compiled(x).numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="example_args"):
        tvm_lrn.compile(model, "llvm")
