"""The CPU suite: every (threads, shape, dtype) case, each run by :mod:`scheduler`."""

from __future__ import annotations

import dataclasses
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from cases import Case, case_input, shape_str
from contender import LRNArgs
from scheduler import TimingPlan, run_case
from worker import Worker

__all__ = ["Suite", "host_target_name", "make_case_files", "run_suite"]


@dataclasses.dataclass(frozen=True)
class Suite:
    """What the suite runs.

    Attributes
    ----------
    contenders : list of str
        Keys of :data:`contenders.CONTENDERS`.
    threads : list of int
        Thread counts, one set of workers each.
    shapes : list of tuple of int
    dtypes : list of str
    lrn : contender.LRNArgs
    seed : int
        Of the random inputs.
    timeout : float
        Seconds a worker may take to answer.
    log_dir : str, optional
        Where the workers' logs stay (a temporary folder by default).
    """

    contenders: list[str]
    threads: list[int]
    shapes: list[tuple[int, ...]]
    dtypes: list[str]
    lrn: LRNArgs
    seed: int = 0
    timeout: float = 900.0
    log_dir: str | None = None


def host_target_name() -> str:
    """``cpu:<mcpu>`` of this host, the ``target`` column of the CPU rows."""
    try:
        from tvm_lrn.target import host_target

        return f"cpu:{host_target().attrs.get('mcpu', 'generic')}"
    except Exception:  # noqa: BLE001
        return f"cpu:{platform.machine()}"


def make_case_files(shape, dtype: str, lrn: LRNArgs, work: Path, seed: int):
    """Write the input and its exact reference (float64) for one case; reuse them if there."""
    name = f"{shape_str(shape)}_{dtype}"
    x_path, ref_path = work / f"x_{name}.npy", work / f"ref_{name}.npy"
    if not (x_path.exists() and ref_path.exists()):
        x, ref = case_input(shape, dtype, lrn, seed)
        np.save(x_path, x)
        np.save(ref_path, ref)
    return x_path, ref_path


def _start(key: str, threads: int, log_dir: Path, timeout: float) -> Worker:
    """A worker that said it is ready (raises TimeoutError or RuntimeError if not)."""
    return _ready(Worker(key, threads, "cpu", log_dir, timeout), timeout)


def _ready(worker: Worker, timeout: float) -> Worker:
    try:
        worker.info = worker.recv(timeout=timeout)
    except (TimeoutError, RuntimeError):
        worker.close()
        raise
    return worker


def _start_all(suite: Suite, threads: int, log_dir: Path, log) -> list[Worker]:
    """The workers of every contender, started together (their imports overlap)."""
    started = [Worker(k, threads, "cpu", log_dir, suite.timeout) for k in suite.contenders]
    workers = []
    for w in started:
        try:
            workers.append(_ready(w, suite.timeout))
        except (TimeoutError, RuntimeError) as err:
            log(f"  {w.key}: failed to start: {err}")
    return workers


def _restart_dead(workers: list[Worker], log_dir: Path, timeout: float, log) -> None:
    """A worker that died is restarted for the next case."""
    for i, w in enumerate(workers):
        if w.proc.poll() is not None:
            log(f"  restarting {w.key} ({w.tail(1)})")
            w.close()
            workers[i] = _start(w.key, w.threads, log_dir, timeout)


def run_suite(suite: Suite, plan: TimingPlan, log=print) -> list[dict]:
    """Run every (threads, shape, dtype) case; return the CSV rows."""
    target = host_target_name()
    lrn = dataclasses.asdict(suite.lrn)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="tvm_lrn_bench_") as tmp:
        work = Path(tmp)
        log_dir = Path(suite.log_dir) if suite.log_dir else work
        log_dir.mkdir(parents=True, exist_ok=True)
        for threads in suite.threads:
            log(f"== {threads} thread(s): starting {len(suite.contenders)} workers")
            workers = _start_all(suite, threads, log_dir, log)
            try:
                for shape in suite.shapes:
                    for dtype in suite.dtypes:
                        t0 = time.perf_counter()
                        files = make_case_files(shape, dtype, suite.lrn, work, suite.seed)
                        log(f"-- {shape_str(shape)} {dtype}, {threads} thread(s)")
                        case = Case(tuple(shape), dtype, target, threads)
                        rows += run_case(workers, case, files, lrn, plan, log)
                        log(f"   ({time.perf_counter() - t0:.1f} s)")
                        _restart_dead(workers, log_dir, suite.timeout, log)
            finally:
                for w in workers:
                    w.close()
    return rows
