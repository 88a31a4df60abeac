"""Tuning workloads: the LRN PrimFuncs of a model or of given shapes, as legalized, or
every kernel of a model, as :func:`tvm_lrn.compile` fuses it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import tvm
import tvm_ffi
from tvm import relax
from tvm.s_tir import meta_schedule as ms

from ..op import is_lrn_primfunc, params_from_attrs, tvm_lrn
from ..spec import LRNParams, canonicalize, check_dtype

__all__ = [
    "PRESETS",
    "Workload",
    "extract_workloads",
    "lrn_workloads",
    "model_workloads",
    "workload_mod",
    "workload_of",
]

#: LRN shapes of well-known models (size=5, alpha=1e-4, beta=0.75, bias=1, channel axis).
PRESETS: dict[str, tuple[tuple[int, ...], ...]] = {
    "alexnet": ((1, 96, 55, 55), (1, 256, 27, 27)),
    "googlenet": ((1, 64, 56, 56), (1, 192, 56, 56)),
}


@dataclasses.dataclass(frozen=True)
class Workload:
    """One kernel to tune: an LRN PrimFunc exactly as ``relax.tvm_lrn`` legalizes it, or
    another kernel of a model (a fused convolution, a dense layer...).

    Attributes
    ----------
    name : str
        A readable, file-name safe task name, e.g. ``lrn_float32_1x96x55x55_s5`` or
        ``fused_conv2d_add_relu``.
    func : tvm.tirx.PrimFunc
        The legalized PrimFunc.
    shape : tuple of int or None
        The static input shape (None where a dimension is symbolic, and for other
        kernels).
    dtype : str
        The (first) input's dtype.
    params : LRNParams or None
        None for kernels that are not an LRN.
    weight : int
        How many times the model calls the kernel.
    """

    name: str
    func: tvm.tirx.PrimFunc = dataclasses.field(compare=False, repr=False)
    shape: tuple[int, ...] | None
    dtype: str
    params: LRNParams | None
    weight: int = dataclasses.field(default=1, compare=False)

    @property
    def is_lrn(self) -> bool:
        """Whether the kernel is an LRN (tuned with the project's design space)."""
        return self.params is not None

    @property
    def mod(self) -> tvm.IRModule:
        """The workload module the database is keyed by."""
        return workload_mod(self.func)


def workload_mod(func: tvm.tirx.PrimFunc) -> tvm.IRModule:
    """The IRModule MetaSchedule keys ``func`` by.

    Relax PrimFuncs carry no ``global_symbol``; MetaSchedule's normalization (the same
    in ``TuneContext`` and ``MetaScheduleApplyDatabase``) names them ``main`` and marks
    them ``tirx.noalias``. A symbol some other path added would change the structural
    key, so it is replaced by ``main`` too.

    Parameters
    ----------
    func : tvm.tirx.PrimFunc

    Returns
    -------
    tvm.IRModule
    """
    func = func.with_attr("global_symbol", "main").with_attr("tirx.noalias", True)
    # A deep copy: the renamed PrimFunc shares its body with ``func``, and TVM 0.27's
    # ScheduleState edits a uniquely owned module in place without checking that body,
    # so ``Schedule(workload_mod(func))`` would otherwise rewrite ``func`` itself (and
    # every record later replayed on it would find the wrong loops).
    return tvm.ir.load_json(tvm.ir.save_json(tvm.IRModule({"main": func})))


def workload_of(func: tvm.tirx.PrimFunc) -> Workload:
    """The :class:`Workload` of an LRN PrimFunc, named after its dtype, shape and window.

    Raises
    ------
    ValueError, KeyError
        If ``func`` lacks the ``tvm_lrn.*`` attributes of an LRN PrimFunc.
    """
    params = params_from_attrs(func.attrs)
    x = func.params[0].ty  # the input buffer's type: shape and dtype
    dims = [d.value if isinstance(d, tvm.tirx.IntImm) else None for d in x.shape]
    shape = None if None in dims else tuple(int(d) for d in dims)
    dtype = str(x.dtype)
    extent = "x".join(str(d) if d is not None else "n" for d in dims)
    name = f"lrn_{dtype}_{extent}_s{params.size}"
    if params.lo != params.hi:
        name += f"_lo{params.lo}"
    if params.axis != 1:
        name += f"_ax{params.axis}"
    return Workload(name, func, shape, dtype, params)


def _dedupe(funcs: Iterable[tvm.tirx.PrimFunc]) -> list[Workload]:
    """One workload per structurally distinct PrimFunc, names made unique."""
    seen: dict[int, Workload] = {}
    for func in funcs:
        key = tvm_ffi.structural_hash(workload_mod(func))
        if key not in seen:
            seen[key] = workload_of(func)
    out, names = [], {}
    for work in seen.values():
        count = names.get(work.name, 0)
        names[work.name] = count + 1
        out.append(work if count == 0 else dataclasses.replace(work, name=f"{work.name}_{count}"))
    return out


def extract_workloads(mod: tvm.IRModule) -> list[Workload]:
    """The LRN kernels of a Relax module, as :func:`tune` tunes them.

    Parameters
    ----------
    mod : tvm.IRModule
        A Relax module holding ``R.tvm_lrn`` calls (legalized or not).

    Returns
    -------
    list of Workload
        One per structurally distinct LRN PrimFunc (PrimFuncs with ``tvm_lrn.*``
        attributes after legalization).
    """
    if not isinstance(mod, tvm.IRModule):
        raise TypeError(f"expected a Relax IRModule, got {type(mod).__name__}")
    legalized = relax.transform.LegalizeOps()(mod)
    funcs = [
        f
        for _, f in sorted(legalized.functions_items(), key=lambda kv: kv[0].name_hint)
        if is_lrn_primfunc(f) and "tirx.is_scheduled" not in f.attrs
    ]
    return _dedupe(funcs)


def lrn_workloads(
    shapes: Sequence[Sequence[int]],
    dtypes: str | Sequence[str] = "float32",
    params: LRNParams | None = None,
    **lrn_args,
) -> list[Workload]:
    """Workloads for every shape and dtype, legalized as a model would legalize them.

    Parameters
    ----------
    shapes : sequence of sequence of int
        Input shapes.
    dtypes : str or sequence of str
        Input dtypes.
    params : LRNParams, optional
        Canonical parameters; otherwise ``lrn_args`` (``size``, ``alpha``, ``beta``,
        ``bias``, ``axis``, ``convention``) go through :func:`tvm_lrn.spec.canonicalize`.

    Returns
    -------
    list of Workload
    """
    if isinstance(dtypes, str):
        dtypes = [dtypes]
    if params is not None and lrn_args:
        raise TypeError("pass either params or size/alpha/beta/bias/axis/convention, not both")
    if params is None:
        params = canonicalize(**{"size": 5, **lrn_args})
    xs = []
    for shape in shapes:
        shape = tuple(shape)
        if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
            raise ValueError(f"a shape must be a non-empty tuple of positive ints, got {shape}")
        for dtype in dtypes:
            xs.append(relax.Var("x", relax.TensorType(shape, check_dtype(dtype))))
    if not xs:
        raise ValueError("no shapes to tune")
    bb = relax.BlockBuilder()
    with bb.function("main", xs):
        with bb.dataflow():
            outs = []
            for x in xs:
                p = params.with_axis(len(x.ty.shape))
                outs.append(bb.emit(tvm_lrn(x, p.lo, p.hi, p.alpha, p.beta, p.bias, p.axis)))
            out = bb.emit_output(relax.Tuple(outs))
        bb.emit_func_output(out)
    return extract_workloads(bb.get())


def model_workloads(mod: tvm.IRModule, target) -> list[Workload]:
    """Every kernel of a Relax module, fused as :func:`tvm_lrn.compile` fuses it for
    ``target``, as MetaSchedule's Relax integration extracts them
    (``extract_tasks``: one per distinct kernel, weighted by its number of calls).

    Parameters
    ----------
    mod : tvm.IRModule
    target : tvm.target.Target

    Returns
    -------
    list of Workload
    """
    from ..build import fused_module  # (the pipeline imports this package)

    if not isinstance(mod, tvm.IRModule):
        raise TypeError(f"expected a Relax IRModule, got {type(mod).__name__}")
    tasks = ms.relax_integration.extract_tasks(fused_module(mod, target), target)
    out = []
    for task in tasks:
        func = task.dispatched[0]["main"]
        if "tirx.is_scheduled" in func.attrs:
            continue
        if is_lrn_primfunc(func):
            work = workload_of(func)
        else:
            dtype = str(func.params[0].ty.dtype) if func.params else ""
            work = Workload(task.task_name, func, None, dtype, None)
        taken = any(w.name == work.name for w in out)
        name = f"{work.name}_{task.task_name}" if taken else work.name
        out.append(dataclasses.replace(work, name=name, weight=int(task.weight)))
    return out
