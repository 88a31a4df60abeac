"""Schedule databases: MetaSchedule's JSON folders, looked up the way LRN needs.

:class:`LRNDatabase` wraps a database folder (or any MetaSchedule Database) as a
``PyDatabase``: it answers TVM's own queries (``with db:`` and
``relax.transform.MetaScheduleApplyDatabase``, :func:`query_database`) with the fastest
record of the workload for the target's :func:`~tvm_lrn.tune.target_key`, or, where the
workload itself has none, with a record of the same LRN loop nest whose compute differs
only inside expressions (e.g. alpha rounded to float32 by a frontend): its trace replays
onto this compute, and the schedule primitives check that it still applies.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
from pathlib import Path

import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir import Schedule
from tvm.s_tir import meta_schedule as ms
from tvm.target import Target

from ..compute import compute_dtype
from ..errors import first_line
from ..target import resolve_target
from .targets import target_key
from .workloads import workload_mod, workload_of

__all__ = [
    "LRNDatabase",
    "RECORD_FILE",
    "SCHEDULES_ENV",
    "WORKLOAD_FILE",
    "best_records",
    "is_database_dir",
    "load_database",
    "mean_seconds",
    "query_database",
    "schedules_roots",
    "shipped_database",
]

logger = logging.getLogger("tvm_lrn")

#: Environment variable: extra folders (os.pathsep separated) searched before the
#: shipped ``schedules/`` for ``<target key>/`` databases.
SCHEDULES_ENV = "TVM_LRN_SCHEDULES"
#: The two files of MetaSchedule's JSON database.
WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
#: MetaSchedule records a failed build or run with a run time of at least this.
FAILED_SECONDS = 1e9


def schedules_roots() -> list[Path]:
    """Folders searched for ``<target key>/`` databases, first match wins.

    ``$TVM_LRN_SCHEDULES`` (if set), then ``tvm_lrn/schedules`` (the shipped databases in
    an installed wheel; a link to ``schedules/`` in a source checkout), then the
    checkout's ``schedules/``.
    """
    roots = [Path(p) for p in os.environ.get(SCHEDULES_ENV, "").split(os.pathsep) if p]
    package = Path(__file__).resolve().parent.parent
    roots += [package / "schedules", package.parent / "schedules"]
    out: list[Path] = []
    for root in roots:
        if root.resolve() not in [r.resolve() for r in out]:
            out.append(root)
    return out


def is_database_dir(path) -> bool:
    """Whether ``path`` holds the two files of a JSON database."""
    path = Path(path)
    return (path / WORKLOAD_FILE).is_file() and (path / RECORD_FILE).is_file()


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
        if is_database_dir(root / key):
            return str(root / key)
    return None


def _check_json_lines(path: str) -> None:
    """Raise ValueError naming ``path`` and the first line that is not JSON (TVM's loader
    says only "Cannot tokenize" from a worker thread, without the file)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(
                    f"{path}, line {number}: not a MetaSchedule JSON record ({err.msg}); "
                    "this is not a tuning database (tvm_lrn.tune writes one)"
                ) from None


@functools.lru_cache(maxsize=16)
def _json_database(path: str, _stamp: tuple):
    files = (os.path.join(path, WORKLOAD_FILE), os.path.join(path, RECORD_FILE))
    try:
        return ms.database.JSONDatabase(files[0], files[1], allow_missing=False)
    except Exception as err:  # noqa: BLE001 (TVM raises its own error types from C++)
        for file in files:  # read again only to say which file and line it refused
            _check_json_lines(file)
        raise ValueError(
            f"the tuning database in {path} does not load: {first_line(err)}"
        ) from None


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
    ValueError
        If they are not a database (the message names the file and the line).
    """
    if isinstance(database, ms.database.Database):
        return database, type(database).__name__
    if not isinstance(database, str | os.PathLike):
        raise TypeError(f"database must be a folder or a MetaSchedule Database, got {database!r}")
    path = Path(database).expanduser().resolve()
    if not is_database_dir(path):
        raise FileNotFoundError(
            f"no tuning database in {database} (expected {WORKLOAD_FILE} and {RECORD_FILE})"
        )
    files = (path / WORKLOAD_FILE, path / RECORD_FILE)
    # Reload when a file changed (a tuning run appends to them).
    stamp = tuple((f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    return _json_database(str(path), stamp), str(path)


def mean_seconds(run_secs) -> float:
    """The mean of a record's run times; ``inf`` for none or a failed measurement."""
    if not run_secs:
        return math.inf
    secs = [float(s) for s in run_secs]
    mean = sum(secs) / len(secs)
    return math.inf if mean >= FAILED_SECONDS else mean


