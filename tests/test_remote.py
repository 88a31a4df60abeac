"""Models on remote devices through TVM's RPC tracker: real servers on 127.0.0.1 (two x86
ones under one key) and the emulated aarch64 device of scripts/aarch64_device.py, all
started here. Marked ``remote`` (CI runs them; .ci/run sets the emulated device up)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import tvm
from accuracy import check_against_exact, float32_bound, np_dtype, rel_err
from test_models import AlexNet

import tvm_lrn
from tvm_lrn import remote
from tvm_lrn.fleet import LocalFleet
from tvm_lrn.model import Model
from tvm_lrn.reference import lrn_exact
from tvm_lrn.spec import canonicalize
from tvm_lrn.target import resolve_target
from tvm_lrn.tune import load_database, target_key, tuning_target

pytestmark = [pytest.mark.remote, pytest.mark.xdist_group("remote")]

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "aarch64_device.py"
AARCH64 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72", "num-cores": 1}
TARGETS = {"x86": "host", "aarch64": AARCH64}
#: Inputs large enough that x*x overflows the dtype (float16: 256; the others: ~1e19).
OVERFLOWING = {"float16": 300.0, "bfloat16": 1e20, "float32": 1e20, "float64": 1e160}


def _script(*args, check=True):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600
    )
    if check and done.returncode != 0:
        raise AssertionError(f"aarch64_device.py {args[0]}: {done.stderr.strip()}")
    return done


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """A tracker, two x86 servers under "x86", one emulated aarch64 one under
    "aarch64" (started by the script, which joins the tracker)."""
    folder = tmp_path_factory.mktemp("fleet")
    state = str(folder / "aarch64.json")
    with LocalFleet(folder / "logs") as f:
        f.add_servers("x86", 2)
        _script("start", "--tracker", f.address, "--key", "aarch64", "--state", state)
        try:
            yield f
        finally:
            _script("stop", "--state", state)


def _lrn_model(dtype: str):
    x = torch.zeros(2, 7, 5, 3, dtype=getattr(torch, dtype))
    return tvm_lrn.from_torch(torch.nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0), (x,))


@pytest.mark.parametrize("key", list(TARGETS))
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_lrn_kernel_on_devices(fleet, key, dtype):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 7, 5, 3)) * OVERFLOWING[dtype]).astype(np_dtype(dtype))
    model = tvm_lrn.compile(_lrn_model(dtype), target=TARGETS[key])
    result = remote.run(model, [x], fleet.device(key), number=2, repeat=1)
    assert key in result.device and result.seconds > 0
    exact = lrn_exact(x, canonicalize(size=5, alpha=1e-4, beta=0.75, bias=1.0))
    check_against_exact(result.outputs[0], exact, dtype)


@pytest.fixture(scope="module")
def alexnet():
    torch.manual_seed(2012)
    net = AlexNet().eval()
    x = torch.rand(1, 3, 67, 67)
    return net, x, tvm_lrn.from_torch(copy.deepcopy(net), (x,))


@pytest.mark.parametrize("key", list(TARGETS))
def test_alexnet_on_devices_at_1e20(fleet, alexnet, key):
    net, x, mod = alexnet
    big = (x * 1e20).numpy()
    with torch.no_grad():
        truth = copy.deepcopy(net).double()(torch.from_numpy(big).double()).numpy()
    device = fleet.device(key)
    ours = remote.run(tvm_lrn.compile(mod, target=TARGETS[key]), [big], device, repeat=1)
    assert rel_err(ours.outputs[0], truth) < float32_bound(net, x)
    assert ours.errors is None
    # TVM's plain import on the same device: x*x overflows, every LRN output is 0
    plain_mod = tvm_lrn.from_torch(copy.deepcopy(net), (x,), fuse=False)
    target = resolve_target(TARGETS[key])
    plain = Model(tvm.compile(plain_mod, target), target=target)
    reference = copy.deepcopy(net).double()

    def float64_torch(a):
        with torch.no_grad():
            return reference(torch.from_numpy(a).double()).numpy()

    theirs = remote.run(plain, [big], device, reference=float64_torch, number=1, repeat=1)
    assert theirs.errors[0] > 0.1


def test_cli_compile_and_run_on_aarch64(fleet, alexnet, tmp_path):
    from tvm_lrn.cli import main

    net, x, _ = alexnet
    pt2 = tmp_path / "net.pt2"
    torch.export.save(torch.export.export(copy.deepcopy(net), (x,)), str(pt2))
    lib = str(tmp_path / "net.so")
    target = '{"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72"}'
    assert main(["compile", str(pt2), "-o", lib, "--target", target]) == 0
    done = subprocess.run(
        ["tvm-lrn", "run", lib, "--rpc", fleet.address, "--key", "aarch64", "--scale", "1e20"]
        + ["--number", "1", "--repeat", "1", "--tolerance", str(float32_bound(net, x))],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "(llvm aarch64-linux-gnu)" in done.stdout and "ms per call" in done.stdout
    error = float(done.stdout.split("relative error ")[1].split()[0])
    assert error < float32_bound(net, x)


def _server_logs(fleet, key: str) -> list[str]:
    return [p.read_text(errors="replace") for p in fleet.log_dir.glob(f"{key}-*.log")]


def _servers_that_measured(fleet, key: str) -> int:
    return sum("candidate.so" in log for log in _server_logs(fleet, key))


def _loads(fleet, key: str) -> int:
    """Tuning candidates loaded by the servers of ``key`` so far."""
    return sum(log.count("load_module") for log in _server_logs(fleet, key))


def test_tuning_through_the_tracker(fleet, tmp_path):
    """A few trials on each key: records land under the target key and compile uses
    them; the two x86 servers both measure."""
    for key in TARGETS:
        target = tuning_target(TARGETS[key])
        work_dir, ship = tmp_path / key, tmp_path / "schedules"
        result = tvm_lrn.tune(
            shapes=[(1, 16, 13, 13)],
            target=target,
            work_dir=work_dir,
            trials=3,
            trials_per_iter=3,
            progress=False,
            ship_to=ship,
            device=fleet.device(key),
            cost_model="random",
        )
        assert result.workloads[0].best_seconds < float("inf")
        folder = ship / target_key(target)
        load_database(folder)  # a database a compile can use
        mod = tvm_lrn.from_torch(torch.nn.LocalResponseNorm(5), (torch.zeros(1, 16, 13, 13),))
        model = tvm_lrn.compile(mod, target=TARGETS[key], database=folder)
        assert model.schedule_sources == {"lrn": f"database:{folder}"}
    assert _servers_that_measured(fleet, "x86") == 2


def test_cli_tune_on_the_device_the_environment_names(fleet, tmp_path, monkeypatch):
    from tvm_lrn.cli import main

    monkeypatch.setenv("TVM_TRACKER_HOST", fleet.host)
    monkeypatch.setenv("TVM_TRACKER_PORT", str(fleet.port))
    monkeypatch.setenv("TVM_TRACKER_KEY", "x86")
    before = _loads(fleet, "x86")
    argv = ["tune", "--shape", "1,16,13,13", "--trials", "2", "--trials-per-iter", "2"]
    assert main([*argv, "--cost-model", "random", "--no-progress", "-o", str(tmp_path)]) == 0
    database, _ = load_database(tmp_path)
    assert len(database) >= 2  # the baseline and the trials
    assert _loads(fleet, "x86") >= before + 2  # each measured by an x86 server


def test_device_that_drops_mid_tuning(fleet, tmp_path):
    """A third key with one server, killed once the first records are in: a clear error
    naming the device, and the work dir loads and compiles."""
    fleet.add_servers("dropping", 1)
    records = tmp_path / "database_tuning_record.json"

    def drop():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (records.exists() and records.stat().st_size):
            time.sleep(0.2)
        fleet.stop_server("dropping")

    threading.Thread(target=drop, daemon=True).start()
    with pytest.raises(ConnectionError, match="went away during tuning.*'dropping'"):
        tvm_lrn.tune(
            shapes=[(1, 16, 13, 13)],
            work_dir=tmp_path,
            trials=64,
            progress=False,
            device=fleet.device("dropping", session_timeout=10),
            cost_model="random",
        )
    database, _ = load_database(tmp_path)
    assert len(database) >= 1
    mod = tvm_lrn.from_torch(torch.nn.LocalResponseNorm(5), (torch.zeros(1, 16, 13, 13),))
    x = np.random.default_rng(0).standard_normal((1, 16, 13, 13)).astype(np.float32)
    model = tvm_lrn.compile(mod, database=tmp_path)
    exact = lrn_exact(x, canonicalize(size=5))
    check_against_exact(model(x), exact, "float32")


def test_run_errors_name_the_problem(fleet, tmp_path):
    model = tvm_lrn.compile(_lrn_model("float32"))
    x = np.zeros((2, 7, 5, 3), np.float32)
    with pytest.raises(ConnectionError, match="no RPC server is registered.*'nosuchkey'"):
        remote.run(model, [x], fleet.device("nosuchkey"))
    with pytest.raises(tvm_lrn.InputError, match="argument 0"):
        remote.run(model, [np.zeros((2, 7, 5), np.float32)], fleet.device("x86"))
    path = tmp_path / "lrn.so"
    model.export_library(path)
    env = {**os.environ, "TVM_TRACKER_HOST": "", "TVM_TRACKER_PORT": "", "TVM_TRACKER_KEY": ""}
    done = subprocess.run(["tvm-lrn", "run", str(path)], capture_output=True, text=True, env=env)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0 and "--rpc HOST:PORT" in done.stderr
