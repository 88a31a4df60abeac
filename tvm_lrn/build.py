"""``tvm_lrn.compile``: a Relax module holding ``R.tvm_lrn`` -> a runnable model.

The Relax pipeline is TVM's own (the pass lists of the target's backend,
``tvm.relax.backend.<kind>.pipeline``) with the project's step spliced in after
legalization: every LRN PrimFunc (recognized by its ``tvm_lrn.*`` attributes) gets its
schedule from, in this order,

1. the user's ``rule``, if one is given;
2. a tuned MetaSchedule database (``database=``, else the one shipped for the target),
   through :func:`tvm_lrn.tune.query_database`, if it holds the workload;
3. the per-target strategy (:func:`tvm_lrn.strategy.apply_rules`).

Scheduled functions are marked ``tirx.is_scheduled``. The rest of the model is fused
as TVM's backend fuses it; each kernel that has a record in the database gets it
(:func:`apply_database`), and the others get the default schedules: DLight's GPU rules
on GPU targets, :func:`tvm_lrn.defaults.default_schedules` on CPUs. Which schedule each
LRN PrimFunc got is kept in :attr:`tvm_lrn.model.Model.schedule_sources`, which other
kernels had a record in :attr:`~tvm_lrn.model.Model.tuned_kernels`; both are logged on
the ``"tvm_lrn"`` logger. The TIR is built with the project's TIR pipeline
(:data:`tvm_lrn.lower.TIR_PIPELINE`). Functions whose result one kernel computes get a
destination-passing twin for ``out=`` (:mod:`tvm_lrn.destination`).

The Relax pipeline is also registered as ``"tvm_lrn"``, so
``tvm.compile(mod, target, relax_pipeline="tvm_lrn", tir_pipeline="tvm_lrn")`` builds
the same model.
"""

from __future__ import annotations

import logging

import tvm
from tvm import relax
from tvm.relax import backend
from tvm.target import Target

from . import tune
from .defaults import default_schedules
from .destination import destination_variants
from .intrin import check_target
from .lower import TIR_PIPELINE
from .model import Model
from .op import OP_PATTERN_OPAQUE, is_lrn_primfunc
from .signature import signatures
from .strategy import apply_rules, check_rule
from .target import resolve_target, warn_if_generic_cpu

__all__ = [
    "apply_database",
    "compile",
    "fused_module",
    "lrn_pipeline",
    "schedule_lrn",
    "schedule_lrn_functions",
]

logger = logging.getLogger("tvm_lrn")


# --------------------------------------------------------------------------- scheduling


def _is_gpu(target: Target) -> bool:
    return "gpu" in target.keys


def _current_target(what: str) -> Target:
    """The target a pass runs under (``tvm.compile`` runs the pipeline under it)."""
    target = Target.current(allow_none=True)
    if target is None:
        raise ValueError(f"{what} needs a target: run it under `with target:`")
    return target


def _database_for(target: Target, database):
    """``database``, else the one shipped for ``target`` (None if there is none)."""
    return database if database is not None else tune.shipped_database(target)


def _query_database(func, target, database):
    """``tune.query_database`` on ``database`` or the shipped one; else ``(None, "")``."""
    database = _database_for(target, database)
    if database is None:
        return None, ""
    return tune.query_database(func, target, database)


def _first_rule_schedule(func, target, rules=None):
    """:func:`tvm_lrn.strategy.apply_rules`' schedule, or None where no rule applied."""
    scheduled = apply_rules(func, target, rules)
    return None if scheduled is func else scheduled


def _as_linkable(scheduled, attrs):
    """``scheduled`` marked scheduled, with the attributes ``attrs`` of the function it
    was made from (an LRN's ``tvm_lrn.*``), and linkable: without the ``global_symbol``
    (``main``) a Schedule or a rule gives it, which would clash; AttachGlobalSymbol sets it."""
    scheduled = scheduled.with_attrs(dict(attrs)).without_attr("global_symbol")
    return scheduled.with_attr("tirx.is_scheduled", True)


