"""Per-target schedules for the LRN PrimFunc (the "op strategy").

:func:`schedule_primfunc` picks the first rule that applies to the target: the CPU rule
(:class:`~tvm_lrn.strategy.cpu.CPULRN`, llvm targets) or the GPU rule
(:class:`~tvm_lrn.strategy.gpu.GPULRN`, targets whose keys contain ``gpu``). Both are
DLight ``ScheduleRule`` objects, so they also work inside
``tvm.s_tir.dlight.ApplyDefaultSchedule`` or :func:`default_rules`.

:func:`apply_rule` is how everything in the project runs a rule, a built-in one or a
user's (``tvm_lrn.compile(rule=...)``, the tuner's design space).
"""

from __future__ import annotations

import tvm
from tvm import s_tir, tirx
from tvm.s_tir import dlight as dl
from tvm.target import Target

from ..intrin import check_target
from ..lower.cuda_math import precise_cuda_math, set_precise_cuda_math
from .common import has_lrn_blocks
from .cpu import CPULRN
from .gpu import GPULRN

__all__ = [
    "CPULRN",
    "GPULRN",
    "apply_rule",
    "apply_rules",
    "check_rule",
    "default_rules",
    "has_lrn_blocks",
    "precise_cuda_math",
    "schedule_primfunc",
    "set_precise_cuda_math",
]


def default_rules() -> list:
    """The built-in rules, in the order :func:`schedule_primfunc` tries them."""
    return [CPULRN(), GPULRN()]


def _as_target(target) -> Target:
    if isinstance(target, Target):
        return target
    from ..target import resolve_target

    return resolve_target(target)


def check_rule(rule) -> None:
    """Raise ``TypeError`` unless ``rule`` is a DLight ``ScheduleRule`` or a callable."""
    if not isinstance(rule, dl.ScheduleRule) and not callable(rule):
        raise TypeError(f"rule must be a callable or a DLight ScheduleRule, got {rule!r}")


def _only_primfunc(mod: tvm.IRModule, rule) -> tirx.PrimFunc:
    funcs = [f for _, f in mod.functions_items() if isinstance(f, tirx.PrimFunc)]
    if len(funcs) != 1:
        raise ValueError(f"rule {rule!r} returned a module with {len(funcs)} PrimFuncs, expected 1")
    return funcs[0]


def apply_rule(rule, func: tirx.PrimFunc, target: Target) -> s_tir.Schedule | tirx.PrimFunc | None:
    """Run one schedule rule on ``func`` and normalize what it returns.

    Parameters
    ----------
    rule : tvm.s_tir.dlight.ScheduleRule or callable
        A DLight rule (skipped, as DLight skips it, where ``is_target_available(target)``
        is false; else ``rule.apply(func, target, False)``) or a callable
        ``rule(func, target)``.
    func : tvm.tirx.PrimFunc
        The function to schedule.
    target : tvm.target.Target
        The compilation target.

    Returns
    -------
    tvm.s_tir.Schedule, tvm.tirx.PrimFunc or None
        What the rule returned: of a list of candidates the first (None if empty), of an
        IRModule its one PrimFunc; a Schedule is kept as it is (its trace is what a
        tuning record stores). None means the rule does not apply.

    Raises
    ------
    TypeError
        If ``rule`` is neither a DLight rule nor a callable, or returns anything else.
    ValueError
        If it returns an IRModule that does not hold exactly one PrimFunc.
    """
    check_rule(rule)
    if isinstance(rule, dl.ScheduleRule):
        result = rule.apply(func, target, False) if rule.is_target_available(target) else None
    else:
        result = rule(func, target)
    if isinstance(result, list | tuple):  # DLight rules may return several candidates
        result = result[0] if result else None
    if isinstance(result, tvm.IRModule):
        result = _only_primfunc(result, rule)
    if result is None or isinstance(result, s_tir.Schedule | tirx.PrimFunc):
        return result
    raise TypeError(
        f"rule {rule!r} must return a Schedule, PrimFunc or None, got {type(result).__name__}"
    )


def _primfunc_of(result, rule) -> tirx.PrimFunc | None:
    if isinstance(result, s_tir.Schedule):
        return _only_primfunc(result.mod, rule)
    return result


def apply_rules(func: tirx.PrimFunc, target: Target, rules=None) -> tirx.PrimFunc:
    """The schedule of ``func`` by the first rule that applies, marked as scheduled.

    Parameters
    ----------
    func : tvm.tirx.PrimFunc
        The function; returned unchanged when it is already marked ``tirx.is_scheduled``.
    target : tvm.target.Target
        The compilation target (``func`` is not checked against it: see
        :func:`schedule_primfunc`).
    rules : list, optional
        Rules as :func:`apply_rule` takes them, tried in order; :func:`default_rules` by
        default.

    Returns
    -------
    tvm.tirx.PrimFunc
        The first rule's result with ``tirx.is_scheduled = True``, or ``func`` itself when
        no rule applies.
    """
    attrs = func.attrs
    if attrs is not None and bool(attrs.get("tirx.is_scheduled", False)):
        return func
    for rule in default_rules() if rules is None else rules:
        scheduled = _primfunc_of(apply_rule(rule, func, target), rule)
        if scheduled is not None:
            return scheduled.with_attr("tirx.is_scheduled", True)
    return func


def schedule_primfunc(func: tirx.PrimFunc, target, rule=None) -> tirx.PrimFunc:
    """Return ``func`` scheduled for ``target``.

    Parameters
    ----------
    func : tvm.tirx.PrimFunc
        Usually the LRN PrimFunc (:func:`tvm_lrn.op.lrn_primfunc`, as the one Relax
        legalization makes); anything else is returned unchanged by the built-in rules.
    target : tvm.target.Target, str or dict
        The compilation target.
    rule : tvm.s_tir.dlight.ScheduleRule or callable, optional
        Used instead of the built-in rules. A callable gets ``(func, target)`` and
        returns a ``Schedule`` (or a PrimFunc) or None.

    Returns
    -------
    tvm.tirx.PrimFunc
        The scheduled function with attribute ``tirx.is_scheduled = True`` (and its
        attributes, ``global_symbol`` included, kept), or ``func`` itself when no rule
        applies or it is already marked scheduled.

    Raises
    ------
    ValueError
        If ``func`` uses the AVX-512 estimate of :mod:`tvm_lrn.intrin` and ``target``
        lacks it.
    """
    target = _as_target(target)
    check_target(func, target)
    return apply_rules(func, target, None if rule is None else [rule])
