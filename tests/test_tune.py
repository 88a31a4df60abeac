"""MetaSchedule tuning, databases and the shipped schedules (tvm_lrn.tune).

One small tuning run (two workloads, two search trials each, random cost model) is
shared by the tests that need records; it takes about 1.5 to 3 minutes on a 2-core VM,
most of it MetaSchedule's one-time import of its tensor intrinsics. Another run, as a
subprocess, is interrupted with SIGINT.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tvm
import tvm_ffi
from accuracy import check_against_exact
from tvm import relax
from tvm.s_tir import meta_schedule as ms

import tvm_lrn
from tvm_lrn import tune as T
from tvm_lrn.reference import lrn_exact
from tvm_lrn.spec import canonicalize
from tvm_lrn.target import resolve_target
from tvm_lrn.tune import database as tune_database

SHAPE = (1, 16, 12, 12)
OTHER_SHAPE = (1, 16, 12, 10)
PARAMS = canonicalize(5, 1e-4, 0.75, 1.0)
HOST = resolve_target(None)


def _model(shape, dtype="float32", size=5, count=1):
    x = relax.Var("x", relax.TensorType(shape, dtype))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            y = x
            for _ in range(count):
                y = bb.emit(tvm_lrn.local_response_norm(y, size, 1e-4, 0.75, 1.0))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


# --------------------------------------------------------------------------- no tuning


@pytest.mark.parametrize(
    ("target", "key"),
    [
        ({"kind": "llvm", "mcpu": "skylake-avx512"}, "llvm-skylake-avx512-avx512"),
        ({"kind": "llvm", "mcpu": "znver4"}, "llvm-znver4-avx512"),
        ({"kind": "llvm", "mcpu": "haswell"}, "llvm-haswell-avx2"),
        (
            {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "neoverse-n1"},
            "llvm-neoverse-n1-neon",
        ),
        ({"kind": "cuda", "arch": "sm_90"}, "cuda-sm_90"),
        ("nvidia/nvidia-h100", "cuda-sm_90a"),
    ],
)
def test_target_key(target, key):
    assert T.target_key(target) == key


def test_target_key_host_names_cpu_and_isa():
    key = T.target_key(None)
    assert key.startswith(f"llvm-{HOST.attrs['mcpu']}-")


def test_tuning_target_adds_num_cores():
    target = T.tuning_target(None)
    assert int(target.attrs["num-cores"]) >= 1
    assert T.target_key(target) == T.target_key(None)


def test_workloads_are_the_legalized_primfuncs():
    """Tuning keys must equal what Relax legalization produces (int64 shapes, attrs)."""
    (work,) = T.lrn_workloads([SHAPE], "float32", PARAMS)
    legalized = relax.transform.LegalizeOps()(_model(SHAPE))
    (func,) = [f for _, f in legalized.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    assert tvm_ffi.structural_equal(work.func, func)
    assert str(T.workload_mod(func)["main"].params[0].ty.shape[0].ty) == "int64"
    assert work.shape == SHAPE and work.dtype == "float32" and work.params == PARAMS
    # A global_symbol added on the way does not change the key.
    named = T.workload_mod(func.with_attr("global_symbol", "lrn_fused"))
    assert tvm_ffi.structural_equal(named, work.mod)


def test_extract_workloads_dedupes_and_names():
    mod = _model(SHAPE, count=2)  # the same LRN twice: one workload
    assert len(T.extract_workloads(mod)) == 1
    works = T.lrn_workloads([SHAPE, OTHER_SHAPE], ["float32", "float16"], PARAMS)
    assert len(works) == 4
    assert len({w.name for w in works}) == 4
    assert any(w.name == "lrn_float16_1x16x12x12_s5" for w in works)


def test_tune_rejects_bad_requests(tmp_path):
    with pytest.raises(TypeError, match="model or shapes"):
        T.tune(work_dir=tmp_path)
    with pytest.raises(ValueError, match="trials"):
        T.tune(shapes=[SHAPE], trials=0, work_dir=tmp_path)
    with pytest.raises(ValueError, match="no LRN"):
        T.tune(tvm.IRModule(), kernels="lrn", work_dir=tmp_path)
    with pytest.raises(TypeError, match="dtype"):
        T.lrn_workloads([SHAPE], "int8")


def test_cost_model_falls_back_without_xgboost(monkeypatch):
    monkeypatch.setitem(sys.modules, "xgboost", None)  # import xgboost -> ImportError
    model, kind = T.cost_model("auto", 2)
    assert kind == "random" and model is not None
    with pytest.raises(ImportError, match="xgboost"):
        T.cost_model("xgb", 2)
    with pytest.raises(ValueError, match="cost_model"):
        T.cost_model("gbdt", 2)


def test_query_database_needs_a_database(tmp_path):
    (work,) = T.lrn_workloads([SHAPE], "float32", PARAMS)
    with pytest.raises(FileNotFoundError, match="no tuning database"):
        T.query_database(work.func, None, tmp_path / "missing")
    with pytest.raises(TypeError):
        T.load_database(42)


def test_repair_drops_a_torn_line(tmp_path):
    good = json.dumps([0, [[], [1e-5]]])
    (tmp_path / "database_workload.json").write_text('["a", "b"]\n')
    (tmp_path / "database_tuning_record.json").write_text(good + "\n" + good[:7])
    assert T.repair_json_database(tmp_path) == 1
    lines = (tmp_path / "database_tuning_record.json").read_text().splitlines()
    assert lines == [good]


def test_shipped_database_lookup(tmp_path, monkeypatch):
    monkeypatch.setenv(T.SCHEDULES_ENV, str(tmp_path))
    assert T.schedules_roots()[0] == tmp_path  # the environment comes first
    # Patched where shipped_database looks it up (the package re-exports it).
    monkeypatch.setattr(tune_database, "schedules_roots", lambda: [tmp_path])
    folder = tmp_path / T.target_key(None)
    folder.mkdir()
    assert T.shipped_database(None) is None  # a folder without the JSON files
    for name in ("database_workload.json", "database_tuning_record.json"):
        (folder / name).write_text("")
    assert T.shipped_database(None) == str(folder)
    arm = {"kind": "llvm", "mcpu": "cortex-a72", "mtriple": "aarch64-linux-gnu"}
    assert T.shipped_database(arm) is None


def test_shipped_schedules_folders_are_named_by_target_key():
    root = Path(T.__file__).resolve().parents[2] / "schedules"  # tvm_lrn/tune/__init__.py
    folders = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    for folder in folders:
        assert T.is_database_dir(folder), f"{folder} lacks the JSON database files"
        db, _ = T.load_database(folder)
        for rec in db.get_all_tuning_records():
            assert T.target_key(rec.target) == folder.name


def test_shipped_schedules_cover_the_presets_on_this_cpu():
    """The shipped records for this CPU still apply to today's compute.

    If this fails after a change of tvm_lrn/compute.py or of the strategy's block layout,
    the shipped schedules are stale: re-tune them with ``tvm-lrn tune --preset all
    --dtype float32,float16 --trials 8 --ship-to schedules`` (see schedules/README.md).
    """
    path = T.shipped_database(None)
    if path is None:
        pytest.skip(f"no schedules shipped for this CPU ({T.target_key(None)})")
    shapes = [s for shapes in T.PRESETS.values() for s in shapes]
    for work in T.lrn_workloads(shapes, ["float32", "float16"], PARAMS):
        func, source = T.query_database(work.func, None)
        assert func is not None, f"{work.name}: {source}"
        assert source == f"database:{Path(path).resolve()}"


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_replayed_rule_trace_is_the_rule(dtype):
    """A record of the CPU rule is its trace alone: replayed on the workload and lowered,
    it is the rule's own kernel, with the speculation per task and the prefetches that
    the lowering pass adds."""
    from tvm.s_tir import Schedule

    from tvm_lrn.lower import lower_plane_tasks
    from tvm_lrn.strategy import CPULRN

    target = resolve_target(None)
    (work,) = T.lrn_workloads([(2, 32, 9, 11)], [dtype], PARAMS)
    ruled = CPULRN().apply(work.func, target, False)
    sch = Schedule(tvm.IRModule({"main": work.func}))
    ruled.trace.apply_to_schedule(sch, remove_postproc=False)
    replayed = lower_plane_tasks(sch.mod["main"])
    assert "T.prefetch" in replayed.script() and "lrn_speculate" in replayed.script()
    tvm.ir.assert_structural_equal(replayed, lower_plane_tasks(ruled.mod["main"]))
    # a function without an annotated task is left as it is
    assert lower_plane_tasks(work.func).same_as(work.func)


# --------------------------------------------------------------------------- one tuning run


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A tiny tuning run: two workloads, two search trials each."""
    work_dir = tmp_path_factory.mktemp("tuning")
    start = time.time()
    result = _tune_shape(work_dir, ["float32", "float16"], trials=2, per_iter=2, progress=True)
    print(f"tuning run: {time.time() - start:.0f} s")
    return result


