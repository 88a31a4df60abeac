"""What a tuning run reports: its results, its progress bar and its Ctrl-C handling."""

from __future__ import annotations

import dataclasses
import logging
import math
import signal
import threading

from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms
from tvm.target import Target

from ..remote import NO_SERVER
from .database import load_database, mean_seconds
from .workloads import Workload

__all__ = ["Progress", "SigintWatch", "TuneResult", "WorkloadResult"]

logger = logging.getLogger("tvm_lrn")


def _fmt_us(seconds: float) -> str:
    return "-" if not math.isfinite(seconds) else f"{seconds * 1e6:.1f} us"


@dataclasses.dataclass
class WorkloadResult:
    """What tuning found for one workload.

    Attributes
    ----------
    workload : Workload
    rule_seconds : float
        Run time of the baseline: the strategy rule's schedule of an LRN, the default
        schedule of another kernel (``inf`` if it could not be measured).
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
    """The outcome of :func:`tvm_lrn.tune.tune`.

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
        Where :func:`~tvm_lrn.tune.export_best` wrote the pruned database, if asked to.
    """

    work_dir: str
    target: Target
    workloads: list[WorkloadResult]
    interrupted: bool = False
    seconds: float = 0.0
    cost_model: str = ""
    shipped_to: str | None = None

    @property
    def latency(self) -> float:
        """Estimated run time of the workloads as the model calls them: the sum of each
        one's best time times its number of calls (``inf`` if one has none)."""
        return sum(r.workload.weight * r.best_seconds for r in self.workloads)

    @property
    def database(self):
        """The run's JSON database, loaded from disk."""
        return load_database(self.work_dir)[0]

    def table(self) -> str:
        """A plain-text table: workload, trials, rule time, best time, speedup."""
        rows = [("workload", "trials", "baseline", "best", "speedup")]
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
        return "\n".join(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in rows
        )


class SigintWatch:
    """Turns the first Ctrl-C into a request to stop after the current batch.

    The first SIGINT only sets a flag (an exception raised by a signal handler inside
    TVM's C++ search could end in ``std::terminate``); :class:`Progress` checks it after
    each measured batch and stops the task scheduler by raising from its callback, which
    TVM propagates as an ordinary error. The previous handler is restored at once, so a
    second Ctrl-C interrupts immediately.
    """

    def __init__(self):
        self.seen = False
        self.lost: str | None = None  # why the device measuring went away, if it did
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
        """Raise KeyboardInterrupt (from Python code) if Ctrl-C was pressed or the
        device was lost."""
        if self.seen or self.lost:
            raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


@derived_object
class Progress(ms.measure_callback.PyMeasureCallback):
    """A measure callback: trials and best time per task on a tqdm bar (or log lines),
    and the stop after the batch in which Ctrl-C was pressed (:class:`SigintWatch`).

    Parameters
    ----------
    results : list of WorkloadResult
        One per workload; their ``trials`` are counted here. :attr:`tasks` maps the
        task scheduler's task ids to indices of ``results`` (by default the same).
    total : int
        Trials of the whole run, for the bar.
    enabled : bool
        Draw the bar (else only a log line per batch at INFO level).
    sigint : SigintWatch
    """

    def __init__(self, results, total: int, enabled: bool, sigint: SigintWatch):
        super().__init__()
        self.results, self.sigint, self.enabled = results, sigint, enabled
        self.best = [math.inf] * len(results)
        self.tasks = list(range(len(results)))
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc="tuning", unit="trial", leave=True)

    def count(self, index: int, run_secs: list) -> None:
        """Count the measurements ``run_secs`` (None: failed) of workload ``index``."""
        for secs in run_secs:
            self.best[index] = min(self.best[index], mean_seconds(secs))
        text = f"{self.results[index].workload.name}: best {_fmt_us(self.best[index])}"
        if len(self.results) > 1:
            text += f"; all kernels {_fmt_us(self.latency())}"
        if self.bar is not None:
            self.bar.update(len(run_secs))
            self.bar.set_postfix_str(text, refresh=True)
        elif self.enabled:
            logger.info("%s", text)

    def latency(self) -> float:
        """The sum of each workload's best time so far times its number of calls: the
        model's estimated latency when the workloads are a model's kernels."""
        pairs = zip(self.results, self.best, strict=True)
        return sum(r.workload.weight * best for r, best in pairs)

    def apply(self, task_scheduler, task_id, measure_candidates, builder_results, runner_results):
        """Called by the task scheduler after each measured batch."""
        secs = [None if r.error_msg else r.run_secs for r in runner_results]
        lost = [r.error_msg for r in runner_results if r.error_msg and NO_SERVER in r.error_msg]
        if lost:  # every later candidate would fail the same way
            self.sigint.lost = next(t for t in lost[0].splitlines() if NO_SERVER in t).strip()
        index = self.tasks[task_id]
        self.results[index].trials += len(secs)
        self.count(index, secs)
        self.sigint.check()

    def close(self) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()
