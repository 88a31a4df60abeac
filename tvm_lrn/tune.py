"""Autotuning of LRN kernels with MetaSchedule, schedule databases, shipped schedules.

:func:`tune` searches schedules for the LRN PrimFuncs of a model (or of given shapes,
dtypes and parameters) with ``tvm.s_tir.meta_schedule`` and writes a JSON database to a
work directory. :func:`query_database` looks a kernel up in such a database, and
:func:`shipped_database` finds the database shipped with the package for a target
(``schedules/<target key>/``, see :func:`target_key`).

Workloads are keyed structurally: a kernel is tuned exactly as ``relax.tvm_lrn``
legalizes it (int64 shapes, ``tvm_lrn.*`` attributes, no ``global_symbol``), so the
records match what :func:`tvm_lrn.compile` and ``relax.transform.MetaScheduleApplyDatabase``
look up later. Records are also keyed by target: a record tuned on ``znver4`` is not
used for ``skylake-avx512``.

The search space always holds the strategy rule's own schedule, and the rule's schedule
is measured and committed as a record before the search starts, so the best record of a
run is never slower than the rule (as measured by that run).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import types
from collections.abc import Iterable, Sequence
from pathlib import Path

import tvm
import tvm_ffi
from tvm import relax
from tvm.target import Target

from .op import is_lrn_primfunc, params_from_attrs
from .spec import LRNParams, canonicalize, check_dtype
from .target import resolve_target

__all__ = [
    "PRESETS",
    "TuneResult",
    "Workload",
    "WorkloadResult",
    "export_best",
    "extract_workloads",
    "load_database",
    "lrn_workloads",
    "query_database",
    "schedules_roots",
    "shipped_database",
    "target_key",
    "tune",
]

logger = logging.getLogger("tvm_lrn")

#: LRN shapes of well-known models (size=5, alpha=1e-4, beta=0.75, bias=1, channel axis).
PRESETS: dict[str, tuple[tuple[int, ...], ...]] = {
    "alexnet": ((1, 96, 55, 55), (1, 256, 27, 27)),
    "googlenet": ((1, 64, 56, 56), (1, 192, 56, 56)),
}

#: Environment variable: extra folders (os.pathsep separated) searched before the
#: shipped ``schedules/`` for ``<target key>/`` databases.
SCHEDULES_ENV = "TVM_LRN_SCHEDULES"

_WORKLOAD_FILE = "database_workload.json"
_RECORD_FILE = "database_tuning_record.json"
# MetaSchedule records a failed build or run with this run time.
_FAILED_SECONDS = 1e9


# --------------------------------------------------------------------------- targets


def _x86_isa(target: Target) -> str:
    from tvm.target import codegen

    for isa, feature in (("avx512", "avx512f"), ("avx2", "avx2"), ("sse4", "sse4.2")):
        if codegen.target_has_features(feature, target):
            return isa
    return "generic"


def _arm_isa(target: Target) -> str:
    from tvm.target import codegen

    for isa in ("sve", "neon"):
        if codegen.target_has_features(isa, target):
            return isa
    return "generic"


def target_key(target) -> str:
    """The name of a target's folder of tuned schedules.

    Records tuned for one CPU model or GPU architecture are only valid there, so the key
    holds what changes the generated code: ``llvm-<mcpu>-<vector ISA>`` for CPUs (e.g.
    ``llvm-znver4-avx512``), ``cuda-<arch>`` for CUDA (e.g. ``cuda-sm_90``), and
    ``<kind>-<arch or mcpu>`` for other kinds.

    Parameters
    ----------
    target : None, str, dict or tvm.target.Target
        As :func:`tvm_lrn.target.resolve_target` accepts; None is the host CPU.

    Returns
    -------
    str
    """
    target = resolve_target(target)
    kind = target.kind.name
    attrs = target.attrs
    if kind == "llvm":
        mcpu = str(attrs.get("mcpu", "") or "generic")
        triple = str(attrs.get("mtriple", "") or "")
        if triple.startswith(("aarch64", "arm")):
            isa = _arm_isa(target)
        elif triple.startswith(("riscv", "wasm", "powerpc", "ppc")):
            isa = triple.split("-")[0]
        else:
            isa = _x86_isa(target)
        key = f"llvm-{mcpu}-{isa}"
    elif "arch" in attrs and attrs["arch"]:
        key = f"{kind}-{attrs['arch']}"
    elif "mcpu" in attrs and attrs["mcpu"]:
        key = f"{kind}-{attrs['mcpu']}"
    else:
        key = kind
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", key)


def _tuning_target(target) -> Target:
    """``target`` as MetaSchedule wants it: llvm targets need ``num-cores``."""
    target = resolve_target(target)
    if target.kind.name != "llvm" or "num-cores" in target.attrs:
        return target
    config = dict(target.export())
    config["num-cores"] = _physical_cores()
    host = config.pop("host", None)
    return Target(config, host=host) if host else Target(config)


def _physical_cores() -> int:
    try:
        import psutil

        cores = psutil.cpu_count(logical=False)
    except ImportError:
        cores = None
    return int(cores or os.cpu_count() or 1)


# --------------------------------------------------------------------------- workloads


@dataclasses.dataclass(frozen=True)
class Workload:
    """One LRN kernel to tune: the PrimFunc exactly as ``relax.tvm_lrn`` legalizes it.

    Attributes
    ----------
    name : str
        A readable, file-name safe task name, e.g. ``lrn_float32_1x96x55x55_s5``.
    func : tvm.tirx.PrimFunc
        The legalized PrimFunc (no ``global_symbol``).
    shape : tuple of int or None
        The static input shape (None where a dimension is symbolic).
    dtype : str
    params : LRNParams
    """

    name: str
    func: tvm.tirx.PrimFunc = dataclasses.field(compare=False, repr=False)
    shape: tuple[int, ...] | None
    dtype: str
    params: LRNParams

    @property
    def mod(self) -> tvm.IRModule:
        """The workload module the database is keyed by."""
        return _workload_mod(self.func)


def _workload_mod(func: tvm.tirx.PrimFunc) -> tvm.IRModule:
    """The IRModule MetaSchedule keys ``func`` by.

    Relax PrimFuncs carry no ``global_symbol``, and MetaSchedule's normalization gives
    them ``main``; a symbol some other path added would change the structural key, so it
    is dropped first (the same normalization as MetaScheduleApplyDatabase then).
    """
    from tvm.s_tir.meta_schedule.tune_context import _normalize_mod

    if func.attrs is not None and "global_symbol" in func.attrs:
        func = func.without_attr("global_symbol")
    return _normalize_mod(func)


def _workload_from_func(func: tvm.tirx.PrimFunc) -> Workload:
    params = params_from_attrs(func.attrs)
    x = func.params[0].ty  # the input buffer's type: shape and dtype
    dims = [d.value if isinstance(d, tvm.tirx.IntImm) else None for d in x.shape]
    shape = None if None in dims else tuple(int(d) for d in dims)
    dtype = str(x.dtype)
    extent = "x".join(str(d) if d is not None else "n" for d in dims)
    name = f"lrn_{dtype}_{extent}_s{params.size}"
    if params.lo != params.hi:
        name += f"_lo{params.lo}"
    if params.axis != 1:
        name += f"_ax{params.axis}"
    return Workload(name, func, shape, dtype, params)


def _dedupe(funcs: Iterable[tvm.tirx.PrimFunc]) -> list[Workload]:
    """One workload per structurally distinct PrimFunc, names made unique."""
    seen: dict[int, Workload] = {}
    for func in funcs:
        key = tvm_ffi.structural_hash(_workload_mod(func))
        if key not in seen:
            seen[key] = _workload_from_func(func)
    out, names = [], {}
    for work in seen.values():
        count = names.get(work.name, 0)
        names[work.name] = count + 1
        out.append(work if count == 0 else dataclasses.replace(work, name=f"{work.name}_{count}"))
    return out


def extract_workloads(mod: tvm.IRModule) -> list[Workload]:
    """The LRN kernels of a Relax module, as :func:`tune` tunes them.

    Parameters
    ----------
    mod : tvm.IRModule
        A Relax module holding ``R.tvm_lrn`` calls (legalized or not).

    Returns
    -------
    list of Workload
        One per structurally distinct LRN PrimFunc (PrimFuncs with ``tvm_lrn.*``
        attributes after legalization).
    """
    if not isinstance(mod, tvm.IRModule):
        raise TypeError(f"expected a Relax IRModule, got {type(mod).__name__}")
    legalized = relax.transform.LegalizeOps()(mod)
    funcs = [
        f
        for _, f in sorted(legalized.functions_items(), key=lambda kv: kv[0].name_hint)
        if is_lrn_primfunc(f) and "tirx.is_scheduled" not in f.attrs
    ]
    return _dedupe(funcs)


def lrn_workloads(
    shapes: Sequence[Sequence[int]],
    dtypes: str | Sequence[str] = "float32",
    params: LRNParams | None = None,
    **lrn_args,
) -> list[Workload]:
    """Workloads for every shape and dtype, legalized as a model would legalize them.

    Parameters
    ----------
    shapes : sequence of sequence of int
        Input shapes.
    dtypes : str or sequence of str
        Input dtypes.
    params : LRNParams, optional
        Canonical parameters; otherwise ``lrn_args`` (``size``, ``alpha``, ``beta``,
        ``bias``, ``axis``, ``convention``) go through :func:`tvm_lrn.spec.canonicalize`.

    Returns
    -------
    list of Workload
    """
    from .op import tvm_lrn

    if isinstance(dtypes, str):
        dtypes = [dtypes]
    if params is not None and lrn_args:
        raise TypeError("pass either params or size/alpha/beta/bias/axis/convention, not both")
    if params is None:
        params = canonicalize(**{"size": 5, **lrn_args})
    xs = []
    for shape in shapes:
        shape = tuple(shape)
        if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
            raise ValueError(f"a shape must be a non-empty tuple of positive ints, got {shape}")
        for dtype in dtypes:
            xs.append(relax.Var("x", relax.TensorType(shape, check_dtype(dtype))))
    if not xs:
        raise ValueError("no shapes to tune")
    bb = relax.BlockBuilder()
    with bb.function("main", xs):
        with bb.dataflow():
            outs = []
            for x in xs:
                p = params.with_axis(len(x.ty.shape))
                outs.append(bb.emit(tvm_lrn(x, p.lo, p.hi, p.alpha, p.beta, p.bias, p.axis)))
            out = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(out)
    return extract_workloads(bb.get())


# --------------------------------------------------------------------------- databases


def schedules_roots() -> list[Path]:
    """Folders searched for ``<target key>/`` databases, first match wins.

    ``$TVM_LRN_SCHEDULES`` (if set), then ``tvm_lrn/schedules`` (the shipped databases in
    an installed wheel; a link to ``schedules/`` in a source checkout), then the
    checkout's ``schedules/``.
    """
    roots = [Path(p) for p in os.environ.get(SCHEDULES_ENV, "").split(os.pathsep) if p]
    here = Path(__file__).resolve().parent
    roots += [here / "schedules", here.parent / "schedules"]
    out: list[Path] = []
    for root in roots:
        if root.resolve() not in [r.resolve() for r in out]:
            out.append(root)
    return out


def _is_database_dir(path: Path) -> bool:
    return (path / _WORKLOAD_FILE).is_file() and (path / _RECORD_FILE).is_file()


def shipped_database(target=None) -> str | None:
    """The shipped database folder for ``target``, or None if there is none.

    Parameters
    ----------
    target : None, str, dict or tvm.target.Target
        None is the host CPU.

    Returns
    -------
    str or None
        ``<root>/<target_key(target)>`` for the first root of :func:`schedules_roots`
        that has it.
    """
    key = target_key(target)
    for root in schedules_roots():
        if _is_database_dir(root / key):
            return str(root / key)
    return None


@functools.lru_cache(maxsize=16)
def _load_json_database(path: str, _stamp: tuple):
    from tvm.s_tir import meta_schedule as ms

    return ms.database.JSONDatabase(
        path_workload=os.path.join(path, _WORKLOAD_FILE),
        path_tuning_record=os.path.join(path, _RECORD_FILE),
        allow_missing=False,
    )


def load_database(database):
    """Open a database: a folder with MetaSchedule's JSON files, or a Database as is.

    Parameters
    ----------
    database : str, os.PathLike or tvm.s_tir.meta_schedule.Database

    Returns
    -------
    (Database, str)
        The database and a label for messages (its folder, or its class name).

    Raises
    ------
    FileNotFoundError
        If the folder does not hold ``database_workload.json`` and
        ``database_tuning_record.json``.
    """
    from tvm.s_tir import meta_schedule as ms

    if isinstance(database, ms.database.Database):
        return database, type(database).__name__
    if not isinstance(database, str | os.PathLike):
        raise TypeError(f"database must be a folder or a MetaSchedule Database, got {database!r}")
    path = Path(database).expanduser().resolve()
    if not _is_database_dir(path):
        raise FileNotFoundError(
            f"no tuning database in {database} (expected {_WORKLOAD_FILE} and {_RECORD_FILE})"
        )
    files = (path / _WORKLOAD_FILE, path / _RECORD_FILE)
    # Reload when a file changed (a tuning run appends to them).
    stamp = tuple((f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    return _load_json_database(str(path), stamp), str(path)


def _mean_seconds(run_secs) -> float:
    if not run_secs:
        return math.inf
    secs = [float(s) for s in run_secs]
    mean = sum(secs) / len(secs)
    return math.inf if mean >= _FAILED_SECONDS else mean


def _best_records(db, mod: tvm.IRModule, target: Target | None):
    """Valid records of ``mod`` (for ``target``'s key, if given), fastest first."""
    if not db.has_workload(mod):
        return []
    workload = db.commit_workload(mod)  # returns the stored workload, writes nothing
    key = target_key(target) if target is not None else None
    records = []
    for rec in db.get_top_k(workload, 1 << 20):
        seconds = _mean_seconds(rec.run_secs)
        if not math.isfinite(seconds):
            continue
        if key is not None and (rec.target is None or target_key(rec.target) != key):
            continue
        records.append((seconds, rec))
    records.sort(key=lambda sr: sr[0])
    return records


def _replay(mod: tvm.IRModule, trace) -> tvm.IRModule:
    from tvm.s_tir import Schedule

    from .strategy.cpu import rewrite_plane_tasks

    sch = Schedule(mod)
    trace.apply_to_schedule(sch, remove_postproc=False)
    rewrite_plane_tasks(sch)  # what the CPU rule adds outside its trace
    return sch.mod


def _apply_record(mod: tvm.IRModule, record) -> tvm.tirx.PrimFunc:
    return _replay(mod, record.trace)["main"]


def query_database(func: tvm.tirx.PrimFunc, target, database=None):
    """The best tuned schedule of an LRN PrimFunc for ``target``, if a database has one.

    Parameters
    ----------
    func : tvm.tirx.PrimFunc
        An LRN PrimFunc as legalization produces it (its ``global_symbol``, if any, does
        not matter).
    target : None, str, dict or tvm.target.Target
        Only records tuned for the same :func:`target_key` match.
    database : str, os.PathLike, MetaSchedule Database or None
        A database folder or object; None looks in :func:`shipped_database`.

    Returns
    -------
    (tvm.tirx.PrimFunc or None, str)
        The scheduled function (named ``main``, with the workload's attributes) and
        ``"database:<folder>"``; or None and the reason nothing matched.

    Raises
    ------
    FileNotFoundError
        If ``database`` is a folder without a database.
    """
    target = resolve_target(target)
    if database is None:
        database = shipped_database(target)
        if database is None:
            return None, f"no database shipped for {target_key(target)}"
    db, label = load_database(database)
    mod = _workload_mod(func)
    exact = _best_records(db, mod, target)
    # A record of the same LRN loop nest (shape, dtype, window; see _signature) whose
    # compute differs (changed since tuning, or alpha rounded by a frontend) names the
    # same blocks and loops: its trace replays onto this compute, and the schedule
    # primitives check that it still applies.
    similar = [] if exact else _signature_records(db, mod, target)
    for seconds, record in exact + similar:
        try:
            scheduled = _apply_record(mod, record)
        except Exception as err:  # e.g. a record of another TVM version or block layout
            logger.info(
                "record in %s (%.3g s) does not apply: %s", label, seconds, _first_line(err)
            )
            continue
        if not exact:
            logger.info("%s: record replayed from a workload with an older compute", label)
        return scheduled, f"database:{label}"
    return None, f"no record in {label} for this workload on {target_key(target)}"


def _signature(func: tvm.tirx.PrimFunc):
    """What decides an LRN kernel's loop nest, or None for other functions.

    Shape, dtype, window and axis, and what selects the compute's form (the compute
    dtype, and which of beta, alpha and bias are 0). The values of alpha, beta and bias
    only enter expressions: a frontend that rounds alpha to float32 (ONNX) still gets
    the record tuned for the exact value.
    """
    from .compute import compute_dtype

    try:
        work = _workload_from_func(func)
    except Exception:  # not an LRN PrimFunc
        return None
    p = work.params
    form = (compute_dtype(work.dtype, p.beta), p.beta == 0, p.alpha == 0, p.bias == 0)
    return work.shape, work.dtype, p.lo, p.hi, p.axis, form


def _signature_records(db, mod: tvm.IRModule, target: Target):
    """Valid records for ``target`` whose workload computes the same LRN as ``mod``."""
    wanted = _signature(mod["main"])
    if wanted is None:
        return []
    key = target_key(target)
    found = []
    for rec in db.get_all_tuning_records():
        seconds = _mean_seconds(rec.run_secs)
        if not math.isfinite(seconds) or rec.target is None:
            continue
        if _signature(rec.workload.mod["main"]) != wanted or target_key(rec.target) != key:
            continue
        found.append((seconds, rec))
    found.sort(key=lambda sr: sr[0])
    return found


def _first_line(err) -> str:
    """The message of an error (or error text) in one line.

    TVM and worker errors carry a traceback before the message; the message is then the
    last ``...Error: ...`` line.
    """
    text = str(err).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return type(err).__name__
    if len(lines) > 1 and any(ln.startswith("Traceback") for ln in lines):
        errors = [ln for ln in lines if re.match(r"^[\w.]*(Error|Exception|Interrupt)\b", ln)]
        return errors[-1] if errors else lines[-1]
    return lines[0]


def _repair_json_database(work_dir: str | os.PathLike) -> int:
    """Drop a torn last line (a run killed mid-write); return how many lines were dropped."""
    dropped = 0
    for name in (_WORKLOAD_FILE, _RECORD_FILE):
        path = Path(work_dir) / name
        if not path.is_file():
            continue
        lines = path.read_text().splitlines(keepends=True)
        good = []
        for line in lines:
            try:
                json.loads(line)
            except ValueError:
                dropped += 1
                continue
            good.append(line if line.endswith("\n") else line + "\n")
        if dropped:
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text("".join(good))
            os.replace(tmp, path)
    return dropped


def export_best(sources: Sequence, dest: str | os.PathLike) -> str:
    """Merge databases, keeping the fastest valid record per workload and target key.

    Used to make the shipped ``schedules/<target key>/`` folders small: the result holds
    one record per workload and target, and an existing database in ``dest`` is merged in
    (its records compete too).

    Parameters
    ----------
    sources : sequence of str, os.PathLike or Database
        Databases to merge.
    dest : str or os.PathLike
        Folder to (re)write ``database_workload.json`` and ``database_tuning_record.json``.

    Returns
    -------
    str
        ``dest``.
    """
    from tvm.s_tir import meta_schedule as ms

    dest = Path(dest)
    dbs = [load_database(s)[0] for s in sources]
    if _is_database_dir(dest):
        dbs.append(_copy_to_memory(load_database(dest)[0]))
    best: dict[tuple, tuple] = {}
    for db in dbs:
        for rec in db.get_all_tuning_records():
            seconds = _mean_seconds(rec.run_secs)
            if not math.isfinite(seconds) or rec.target is None:
                continue
            mod = rec.workload.mod
            key = (tvm_ffi.structural_hash(mod), target_key(rec.target))
            if key not in best or seconds < best[key][0]:
                best[key] = (seconds, rec)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        out = ms.database.JSONDatabase(work_dir=tmp, allow_missing=True)
        for _, rec in sorted(best.values(), key=lambda sr: str(sr[1].workload.mod)):
            workload = out.commit_workload(rec.workload.mod)
            out.commit_tuning_record(
                ms.database.TuningRecord(
                    rec.trace, workload, rec.run_secs, rec.target, rec.args_info
                )
            )
        del out
        for name in (_WORKLOAD_FILE, _RECORD_FILE):
            os.replace(os.path.join(tmp, name), dest / name)
    _load_json_database.cache_clear()
    return str(dest)


def _copy_to_memory(db):
    """Records of ``db`` in a MemoryDatabase (so that ``dest`` can be overwritten)."""
    from tvm.s_tir import meta_schedule as ms

    mem = ms.database.MemoryDatabase()
    for rec in db.get_all_tuning_records():
        workload = mem.commit_workload(rec.workload.mod)
        mem.commit_tuning_record(
            ms.database.TuningRecord(rec.trace, workload, rec.run_secs, rec.target, rec.args_info)
        )
    return mem


# --------------------------------------------------------------------------- the rule


def _rule_schedule(func: tvm.tirx.PrimFunc, target: Target, rule=None):
    """The strategy rule's schedule of ``func`` as a Schedule with a trace, or None.

    A tuning record is a trace replayed on the workload, so the rule can be a candidate
    (and a record) only as a Schedule: the strategy's DLight rules give one.

    Parameters
    ----------
    func : tvm.tirx.PrimFunc
    target : tvm.target.Target
    rule : DLight ScheduleRule or callable, optional
        Instead of the strategy's default rules; a callable gets ``(func, target)``.
    """
    from tvm.s_tir import Schedule
    from tvm.s_tir import dlight as dl

    from .strategy import default_rules

    for candidate in [rule] if rule is not None else default_rules():
        if isinstance(candidate, dl.ScheduleRule):
            available = getattr(candidate, "is_target_available", None)
            if available is not None and not available(target):
                continue
            result = candidate.apply(func, target, False)
        elif callable(candidate):
            result = candidate(func, target)
        else:
            raise TypeError(f"rule must be a DLight ScheduleRule or a callable, got {rule!r}")
        if isinstance(result, list | tuple):
            result = result[0] if result else None
        if isinstance(result, Schedule):
            return result
    return None


def _rule_space(target: Target, rule):
    """A ScheduleFn design space holding the rule's schedule (replayed as a trace)."""
    from tvm.s_tir import meta_schedule as ms

    def schedule_fn(sch):
        try:
            ruled = _rule_schedule(sch.mod["main"], target, rule)
            if ruled is None:
                return []
            ruled.trace.apply_to_schedule(sch, remove_postproc=True)
            return [sch]
        except Exception as err:  # a broken rule only removes its candidate
            logger.warning("strategy rule failed in the tuning space: %s", _first_line(err))
            return []

    return ms.space_generator.ScheduleFn(schedule_fn)


def _generic_space(target: Target):
    """MetaSchedule's own space for ``target``, with CPU unrolling capped at 64 steps.

    The LRN body is long (scaling, pow, special values): unrolled 512 times, one
    candidate kept LLVM busy for minutes, and it was never the fastest.
    """
    from tvm.s_tir import meta_schedule as ms

    if target.kind.name != "llvm":
        return ms.space_generator.PostOrderApply()
    rules = []
    for rule in ms.ScheduleRule.create("llvm"):
        if isinstance(rule, ms.schedule_rule.ParallelizeVectorizeUnroll):
            rule = ms.schedule_rule.ParallelizeVectorizeUnroll(
                max_jobs_per_core=16,
                max_vectorize_extent=64,
                unroll_max_steps=[0, 16, 64],
                unroll_explicit=True,
            )
        rules.append(rule)
    return ms.space_generator.PostOrderApply(sch_rules=rules)


#: Copies of the CPU variant space in the union (see _cpu_variant).
_VARIANT_WEIGHT = 8


def _divisors(n: int, limit: int) -> list[int]:
    return [d for d in range(2, min(n, limit) + 1) if n % d == 0]


def _cpu_variant_space(target: Target):
    """Tunable relatives of the CPU rule's loop nest (llvm targets only).

    The rule fixes one tile length along the contiguous dimension and no unrolling; here
    both are sampled: the tile among the divisors of the extent up to four registers
    (so no tail is left), and the unroll depth of the tile body. MetaSchedule's generic
    space rarely finds this structure (parallel rows, both window reductions computed
    per tile into register-sized buffers, lanes vectorized).
    """
    from tvm.s_tir import meta_schedule as ms

    def schedule_fn(sch):
        try:
            return _cpu_variant(sch, target)
        except Exception as err:  # only this candidate is lost
            logger.debug("CPU variant space not applicable: %s", _first_line(err))
            return []

    return ms.space_generator.ScheduleFn(schedule_fn)


def _cpu_variant(sch, target: Target):
    from .strategy.common import lrn_blocks
    from .strategy.cpu import _static_plane, vector_bits

    if target.kind.name != "llvm":
        return []
    blocks = lrn_blocks(sch)
    if blocks is None:
        return []
    bits = max(32, int(blocks.compute_dtype.replace("float", "")))
    lanes = max(1, vector_bits(target) // bits)
    loops = sch.get_loops(blocks.output)
    func = sch.mod["main"]
    if _static_plane(func, [sch.get(loop).extent for loop in loops]) is not None:
        return _cpu_plane_variants(sch, func, lanes)
    if blocks.guards or not blocks.reductions:
        return []  # rows of a guarded form: the rule's root guard, no tile to tune
    extent = sch.get(loops[-1]).extent
    if not isinstance(extent, tvm.tirx.IntImm):
        return []  # symbolic: the rule's partitioned tail is the only sound choice
    choices = _divisors(int(extent), 4 * lanes)
    if not choices:
        return []
    tile = sch.sample_categorical(choices, [1.0 / len(choices)] * len(choices))
    tile_loop, lane_loop = sch.split(loops[-1], [None, tile])
    if len(loops) > 1:
        outer = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
        sch.parallel(outer)
    else:
        sch.parallel(tile_loop)
    for block in reversed(blocks.reductions):
        sch.compute_at(block, tile_loop, preserve_unit_loops=True)
    for block in blocks.reductions:
        *_, spatial, window = sch.get_loops(block)
        sch.reorder(window, spatial)
        sch.vectorize(spatial)
    sch.vectorize(lane_loop)
    _sample_unroll(sch, tile_loop)
    # The search draws its initial candidates uniformly over design spaces, and the
    # generic space brings about ten: as many copies of this one give it half the draws.
    return [sch] + [sch.copy() for _ in range(_VARIANT_WEIGHT - 1)]


def _sample_unroll(sch, loop) -> None:
    unroll = sch.sample_categorical([0, 16, 64], [1 / 3, 1 / 3, 1 / 3])
    sch.annotate(loop, "pragma_auto_unroll_max_step", unroll)
    sch.annotate(loop, "pragma_unroll_explicit", 1)


def _cpu_plane_variants(sch, func, lanes: int):
    """The rule's plane schedule with 1, 2 or 4 registers per vector step, each with a
    sampled unroll depth (separate design spaces: the step decides where the vector
    loop is partitioned, which a mutated decision could not follow)."""
    from .strategy.common import lrn_blocks
    from .strategy.cpu import _schedule_planes

    spaces = []
    for registers in (1, 2, 4):
        variant = sch.copy()
        at = _schedule_planes(variant, lrn_blocks(variant), func, lanes, registers)
        _sample_unroll(variant, at)
        spaces.append(variant)
    copies = max(1, _VARIANT_WEIGHT // len(spaces))
    return [s.copy() for s in spaces for _ in range(copies)]


# --------------------------------------------------------------------------- measuring


def _build_in_worker(mod, target, _params):
    """Builder worker: compile one candidate.

    Unlike MetaSchedule's default it does not import ``tvm.s_tir.tensor_intrin`` (36 s
    per worker on a small VM): the candidates arrive already scheduled, and LRN uses no
    tensor intrinsics.
    """
    return tvm.tirx.build(mod, target=target)


def _make_builder(timeout_sec: float, max_workers: int):
    from tvm.s_tir import meta_schedule as ms

    return ms.builder.LocalBuilder(
        max_workers=max_workers, timeout_sec=timeout_sec, f_build=_build_in_worker
    )


def _make_runner(timeout_sec: float, number: int, repeat: int, min_repeat_ms: int):
    from tvm.s_tir import meta_schedule as ms

    config = ms.runner.EvaluatorConfig(
        number=number, repeat=repeat, min_repeat_ms=min_repeat_ms, enable_cpu_cache_flush=False
    )
    return ms.runner.LocalRunner(timeout_sec=timeout_sec, evaluator_config=config)


def _measure(builder, runner, target: Target, mods: list[tvm.IRModule]) -> list:
    """Build and run ``mods`` once each; ``[run_secs or error string]`` in order."""
    from tvm.s_tir import meta_schedule as ms

    built = builder.build([ms.builder.BuilderInput(m, target) for m in mods])
    out: list = [None] * len(mods)
    inputs, where = [], []
    for i, (mod, res) in enumerate(zip(mods, built, strict=True)):
        if res.error_msg:
            out[i] = "build failed: " + _first_line(res.error_msg)
            continue
        args = ms.arg_info.ArgInfo.from_prim_func(mod["main"])
        device = "cpu" if target.kind.name in ("llvm", "c") else target.kind.name
        inputs.append(ms.runner.RunnerInput(res.artifact_path, device, args))
        where.append(i)
    for i, future in zip(where, runner.run(inputs) if inputs else [], strict=True):
        res = future.result()
        if res.error_msg:
            out[i] = "run failed: " + _first_line(res.error_msg)
        else:
            out[i] = [float(s) for s in res.run_secs]
    for res in built:
        if res.artifact_path:
            shutil.rmtree(os.path.dirname(res.artifact_path), ignore_errors=True)
    return out


# --------------------------------------------------------------------------- progress


class _Progress:
    """Trials done and the best time so far, on a tqdm bar (or silent)."""

    def __init__(self, total: int, names: list[str], enabled: bool):
        self.names = names
        self.trials = [0] * len(names)
        self.best = [math.inf] * len(names)
        self.lock = threading.Lock()
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc="tuning LRN", unit="trial", leave=True)
            except ImportError:  # tqdm is optional: log lines instead
                self.bar = None
        self.enabled = enabled

    def update(self, task: int, run_secs: list, *, search: bool = True):
        """Count ``len(run_secs)`` measurements (None: failed) of task ``task``."""
        with self.lock:
            for secs in run_secs:
                self.best[task] = min(self.best[task], _mean_seconds(secs))
            n = len(run_secs)
            if search:
                self.trials[task] += n
            text = f"{self.names[task]}: best {_fmt_us(self.best[task])}"
            if self.bar is not None:
                self.bar.update(n)
                self.bar.set_postfix_str(text, refresh=True)
            elif self.enabled:
                logger.info("%d trials, %s", sum(self.trials), text)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _fmt_us(seconds: float) -> str:
    return "-" if not math.isfinite(seconds) else f"{seconds * 1e6:.1f} us"


# --------------------------------------------------------------------------- cost model


def _cost_model(kind: str, num_cores: int):
    """``"auto"``: XGBoost where it imports, else random."""
    from tvm.s_tir import meta_schedule as ms

    if kind not in ("auto", "xgb", "random"):
        raise ValueError(f"cost_model must be 'auto', 'xgb' or 'random', got {kind!r}")
    if kind in ("auto", "xgb"):
        try:
            import xgboost  # noqa: F401

            return ms.CostModel.create("xgb", num_tuning_cores=num_cores), "xgb"
        except Exception as err:  # ImportError, or a broken/binary-incompatible xgboost
            if kind == "xgb":
                raise ImportError(f"cost_model='xgb' needs xgboost: {_first_line(err)}") from None
    return ms.CostModel.create("random"), "random"


# --------------------------------------------------------------------------- tune


@dataclasses.dataclass
class WorkloadResult:
    """What tuning found for one workload.

    Attributes
    ----------
    workload : Workload
    rule_seconds : float
        Run time of the strategy rule's schedule (``inf`` if it could not be measured).
    best_seconds : float
        Run time of the best record for this target in the database after the run.
    trials : int
        Search trials measured in this run (the rule's own measurement not counted).
    """

    workload: Workload
    rule_seconds: float = math.inf
    best_seconds: float = math.inf
    trials: int = 0

    @property
    def speedup(self) -> float:
        """``rule_seconds / best_seconds`` (nan where either is unknown)."""
        if math.isfinite(self.rule_seconds) and math.isfinite(self.best_seconds):
            return self.rule_seconds / self.best_seconds
        return math.nan


@dataclasses.dataclass
class TuneResult:
    """The outcome of :func:`tune`.

    Attributes
    ----------
    work_dir : str
        Folder of the JSON database (and MetaSchedule's logs).
    target : tvm.target.Target
        The target tuned for (with ``num-cores`` on llvm).
    workloads : list of WorkloadResult
    interrupted : bool
        True if Ctrl-C stopped the run; the database holds what was measured until then.
    seconds : float
        Wall time of the run.
    cost_model : str
        ``"xgb"`` or ``"random"``.
    shipped_to : str or None
        Where :func:`export_best` wrote the pruned database, if asked to.
    """

    work_dir: str
    target: Target
    workloads: list[WorkloadResult]
    interrupted: bool = False
    seconds: float = 0.0
    cost_model: str = ""
    shipped_to: str | None = None

    @property
    def database(self):
        """The run's JSON database, loaded from disk."""
        return load_database(self.work_dir)[0]

    def table(self) -> str:
        """A plain-text table: workload, trials, rule time, best time, speedup."""
        rows = [("workload", "trials", "rule", "best", "speedup")]
        for r in self.workloads:
            speedup = "-" if math.isnan(r.speedup) else f"{r.speedup:.2f}x"
            rows.append(
                (
                    r.workload.name,
                    str(r.trials),
                    _fmt_us(r.rule_seconds),
                    _fmt_us(r.best_seconds),
                    speedup,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in rows
        ]
        return "\n".join(lines)


class _SigintWatch:
    """Turns the first Ctrl-C into a request to stop after the current batch.

    Raising KeyboardInterrupt from the signal handler is not safe here: TVM checks for
    signals from inside C++ code (e.g. the evolutionary search), and an exception thrown
    there can end in ``std::terminate``. So the first SIGINT only sets a flag, which the
    tuning loop checks between steps; the previous handler is restored at once, so a
    second Ctrl-C interrupts immediately.
    """

    def __init__(self):
        self.seen = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        self.seen = True
        signal.signal(signal.SIGINT, self._previous)
        logger.warning("Ctrl-C: stopping after the current batch (Ctrl-C again to stop now)")

    def check(self):
        """Raise KeyboardInterrupt (from Python code) if Ctrl-C was pressed."""
        if self.seen:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def tune(
    model: tvm.IRModule | None = None,
    *,
    shapes: Sequence[Sequence[int]] | None = None,
    dtypes: str | Sequence[str] = "float32",
    params: LRNParams | None = None,
    size: int = 5,
    alpha: float = 1e-4,
    beta: float = 0.75,
    bias: float = 1.0,
    axis: int = 1,
    convention: str = "torch",
    target=None,
    work_dir: str | os.PathLike = "tvm_lrn_tuning",
    trials: int = 32,
    trials_per_iter: int | None = None,
    cost_model: str = "auto",
    rule=None,
    seed: int | None = None,
    progress: bool = True,
    ship_to: str | os.PathLike | None = None,
    builder_timeout: float = 300.0,
    runner_timeout: float = 60.0,
    number: int = 3,
    repeat: int = 3,
    min_repeat_ms: int = 50,
) -> TuneResult:
    """Tune LRN kernels with MetaSchedule under a trial budget; write a JSON database.

    Either ``model`` (a Relax module with ``R.tvm_lrn`` calls; its LRN PrimFuncs after
    legalization are tuned) or ``shapes`` with ``dtypes`` and the LRN parameters.

    The rule's schedule is measured and committed first, and is also a candidate of the
    search space next to MetaSchedule's generic space, so the best record is never
    slower than the rule. Failed candidates are recorded as failures and the run goes on.
    Ctrl-C stops the run after the batch being measured (a second Ctrl-C stops it at
    once): the database keeps every record committed so far, stays loadable, and
    ``tune`` returns with ``interrupted=True``.

    Parameters
    ----------
    model : tvm.IRModule, optional
        A Relax module.
    shapes : sequence of sequence of int, optional
        Input shapes (each dtype of ``dtypes`` is tuned for each shape).
    dtypes : str or sequence of str
        Input dtypes for ``shapes``.
    params : LRNParams, optional
        Canonical parameters for ``shapes``; else ``size``, ``alpha``, ``beta``, ``bias``,
        ``axis`` and ``convention`` as in :func:`tvm_lrn.spec.canonicalize`.
    target : None, str, dict or tvm.target.Target
        None is the host CPU. ``num-cores`` is added to llvm targets.
    work_dir : str or os.PathLike
        Database folder; an existing database there is extended (and its records for
        these workloads are not measured again).
    trials : int
        Search trials per workload (the rule's measurement comes on top).
    trials_per_iter : int, optional
        Candidates per build-and-run batch; ``min(trials, 8)`` by default.
    cost_model : {"auto", "xgb", "random"}
        ``"auto"`` uses XGBoost if it imports, else random.
    rule : optional
        Strategy rule name passed to the strategy (None: the target's default).
    seed : int, optional
        Search seed.
    progress : bool
        Show a progress bar (tqdm) with the trials done and the best time so far.
    ship_to : str or os.PathLike, optional
        Also merge the best record per workload into ``<ship_to>/<target key>/`` (the
        layout of the shipped ``schedules/``; see :func:`export_best`).
    builder_timeout, runner_timeout : float
        Seconds per candidate build and run.
    number, repeat, min_repeat_ms : int
        Measurement settings of MetaSchedule's runner.

    Returns
    -------
    TuneResult
    """
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.logging import get_loggers_from_work_dir
    from tvm.s_tir.meta_schedule.utils import fork_seed

    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}")
    if model is not None and shapes is not None:
        raise TypeError("pass either model or shapes, not both")
    start = time.time()
    target = _tuning_target(target)
    # Legalized under the target, as tvm.compile legalizes: GPUs get another safe form.
    with target:
        if model is not None:
            workloads = extract_workloads(model)
            if not workloads:
                raise ValueError("the model has no LRN (relax.tvm_lrn) to tune")
        elif shapes is not None:
            if params is None:
                params = canonicalize(size, alpha, beta, bias, axis, convention)
            workloads = lrn_workloads(shapes, dtypes, params)
        else:
            raise TypeError("tune needs a model or shapes")

    cores = int(target.attrs.get("num-cores", 0) or _physical_cores())
    work_dir = str(Path(work_dir).expanduser())
    os.makedirs(work_dir, exist_ok=True)
    _repair_json_database(work_dir)  # a previous run may have been killed mid-write
    per_iter = trials_per_iter or min(trials, 8)
    model_kind = "random"
    results = [WorkloadResult(w) for w in workloads]
    prog = _Progress(
        trials * len(workloads) + len(workloads), [w.name for w in workloads], progress
    )
    interrupted = False
    with _SigintWatch() as sigint:
        try:
            database = ms.database.JSONDatabase(work_dir=work_dir, allow_missing=True)
            builder = _make_builder(builder_timeout, cores)
            runner = _make_runner(runner_timeout, number, repeat, min_repeat_ms)
            cost, model_kind = _cost_model(cost_model, cores)
            sigint.check()
            _commit_rule_records(results, target, rule, builder, runner, database, prog)
            sigint.check()
            tasks = _make_tasks(
                workloads,
                target,
                rule,
                work_dir,
                seed,
                cores,
                get_loggers_from_work_dir,
                fork_seed,
                trials,
            )
            for index, ctx, spaces in tasks:
                sigint.check()
                _search(
                    ctx,
                    spaces,
                    index,
                    results[index].workload,
                    target,
                    trials,
                    per_iter,
                    builder,
                    runner,
                    database,
                    cost,
                    prog,
                    sigint,
                )
        except KeyboardInterrupt:
            interrupted = True
        except Exception:
            if not sigint.seen:
                prog.close()
                raise
            interrupted = True
        finally:
            prog.close()
    if interrupted:
        dropped = _repair_json_database(work_dir)
        logger.warning(
            "tuning interrupted: the database in %s keeps what was measured%s",
            work_dir,
            f" ({dropped} torn lines dropped)" if dropped else "",
        )
    for res, trials_done in zip(results, prog.trials, strict=True):
        res.trials = trials_done
    _fill_best(results, work_dir, target)
    shipped = None
    if ship_to is not None and not interrupted:
        shipped = export_best([work_dir], Path(ship_to) / target_key(target))
    return TuneResult(
        work_dir, target, results, interrupted, time.time() - start, model_kind, shipped
    )


def _commit_rule_records(results, target, rule, builder, runner, database, prog):
    """Measure the rule's schedule of each workload and commit it as a tuning record."""
    from tvm.s_tir import meta_schedule as ms

    mods, traces, owners = [], [], []
    for i, res in enumerate(results):
        try:
            sch = _rule_schedule(res.workload.func, target, rule)
        except Exception as err:
            logger.warning("%s: the strategy rule failed: %s", res.workload.name, _first_line(err))
            sch = None
        if sch is None:
            logger.warning(
                "%s: no traced rule schedule; the search starts without it", res.workload.name
            )
            prog.update(i, [None], search=False)
            continue
        # Measure exactly what the record will replay: the trace on the workload module.
        mods.append(_replay(res.workload.mod, sch.trace))
        traces.append(sch.trace)
        owners.append(i)
    try:
        measured = _measure(builder, runner, target, mods) if mods else []
    except Exception as err:  # e.g. the worker pool itself failed: search without them
        logger.warning("measuring the rule's schedules failed: %s", _first_line(err))
        measured = ["not measured"] * len(mods)
    for i, trace, secs in zip(owners, traces, measured, strict=True):
        res = results[i]
        if isinstance(secs, str):
            logger.warning("%s: the rule's schedule %s", res.workload.name, secs)
            prog.update(i, [None], search=False)
            continue
        res.rule_seconds = _mean_seconds(secs)
        mod = res.workload.mod
        workload = database.commit_workload(mod)
        database.commit_tuning_record(
            ms.database.TuningRecord(
                trace,
                workload,
                [tvm.tirx.FloatImm("float64", s) for s in secs],
                target,
                ms.arg_info.ArgInfo.from_prim_func(mod["main"]),
            )
        )
        prog.update(i, [secs], search=False)


def _rewrite_plane_tasks_postproc():
    """A MetaSchedule postprocessor that finishes the CPU rule's plane schedule
    (:func:`tvm_lrn.strategy.cpu.rewrite_plane_tasks`) in every measured candidate: the
    search replays traces, which do not hold that rewrite."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    from .strategy.cpu import rewrite_plane_tasks

    @derived_object
    class RewritePlaneTasks(ms.postproc.PyPostproc):
        def _initialize_with_tune_context(self, context) -> None:
            pass

        def apply(self, sch) -> bool:
            rewrite_plane_tasks(sch)
            return True

        def clone(self):
            return RewritePlaneTasks()

    return RewritePlaneTasks()


def _postprocs(target: Target):
    """MetaSchedule's postprocessors for ``target``: on CPUs without RewriteReductionBlock
    and with the plane schedule's rewrite (:func:`_rewrite_plane_tasks_postproc`) last.

    RewriteReductionBlock cannot decompose the reductions the plane schedule partitions
    (two blocks write one buffer), so it would reject every plane variant; lowering
    handles the reduction inits without it (LowerInitBlock), at no cost for LRN's short
    windows.
    """
    from tvm.s_tir import meta_schedule as ms

    if target.kind.name != "llvm":
        return "from-target"
    procs = ms.Postproc.create("llvm")
    procs = [p for p in procs if not isinstance(p, ms.postproc.RewriteReductionBlock)]
    return [*procs, _rewrite_plane_tasks_postproc()]


def _make_tasks(workloads, target, rule, work_dir, seed, cores, get_loggers, fork_seed, trials):
    """``(index, TuneContext, design spaces)`` per workload whose space can be generated."""
    from tvm.s_tir import meta_schedule as ms

    names = [w.name for w in workloads]
    population = max(64, min(512, 16 * trials))
    tasks = []
    for index, (work, log, rand) in enumerate(
        zip(workloads, get_loggers(work_dir, names), fork_seed(seed, n=len(workloads)), strict=True)
    ):
        space = ms.space_generator.SpaceGeneratorUnion(
            [_generic_space(target), _rule_space(target, rule), _cpu_variant_space(target)],
            postprocs=_postprocs(target),
        )
        strategy = ms.search_strategy.EvolutionarySearch(
            population_size=population, init_min_unmeasured=min(50, population)
        )
        try:
            ctx = ms.TuneContext(
                mod=work.mod,
                target=target,
                space_generator=space,
                search_strategy=strategy,
                task_name=work.name,
                rand_state=rand,
                num_threads=cores,
                logger=log,
            ).clone()
            spaces = ctx.generate_design_space()
        except Exception as err:  # one broken workload must not stop the others
            logger.warning(
                "%s: cannot generate a search space, skipped: %s", work.name, _first_line(err)
            )
            continue
        tasks.append((index, ctx, spaces))
    return tasks


def _search(
    ctx,
    spaces,
    index,
    work,
    target,
    trials,
    per_iter,
    builder,
    runner,
    database,
    cost,
    prog,
    sigint,
):
    """MetaSchedule's search loop for one task, run from Python.

    It does what the C++ TaskScheduler does per batch (candidates from the search
    strategy, build, run, commit every result to the database, update the cost model,
    feed the results back to the strategy), without the scheduler's FLOP estimate, which
    TVM 0.27 cannot compute for a compute holding ``Let`` expressions, and with errors
    kept to this task: a batch that fails ends this task's search, not the run.
    """
    from tvm.s_tir import meta_schedule as ms

    done = 0
    try:
        ctx.pre_tuning(
            max_trials=trials,
            num_trials_per_iter=per_iter,
            design_spaces=spaces,
            database=database,
            cost_model=cost,
        )
        workload = database.commit_workload(work.mod)
        while done < trials:
            candidates = ctx.generate_measure_candidates()
            if not candidates:
                break  # the space is exhausted
            mods = [c.sch.mod for c in candidates]
            measured = _measure(builder, runner, target, mods)
            results = []
            for cand, secs in zip(candidates, measured, strict=True):
                if isinstance(secs, str):
                    result = ms.runner.RunnerResult(None, secs)
                    run_secs = [_FAILED_SECONDS * 10]  # what MetaSchedule records for a failure
                else:
                    result = ms.runner.RunnerResult(secs, None)
                    run_secs = secs
                database.commit_tuning_record(
                    ms.database.TuningRecord(
                        cand.sch.trace,
                        workload,
                        [tvm.tirx.FloatImm("float64", t) for t in run_secs],
                        target,
                        cand.args_info,
                    )
                )
                results.append(result)
            try:
                cost.update(ctx, candidates, results)
            except Exception as err:  # the search goes on with what the model knew
                logger.warning("%s: cost model update failed: %s", work.name, _first_line(err))
            ctx.notify_runner_results(candidates, results)
            prog.update(index, [None if isinstance(m, str) else m for m in measured])
            done += len(candidates)
            sigint.check()
    except KeyboardInterrupt:
        raise
    except Exception as err:
        if sigint.seen:  # Ctrl-C raised inside a callback comes back as a TVM error
            raise KeyboardInterrupt from None
        logger.warning("%s: search stopped after %d trials: %s", work.name, done, _first_line(err))
    finally:
        with contextlib.suppress(Exception):
            ctx.post_tuning()


def _fill_best(results, work_dir, target):
    with contextlib.suppress(FileNotFoundError):
        db, _ = load_database(work_dir)
        for res in results:
            records = _best_records(db, res.workload.mod, target)
            if records:
                res.best_seconds = records[0][0]


class _CallableModule(types.ModuleType):
    """This module, callable as :func:`tune` (``tvm_lrn.tune(...)``)."""

    def __call__(self, *args, **kwargs) -> TuneResult:
        return tune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
