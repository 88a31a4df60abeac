"""``tvm_lrn.compile``: a Relax module holding ``R.tvm_lrn`` -> a runnable model.

The pipeline is TVM's own (what ``tvm.compile`` would run for the target) with one step
added after legalization: every LRN PrimFunc (recognized by its ``tvm_lrn.*``
attributes) gets its schedule from, in this order,

1. the user's ``rule``, if one is given;
2. a tuned MetaSchedule database (``database=``, else the one shipped for the target),
   through :func:`tvm_lrn.tune.query_database`, if it holds the workload;
3. the per-target strategy (:func:`tvm_lrn.strategy.schedule_primfunc`).

Scheduled functions are marked ``tirx.is_scheduled``; on GPU targets DLight then
schedules the rest of the model and skips them. Which schedule each LRN PrimFunc got is
kept in :attr:`Model.schedule_sources` and logged on the ``"tvm_lrn"`` logger.

The pipeline is also registered as the Relax pipeline ``"tvm_lrn"``, so
``tvm.compile(mod, target, relax_pipeline="tvm_lrn")`` works too.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import tvm
from tvm import relax
from tvm.relax.backend import cpu_generic
from tvm.target import Target

from .interop import borrow_torch
from .intrin import check_target
from .op import OP_PATTERN_OPAQUE, is_lrn_primfunc
from .target import resolve_target

__all__ = ["Model", "compile", "load_module", "lrn_pipeline", "schedule_lrn_functions"]

logger = logging.getLogger("tvm_lrn")

#: Suffix of the JSON file written next to an exported library (target, schedule sources).
METADATA_SUFFIX = ".tvm_lrn.json"


# --------------------------------------------------------------------------- scheduling


def _is_gpu(target: Target) -> bool:
    return "gpu" in target.keys


def _as_primfunc(result, what: str):
    """A rule may return a Schedule, a PrimFunc, an IRModule with one function, or None."""
    if result is None:
        return None
    if isinstance(result, tvm.s_tir.Schedule):
        result = result.mod
    if isinstance(result, tvm.IRModule):
        funcs = [f for _, f in result.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
        if len(funcs) != 1:
            raise ValueError(f"{what} returned a module with {len(funcs)} PrimFuncs, expected 1")
        result = funcs[0]
    if not isinstance(result, tvm.tirx.PrimFunc):
        raise TypeError(
            f"{what} must return a Schedule, PrimFunc or None, got {type(result).__name__}"
        )
    return result


def _check_rule(rule):
    from tvm.s_tir.dlight import ScheduleRule

    if rule is not None and not callable(rule) and not isinstance(rule, ScheduleRule):
        raise TypeError(f"rule must be a callable or a DLight ScheduleRule, got {rule!r}")


def _call_user_rule(rule, func, target):
    from tvm.s_tir.dlight import ScheduleRule

    if isinstance(rule, ScheduleRule):
        result = rule.apply(func, target, False)
        if isinstance(result, list | tuple):  # DLight may return several candidates
            result = result[0] if result else None
        return _as_primfunc(result, "rule")
    if not callable(rule):
        raise TypeError(f"rule must be a callable or a DLight ScheduleRule, got {rule!r}")
    return _as_primfunc(rule(func, target), "rule")


def _query_database(func, target, database):
    """``tune.query_database`` when the tuner is there; ``(None, "")`` otherwise."""
    try:
        from . import tune

        if database is None:
            database = tune.shipped_database(target)
            if database is None:
                return None, ""
        scheduled, source = tune.query_database(func, target, database)
    except (ImportError, AttributeError) as err:
        # tune.py is optional (written separately); compile must work without it.
        if database is not None:
            logger.debug("tvm_lrn.tune unavailable (%s); using the strategy", err)
        return None, ""
    return scheduled, source


def _check_database(database):
    """Fail early, outside the pass pipeline (which turns errors into RuntimeError), on a
    ``database=`` that the tuner cannot open."""
    if database is None:
        return
    try:
        from . import tune

        load = tune.load_database
    except (ImportError, AttributeError):
        return
    load(database)


def _strategy(func, target):
    from .strategy import _apply_rules  # late: the strategy imports tvm.s_tir

    return _apply_rules(func, target)  # schedule_lrn has checked func against target


def _finish(scheduled, attrs, mark: bool):
    """Restore the LRN attributes on a scheduled function and make it linkable.

    A Schedule wraps the function as ``main`` and some rules set ``global_symbol``; two
    functions exporting ``main`` would clash, so the symbol is left to AttachGlobalSymbol.
    """
    scheduled = scheduled.with_attrs(dict(attrs)).without_attr("global_symbol")
    return scheduled.with_attr("tirx.is_scheduled", True) if mark else scheduled


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
        DLight rule; None from it falls through to the database and the strategy.
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
        scheduled = _call_user_rule(rule, func, target)
        if scheduled is not None:
            return _finish(scheduled, attrs, True), "user-rule"
    scheduled, source = _query_database(func, target, database)
    if scheduled is not None:
        scheduled = _as_primfunc(scheduled, "query_database")
        return _finish(scheduled, attrs, True), source or "database"
    if source:
        logger.info("no tuned schedule (%s); using the strategy", source)
    scheduled = _strategy(func, target)
    if scheduled is not None and "tirx.is_scheduled" in (scheduled.attrs or {}):
        name = "gpu" if _is_gpu(target) else "cpu"
        # Keep the LRN attributes whatever the rule did to the function's attrs.
        return _finish(scheduled, attrs, False), f"rule:{name}"
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
        target = Target.current(allow_none=True)
        if target is None:
            raise ValueError("tvm_lrn.ScheduleLRN needs a target: run it under `with target:`")
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
    """Make sure every LRN PrimFunc has ``op_pattern = kOpaque`` before FuseOps.

    AnnotateTIROpPattern keeps a pattern that is already set (checked on TVM 0.27), and
    legalization sets it; this pass guards against LRN PrimFuncs made some other way
    (e.g. taken from a tuned module) so that FuseTIR never drops their attributes.
    """
    for gvar, func in list(mod.functions_items()):
        if is_lrn_primfunc(func) and func.attrs.get("op_pattern") != OP_PATTERN_OPAQUE:
            mod[gvar] = func.with_attr("op_pattern", OP_PATTERN_OPAQUE)
    return mod


def _backend(target: Target):
    """TVM's backend pass lists for ``target`` (as relax.get_default_pipeline picks them)."""
    from tvm.relax import backend

    kind = target.kind.name
    if kind == "cuda":
        return backend.cuda.pipeline
    if kind == "rocm":
        return backend.rocm.pipeline
    if _is_gpu(target):
        return backend.gpu_generic.pipeline
    return cpu_generic.pipeline


