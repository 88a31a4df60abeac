"""Autotuning with MetaSchedule, schedule databases, shipped schedules.

:func:`tune` searches schedules for every kernel of a model (or only its LRN
PrimFuncs, or LRN kernels of given shapes, dtypes and parameters) with MetaSchedule's
task scheduler and writes a JSON database to a work directory (:mod:`.search`, design
space in :mod:`.space`). :func:`query_database`
and :class:`LRNDatabase` look kernels up in such a database (:mod:`.database`), and
:func:`shipped_database` finds the database shipped with the package for a target
(``schedules/<target key>/``, see :func:`target_key`).

Workloads are keyed structurally: a kernel is tuned exactly as ``relax.tvm_lrn``
legalizes it (:mod:`.workloads`), so the records match what :func:`tvm_lrn.compile` and
``relax.transform.MetaScheduleApplyDatabase`` look up later. Records are also keyed by
target: a record tuned on ``znver4`` is not used for ``skylake-avx512``.

This module is callable: ``tvm_lrn.tune(...)`` is :func:`tune`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
from collections.abc import Sequence
from pathlib import Path

import tvm
from tvm.target import Target

from ..spec import LRNParams, canonicalize
from .database import (
    SCHEDULES_ENV,
    LRNDatabase,
    best_records,
    is_database_dir,
    load_database,
    query_database,
    schedules_roots,
    shipped_database,
)
from .progress import TuneResult, WorkloadResult
from .records import export_best, repair_json_database
from .search import SearchOptions, run_search
from .space import cost_model, default_builder, default_runner
from .targets import target_key, tuning_target
from .workloads import (
    PRESETS,
    Workload,
    extract_workloads,
    lrn_workloads,
    model_workloads,
    workload_mod,
)

__all__ = [
    "PRESETS",
    "SCHEDULES_ENV",
    "LRNDatabase",
    "SearchOptions",
    "TuneResult",
    "Workload",
    "WorkloadResult",
    "best_records",
    "cost_model",
    "default_builder",
    "default_runner",
    "export_best",
    "extract_workloads",
    "is_database_dir",
    "load_database",
    "lrn_workloads",
    "model_workloads",
    "query_database",
    "repair_json_database",
    "schedules_roots",
    "shipped_database",
    "target_key",
    "tune",
    "tuning_target",
    "workload_mod",
]

_LRN_ARGS = ("size", "alpha", "beta", "bias", "axis", "convention")
_SEARCH_ARGS = tuple(f.name for f in dataclasses.fields(SearchOptions))


def _model_workloads(model, kernels: str, target) -> list[Workload]:
    if kernels not in ("all", "lrn"):
        raise ValueError(f"kernels must be 'all' or 'lrn', got {kernels!r}")
    if kernels == "lrn":
        workloads = extract_workloads(model)
        if not workloads:
            raise ValueError("the model has no LRN (relax.tvm_lrn) to tune")
        return workloads
    workloads = model_workloads(model, target)
    if not workloads:
        raise ValueError("the model has no kernel to tune")
    return workloads


def _workloads(model, shapes, dtypes, params, options) -> list[Workload]:
    lrn_args = {k: v for k, v in options.items() if k in _LRN_ARGS}
    if model is not None and shapes is not None:
        raise TypeError("pass either model or shapes, not both")
    if model is not None:
        if lrn_args:
            raise TypeError(f"{sorted(lrn_args)} only go with shapes, not with a model")
        return _model_workloads(model, options.get("kernels", "all"), Target.current())
    if "kernels" in options:
        raise TypeError("kernels only goes with a model")
    if shapes is None:
        raise TypeError("tune needs a model or shapes")
    if params is None:
        params = canonicalize(**{"size": 5, **lrn_args})
    elif lrn_args:
        raise TypeError("pass either params or size/alpha/beta/bias/axis/convention, not both")
    return lrn_workloads(shapes, dtypes, params)


def tune(
    model: tvm.IRModule | None = None,
    *,
    shapes: Sequence[Sequence[int]] | None = None,
    dtypes: str | Sequence[str] = "float32",
    params: LRNParams | None = None,
    target=None,
    work_dir: str | os.PathLike = "tvm_lrn_tuning",
    trials: int = 32,
    **options,
) -> TuneResult:
    """Tune a model's kernels, or LRN kernels, with MetaSchedule; write a JSON database.

    Either ``model`` (a Relax module: every kernel as :func:`tvm_lrn.compile` fuses it,
    or with ``kernels="lrn"`` its LRN PrimFuncs) or ``shapes`` with ``dtypes`` and the
    LRN parameters. Each kernel's untuned schedule is measured and committed first
    (:mod:`.search`), so the best record is never slower than it. Failed candidates are
    recorded as failures and the run goes on. Ctrl-C stops after the batch being
    measured (a second one at once): the database keeps every record committed so far,
    and the result says ``interrupted=True``.

    Parameters
    ----------
    model : tvm.IRModule, optional
        A Relax module (e.g. from :func:`tvm_lrn.from_torch`).
    shapes : sequence of sequence of int, optional
        Input shapes (each dtype of ``dtypes`` is tuned for each shape).
    dtypes : str or sequence of str
        Input dtypes for ``shapes``.
    params : LRNParams, optional
        Canonical parameters for ``shapes``; else the keywords ``size``, ``alpha``,
        ``beta``, ``bias``, ``axis`` and ``convention`` of
        :func:`tvm_lrn.spec.canonicalize` (size 5 by default).
    target : None, str, dict or tvm.target.Target
        None is the host CPU. ``num-cores`` is added to llvm targets.
    work_dir : str or os.PathLike
        Database folder; an existing database there is extended and resumed from.
    trials : int
        Search trials per workload (the rule's measurement comes on top).
    **options
        ``kernels`` (``"all"``, the default, or ``"lrn"``) with a model; the LRN
        keywords above with shapes; and the fields of :class:`SearchOptions`
        (``trials_per_iter``, ``cost_model``, ``rule``, ``seed``, ``progress``,
        ``ship_to``, ``builder``, ``runner``, ``device``, ``cc``).

    Returns
    -------
    TuneResult
    """
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be a positive integer, got {trials!r}")
    unknown = sorted(set(options) - {"kernels", *_LRN_ARGS, *_SEARCH_ARGS})
    if unknown:
        raise TypeError(f"tune() got unexpected keyword arguments {unknown}")
    search = SearchOptions(**{k: v for k, v in options.items() if k in _SEARCH_ARGS})
    target = tuning_target(target)
    with target:  # legalized under the target, as tvm.compile legalizes
        workloads = _workloads(model, shapes, dtypes, params, options)
    work_dir = str(Path(work_dir).expanduser())
    return run_search(workloads, target, work_dir, trials, search)


class _CallableModule(types.ModuleType):
    """This package, callable as :func:`tune`: ``tvm_lrn.tune(...)`` runs a tuning and
    ``tvm_lrn.tune.target_key`` (and the rest above) stays reachable under the same
    name; Python's documented way to give a module behaviour is its ``__class__``."""

    def __call__(self, *args, **kwargs) -> TuneResult:
        return tune(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
