"""The design space of a tuning task, and how its candidates are built and run.

An LRN task's space is the union of MetaSchedule's generic space for the target and
the strategy rule's own space: the rule's schedule and its tunable variants
(``apply(func, target, tunable=True)`` of a DLight rule, as DLight's rules offer them).
Any other kernel of a model gets MetaSchedule's default space for the target. Each
task's baseline (:func:`baseline_schedules`) is measured before the search: the rule's
schedule for LRN, the default schedule (:mod:`tvm_lrn.defaults`) for the others.
Candidates are built with :data:`tvm_lrn.lower.TIR_PIPELINE`, so a measured trace is
the kernel that :func:`tvm_lrn.compile` builds from the same record.
"""

from __future__ import annotations

import functools
import logging
import os

import tvm
from tvm.s_tir import Schedule
from tvm.s_tir import dlight as dl
from tvm.s_tir import meta_schedule as ms
from tvm.target import Target

from ..defaults import default_rules as default_kernel_rules
from ..errors import first_line
from ..lower import TIR_PIPELINE
from ..strategy import apply_rule, default_rules

__all__ = [
    "baseline_schedules",
    "cost_model",
    "default_builder",
    "default_runner",
    "design_space",
    "export_candidate",
    "remote_builder",
    "remote_runner",
    "rule_schedules",
]

logger = logging.getLogger("tvm_lrn")

#: Copies of the rule's variants in the union: the search draws its initial candidates
#: uniformly over design spaces, and the generic space brings about ten.
VARIANT_WEIGHT = 8


def rule_schedules(func: tvm.tirx.PrimFunc, target: Target, rule=None) -> list[Schedule]:
    """The rule's schedule of ``func`` first, then its tunable variants (if any).

    Parameters
    ----------
    func : tvm.tirx.PrimFunc
    target : tvm.target.Target
    rule : DLight ScheduleRule or callable, optional
        Instead of the strategy's default rules (a callable has no variants).

    Returns
    -------
    list of tvm.s_tir.Schedule
        Empty where no rule applies or the rule gives no Schedule (a PrimFunc has no
        trace to record).
    """
    for candidate in [rule] if rule is not None else default_rules():
        if isinstance(candidate, dl.ScheduleRule) and candidate.is_target_available(target):
            result = candidate.apply(func, target, True)
        else:
            result = apply_rule(candidate, func, target)
        result = list(result) if isinstance(result, list | tuple) else [result]
        schedules = [s for s in result if isinstance(s, Schedule)]
        if schedules:
            return schedules
    return []


def baseline_schedules(workload, target: Target, rule=None) -> list[Schedule]:
    """What a workload gets without tuning, as traced schedules (empty if it has none):
    :func:`rule_schedules` for an LRN, else the first default rule's schedule."""
    if workload.is_lrn:
        return rule_schedules(workload.func, target, rule)
    for candidate in default_kernel_rules(target):
        result = candidate.apply(workload.func, target, False)
        if isinstance(result, Schedule):
            return [result]
    return []


