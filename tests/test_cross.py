"""Cross-compilation and device naming, without a device: which compiler links a
library for another CPU, what such a library does here, and how a device is named."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

import tvm_lrn
from tvm_lrn.library import compiler_for
from tvm_lrn.reference import relative_error
from tvm_lrn.remote import RemoteDevice
from tvm_lrn.target import foreign_arch, resolve_target

AARCH64 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72"}


def _lrn_model():
    return tvm_lrn.from_torch(torch.nn.LocalResponseNorm(3), (torch.zeros(1, 4, 3, 3),))


def test_the_host_needs_no_cross_compiler():
    assert foreign_arch(resolve_target("host")) is None
    assert compiler_for(resolve_target("host")) is None
    assert foreign_arch(resolve_target(AARCH64)) == "aarch64"


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None, reason="no cross g++")
@pytest.mark.parametrize("triple", ["aarch64-linux-gnu", "aarch64-unknown-linux-gnu"])
def test_the_triples_cross_compiler_is_found(triple):
    target = resolve_target({**AARCH64, "mtriple": triple})
    assert compiler_for(target) == "aarch64-linux-gnu-g++"


def test_a_missing_cross_compiler_is_named():
    target = resolve_target({"kind": "llvm", "mtriple": "riscv64-unknown-linux-gnu"})
    if shutil.which("riscv64-linux-gnu-g++"):
        pytest.skip("a riscv64 cross compiler is installed here")
    with pytest.raises(FileNotFoundError, match="riscv64-linux-gnu-g\\+\\+.*apt-get install"):
        compiler_for(target)
    with pytest.raises(FileNotFoundError, match="'no-such-cc' is not installed"):
        compiler_for(target, "no-such-cc")


def test_aarch64_code_is_neon_vectorized():
    """The LRN kernel for a Cortex-A72 computes on 128-bit NEON vectors (4 floats)."""
    lrn = tvm_lrn.from_torch(torch.nn.LocalResponseNorm(5), (torch.zeros(1, 16, 13, 13),))
    source = tvm_lrn.compile(lrn, target=AARCH64).source()
    assert 'target triple = "aarch64' in source
    assert "<4 x float>" in source and "<8 x float>" not in source


def test_a_model_for_another_cpu_is_refused_here(tmp_path):
    model = tvm_lrn.compile(_lrn_model(), target=AARCH64)
    with pytest.raises(RuntimeError, match="compiled for aarch64.*--rpc"):
        model(np.zeros((1, 4, 3, 3), np.float32))
    if shutil.which("aarch64-linux-gnu-g++") is None:
        return
    path = tmp_path / "lrn.so"
    model.export_library(path)
    assert open(path, "rb").read(20)[18] == 183  # ELF e_machine: EM_AARCH64
    with pytest.raises(RuntimeError, match="compiled for aarch64"):
        tvm_lrn.load_module(path)


def test_device_from_arguments_and_environment(monkeypatch):
    for name in ("TVM_TRACKER_HOST", "TVM_TRACKER_PORT", "TVM_TRACKER_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert RemoteDevice.resolve("10.0.0.2:9190", "rasp4") == RemoteDevice("10.0.0.2", 9190, "rasp4")
    with pytest.raises(ValueError, match="HOST:PORT and key"):
        RemoteDevice.resolve()
    with pytest.raises(ValueError, match="invalid tracker address"):
        RemoteDevice.resolve("9190", "k")
    with pytest.raises(ValueError, match="invalid tracker port"):
        RemoteDevice.resolve("host:99999", "k")
    monkeypatch.setenv("TVM_TRACKER_HOST", "127.0.0.1")
    monkeypatch.setenv("TVM_TRACKER_PORT", "9191")
    monkeypatch.setenv("TVM_TRACKER_KEY", "board")
    assert RemoteDevice.resolve() == RemoteDevice("127.0.0.1", 9191, "board")
    assert RemoteDevice.resolve(key="other").key == "other"


def test_an_unreachable_tracker_is_named():
    from tvm_lrn.fleet import free_port

    device = RemoteDevice("127.0.0.1", free_port(), "x86")
    with pytest.raises(ConnectionError, match=f"no RPC tracker at 127.0.0.1:{device.port}"):
        device.connect()


def test_relative_error():
    truth = np.array([1.0, -4.0, 2.0])
    assert relative_error(truth, truth) == 0.0
    assert relative_error(truth + [0.0, 0.4, 0.0], truth) == pytest.approx(0.1)
    assert relative_error([np.inf, 0, 0], truth) == float("inf")
    assert relative_error([0.0], [0.0]) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        relative_error(truth[:2], truth)