def _tune_shape(work_dir, dtypes, trials: int, per_iter: int, progress: bool = False):
    """``tune`` of SHAPE in ``dtypes`` with the random cost model and seed 1."""
    return T.tune(
        shapes=[SHAPE],
        dtypes=dtypes,
        params=PARAMS,
        work_dir=work_dir,
        trials=trials,
        trials_per_iter=per_iter,
        cost_model="random",
        seed=1,
        progress=progress,
    )


def test_tune_writes_a_database(tuned):
    assert not tuned.interrupted
    assert tuned.cost_model == "random"
    assert (Path(tuned.work_dir) / "database_workload.json").is_file()
    assert len(tuned.workloads) == 2
    for res in tuned.workloads:
        # The rule's schedule was measured and committed, so the best record of the
        # run is at least as fast as the rule (both measured by this run).
        assert math.isfinite(res.rule_seconds), res.workload.name
        assert res.best_seconds <= res.rule_seconds
        assert res.trials <= 2
    table = tuned.table()
    assert "lrn_float32_1x16x12x12_s5" in table and "speedup" in table


def test_database_round_trip(tuned):
    """The JSON files reload into a database holding every workload and record."""
    db = ms.database.JSONDatabase(work_dir=tuned.work_dir, allow_missing=False)
    records = db.get_all_tuning_records()
    assert len(records) >= len(tuned.workloads)  # at least the rule records
    for res in tuned.workloads:
        assert db.has_workload(res.workload.mod)
        best = T.best_records(db, res.workload.mod, HOST)
        assert best and best[0][0] == pytest.approx(res.best_seconds)
        sch = T.LRNDatabase(db).query_schedule(res.workload.mod, HOST, "main")
        assert isinstance(sch.mod["main"], tvm.tirx.PrimFunc)


