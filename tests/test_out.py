"""``compiled(x, out=y)``: the result written into the caller's memory (issue 20, point
1), through each function's destination-passing twin (tvm_lrn.destination) or, for a
one-kernel function, the kernel itself; checked against the exact reference, over numpy
and torch, and every bad ``out`` refused by name."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch
import tvm
from accuracy import check_against_exact
from tvm import relax

import tvm_lrn
from tvm_lrn import InputError, reference
from tvm_lrn.destination import destination_name, destination_variants
from tvm_lrn.spec import canonicalize

SIZE, ALPHA, BETA, BIAS = 5, 1e-2, 0.75, 2.0


def _module(shape, dtype="float32", post=(), rank_only=False):
    ty = relax.TensorType(ndim=len(shape), dtype=dtype) if rank_only else None
    x = relax.Var("x", ty or relax.TensorType(shape, dtype))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            y = bb.emit(tvm_lrn.local_response_norm(x, SIZE, ALPHA, BETA, BIAS))
            for f in post:
                y = bb.emit(f(y))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def _input(shape, dtype, seed=0):
    x = np.random.default_rng(seed).standard_normal(shape) * 3
    return x.astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)


def _exact(x):
    params = canonicalize(SIZE, ALPHA, BETA, BIAS, ndim=x.ndim)
    return reference.lrn_exact(x.astype(np.float64), params)


def _torch(x: np.ndarray) -> torch.Tensor:
    if x.dtype == ml_dtypes.bfloat16:
        return torch.from_numpy(x.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(x)


def _numpy(y) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        return y.float().numpy() if y.dtype == torch.bfloat16 else y.numpy()
    return y


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("dtype", ["float32", "float16", "float64", "bfloat16"])
@pytest.mark.parametrize("shape", [(2, 16, 5, 7), (1, 1, 4, 4), (3, 4, 2, 2, 3)])
def test_out_holds_the_exact_result(kind, dtype, shape):
    model = tvm_lrn.compile(_module(shape, dtype), "host")
    assert model.lone_kernels == {"main": next(iter(model.schedule_sources))}
    for seed in (0, 1):  # the same out, written again
        x = _input(shape, dtype, seed)
        xs = _torch(x) if kind == "torch" else x
        out = torch.empty_like(xs) if kind == "torch" else np.empty_like(x)
        assert model(xs, out=out) is out
        got = _numpy(out)
        if dtype == "bfloat16":
            got = got.astype(ml_dtypes.bfloat16)
        check_against_exact(got, _exact(x), dtype)
        np.testing.assert_array_equal(_numpy(model(xs)), _numpy(out))


def test_a_model_of_several_kernels_writes_its_last_one_into_out():
    model = tvm_lrn.compile(_module((2, 8, 4, 4), post=(relax.op.nn.relu,)), "host")
    assert model.lone_kernels == {}  # main is two kernels: the VM runs them
    x = _input((2, 8, 4, 4), "float32")
    out = np.full_like(x, np.nan)
    model(x, out=out)
    np.testing.assert_allclose(out, np.maximum(_exact(x), 0), rtol=1e-6)


def test_rank_only_result_is_copied_into_out():
    """Where only the rank is declared the kernel's result type is not out's: no twin,
    the result is copied, and a wrong shape is refused by name."""
    model = tvm_lrn.compile(_module((2, 3, 4), rank_only=True), "host")
    x = _input((2, 3, 4), "float32")
    out = np.empty_like(x)
    model(x, out=out)
    check_against_exact(out, _exact(x), "float32")
    with pytest.raises(InputError, match=r"out= is float32 \[2, 3, 5\], the result float32"):
        model(x, out=np.empty((2, 3, 5), np.float32))


def test_exported_model_keeps_its_lone_kernel(tmp_path):
    model = tvm_lrn.compile(_module((2, 8, 4, 4)), "host")
    model.export_library(tmp_path / "lrn.so")
    loaded = tvm_lrn.load_module(tmp_path / "lrn.so")
    assert loaded.lone_kernels == model.lone_kernels
    x = _input((2, 8, 4, 4), "float32")
    out = np.empty_like(x)
    loaded(x, out=out)
    check_against_exact(out, _exact(x), "float32")


def _read_only(x):
    y = x.copy()
    y.flags.writeable = False
    return y


@pytest.mark.parametrize(
    ("make_out", "message"),
    [
        (lambda x: np.empty((2, 8, 4, 3), np.float32), r"out=: expected shape \[2, 8, 4, 4\]"),
        (lambda x: np.empty(x.shape, np.float64), "out=: expected dtype float32, got float64"),
        (lambda x: x, "out= shares memory with argument 0"),
        (lambda x: x[..., ::-1].copy()[..., ::-1], "it is not C-contiguous"),
        (_read_only, "it is read-only"),
        (lambda x: 3, "must be a numpy array, a torch tensor or a tvm.runtime.Tensor"),
        (lambda x: torch.empty(x.shape, requires_grad=True), "out= requires grad"),
    ],
)
def test_bad_out_is_refused_by_name(make_out, message):
    model = tvm_lrn.compile(_module((2, 8, 4, 4)), "host")
    x = _input((2, 8, 4, 4), "float32")
    out = make_out(x)
    before = None if not isinstance(out, np.ndarray) else out.copy()
    with pytest.raises(InputError, match=message):
        model(x, out=out)
    if before is not None and out is not x:
        np.testing.assert_array_equal(out, before)  # nothing written


def test_twin_writes_in_place_structurally():
    """The pass adds main__out(x, out) calling the same kernel in place, records the
    lone kernel, and gives a function returning a tuple no twin."""
    x = relax.Var("x", relax.TensorType((1, 4, 2, 2), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("pair", [x]):
        with bb.dataflow():
            y = bb.emit(tvm_lrn.local_response_norm(x, 3))
            out = bb.emit_output(relax.Tuple([y, y]))
        bb.emit_func_output(out)
    mod = _module((1, 4, 2, 2))
    mod["pair"] = bb.get()["pair"]
    target = tvm.target.Target("llvm")
    with target:
        legalized = relax.transform.LegalizeOps()(mod)
    legalized = relax.transform.CanonicalizeBindings()(legalized)  # as compile's pipeline
    lone = {}
    result = destination_variants(lone)(legalized)
    twin = result[destination_name("main")]
    assert len(twin.params) == 2
    script = twin.script()
    assert "call_tir_inplace" in script and "inplace_indices=[1]" in script
    assert destination_name("pair") not in [gv.name_hint for gv in result.functions]
    assert list(lone) == ["main"]