def best_records(db, mod: tvm.IRModule, target: Target | None) -> list:
    """Valid records of ``mod`` (for ``target``'s key, if given), fastest first.

    Returns
    -------
    list of (float, TuningRecord)
        Mean run time in seconds and the record.
    """
    if not db.has_workload(mod):
        return []
    workload = db.commit_workload(mod)  # returns the stored workload, writes nothing
    key = target_key(target) if target is not None else None
    records = []
    for rec in db.get_top_k(workload, 1 << 20):
        seconds = mean_seconds(rec.run_secs)
        if not math.isfinite(seconds):
            continue
        if key is not None and (rec.target is None or target_key(rec.target) != key):
            continue
        records.append((seconds, rec))
    records.sort(key=lambda sr: sr[0])
    return records


def _signature(func: tvm.tirx.PrimFunc):
    """What decides an LRN kernel's loop nest, or None for other functions.

    Shape, dtype, window and axis, and what selects the compute's form (the compute
    dtype, and which of beta, alpha and bias are 0). The values of alpha, beta and bias
    only enter expressions.
    """
    try:
        work = workload_of(func)
    except (KeyError, ValueError, TypeError, AttributeError):  # not an LRN PrimFunc
        return None
    p = work.params
    form = (compute_dtype(work.dtype, p.beta), p.beta == 0, p.alpha == 0, p.bias == 0)
    return work.shape, work.dtype, p.lo, p.hi, p.axis, form


def _similar_records(db, mod: tvm.IRModule, target: Target) -> list:
    """Valid records for ``target`` whose workload computes the same LRN loop nest."""
    wanted = _signature(mod["main"])
    if wanted is None:
        return []
    key = target_key(target)
    found = []
    for rec in db.get_all_tuning_records():
        seconds = mean_seconds(rec.run_secs)
        if not math.isfinite(seconds) or rec.target is None:
            continue
        if _signature(rec.workload.mod["main"]) != wanted or target_key(rec.target) != key:
            continue
        found.append((seconds, rec))
    found.sort(key=lambda sr: sr[0])
    return found


@derived_object
class LRNDatabase(ms.database.PyDatabase):
    """A database, queried by target key and LRN loop nest (module docstring).

    Commits and listings go to the wrapped database unchanged.

    Parameters
    ----------
    database : str, os.PathLike or tvm.s_tir.meta_schedule.Database
        A JSON database folder, or a Database.
    """

    def __init__(self, database):
        super().__init__()
        self.inner, self.label = load_database(database)

    def has_workload(self, mod: tvm.IRModule) -> bool:
        return self.inner.has_workload(mod)

    def commit_workload(self, mod: tvm.IRModule):
        return self.inner.commit_workload(mod)

    def commit_tuning_record(self, record) -> None:
        self.inner.commit_tuning_record(record)

    def get_top_k(self, workload, top_k: int) -> list:
        return self.inner.get_top_k(workload, top_k)

    def get_all_tuning_records(self) -> list:
        return self.inner.get_all_tuning_records()

    def __len__(self) -> int:
        return len(self.inner)

    def best(self, mod: tvm.IRModule, target: Target):
        """``(record, schedule)``: the fastest record for ``mod`` on ``target`` that
        replays onto it, with the replayed schedule; ``(None, None)`` if none does."""
        exact = best_records(self.inner, mod, target)
        similar = [] if exact else _similar_records(self.inner, mod, target)
        for seconds, record in exact + similar:
            sch = Schedule(mod)
            try:
                record.trace.apply_to_schedule(sch, remove_postproc=False)
            except Exception as err:  # noqa: BLE001  (a record of another TVM or compute)
                logger.info(
                    "record in %s (%.3g s) does not apply: %s", self.label, seconds, first_line(err)
                )
                continue
            if not exact:
                logger.info("%s: record replayed from a workload with another compute", self.label)
            return record, sch
        return None, None

    def query_tuning_record(self, mod, target, workload_name=None):
        return self.best(mod, target)[0]

    def query_schedule(self, mod, target, workload_name=None):
        return self.best(mod, target)[1]

    def query_ir_module(self, mod, target, workload_name=None):
        sch = self.best(mod, target)[1]
        return None if sch is None else sch.mod


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
    db = database if isinstance(database, LRNDatabase) else LRNDatabase(database)
    _, sch = db.best(workload_mod(func), target)
    if sch is None:
        return None, f"no record in {db.label} for this workload on {target_key(target)}"
    return sch.mod["main"], f"database:{db.label}"
