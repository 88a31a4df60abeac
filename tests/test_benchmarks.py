"""Smoke test of the benchmark harness (benchmarks/run.py): one tiny case, two contenders."""

from __future__ import annotations

import csv
import importlib
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    """The benchmark's modules (benchmarks/ is a folder of scripts, not a package)."""
    sys.path.insert(0, str(BENCH))
    names = ("run", "report", "cases", "worker", "scheduler")
    return types.SimpleNamespace(**{n: importlib.import_module(n) for n in names})


def test_driver_tiny_case(bench, tmp_path):
    out = tmp_path / "cpu.csv"
    argv = [
        "--threads", "1",
        "--shapes", "1x7x3x5",
        "--dtypes", "float32",
        "--contenders", "tvm_lrn,tvm_lrn_unsafe,torch",
        "--rounds", "1",
        "--min-samples", "1",
        "--repeats", "1",
        "--budget-s", "0",
        "--min-repeat-ms", "0",
        "--timeout", "120",
        "--csv", str(out),
        "--no-plot",
        "--no-readme",
    ]  # fmt: skip
    assert bench.run.main(argv) == 0
    with open(out, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    assert tuple(reader.fieldnames) == bench.report.COLUMNS
    for col in ("op", "contender", "shape", "dtype", "target", "threads", "median_ms",
                "min_ms", "gbps", "max_rel_err", "version"):  # fmt: skip
        assert col in reader.fieldnames
    assert sorted(r["contender"] for r in rows) == ["torch", "tvm_lrn", "tvm_lrn_unsafe"]
    # only the unguarded kernel is timed alternately with another (tvm_lrn's, in its worker)
    paired = {r["contender"]: r["paired_ratio"] for r in rows}
    assert paired["tvm_lrn"] == paired["torch"] == ""
    assert float(paired["tvm_lrn_unsafe"]) > 0
    for r in rows:
        assert r["check"] == "ok", r
        assert (r["op"], r["shape"], r["dtype"], r["threads"]) == ("lrn", "1x7x3x5", "float32", "1")
        assert r["target"].startswith("cpu")
        assert float(r["min_ms"]) > 0 and float(r["median_ms"]) >= float(r["min_ms"])
        assert float(r["gbps"]) > 0 and int(r["repeats"]) == 1
        assert 0 <= float(r["max_rel_err"]) <= bench.cases.tolerance("float32")
        assert r["version"]
    ratios = bench.report.ratios(rows)
    assert len(ratios) == 1 and float(ratios[0]["speedup_vs_best_peer"]) > 0
    assert float(ratios[0]["safety_cost_paired"]) == pytest.approx(
        float(paired["tvm_lrn_unsafe"]), rel=1e-2
    )
    table = bench.report.markdown_table(
        rows, {"date": "d", "cpu": "c", "cores": 1, "versions": "v"}
    )
    assert "| 1x7x3x5 | float32 |" in table


def test_ratios_from_medians_and_minimums(bench):
    """Each ratio from the medians, and the target ratios again from the minimums."""

    def row(contender, median, low):
        case = {"shape": "1x8x4x4", "dtype": "float32", "threads": "2", "check": "ok"}
        return dict(case, contender=contender, median_ms=str(median), min_ms=str(low))

    rows = [
        row("tvm_lrn", 2.0, 1.0),
        dict(row("tvm_lrn_unsafe", 1.6, 0.8), paired_ratio="1.04"),
        row("torch_compile", 10.0, 9.0),
        row("torch", 12.0, 3.0),
        row("copy_numpy", 0.5, 0.45),
        row("copy_tvm", 0.4, 0.5),
        dict(row("onnxruntime", 1.0, 1.0), check="FAIL"),  # a failed check is no peer
    ]
    (r,) = bench.report.ratios(rows)
    assert (r["best_peer"], r["best_copy"]) == ("torch_compile", "copy_tvm")
    assert float(r["speedup_vs_torch_compile"]) == 5.0
    assert float(r["speedup_vs_best_peer"]) == 5.0
    assert float(r["fraction_of_copy"]) == 0.2
    assert float(r["safety_cost"]) == 1.25
    assert float(r["speedup_vs_torch_compile_min"]) == 9.0
    assert float(r["fraction_of_copy_min"]) == 0.45  # the fastest copy by its minimum
    assert float(r["safety_cost_min"]) == 1.25
    assert float(r["safety_cost_paired"]) == 1.04
    table = bench.report.markdown_table(
        rows, {"date": "d", "cpu": "c", "cores": 2, "versions": "v"}
    )
    # the README's safety cost is the one-process measurement where there is one
    assert "| 5x (9x) | 5x (torch.compile) | 0.2 (0.45) | 1.04x |" in table
    del rows[1]["paired_ratio"]  # a CSV from before the paired measurement
    table = bench.report.markdown_table(
        rows, {"date": "d", "cpu": "c", "cores": 2, "versions": "v"}
    )
    assert "| 5x (9x) | 5x (torch.compile) | 0.2 (0.45) | 1.25x (1.25x) |" in table


def test_user_path_ratio_is_the_paired_one(bench):
    """A user path timed alternately with the kernel: its ratio is 1 / paired_ratio
    (kernel time / its own), not the ratio of two processes' medians."""
    case = {"shape": "1x8x4x4", "dtype": "float32", "threads": "1", "check": "ok"}
    rows = [
        dict(case, contender="tvm_lrn", median_ms="1.0", min_ms="1.0"),
        dict(case, contender="compiled_out", median_ms="1.5", min_ms="1.4", paired_ratio="0.8"),
        dict(case, contender="run_numpy", median_ms="1.3", min_ms="1.2"),  # no pairing
    ]
    (r,) = bench.report.ratios(rows)
    assert float(r["compiled_out_over_kernel"]) == 1.25
    assert float(r["run_numpy_over_kernel"]) == 1.3


def test_correctness_check_flags_wrong_output(bench):
    x = np.random.default_rng(0).standard_normal((2, 9, 4)).astype(np.float32)
    tol = bench.cases.tolerance("float32")
    assert bench.cases.max_rel_err(x, x.astype(np.float64), "float32") == 0
    assert bench.cases.max_rel_err(x * (1 + 1e-3), x.astype(np.float64), "float32") > tol
    bad = x.copy()
    bad[0, 3, 1] = np.nan
    assert bench.cases.max_rel_err(bad, x.astype(np.float64), "float32") == np.inf
    assert bench.cases.max_rel_err(x[:1], x.astype(np.float64), "float32") == np.inf


def test_readme_markers(bench, tmp_path):
    readme = tmp_path / "README.md"
    begin, end = bench.report.README_BEGIN, bench.report.README_END
    readme.write_text(f"intro\n{begin}\nold\n{end}\noutro\n")
    bench.report.update_readme("new table\n", readme)
    text = readme.read_text()
    assert "old" not in text and "new table" in text
    assert text.startswith("intro\n") and text.endswith("outro\n")


def test_floor_profile_tiny_case(tmp_path):
    """benchmarks/floor.py: copy, power alone, fast path and kernel of one tiny shape,
    written as tidy CSV rows (its own process: it sets TVM_NUM_THREADS first)."""
    import os
    import subprocess

    out = tmp_path / "floor.csv"
    cmd = [sys.executable, str(BENCH / "floor.py"), "--shapes", "1x16x8x8", "--repeat", "2"]
    env = {**os.environ, "TVM_NUM_THREADS": "1"}
    done = subprocess.run(
        [*cmd, "--csv", str(out)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert [r["contender"] for r in rows] == ["copy_tvm", "power_only", "tvm_lrn_unsafe", "tvm_lrn"]
    assert all(float(r["median_ms"]) > 0 and r["threads"] == "1" for r in rows)


def test_a_waiting_worker_is_stopped(bench, tmp_path):
    """During another worker's turn a worker is stopped (uses no CPU), and runs again on
    its own turn."""
    psutil = pytest.importorskip("psutil")
    workers = [bench.worker.Worker(k, 1, "cpu", tmp_path, 120) for k in ("copy_numpy", "copy_tvm")]
    try:
        for w in workers:
            assert w.recv(timeout=120)["ready"]
        procs = [psutil.Process(w.proc.pid) for w in workers]

        def becomes(proc, stopped: bool) -> bool:
            """Whether ``proc`` is (or is not) stopped within 2 s: signals are delivered
            asynchronously, and on a loaded machine the state takes a moment to change."""
            deadline = time.monotonic() + 2.0
            while (proc.status() == psutil.STATUS_STOPPED) != stopped:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.005)
            return True

        for turn in (0, 1, 0):
            bench.scheduler.take_turn(workers[turn], workers, 0.0)
            assert becomes(procs[turn], stopped=False)
            assert becomes(procs[1 - turn], stopped=True)
        # the running worker still answers; the stopped one answers once resumed
        assert workers[0].request(cmd="release")["ok"]
        workers[1].resume()
        assert workers[1].request(cmd="release")["ok"]
    finally:
        for w in workers:
            w.close()


def test_models_benchmark_tiny_run(tmp_path):
    """benchmarks/models.py end to end on one network: rows checked against float64
    torch, the ratio table, the plot; inductor's row from its own process, merged in
    the contenders' order."""
    import subprocess

    out = tmp_path / "models.csv"
    cmd = [sys.executable, str(BENCH / "models.py"), "--networks", "caffenet"]
    cmd += ["--batches", "1", "--threads", "1"]
    cmd += ["--contenders", "tvm_lrn_untuned,torch_compile,torch"]
    cmd += ["--budget-s", "0", "--repeats", "3", "--csv", str(out)]
    cmd += ["--plot", str(tmp_path / "models.png"), "--no-readme"]
    table = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600).stdout
    rows = list(csv.DictReader(out.open()))
    assert [r["contender"] for r in rows] == ["torch", "torch_compile", "tvm_lrn_untuned"]
    for row in rows:
        assert row["check"] == "ok" and float(row["max_rel_err"]) < 1e-5
        assert row["shape"] == "1x3x227x227" and int(row["repeats"]) == 3
    assert "| caffenet | 1 | 1 | torch | " in table and "1.00x" in table
    assert (tmp_path / "models.png").stat().st_size > 0