def test_query_database_matches_workload_and_target(tuned):
    for res in tuned.workloads:
        func, source = T.query_database(res.workload.func, None, tuned.work_dir)
        assert func is not None and source == f"database:{Path(tuned.work_dir).resolve()}"
        assert not tvm_ffi.structural_equal(func, res.workload.mod["main"])  # scheduled
    # Same database object, given directly.
    db = tuned.database
    func, _ = T.query_database(tuned.workloads[0].workload.func, HOST, db)
    assert func is not None
    # Another shape, another target: no record.
    (other,) = T.lrn_workloads([OTHER_SHAPE], "float32", PARAMS)
    assert T.query_database(other.func, None, tuned.work_dir)[0] is None
    skx = {"kind": "llvm", "mcpu": "skylake-avx512"}
    func, why = T.query_database(tuned.workloads[0].workload.func, skx, tuned.work_dir)
    assert func is None and "llvm-skylake-avx512-avx512" in why


def _log_uniform(rng, shape, dtype):
    info = np.finfo(dtype)
    lo, hi = math.log2(float(info.smallest_subnormal)), math.log2(float(info.max))
    x = np.exp2(rng.uniform(lo, hi, shape)) * rng.choice([-1.0, 1.0], shape)
    return np.clip(x, -float(info.max), float(info.max)).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_tuned_kernels_meet_the_numerical_contract(tuned, dtype):
    (res,) = [r for r in tuned.workloads if r.workload.dtype == dtype]
    func, _ = T.query_database(res.workload.func, None, tuned.work_dir)
    lib = tvm.compile(func.with_attr("global_symbol", "main"), target=HOST)
    rng = np.random.default_rng(7)
    dev = tvm.cpu()
    for scale in (None, 1.0):
        x = (
            _log_uniform(rng, SHAPE, dtype)
            if scale is None
            else rng.standard_normal(SHAPE).astype(dtype)
        )
        y = tvm.runtime.empty(SHAPE, dtype, dev)
        lib(tvm.runtime.tensor(x, dev), y)
        check_against_exact(y.numpy(), lrn_exact(x, PARAMS), dtype)