def _passes(target: Target, rule, database, sources) -> list:
    schedule = schedule_lrn_functions(rule=rule, database=database, sources=sources)
    be = _backend(target)
    if _is_gpu(target):
        # The GPU default pipeline (what tvm.compile uses): legalize, fuse, DLight; our
        # scheduling goes between FuseTIR and DLight so DLight skips the LRN kernels.
        from tvm.s_tir import dlight as dl

        legalize = [
            relax.transform.LegalizeOps(),
            relax.transform.AnnotateTIROpPattern(),
            keep_lrn_opaque,
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
            schedule,
            dl.ApplyDefaultSchedule(
                dl.gpu.Matmul(),
                dl.gpu.GEMV(),
                dl.gpu.Reduction(),
                dl.gpu.GeneralReduction(),
                dl.gpu.Fallback(),
            ),
        ]
        return (
            be.library_dispatch_passes(target)
            + legalize
            + be.dataflow_lower_passes(target)
            + be.finalize_passes(target)
        )
    # CPU: like tvm.compile's "default" pipeline, which does not fuse on CPU (TVM notes
    # the fusing CPU pipeline may drop side-effecting call_pure_packed calls).
    return (
        be.library_dispatch_passes(target)
        + [relax.transform.LegalizeOps(), schedule]
        + be.dataflow_lower_passes(target)
        + [
            relax.transform.StaticPlanBlockMemory(),
            relax.transform.LowerAllocTensor(),
            relax.transform.KillAfterLastUse(),
            relax.transform.LowerRuntimeBuiltin(),
            relax.transform.ComputePrimValue(),
            relax.transform.VMShapeLower(),
            relax.transform.AttachGlobalSymbol(),
        ]
    )