def schedule_lrn(func, target: Target, *, rule=None, database=None):
    """Schedule one LRN PrimFunc for ``target``.

    Parameters
    ----------
    func : tvm.tirx.PrimFunc
        A PrimFunc with the ``tvm_lrn.*`` attributes, as legalization produces it.
    target : tvm.target.Target
        The compilation target.
    rule : callable or DLight ScheduleRule, optional
        A callable ``rule(func, target)`` returning a Schedule, a PrimFunc or None, or a
        DLight rule (see :func:`tvm_lrn.strategy.apply_rule`); None from it falls
        through to the database and the strategy.
    database : str, os.PathLike or MetaSchedule Database, optional
        A tuned database to look the workload up in; without one, the database shipped
        for ``target`` (if any) is used.

    Returns
    -------
    (tvm.tirx.PrimFunc, str)
        The function (marked ``tirx.is_scheduled`` when something scheduled it) and where
        its schedule came from: ``"user-rule"``, ``"database:<path>"``,
        ``"rule:cpu"``/``"rule:gpu"`` (the strategy), ``"dlight"`` (left to DLight on a
        GPU target) or ``"unscheduled"``.

    Raises
    ------
    ValueError
        If ``func`` uses the AVX-512 estimate of :mod:`tvm_lrn.intrin` and ``target``
        lacks it.
    """
    check_target(func, target)
    attrs = func.attrs
    if rule is not None:
        scheduled = _first_rule_schedule(func, target, [rule])
        if scheduled is not None:
            return _as_linkable(scheduled, attrs), "user-rule"
    scheduled, source = _query_database(func, target, database)
    if scheduled is not None:
        return _as_linkable(scheduled, attrs), source or "database"
    if source:
        logger.info("no tuned schedule (%s); using the strategy", source)
    scheduled = _first_rule_schedule(func, target)
    if scheduled is not None:
        # Keep the LRN attributes whatever the rule did to the function's attrs.
        return _as_linkable(scheduled, attrs), "rule:gpu" if _is_gpu(target) else "rule:cpu"
    return func, ("dlight" if _is_gpu(target) else "unscheduled")