def test_compile_picks_the_record_or_the_rule(tuned):
    """tvm_lrn.compile uses the record for a matching workload, the rule otherwise."""
    build = pytest.importorskip("tvm_lrn.build")
    model = build.compile(_model(SHAPE), HOST, database=tuned.work_dir)
    assert list(model.schedule_sources.values()) == [f"database:{Path(tuned.work_dir).resolve()}"]
    x = np.random.default_rng(0).standard_normal(SHAPE).astype("float32")
    check_against_exact(np.asarray(model(x)), lrn_exact(x, PARAMS), "float32")
    other = build.compile(_model(OTHER_SHAPE), HOST, database=tuned.work_dir)
    assert list(other.schedule_sources.values()) == ["rule:cpu"]


def _lowered_lrn(mod: tvm.IRModule) -> tvm.tirx.PrimFunc:
    """The LRN PrimFunc of a legalized, scheduled module after the project's lowering
    pass (the rest of the TIR pipeline is TVM's own, applied alike to both)."""
    from tvm_lrn.lower import lower_plane_tasks

    (func,) = [f for _, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    return lower_plane_tasks(func)


@pytest.mark.parametrize("database", ["json", "lrn"])
def test_stock_apply_database_builds_the_compiled_kernel(tuned, database):
    """TVM's own MetaScheduleApplyDatabase, with MetaSchedule's JSONDatabase or the
    project's LRNDatabase under ``with db:``, schedules the LRN kernel from the record
    that tvm_lrn.compile applies: after the TIR pipeline, the same lowered TIR."""
    from tvm_lrn.build import schedule_lrn

    work = next(r.workload for r in tuned.workloads if r.workload.dtype == "float32")
    db = (
        ms.database.JSONDatabase(work_dir=tuned.work_dir, allow_missing=False)
        if database == "json"
        else T.LRNDatabase(tuned.work_dir)
    )
    with HOST, db:
        legalized = relax.transform.LegalizeOps()(_model(SHAPE))
        stock = relax.transform.MetaScheduleApplyDatabase(enable_warning=True)(legalized)
    ours, source = schedule_lrn(work.func, HOST, database=tuned.work_dir)
    assert source.startswith("database:")
    want = _lowered_lrn(tvm.IRModule({"lrn": ours}))
    got = _lowered_lrn(stock)
    assert "T.prefetch" in want.script()  # the plane-task rewrite is there
    tvm.ir.assert_structural_equal(got, want)


def test_export_best_and_shipped_lookup(tuned, tmp_path, monkeypatch):
    dest = Path(T.export_best([tuned.work_dir], tmp_path / T.target_key(HOST)))
    db, _ = T.load_database(dest)
    records = db.get_all_tuning_records()
    assert len(records) == len(tuned.workloads)  # one best record per workload
    # Merging again keeps one record per workload.
    T.export_best([tuned.work_dir], dest)
    assert len(T.load_database(dest)[0].get_all_tuning_records()) == len(tuned.workloads)
    monkeypatch.setenv(T.SCHEDULES_ENV, str(tmp_path))
    assert T.shipped_database(None) == str(dest)
    func, source = T.query_database(tuned.workloads[0].workload.func, None)
    assert func is not None and source == f"database:{dest.resolve()}"


def test_record_replays_on_a_changed_compute(tuned):
    """A record whose workload differs only inside expressions still applies."""
    res = tuned.workloads[0]
    changed = res.workload.func.with_attr("tvm_lrn.note", "recompiled")
    mod = T.workload_mod(changed)
    assert not tvm_ffi.structural_equal(mod, res.workload.mod)
    func, source = T.query_database(changed, None, tuned.work_dir)
    assert func is not None and source.startswith("database:")


def test_record_applies_when_a_frontend_rounds_alpha(tuned):
    """ONNX stores alpha as float32: the record tuned for alpha=1e-4 still applies."""
    (res,) = [r for r in tuned.workloads if r.workload.dtype == "float32"]
    rounded = canonicalize(5, float(np.float32(1e-4)), 0.75, 1.0)
    (work,) = T.lrn_workloads([SHAPE], "float32", rounded)
    assert not tvm_ffi.structural_equal(work.mod, res.workload.mod)
    func, source = T.query_database(work.func, None, tuned.work_dir)
    assert func is not None and source.startswith("database:")
    # ... but not to another window size.
    (size3,) = T.lrn_workloads([SHAPE], "float32", canonicalize(3, 1e-4, 0.75, 1.0))
    assert T.query_database(size3.func, None, tuned.work_dir)[0] is None


# --------------------------------------------------------------------------- Ctrl-C


def test_an_lrn_task_ends_when_its_space_is_exhausted(tmp_path):
    """An LRN's design space holds a dozen schedules: its task ends at the first batch
    with nothing new to measure, long before 64 trials (the evolutionary search alone
    goes on for five such batches, a minute each on a network's LRN)."""
    result = _tune_shape(tmp_path, ["float32"], trials=64, per_iter=8)
    (res,) = result.workloads
    assert not result.interrupted and 0 < res.trials < 64
    logs = "".join(path.read_text() for path in (tmp_path / "logs").glob("*.log"))
    assert logs.count("Sending 0 candidates(s) for measurement") == 1


def test_ctrl_c_keeps_a_loadable_database(tmp_path):
    """SIGINT (Ctrl-C) mid-search: exit 130, one line, the database still loads."""
    work_dir = tmp_path / "interrupted"
    cmd = [
        sys.executable,
        "-m",
        "tvm_lrn.cli",
        "tune",
        "--shape",
        "1,16,12,12",
        "--trials",
        "64",
        "--trials-per-iter",
        "2",
        "--cost-model",
        "random",
        "--work-dir",
        str(work_dir),
        "--no-progress",
    ]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    records = work_dir / "database_tuning_record.json"
    deadline = time.time() + 400
    try:
        # Wait until the search has committed a batch (the rule's record comes first).
        while time.time() < deadline and proc.poll() is None:
            if records.is_file() and len(records.read_text().splitlines()) >= 3:
                break
            time.sleep(1)
        assert proc.poll() is None, proc.communicate()
        time.sleep(2)
        # SIGINT to our process only: in a terminal, Ctrl-C also reaches TVM's builder and
        # runner worker processes, which may print their own KeyboardInterrupt traceback.
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err, err[-2000:]
    assert "interrupted" in err
    db = ms.database.JSONDatabase(work_dir=str(work_dir), allow_missing=False)
    assert len(db.get_all_tuning_records()) >= 1
    (work,) = T.lrn_workloads([SHAPE], "float32", PARAMS)
    assert T.query_database(work.func, None, work_dir)[0] is not None