def lrn_pipeline(*, rule=None, database=None, sources: dict | None = None):
    """The Relax pipeline of :func:`compile` (registered as ``"tvm_lrn"``).

    Parameters
    ----------
    rule, database
        As in :func:`schedule_lrn`.
    sources : dict, optional
        Filled with ``{primfunc name: schedule source}`` while the pipeline runs.

    Returns
    -------
    tvm.transform.Pass
        Reads the target from ``Target.current()``.
    """

    @tvm.transform.module_pass(opt_level=0, name="tvm_lrn.Pipeline")
    def _pipeline(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        target = Target.current(allow_none=True)
        if target is None:
            raise ValueError("the tvm_lrn pipeline needs a target: run it under `with target:`")
        return tvm.transform.Sequential(_passes(target, rule, database, sources))(mod)

    return _pipeline


try:
    relax.register_pipeline("tvm_lrn")(lrn_pipeline)
except ValueError:  # already registered (module reloaded)
    pass


# --------------------------------------------------------------------------- the model


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "__dlpack__")


def _ensure_precise_device_math(device) -> None:
    """CUDA kernels are compiled from source when loaded on the GPU, by default with
    ``--use_fast_math`` (flush-to-zero, approximate division), which breaks the numerical
    contract for tiny values: load them with TVM's precise compile callback instead.
    This is process-wide (see :func:`tvm_lrn.strategy.set_precise_cuda_math`)."""
    if device.dlpack_device_type() == tvm.cuda().dlpack_device_type():
        from .strategy import set_precise_cuda_math

        set_precise_cuda_math(True)


class Model:
    """A compiled model: call it like a function.

    Calling with numpy arrays returns numpy arrays, with torch tensors torch tensors
    (zero-copy through DLPack where the memory allows), with ``tvm.runtime.Tensor``
    TVM tensors; a tuple output comes back as a tuple.

    Attributes
    ----------
    executable : tvm.runtime.Executable or tvm.runtime.Module
        What ``tvm.compile`` produced, or the loaded library.
    target : tvm.target.Target or None
        The compilation target (None if a loaded library had no metadata).
    device : tvm.runtime.Device
        Where the model runs.
    schedule_sources : dict
        ``{LRN PrimFunc name: schedule source}``, e.g. ``{"lrn": "rule:cpu"}``.
    """

    def __init__(self, executable, target=None, device=None, schedule_sources=None):
        self.executable = executable
        self.target = target
        if device is None:
            device = _default_device(target, executable)
        self.device = device
        self.schedule_sources = dict(schedule_sources or {})
        self._vm = None

    @property
    def vm(self) -> relax.VirtualMachine:
        """The Relax VM (created on first use, so CUDA builds work without a GPU)."""
        if self._vm is None:
            _ensure_precise_device_math(self.device)
            self._vm = relax.VirtualMachine(self.executable, self.device)
        return self._vm

    def __call__(self, *args):
        """Run ``main`` on ``args`` (numpy arrays, torch tensors or TVM tensors)."""
        return self.call("main", *args)

    def call(self, name: str, *args):
        """Run the Relax function ``name`` on ``args``; see :meth:`__call__`."""
        kind = "tvm"
        if any(_is_torch(a) for a in args):
            kind = "torch"
        elif any(isinstance(a, np.ndarray | np.generic) for a in args):
            kind = "numpy"
        converted = [self._to_tvm(a) for a in args]
        out = self.vm[name](*converted)
        return _from_tvm(out, kind)

    def _to_tvm(self, x):
        if isinstance(x, tvm.runtime.Tensor):
            return x
        if _is_torch(x):
            return self._torch_to_tvm(x)
        if isinstance(x, np.ndarray | np.generic):
            return tvm.runtime.tensor(np.ascontiguousarray(x), self.device)
        return x  # shapes, scalars: the VM converts them itself

    def _torch_to_tvm(self, t):
        t_type, t_id = t.__dlpack_device__()
        dev = self.device
        same_device = (int(t_type), int(t_id)) == (int(dev.dlpack_device_type()), dev.index)
        if not same_device:
            # Different device: one host copy is unavoidable.
            return tvm.runtime.tensor(t.detach().cpu().contiguous().numpy(), self.device)
        return borrow_torch(t)

    def export_library(self, path, **kwargs):
        """Write a deployable shared library (and ``path + ".tvm_lrn.json"`` metadata).

        Parameters
        ----------
        path : str or os.PathLike
            Output file, e.g. ``"model.so"``.
        **kwargs
            Passed to ``Executable.export_library`` (``fcompile``, ``cc`` options).
        """
        path = os.fspath(path)
        self.executable.export_library(path, **kwargs)
        meta = {
            "target": None if self.target is None else _target_json(self.target),
            "device_type": int(self.device.dlpack_device_type()),
            "schedule_sources": self.schedule_sources,
        }
        with open(path + METADATA_SUFFIX, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1, sort_keys=True)

    def source(self) -> str:
        """Generated code: the device (e.g. CUDA) source if any, else the host LLVM IR."""
        mod = getattr(self.executable, "mod", self.executable)
        device = _device_modules(mod)
        if device:
            return "\n".join(m.inspect_source() for m in device)
        hosts = [m for m in _walk(mod) if m.kind == "llvm"]
        return "\n".join(m.inspect_source("ll") for m in hosts)

    def __repr__(self) -> str:
        target = self.target.kind.name if self.target is not None else "?"
        return f"Model(target={target}, device={self.device}, schedules={self.schedule_sources})"


