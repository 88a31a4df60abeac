"""Keeping database folders sound and small: torn-line repair, export of the best records."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from tvm.s_tir import meta_schedule as ms

from .database import RECORD_FILE, WORKLOAD_FILE, is_database_dir, load_database, mean_seconds
from .targets import target_key

__all__ = ["export_best", "repair_json_database"]


def repair_json_database(work_dir: str | os.PathLike) -> int:
    """Drop torn lines (a run killed mid-write) from a JSON database folder.

    Parameters
    ----------
    work_dir : str or os.PathLike

    Returns
    -------
    int
        How many lines were dropped.
    """
    dropped = 0
    for name in (WORKLOAD_FILE, RECORD_FILE):
        path = Path(work_dir) / name
        if not path.is_file():
            continue
        good = []
        for line in path.read_text().splitlines(keepends=True):
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


def _valid_records(db):
    for rec in db.get_all_tuning_records():
        if rec.target is not None and math.isfinite(mean_seconds(rec.run_secs)):
            yield rec


def export_best(sources: Sequence, dest: str | os.PathLike) -> str:
    """Merge databases, keeping the fastest valid record per workload and target key.

    Used to make the shipped ``schedules/<target key>/`` folders small: an existing
    database in ``dest`` is merged in (its records compete too), and MetaSchedule's own
    pruning (``Database.dump_pruned``) keeps the best record of each workload, once per
    target key.

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
    dest = Path(dest)
    dbs = [load_database(s)[0] for s in sources]
    if is_database_dir(dest):
        dbs.append(load_database(dest)[0])
    by_key: dict[str, ms.database.MemoryDatabase] = {}
    for db in dbs:
        for rec in _valid_records(db):
            merged = by_key.setdefault(target_key(rec.target), ms.database.MemoryDatabase())
            workload = merged.commit_workload(rec.workload.mod)
            merged.commit_tuning_record(
                ms.database.TuningRecord(
                    rec.trace, workload, rec.run_secs, rec.target, rec.args_info
                )
            )
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest) as tmp:
        out = ms.database.JSONDatabase(work_dir=tmp, allow_missing=True)
        for key in sorted(by_key):
            by_key[key].dump_pruned(out)
        del out
        for name in (WORKLOAD_FILE, RECORD_FILE):
            os.replace(os.path.join(tmp, name), dest / name)
    return str(dest)