def _rule_space(target: Target, rule):
    """A ScheduleFn space of the rule's schedule and variants, replayed as traces."""

    def schedule_fn(sch):
        try:
            ruled = rule_schedules(sch.mod["main"], target, rule)
        except Exception as err:  # noqa: BLE001  (a broken rule only removes its candidates)
            logger.warning("strategy rule failed in the tuning space: %s", first_line(err))
            return []
        spaces = []
        for i, schedule in enumerate(ruled):
            for _ in range(1 if i == 0 else VARIANT_WEIGHT // max(1, len(ruled) - 1)):
                copy = sch.copy()
                schedule.trace.apply_to_schedule(copy, remove_postproc=True)
                spaces.append(copy)
        return spaces

    return ms.space_generator.ScheduleFn(schedule_fn)


def _generic_space(target: Target):
    """MetaSchedule's own space for ``target``, with CPU unrolling capped at 64 steps
    (the LRN body is long: unrolled 512 times, one candidate kept LLVM busy for
    minutes, and it was never the fastest)."""
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


def _postprocs(target: Target):
    """MetaSchedule's postprocessors for ``target``, on CPUs without
    RewriteReductionBlock: it cannot decompose the reductions the plane schedule
    partitions (two blocks write one buffer), so it would reject every plane variant;
    lowering handles the reduction inits without it (LowerInitBlock)."""
    if target.kind.name != "llvm":
        return "from-target"
    procs = ms.Postproc.create("llvm")
    return [p for p in procs if not isinstance(p, ms.postproc.RewriteReductionBlock)]


def design_space(target: Target, rule=None, *, lrn: bool = True):
    """For an LRN (``lrn=True``), the union of MetaSchedule's generic space and the
    rule's space for ``target``; for another kernel, MetaSchedule's default space.

    Returns
    -------
    tvm.s_tir.meta_schedule.space_generator.SpaceGenerator
    """
    if not lrn:
        return ms.space_generator.PostOrderApply()  # MetaSchedule's defaults for target
    return ms.space_generator.SpaceGeneratorUnion(
        [_generic_space(target), _rule_space(target, rule)], postprocs=_postprocs(target)
    )


def build_candidate(mod, target, _params):
    """Builder worker: compile one candidate with the project's TIR pipeline.

    Unlike MetaSchedule's default it does not import ``tvm.s_tir.tensor_intrin`` (36 s
    per worker on a small VM): LRN uses no tensor intrinsics.
    """
    return tvm.tirx.build(mod, target=target, pipeline=TIR_PIPELINE)


def default_builder(max_workers: int, timeout_sec: float = 300.0):
    """MetaSchedule's LocalBuilder with :func:`build_candidate`."""
    return ms.builder.LocalBuilder(
        max_workers=max_workers, timeout_sec=timeout_sec, f_build=build_candidate
    )


def export_candidate(mod, cc: str) -> str:
    """Builder worker: link a built candidate into a shared library for another CPU with
    the C++ compiler ``cc``, for an RPC server to load (MetaSchedule's default writes a
    tar that the device would have to link itself)."""
    import tempfile

    path = os.path.join(tempfile.mkdtemp(prefix="tvm-lrn-candidate-"), "candidate.so")
    mod.export_library(path, fcompile=tvm.support.cc.cross_compiler(cc))
    return path


def remote_builder(max_workers: int, cc: str | None, timeout_sec: float = 300.0):
    """:func:`default_builder` that links with the cross compiler ``cc`` (None: this
    machine's compiler)."""
    return ms.builder.LocalBuilder(
        max_workers=max_workers,
        timeout_sec=timeout_sec,
        f_build=build_candidate,
        f_export=functools.partial(export_candidate, cc=cc or "g++"),
    )


def remote_runner(device, number: int = 3, repeat: int = 3):
    """MetaSchedule's RPCRunner on every server of ``device`` (a
    :class:`tvm_lrn.remote.RemoteDevice`): one measurement per server at a time, so that
    a fleet under one key shares the candidates."""
    config = ms.runner.EvaluatorConfig(
        number=number, repeat=repeat, min_repeat_ms=50, enable_cpu_cache_flush=False
    )
    return ms.runner.RPCRunner(
        device.rpc_config(),
        evaluator_config=config,
        f_create_session=type(device).connect_config,
        max_workers=max(1, device.servers()),
    )


def default_runner(timeout_sec: float = 60.0, number: int = 3, repeat: int = 3):
    """MetaSchedule's LocalRunner, 50 ms per repeat, no cache flush."""
    config = ms.runner.EvaluatorConfig(
        number=number, repeat=repeat, min_repeat_ms=50, enable_cpu_cache_flush=False
    )
    return ms.runner.LocalRunner(timeout_sec=timeout_sec, evaluator_config=config)


def cost_model(kind: str, num_cores: int):
    """``(cost model, name)``: ``"auto"`` is XGBoost where it imports, else random.

    Raises
    ------
    ValueError
        For another ``kind`` than ``"auto"``, ``"xgb"`` or ``"random"``.
    ImportError
        For ``"xgb"`` without a working xgboost.
    """
    if kind not in ("auto", "xgb", "random"):
        raise ValueError(f"cost_model must be 'auto', 'xgb' or 'random', got {kind!r}")
    if kind in ("auto", "xgb"):
        try:
            import xgboost  # noqa: F401

            return ms.CostModel.create("xgb", num_tuning_cores=num_cores), "xgb"
        except Exception as err:  # noqa: BLE001  (ImportError, or a broken xgboost)
            if kind == "xgb":
                raise ImportError(f"cost_model='xgb' needs xgboost: {first_line(err)}") from None
    return ms.CostModel.create("random"), "random"