def _walk(mod, seen=None):
    seen = [] if seen is None else seen
    if any(mod.same_as(m) for m in seen):  # a device module may be imported twice
        return
    seen.append(mod)
    yield mod
    for sub in mod.imports:
        yield from _walk(sub, seen)


def _device_modules(mod):
    return [m for m in _walk(mod) if m.kind in ("cuda", "rocm", "hip", "metal", "opencl")]


def _default_device(target, executable):
    if target is not None:
        return tvm.device(target.get_target_device_type(), 0)
    mod = getattr(executable, "mod", executable)
    kinds = {m.kind for m in _device_modules(mod)}
    if "cuda" in kinds:
        return tvm.cuda(0)
    if kinds & {"rocm", "hip"}:
        return tvm.rocm(0)
    if "metal" in kinds:
        return tvm.metal(0)
    return tvm.cpu(0)


def _target_json(target: Target) -> dict:
    return json.loads(str(target))  # a Target prints as its JSON config (host included)


def _from_tvm(out, kind: str):
    if isinstance(out, tvm.runtime.Tensor):
        if kind == "torch":
            import torch

            return torch.from_dlpack(out)
        if kind == "numpy":
            return out.numpy()
        return out
    if isinstance(out, list | tuple | tvm.ir.Array):
        return tuple(_from_tvm(o, kind) for o in out)
    return out


# --------------------------------------------------------------------------- entry points


def compile(  # noqa: A001
    mod, target="llvm", *, rule=None, database=None, example_args=None
) -> Model:
    """Compile a Relax module that may hold ``R.tvm_lrn`` calls into a runnable model.

    Parameters
    ----------
    mod : tvm.IRModule, relax.Function or torch.nn.Module
        The model (a bare function becomes ``main``; a torch module is imported with
        :func:`tvm_lrn.from_torch` and ``example_args``).
    target : str, dict or tvm.target.Target
        ``"llvm"``, ``"cuda"``, a tag, TVM's JSON dict form, or a Target
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
    Model
        Callable on numpy arrays or torch tensors; ``schedule_sources`` says which
        schedule each LRN PrimFunc got.

    Examples
    --------
    >>> model = tvm_lrn.compile(mod, "llvm")
    >>> y = model(np.ones((1, 16, 8, 8), "float32"))
    """
    from .frontend import to_irmodule_if_torch

    mod = to_irmodule_if_torch(mod, example_args)
    if isinstance(mod, relax.Function):
        mod = tvm.IRModule({"main": mod})
    if not isinstance(mod, tvm.IRModule):
        raise TypeError(f"mod must be a tvm.IRModule or relax.Function, got {type(mod).__name__}")
    target = resolve_target(target)
    _check_rule(rule)
    _check_database(database)
    sources: dict[str, str] = {}
    pipeline = lrn_pipeline(rule=rule, database=database, sources=sources)
    executable = tvm.compile(mod, target=target, relax_pipeline=pipeline)
    if not sources:
        logger.info("no LRN PrimFunc in the module compiled for %s", target.kind.name)
    return Model(executable, target=target, schedule_sources=sources)


def load_module(path, device=None) -> Model:
    """Load a library written by :meth:`Model.export_library`.

    Parameters
    ----------
    path : str or os.PathLike
        The shared library.
    device : tvm.runtime.Device, optional
        Where to run; by default the device of the target it was built for (from the
        metadata file next to it, else from the kinds of its device modules).

    Returns
    -------
    Model
    """
    path = os.fspath(path)
    lib = tvm.runtime.load_module(path)
    target, sources = None, {}
    meta_path = path + METADATA_SUFFIX
    if os.path.exists(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        sources = meta.get("schedule_sources", {})
        if meta.get("target"):
            try:
                target = Target(meta["target"])
            except (ValueError, TypeError, RuntimeError):
                target = None
        if device is None and meta.get("device_type") is not None:
            device = tvm.device(int(meta["device_type"]), 0)
    return Model(lib, target=target, device=device, schedule_sources=sources)
