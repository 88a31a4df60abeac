"""Per-target schedules for the LRN PrimFunc (the "op strategy").

:func:`schedule_primfunc` picks the first rule that applies to the target: the CPU rule
(:class:`~tvm_lrn.strategy.cpu.CPULRN`, llvm targets) or the GPU rule
(:class:`~tvm_lrn.strategy.gpu.GPULRN`, targets whose keys contain ``gpu``). Both are
DLight ``ScheduleRule`` objects, so they also work inside
``tvm.s_tir.dlight.ApplyDefaultSchedule`` or :func:`default_rules`.
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.s_tir import dlight as dl
from tvm.target import Target

from ..intrin import check_target
from .common import is_lrn_primfunc
from .cpu import CPULRN
from .gpu import GPULRN, precise_cuda_math, set_precise_cuda_math

__all__ = [
    "CPULRN",
    "GPULRN",
    "default_rules",
    "is_lrn_primfunc",
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


def _run_rule(rule, func, target):
    if isinstance(rule, dl.ScheduleRule):
        result = rule.apply(func, target, False)
    elif callable(rule):
        result = rule(func, target)
    else:
        raise TypeError(f"rule must be a tvm.s_tir.dlight.ScheduleRule or a callable, got {rule!r}")
    if isinstance(result, (list, tuple)):
        result = result[0] if result else None
    if result is None:
        return None
    if isinstance(result, s_tir.Schedule):
        return result.mod["main"]
    if isinstance(result, tirx.PrimFunc):
        return result
    raise TypeError(f"rule {rule!r} returned {type(result).__name__}, expected a Schedule")


def schedule_primfunc(func: tirx.PrimFunc, target, rule=None) -> tirx.PrimFunc:
    """Return ``func`` scheduled for ``target``.

    Parameters
    ----------
    func : tvm.tirx.PrimFunc
        Usually the LRN PrimFunc (:func:`tvm_lrn.eager.lrn_primfunc` or the one Relax
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
    return _apply_rules(func, target, rule)


def _apply_rules(func: tirx.PrimFunc, target: Target, rule=None) -> tirx.PrimFunc:
    """:func:`schedule_primfunc` for a ``func`` already checked against ``target``."""
    attrs = func.attrs
    if attrs is not None and bool(attrs.get("tirx.is_scheduled", False)):
        return func
    rules = [rule] if rule is not None else default_rules()
    for candidate in rules:
        scheduled = _run_rule(candidate, func, target)
        if scheduled is not None:
            return scheduled.with_attr("tirx.is_scheduled", True)
    return func