def schedule_lrn_functions(*, rule=None, database=None, sources: dict | None = None):
    """A module pass that schedules every LRN PrimFunc (see :func:`schedule_lrn`).

    It reads the target from ``Target.current()`` (``tvm.compile`` runs the Relax
    pipeline under ``with target``). Functions already marked ``tirx.is_scheduled`` are
    left alone.

    Parameters
    ----------
    rule, database
        As in :func:`schedule_lrn`.
    sources : dict, optional
        Filled with ``{primfunc name: schedule source}``.

    Returns
    -------
    tvm.transform.Pass
    """

    @tvm.transform.module_pass(opt_level=0, name="tvm_lrn.ScheduleLRN")
    def _pass(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        target = _current_target("tvm_lrn.ScheduleLRN")
        updates = {}
        for gvar, func in mod.functions_items():
            if not is_lrn_primfunc(func):
                continue
            if "tirx.is_scheduled" in func.attrs:
                check_target(func, target)  # (schedule_lrn checks the others)
                source = "prescheduled"
            else:
                func, source = schedule_lrn(func, target, rule=rule, database=database)
                updates[gvar] = func
            logger.info(
                "LRN PrimFunc %s on %s: schedule %s", gvar.name_hint, target.kind.name, source
            )
            if sources is not None:
                sources[gvar.name_hint] = source
        for gvar, func in updates.items():
            mod[gvar] = func
        return mod

    return _pass


@tvm.transform.module_pass(opt_level=0, name="tvm_lrn.KeepLRNOpaque")
def keep_lrn_opaque(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
    """Give every LRN PrimFunc ``op_pattern = kOpaque`` before FuseOps (legalization sets
    it, AnnotateTIROpPattern keeps it; this covers LRN PrimFuncs made otherwise, e.g.
    taken from a tuned module), so that FuseTIR never drops their attributes."""
    for gvar, func in list(mod.functions_items()):
        if is_lrn_primfunc(func) and func.attrs.get("op_pattern") != OP_PATTERN_OPAQUE:
            mod[gvar] = func.with_attr("op_pattern", OP_PATTERN_OPAQUE)
    return mod


def apply_database(database=None, tuned: list | None = None):
    """A module pass that gives every kernel that is not an LRN and not yet scheduled
    its best record in ``database`` for the current target, as TVM's
    ``MetaScheduleApplyDatabase`` does, but looked up by
    :class:`tvm_lrn.tune.LRNDatabase` (only records of the target's key count) and
    never querying the kernels scheduled already.

    Parameters
    ----------
    database : str, os.PathLike or MetaSchedule Database, optional
        By default the database shipped for the target, if any.
    tuned : list, optional
        Filled with the names of the kernels that got a record.

    Returns
    -------
    tvm.transform.Pass
    """

    @tvm.transform.module_pass(opt_level=0, name="tvm_lrn.ApplyDatabase")
    def _pass(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        target = _current_target("tvm_lrn.ApplyDatabase")
        pending = [
            (gvar, func)
            for gvar, func in mod.functions_items()
            if isinstance(func, tvm.tirx.PrimFunc)
            and not is_lrn_primfunc(func)
            and "tirx.is_scheduled" not in func.attrs
        ]
        if not pending:
            return mod
        found = _database_for(target, database)
        if found is None:
            return mod
        db = tune.LRNDatabase(found)
        names = []
        for gvar, func in pending:
            _, sch = db.best(tune.workload_mod(func), target)
            if sch is not None:
                mod[gvar] = _as_linkable(sch.mod["main"], func.attrs)
                names.append(gvar.name_hint)
        listed = f": {', '.join(sorted(names))}" if names else ""
        logger.info(
            "%d of %d kernels had a record in %s%s", len(names), len(pending), db.label, listed
        )
        if tuned is not None:
            tuned.extend(sorted(names))
        return mod

    return _pass


# --------------------------------------------------------------------------- the pipeline


def _backend_pipeline(target: Target):
    """TVM's backend pass lists for ``target`` (the module ``tvm.relax.backend.<kind>
    .pipeline``, as ``relax.get_default_pipeline`` picks it for cuda, rocm, other GPUs
    and CPUs)."""
    kind = target.kind.name
    if kind == "cuda":
        return backend.cuda.pipeline
    if kind == "rocm":
        return backend.rocm.pipeline
    if _is_gpu(target):
        return backend.gpu_generic.pipeline
    return backend.cpu_generic.pipeline


def _position(passes: list, name: str) -> int:
    """Index of the pass called ``name`` in one of TVM's pass lists."""
    names = [p.info.name for p in passes]
    if name not in names:
        raise RuntimeError(f"TVM's legalization passes have no {name} pass: {names}")
    return names.index(name)


def _split_legalize_passes(target: Target) -> tuple[list, list]:
    """The backend's legalization passes as ``(fusion, default scheduling)``: up to its
    default schedules (GPU: DLight's ApplyDefaultSchedule) or to its end (CPU: FuseTIR),
    with the LRN kernels made opaque after AnnotateTIROpPattern so that FuseOps leaves
    them alone and FuseTIR keeps their attributes; then the default schedules
    (:mod:`tvm_lrn.defaults` on CPU, where TVM's list schedules nothing)."""
    passes = _backend_pipeline(target).legalize_passes(target)
    passes.insert(_position(passes, "AnnotateTIROpPattern") + 1, keep_lrn_opaque)
    if _is_gpu(target):
        split = _position(passes, "ApplyDefaultSchedule")
        return passes[:split], passes[split:]
    return passes, [default_schedules(target)]


def _legalize_passes(target: Target, scheduling: list) -> list:
    """The backend's legalization passes with the ``scheduling`` passes spliced in
    before its default schedules, which skip what they scheduled."""
    fusion, defaults = _split_legalize_passes(target)
    return [*fusion, *scheduling, *defaults]


def fused_module(mod: tvm.IRModule, target) -> tvm.IRModule:
    """``mod`` as :func:`compile` has it just before scheduling: legalized and fused by
    TVM's backend passes for ``target``, one PrimFunc per kernel (what tuning tunes).

    Parameters
    ----------
    mod : tvm.IRModule
    target : None, str, dict or tvm.target.Target

    Returns
    -------
    tvm.IRModule
    """
    target = resolve_target(target)
    fusion, _ = _split_legalize_passes(target)
    passes = _backend_pipeline(target).library_dispatch_passes(target) + fusion
    with target:
        return tvm.transform.Sequential(passes)(mod)


def lrn_pipeline(*, rule=None, database=None, sources=None, tuned=None, lone_kernels=None):
    """The Relax pipeline of :func:`compile` (registered as ``"tvm_lrn"``).

    Parameters
    ----------
    rule, database
        As in :func:`schedule_lrn`; the database also schedules the other kernels
        (:func:`apply_database`).
    sources : dict, optional
        Filled with ``{primfunc name: schedule source}`` of the LRN kernels.
    tuned : list, optional
        Filled with the names of the other kernels that got a record.
    lone_kernels : dict, optional
        Filled as :func:`tvm_lrn.destination.destination_variants` fills it.

    Returns
    -------
    tvm.transform.Pass
        Reads the target from ``Target.current()``.
    """

    @tvm.transform.module_pass(opt_level=0, name="tvm_lrn.Pipeline")
    def _pipeline(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        target = _current_target("the tvm_lrn pipeline")
        stock = _backend_pipeline(target)
        scheduling = [
            schedule_lrn_functions(rule=rule, database=database, sources=sources),
            apply_database(database, tuned),
        ]
        passes = (
            stock.library_dispatch_passes(target)
            + _legalize_passes(target, scheduling)
            + [destination_variants(lone_kernels)]
            + stock.dataflow_lower_passes(target)
            + stock.finalize_passes(target)
        )
        return tvm.transform.Sequential(passes)(mod)

    return _pipeline


try:
    relax.register_pipeline("tvm_lrn")(lrn_pipeline)
except ValueError:  # already registered (module reloaded)
    pass


# --------------------------------------------------------------------------- entry point


def _checked_arguments(mod, target, rule, database, example_args):
    """``(IRModule, Target)`` of :func:`compile`'s arguments, every one checked here, not
    in the pipeline, whose passes turn errors into RuntimeError."""
    from .frontend import to_irmodule_if_torch

    mod = to_irmodule_if_torch(mod, example_args)
    if isinstance(mod, relax.Function):
        mod = tvm.IRModule({"main": mod})
    if not isinstance(mod, tvm.IRModule):
        raise TypeError(f"mod must be a tvm.IRModule or relax.Function, got {type(mod).__name__}")
    target = resolve_target(target)
    warn_if_generic_cpu(target)
    if rule is not None:
        check_rule(rule)
    found = _database_for(target, database)  # also $TVM_LRN_SCHEDULES: errors name the file
    if found is not None:
        tune.load_database(found)
    return mod, target


def compile(  # noqa: A001
    mod, target=None, *, rule=None, database=None, example_args=None
) -> Model:
    """Compile a Relax module that may hold ``R.tvm_lrn`` calls into a runnable model.

    Parameters
    ----------
    mod : tvm.IRModule, relax.Function or torch.nn.Module
        The model (a bare function becomes ``main``; a torch module is imported with
        :func:`tvm_lrn.from_torch` and ``example_args``).
    target : None, str, dict or tvm.target.Target
        None (the default) or ``"host"`` is this machine's CPU; ``"llvm"`` (TVM's
        baseline CPU of the host triple, without its vector extensions: a warning says
        so), ``"cuda"``, a tag, TVM's JSON dict form, or a Target
        (see :func:`tvm_lrn.target.resolve_target`).
    rule : callable or DLight ScheduleRule, optional
        Schedule the LRN PrimFuncs with this instead of the default strategy:
        ``rule(func, target)`` returns a Schedule, a PrimFunc or None (see
        :func:`schedule_lrn`).
    database : str, os.PathLike or MetaSchedule Database, optional
        Tuned schedules to use for LRN PrimFuncs whose workload it holds; by default the
        database shipped for the target, if any.
    example_args : tuple, optional
        Example inputs, required when ``mod`` is a torch module.

    Returns
    -------
    tvm_lrn.model.Model
        Callable on numpy arrays or torch tensors; ``schedule_sources`` says which
        schedule each LRN PrimFunc got.

    Examples
    --------
    >>> model = tvm_lrn.compile(mod, "llvm")
    >>> y = model(np.ones((1, 16, 8, 8), "float32"))
    """
    mod, target = _checked_arguments(mod, target, rule, database, example_args)
    sources, tuned, lone = {}, [], {}  # filled by the pipeline (see lrn_pipeline)
    pipeline = lrn_pipeline(
        rule=rule, database=database, sources=sources, tuned=tuned, lone_kernels=lone
    )
    executable = relax.build(  # "compiled": the VM functions as native code, not bytecode
        mod, target, relax_pipeline=pipeline, tir_pipeline=TIR_PIPELINE, exec_mode="compiled"
    )
    if not sources:
        logger.info("no LRN PrimFunc in the module compiled for %s", target.kind.name)
    return Model(
        executable,
        target,
        schedule_sources=sources,
        tuned_kernels=tuned,
        lone_kernels=lone,
        element_aligned=True,
        signatures=signatures(mod),
    )
