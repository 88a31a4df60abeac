"""The interleaving scheduler: how the workers of one case take turns.

Per (shape, dtype): every worker prepares (compiles) in parallel; then, one at a time,
each runs once, checks its output against the exact reference and calibrates how many
calls make one repeat; then, in rounds, every contender in a rotated order runs a few
repeats while the others are stopped (SIGSTOP), so that a burst of load from other
processes hits every contender alike. Why the waiting workers are stopped and each turn
starts with a warm-up: ``benchmarks/README.md``, Method.

The ratios within a case are what the benchmark is for, and on a shared 2-core machine
they are reliable only when the contenders are timed in the same seconds: that is why
the workers stay alive side by side and take turns, rather than being timed one after
the other (pyperf's model, one benchmark's processes at a time).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
import time

from cases import Case, check_status
from contenders import CONTENDERS
from report import row, row_summary, timed_row

from tvm_lrn.timing import Timing, measure

__all__ = ["TimingPlan", "interleaved", "rotation", "run_case", "take_turn"]


@dataclasses.dataclass(frozen=True)
class TimingPlan:
    """How long and how often each contender of a case is timed.

    Attributes
    ----------
    rounds : int
        Interleaved rounds, at most.
    repeats : int
        Repeats per contender and round, at most.
    min_samples : int
        Fewest repeats per contender and case.
    budget_s : float
        Seconds of timing per contender and case (decides the repeats between
        ``min_samples`` and ``rounds * repeats``).
    slow_s : float
        A call at least this slow is timed once per repeat, and its calibration call
        (after the warm-up) counts as its first repeat.
    min_repeat_s : float
        Shortest repeat.
    warmup_s : float
        Untimed calls (at least two) before each worker's check and each of its turns.
    settle_s : float
        Pause between stopping the other workers and a worker's turn.
    """

    rounds: int
    repeats: int
    min_samples: int
    budget_s: float
    slow_s: float
    min_repeat_s: float
    warmup_s: float
    settle_s: float


def rotation(items: list, round_index: int) -> list:
    """``items`` in the order of round ``round_index``: rotated by one each round."""
    shift = round_index % len(items) if items else 0
    return items[shift:] + items[:shift]


def interleaved(calls: dict, rounds: int, repeats: int, clock=None) -> dict:
    """The same interleaving within one process (``gpu.py``): ``{key: [seconds per
    call]}`` for ``calls = {key: (fn, calls per repeat)}``, in ``rounds`` rounds whose
    order rotates, ``repeats`` repeats per key and round, timed by ``clock``."""
    samples = {k: [] for k in calls}
    for r in range(rounds):
        for key in rotation(list(calls), r):
            fn, number = calls[key]
            timing = measure(fn, repeat=repeats, number=number, warmup=0, clock=clock)
            samples[key] += timing.seconds
    return samples


def take_turn(worker, workers, settle_s: float) -> None:
    """Stop every other worker (SIGSTOP), let ``worker`` run, then pause ``settle_s``.

    An idle worker is not quiet (TVM's pool threads spin after each parallel call);
    stopped, the others use no CPU at all, whatever their runtimes do, and each resumes
    on its own turn (the measurements: ``benchmarks/README.md``, Method).
    """
    for other in workers:
        if other is not worker:
            other.pause()
    worker.resume()
    time.sleep(settle_s)


class _CaseRun:
    """The state of one case while its workers take turns."""

    def __init__(self, workers, case: Case, plan: TimingPlan, log):
        self.workers, self.case, self.plan, self.log = workers, case, plan, log
        self.rows: dict[str, dict] = {}
        self.info: dict[str, dict] = {}

    def fail(self, worker, reason: str, check: str = "error") -> None:
        self.rows[worker.key] = row(worker.key, self.case, check=check, note=reason)

    def answer(self, worker, reply) -> dict | None:
        """``reply`` (a dict, or the exception of a worker that died or timed out) if
        it is a success; else None, and the worker's row says why."""
        if isinstance(reply, Exception):
            self.fail(worker, str(reply))
        elif reply.get("skip"):
            self.fail(worker, reply["reason"], "skip")
        elif not reply["ok"]:
            self.fail(worker, reply["error"])
        else:
            return reply
        return None

    def prepare(self, x_path, lrn: dict) -> list:
        """Every worker prepares in parallel (compiles are not timed)."""
        for w in self.workers:
            w.send(cmd="prepare", input=str(x_path), lrn=lrn)
        prepared = []
        for w in self.workers:
            try:
                rep = self.answer(w, w.recv())
            except (TimeoutError, RuntimeError) as err:
                rep = self.answer(w, err)
            if rep is None:
                continue
            prepared.append((w, rep))
            for name in ("torch_threads", "tvm_threads"):
                if name in rep and rep[name] != self.case.threads:
                    self.log(f"  WARNING {w.key}: {name} = {rep[name]}, wanted {self.case.threads}")
        return prepared

    def calibrate(self, prepared: list, x_path, ref_path) -> list:
        """One worker at a time checks its output and calibrates; returns the live ones."""
        live = []
        for w, prep in prepared:
            take_turn(w, self.workers, self.plan.settle_s)
            op = CONTENDERS[w.key].op
            try:
                rep = w.request(
                    cmd="calibrate",
                    reference=str(x_path if op == "copy" else ref_path),
                    min_repeat_s=self.plan.min_repeat_s,
                    warmup_s=self.plan.warmup_s,
                )
            except (TimeoutError, RuntimeError) as err:
                rep = err
            rep = self.answer(w, rep)
            if rep is None:
                continue
            check = check_status(op, rep["max_rel_err"], self.case.dtype)
            self.info[w.key] = dict(prep, **rep, check=check)
            live.append(w)
        return live

    def repeats_wanted(self, key: str) -> tuple[int, list[float]]:
        """How many repeats ``key`` gets, and the samples it starts with."""
        plan, inf = self.plan, self.info[key]
        seconds_per_repeat = inf["call_s"] * inf["number"]
        wanted = min(
            plan.rounds * plan.repeats,
            max(plan.min_samples, plan.budget_s // seconds_per_repeat),
        )
        # a slow call (one per repeat) was timed after a warm-up call: keep that sample
        slow = inf["number"] == 1 and inf["call_s"] >= plan.slow_s
        return int(wanted), [inf["call_s"]] if slow else []

    def time_rounds(self, live: list) -> tuple[dict, dict]:
        """The interleaved rounds: ``({key: samples}, {key: paired ratios})``."""
        rounds, wanted, samples, paired = self.plan.rounds, {}, {}, {}
        for w in live:
            wanted[w.key], samples[w.key] = self.repeats_wanted(w.key)
        for r in range(rounds):
            for w in rotation(live, r):
                if w.key not in samples or wanted[w.key] <= len(samples[w.key]):
                    continue
                need = wanted[w.key] - len(samples[w.key])
                take_turn(w, self.workers, self.plan.settle_s)
                try:
                    rep = w.request(
                        cmd="time",
                        repeats=math.ceil(need / (rounds - r)),
                        number=self.info[w.key]["number"],
                        warmup_s=self.plan.warmup_s,
                    )
                except (TimeoutError, RuntimeError) as err:
                    rep = err
                if self.answer(w, rep) is None:
                    samples.pop(w.key)
                    continue
                samples[w.key].extend(rep["samples"])
                if rep["paired"]:
                    ratios = zip(rep["paired"], rep["samples"], strict=True)
                    paired.setdefault(w.key, []).extend(p / own for p, own in ratios)
        return samples, paired

    def timed_rows(self, samples: dict, paired: dict) -> None:
        for key, secs in samples.items():
            inf = self.info[key]
            ratio = f"{statistics.median(paired[key]):.4g}" if paired.get(key) else ""
            timing = Timing(tuple(secs), inf["number"])
            self.rows[key] = timed_row(key, self.case, timing, inf, ratio)

    def release(self) -> None:
        for w in self.workers:
            w.resume()  # paused by the last turn
            if w.proc.poll() is None:
                try:
                    w.request(cmd="release")
                except (TimeoutError, RuntimeError):
                    pass


def run_case(workers, case: Case, files: tuple, lrn: dict, plan: TimingPlan, log) -> list[dict]:
    """Prepare, check and time every worker on one case; return its CSV rows.

    ``files`` are the input's and the reference's .npy paths, ``lrn`` the fields of the
    :class:`contender.LRNArgs` the workers build.
    """
    x_path, ref_path = files
    run = _CaseRun(workers, case, plan, log)
    t_start = time.perf_counter()
    prepared = run.prepare(x_path, lrn)
    t_prepared = time.perf_counter()
    live = run.calibrate(prepared, x_path, ref_path)
    t_checked = time.perf_counter()
    if live:
        run.timed_rows(*run.time_rounds(live))
    run.release()
    log(
        f"   prepare {t_prepared - t_start:.1f} s, check {t_checked - t_prepared:.1f} s, "
        f"timing {time.perf_counter() - t_checked:.1f} s"
    )
    out = [run.rows[w.key] for w in workers if w.key in run.rows]
    for r in out:
        log(row_summary(r))
    return out
