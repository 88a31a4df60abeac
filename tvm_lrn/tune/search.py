"""A tuning run on MetaSchedule's task scheduler (``ms.tune_tasks``).

Each workload becomes a ``TuneContext`` with the design space of
:func:`~tvm_lrn.tune.space.design_space`, weighted by its number of calls. Before the
search, each workload's baseline (:func:`~tvm_lrn.tune.space.baseline_schedules`: the
rule's schedule of an LRN, the default schedule of any other kernel) is measured with
the same builder and runner and committed as a record, so the best record of a run is
never slower than what the kernel gets untuned (as that run measured them).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path

import tvm
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.logging import get_loggers_from_work_dir
from tvm.s_tir.meta_schedule.utils import fork_seed

from ..errors import first_line
from ..remote import NO_SERVER
from .database import best_records, load_database, mean_seconds
from .progress import Progress, SigintWatch, TuneResult, WorkloadResult
from .records import export_best, repair_json_database
from .search_strategy import UntilExhausted
from .space import (
    baseline_schedules,
    cost_model,
    default_builder,
    default_runner,
    design_space,
    remote_builder,
    remote_runner,
)
from .targets import target_key

__all__ = ["SearchOptions", "measure", "run_search"]

logger = logging.getLogger("tvm_lrn")


@dataclasses.dataclass
class SearchOptions:
    """How :func:`tvm_lrn.tune.tune` searches; every field is a keyword of ``tune``.

    Attributes
    ----------
    trials_per_iter : int, optional
        Candidates per build-and-run batch; ``min(trials, 8)`` by default.
    cost_model : {"auto", "xgb", "random"}
        ``"auto"`` uses XGBoost if it imports, else random.
    rule : DLight ScheduleRule or callable, optional
        Instead of the strategy's rules (its schedule is measured first and searched).
    seed : int, optional
        Search seed.
    progress : bool
        Show a progress bar (tqdm) with the trials done and the best time so far.
    ship_to : str or os.PathLike, optional
        Also merge the best record per workload into ``<ship_to>/<target key>/``.
    builder, runner : MetaSchedule Builder and Runner, optional
        Where candidates are built and timed; by default local ones
        (:func:`~tvm_lrn.tune.space.default_builder`, :func:`~tvm_lrn.tune.space.default_runner`).
    device : tvm_lrn.remote.RemoteDevice, optional
        Measure on every server of this tracker key instead (MetaSchedule's RPCRunner),
        each candidate linked by the target's cross compiler (or ``cc``).
    cc : str, optional
        The C++ compiler that links candidates for ``device``.
    """

    trials_per_iter: int | None = None
    cost_model: str = "auto"
    rule: object = None
    seed: int | None = None
    progress: bool = True
    ship_to: str | os.PathLike | None = None
    builder: object = None
    runner: object = None
    device: object = None
    cc: str | None = None


def measure(builder, runner, target, mods: list) -> list:
    """Build and run ``mods`` once each: ``[run_secs or an error string]`` in order."""
    built = builder.build([ms.builder.BuilderInput(m, target) for m in mods])
    out: list = [None] * len(mods)
    inputs, where = [], []
    device = "cpu" if target.kind.name in ("llvm", "c") else target.kind.name
    for i, (mod, res) in enumerate(zip(mods, built, strict=True)):
        if res.error_msg:
            out[i] = "build failed: " + first_line(res.error_msg)
            continue
        args = ms.arg_info.ArgInfo.from_prim_func(mod["main"])
        inputs.append(ms.runner.RunnerInput(res.artifact_path, device, args))
        where.append(i)
    for i, future in zip(where, runner.run(inputs) if inputs else [], strict=True):
        res = future.result()
        out[i] = (
            ("run failed: " + first_line(res.error_msg))
            if res.error_msg
            else [float(s) for s in res.run_secs]
        )
    for res in built:
        if res.artifact_path:
            shutil.rmtree(os.path.dirname(res.artifact_path), ignore_errors=True)
    return out


def _commit_rule_records(results, target, opts, database, progress) -> None:
    """Measure each workload's baseline schedule and commit it as a tuning record."""
    owners, traces, mods = [], [], []
    for i, res in enumerate(results):
        try:
            ruled = baseline_schedules(res.workload, target, opts.rule)
        except Exception as err:  # noqa: BLE001  (the search goes on without it)
            logger.warning("%s: the baseline failed: %s", res.workload.name, first_line(err))
            ruled = []
        if not ruled:
            logger.warning("%s: no traced baseline; searching without it", res.workload.name)
            continue
        sch = tvm.s_tir.Schedule(res.workload.mod)  # what the record replays
        ruled[0].trace.apply_to_schedule(sch, remove_postproc=False)
        owners.append(i)
        traces.append(ruled[0].trace)
        mods.append(sch.mod)
    measured = measure(opts.builder, opts.runner, target, mods) if mods else []
    for i, trace, secs in zip(owners, traces, measured, strict=True):
        res = results[i]
        if isinstance(secs, str):
            logger.warning("%s: the baseline schedule %s", res.workload.name, secs)
            if NO_SERVER in secs:
                progress.sigint.lost = secs
            continue
        res.rule_seconds = mean_seconds(secs)
        mod = res.workload.mod
        database.commit_tuning_record(
            ms.database.TuningRecord(
                trace,
                database.commit_workload(mod),
                [tvm.tirx.FloatImm("float64", s) for s in secs],
                target,
                ms.arg_info.ArgInfo.from_prim_func(mod["main"]),
            )
        )
        progress.count(i, [secs])


def _tasks(results, target, opts, work_dir: str, trials: int) -> list:
    """``(index of the result, TuneContext)`` per workload whose design space can be
    generated."""
    names = [r.workload.name for r in results]
    loggers = get_loggers_from_work_dir(work_dir, names)
    tasks = []
    seeds = fork_seed(opts.seed, n=len(results))
    for index, (res, log, rand) in enumerate(zip(results, loggers, seeds, strict=True)):
        # An LRN candidate's long body makes each evolved population slow to replay and
        # score (minutes per iteration at 512): LRN tasks keep to 128.
        cap = 128 if res.workload.is_lrn else 512
        population = max(64, min(cap, 16 * trials))
        strategy = ms.search_strategy.EvolutionarySearch(
            population_size=population, init_min_unmeasured=min(50, population)
        )
        ctx = ms.TuneContext(
            mod=res.workload.mod,
            target=target,
            space_generator=design_space(target, opts.rule, lrn=res.workload.is_lrn),
            search_strategy=UntilExhausted(strategy) if res.workload.is_lrn else strategy,
            task_name=res.workload.name,
            rand_state=rand,
            num_threads=int(target.attrs.get("num-cores", 1)),
            logger=log,
        )
        try:
            ctx.generate_design_space()
        except Exception as err:  # noqa: BLE001  (one broken workload must not stop the rest)
            logger.warning("%s: no search space, skipped: %s", res.workload.name, first_line(err))
            continue
        tasks.append((index, ctx))
    return tasks


def _search(tasks, trials: int, opts, database, cost, progress, work_dir: str) -> None:
    """The search itself, by MetaSchedule's round-robin task scheduler."""
    progress.tasks = [index for index, _ in tasks]
    ms.tune_tasks(
        tasks=[ctx for _, ctx in tasks],
        task_weights=[float(progress.results[i].workload.weight) for i, _ in tasks],
        work_dir=work_dir,
        max_trials_global=trials * len(tasks),
        max_trials_per_task=trials,
        num_trials_per_iter=opts.trials_per_iter or min(trials, 8),
        builder=opts.builder,
        runner=opts.runner,
        database=database,
        cost_model=cost,
        measure_callbacks=[*ms.MeasureCallback.create("default"), progress],
        task_scheduler="round-robin",
    )


def _on_device(opts: SearchOptions, target, cores: int) -> SearchOptions:
    """``opts`` with a builder that links for ``opts.device`` and a runner on it."""
    from ..library import compiler_for

    if opts.builder is not None or opts.runner is not None:
        raise TypeError("give device or builder/runner, not both")
    builder = remote_builder(cores, compiler_for(target, opts.cc))
    return dataclasses.replace(opts, builder=builder, runner=remote_runner(opts.device))


def _stopped(work_dir: str, lost: str | None) -> None:
    """After a run stopped early: repair the database; raise if the device went away."""
    dropped = repair_json_database(work_dir)
    logger.warning(
        "tuning %s: the database in %s keeps what was measured%s",
        "stopped" if lost else "interrupted",
        work_dir,
        f" ({dropped} torn lines dropped)" if dropped else "",
    )
    if lost:
        raise ConnectionError(
            f"the device went away during tuning ({lost}); the database in "
            f"{work_dir} keeps every record measured before: tune again once the device "
            "is back to go on from there"
        )


def run_search(workloads, target, work_dir: str, trials: int, opts: SearchOptions) -> TuneResult:
    """Tune ``workloads`` for ``target`` into the JSON database in ``work_dir``.

    ``opts.builder`` and ``opts.runner`` default to local ones; Ctrl-C stops the run
    after the batch being measured (``interrupted=True`` in the result).
    """
    start = time.time()
    os.makedirs(work_dir, exist_ok=True)
    repair_json_database(work_dir)  # a previous run may have been killed mid-write
    cores = int(target.attrs.get("num-cores", 1))
    opts = (
        dataclasses.replace(
            opts,
            builder=opts.builder or default_builder(cores),
            runner=opts.runner or default_runner(),
        )
        if opts.device is None
        else _on_device(opts, target, cores)
    )
    cost, kind = cost_model(opts.cost_model, cores)
    results = [WorkloadResult(w) for w in workloads]
    interrupted = False
    with SigintWatch() as sigint:
        total = (trials + 1) * len(results)  # the rule's measurement, then the search
        progress = Progress(results, total, opts.progress, sigint)
        try:
            database = ms.database.JSONDatabase(work_dir=work_dir, allow_missing=True)
            _commit_rule_records(results, target, opts, database, progress)
            sigint.check()
            tasks = _tasks(results, target, opts, work_dir, trials)
            if tasks:
                _search(tasks, trials, opts, database, cost, progress, work_dir)
        except KeyboardInterrupt:
            interrupted = True
        except Exception:
            if not (sigint.seen or sigint.lost):
                raise
            interrupted = True  # Ctrl-C raised in a callback comes back as a TVM error
        finally:
            progress.close()
    if interrupted:
        _stopped(work_dir, sigint.lost)
    db, _ = load_database(work_dir)
    for res in results:
        records = best_records(db, res.workload.mod, target)
        res.best_seconds = records[0][0] if records else res.best_seconds
    shipped = None
    if opts.ship_to is not None and not interrupted:
        shipped = export_best([work_dir], Path(opts.ship_to) / target_key(target))
    return TuneResult(work_dir, target, results, interrupted, time.time() - start, kind, shipped)
