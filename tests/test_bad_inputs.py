"""One clear error for every bad input (issue 20, point 3), over numpy and torch inputs:
windows and parameters out of range, gradients, arrays TVM cannot take, a missing
device, wrong model calls, broken files, and the command line."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import tvm
from torch import nn
from tvm import relax

import tvm_lrn
from tvm_lrn import InputError, eager
from tvm_lrn.lower.cuda_math import set_precise_cuda_math
from tvm_lrn.tune import target_key

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

CPU_ONLY = not tvm.cuda(0).exist


def _x(shape=(2, 6, 3, 3), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _as(kind: str, x: np.ndarray):
    return torch.from_numpy(x) if kind == "torch" else x


def _numpy(y) -> np.ndarray:
    return y.detach().numpy() if isinstance(y, torch.Tensor) else np.asarray(y)


# --------------------------------------------------------------------------- run()


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize("size", [11, 10**9])  # reaching all 6 channels either way
def test_window_longer_than_the_axis_is_the_whole_axis(kind, size):
    """A window past both ends of the axis sums every channel: exact in float64 here,
    and compiled in constant time (clamped to the axis)."""
    x = _x()
    start = time.perf_counter()
    y = _numpy(tvm_lrn.run(_as(kind, x), size=size, alpha=1e-2, beta=0.75, bias=1.0))
    assert time.perf_counter() - start < 60
    x64 = x.astype(np.float64)
    want = x64 * (1.0 + 1e-2 / size * (x64**2).sum(axis=1, keepdims=True)) ** -0.75
    np.testing.assert_allclose(y, want, rtol=2e-6)


@pytest.mark.parametrize("size", [2**31, 2**31 + 1, 10**12])
def test_window_beyond_int32_is_refused_by_name(size):
    with pytest.raises(ValueError, match="size must be at most"):
        tvm_lrn.run(_x(), size=size)
    data = relax.Var("x", relax.TensorType((1, 4, 2, 2), "float32"))
    with pytest.raises(ValueError, match="size must be at most"):
        tvm_lrn.local_response_norm(data, size)


def test_requires_grad_gets_lrns_backward():
    x64 = torch.from_numpy(_x()).double() * 30
    x = x64.float().requires_grad_()
    y = tvm_lrn.run(x, size=5, alpha=1e-2, beta=0.75, bias=2.0)
    assert y.grad_fn is not None
    g = torch.randn_like(y)
    (y * g).sum().backward()
    x_ref = x64.clone().requires_grad_()
    (F.local_response_norm(x_ref, 5, 1e-2, 0.75, 2.0) * g.double()).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), x_ref.grad.numpy(), rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        assert tvm_lrn.run(x, size=5).grad_fn is None  # no gradient asked for: none made


def test_requires_grad_where_no_backward_exists_is_refused():
    x = torch.randn(2, 6, 3, requires_grad=True)
    with pytest.raises(InputError, match="requires grad"):
        tvm_lrn.run(x, size=3, axis=2)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda x: x.astype(">f4"), "big-endian"),
        (lambda x: np.ma.masked_less(x, 0), "masked array"),
        (lambda x: x.astype(np.int32), "floating-point"),
        (lambda x: x.astype(object), "floating-point"),
        (lambda x: torch.empty(x.shape, device="meta"), "meta tensor"),
        (lambda x: torch.from_numpy(x).to(torch.int64), "floating-point"),
    ],
)
def test_arrays_tvm_cannot_take_are_refused(make, match):
    bad = make(_x())
    with pytest.raises(InputError, match=match):
        tvm_lrn.run(bad, size=3)
    assert isinstance(InputError("x"), TypeError) and isinstance(InputError("x"), ValueError)


def test_array_likes_are_taken_as_numpy_takes_them():
    x = _x((1, 3, 2)).tolist()  # numpy makes float64 of Python floats
    np.testing.assert_array_equal(tvm_lrn.run(x, size=3), tvm_lrn.run(np.asarray(x), size=3))


@pytest.mark.skipif(not CPU_ONLY, reason="this machine has a GPU")
@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_cuda_target_without_a_gpu_is_refused_before_compiling(kind):
    before = eager.model.cache_info().misses
    with pytest.raises(RuntimeError, match="no cuda"):
        tvm_lrn.run(_as(kind, _x()), size=5, target="cuda")
    assert eager.model.cache_info().misses == before  # nothing was compiled


# --------------------------------------------------------------------------- models


class Net(nn.Module):
    def __init__(self, conv=True):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1) if conv else nn.Identity()
        self.lrn = nn.LocalResponseNorm(3)

    def forward(self, x):
        return self.lrn(self.conv(x))


def _compiled(conv: bool):
    torch.manual_seed(0)
    net = Net(conv).eval()
    with torch.no_grad():
        return net, tvm_lrn.compile(tvm_lrn.from_torch(net, (torch.randn(1, 3, 8, 8),)))


@pytest.fixture(scope="module")
def model():
    return _compiled(conv=True)


@pytest.fixture(scope="module", params=["conv-lrn", "lrn"])
def any_model(request):
    """A model the VM runs (two kernels), and one the kernel runs alone (its output pool)."""
    return _compiled(conv=request.param == "conv-lrn")


@pytest.mark.parametrize("kind", ["numpy", "torch"])
@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((), r"main\(\) takes 1 argument \(float32 \[1, 3, 8, 8\]\), got 0"),
        ((np.zeros((1, 3, 8, 8), np.float32),) * 2, "takes 1 argument.*got 2"),
        ((np.zeros((3, 8, 8), np.float32),), r"expected rank 4 .*got rank 3"),
        ((np.zeros((1, 3, 8, 8), np.float64),), "expected dtype float32, got float64"),
        ((np.zeros((1, 5, 8, 8), np.float32),), r"expected shape \[1, 3, 8, 8\].*dimension 1"),
        ((np.zeros((1, 3, 8, 9), np.float32),), r"dimension 3 is 9, not 8"),
        ((np.zeros((2, 3, 8, 8), np.float32),), r"dimension 0 is 2, not 1"),
        (([[0.0]],), "must be a numpy array, a torch tensor"),
    ],
)
def test_wrong_model_calls_raise_one_error_naming_expected_and_given(any_model, kind, args, match):
    _, compiled = any_model
    args = tuple(
        torch.from_numpy(a) if kind == "torch" and isinstance(a, np.ndarray) else a for a in args
    )
    with pytest.raises(InputError, match=match):
        compiled(*args)


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_model_call_on_misaligned_memory_is_right(any_model, kind):
    """Inputs are borrowed at any element alignment (kernels assume no more)."""
    net, compiled = any_model
    x = _x((1, 3, 8, 8))
    buffer = np.empty(x.size + 1, np.float32)
    shifted = buffer[1:].reshape(x.shape)  # 4 bytes past numpy's alignment
    shifted[...] = x
    assert shifted.ctypes.data % 64 != 0
    got = _numpy(compiled(_as(kind, shifted)))
    with torch.no_grad():
        want = copy.deepcopy(net).double()(torch.from_numpy(x).double()).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_model_leaves_what_its_fast_path_cannot_take_to_the_checks(any_model):
    _, compiled = any_model
    x = _x((1, 3, 8, 8))
    with pytest.raises(InputError, match="big-endian"):
        compiled(x.astype(">f4"))
    with pytest.raises(InputError, match="masked array"):
        compiled(np.ma.masked_less(x, 0))
    read_only = x.copy()
    read_only.flags.writeable = False  # numpy does not export it: copied instead
    np.testing.assert_array_equal(compiled(read_only), compiled(x))


def test_model_refuses_inputs_that_ask_for_gradients(any_model):
    net, compiled = any_model
    x = torch.randn(1, 3, 8, 8, requires_grad=True)
    with pytest.raises(InputError, match="computes no gradients"):
        compiled(x)
    with torch.no_grad():
        assert compiled(x).shape == net(x).shape


def test_whole_graph_mode_with_gradients_goes_to_the_op_with_a_backward():
    torch._dynamo.reset()
    net = Net()
    compiled = torch.compile(net, backend="tvm_lrn", options={"whole_graph": True})
    x = torch.randn(1, 3, 8, 8) * 1e3
    with pytest.warns(UserWarning, match="needs gradients"):
        y = compiled(x)
    assert y.grad_fn is not None
    y.sum().backward()
    assert net.conv.weight.grad is not None and torch.isfinite(net.conv.weight.grad).all()
    torch._dynamo.reset()


@pytest.mark.skipif(not CPU_ONLY, reason="this machine has a GPU")
def test_model_for_a_missing_device_says_so():
    data = relax.Var("x", relax.TensorType((1, 4, 2, 2), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [data]):
        bb.emit_func_output(bb.emit(tvm_lrn.local_response_norm(data, 3)))
    compiled = tvm_lrn.compile(bb.get(), "cuda")
    try:
        with pytest.raises(RuntimeError, match="does not have"):
            compiled(np.zeros((1, 4, 2, 2), np.float32))
    finally:
        set_precise_cuda_math(False)  # the model installed it for its (absent) GPU


# --------------------------------------------------------------------------- files


def _garbage_database(folder):
    folder.mkdir(parents=True)
    (folder / "database_workload.json").write_text("not json\n")
    (folder / "database_tuning_record.json").write_text("")
    return folder


def test_garbage_database_is_refused_naming_the_file(tmp_path, model):
    net, _ = model
    db = _garbage_database(tmp_path / "db")
    mod = tvm_lrn.from_torch(net, (torch.randn(1, 3, 8, 8),))
    with pytest.raises(ValueError, match=r"database_workload.json, line 1: not a MetaSchedule"):
        tvm_lrn.compile(mod, database=db)


def test_garbage_database_through_the_environment_is_refused_too(tmp_path, monkeypatch, model):
    net, _ = model
    _garbage_database(tmp_path / target_key(None))
    monkeypatch.setenv("TVM_LRN_SCHEDULES", str(tmp_path))
    mod = tvm_lrn.from_torch(net, (torch.randn(1, 3, 8, 8),))
    with pytest.raises(ValueError, match=str(tmp_path)):
        tvm_lrn.compile(mod)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, model):
    _, compiled = model
    path = tmp_path_factory.mktemp("lib") / "model.so"
    compiled.export_library(path)
    return path


def test_corrupt_metadata_is_named(exported):
    meta = exported.with_name(exported.name + tvm_lrn.library.METADATA_SUFFIX)
    good = meta.read_text()
    try:
        meta.write_text("{ not json")
        with pytest.raises(ValueError, match=r"model.so.tvm_lrn.json: not tvm_lrn metadata"):
            tvm_lrn.load_module(exported)
        meta.write_text(json.dumps([1, 2]))
        with pytest.raises(ValueError, match="a JSON object is expected"):
            tvm_lrn.load_module(exported)
    finally:
        meta.write_text(good)
    loaded = tvm_lrn.load_module(exported)
    x = _x((1, 3, 8, 8))
    with pytest.raises(InputError, match="dimension 1"):  # the signature came along
        loaded(x[:, :2])


def test_export_and_load_errors_name_the_path(tmp_path, model):
    _, compiled = model
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        compiled.export_library(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        compiled.export_library(tmp_path / "missing" / "model.so")
    text = tmp_path / "notes.so"
    text.write_text("hello")
    with pytest.raises(ValueError, match="notes.so is not a library TVM can load"):
        tvm_lrn.load_module(text)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        tvm_lrn.load_module(tmp_path)
    with pytest.raises(FileNotFoundError, match="no file"):
        tvm_lrn.load_module(tmp_path / "absent.so")


# --------------------------------------------------------------------------- CLI


def _cli(*argv):
    done = subprocess.run(
        [sys.executable, "-m", "tvm_lrn.cli", *argv], capture_output=True, text=True, timeout=600
    )
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    return done.returncode, lines


def test_cli_non_model_pt2_is_one_line(tmp_path):
    bad = tmp_path / "weights.pt2"
    torch.save({"w": torch.zeros(3)}, bad)
    rc, lines = _cli("compile", str(bad), "-o", str(tmp_path / "x.so"))
    assert rc != 0
    assert len(lines) == 1, lines
    assert "not a torch.export archive" in lines[0] and "Traceback" not in lines[0]


def test_cli_unknown_mcpu_is_one_line(tmp_path):
    rc, lines = _cli("compile", "x.onnx", "--target", '{"kind": "llvm", "mcpu": "notacpu"}')
    assert rc != 0
    assert len(lines) == 1, lines
    assert "LLVM knows no CPU 'notacpu'" in lines[0]
