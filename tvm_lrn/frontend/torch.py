"""PyTorch import: ``torch.export`` -> TVM's ``from_exported_program`` -> :func:`FuseLRN`.

``F.local_response_norm`` (and ``nn.LocalResponseNorm``, which calls it) never reaches TVM
as one node: torch decomposes it into ``mul -> view -> pad -> avg_pool3d -> ... -> div`` and
TVM's importer turns that into the same unsafe Relax chain. :func:`FuseLRN` recognizes the
chain and puts the safe ``relax.tvm_lrn`` op in its place, for any size, parameters, rank
and dtype. The importer stores ``alpha``, ``beta`` and ``k`` as constants of the model's
dtype; for float16 and bfloat16 models that rounding is large (``beta=0.6`` becomes
``0.6015625`` in bfloat16, which moves the output by ``ln(denominator) * 0.0016``), so the
exact Python scalars of the exported graph are handed to FuseLRN.

``torch`` is imported lazily so that ``import tvm_lrn`` stays cheap.
"""

from __future__ import annotations

import logging
import numbers
import warnings

import numpy as np
import tvm

from ..errors import first_line
from ..interop import numpy_dtype
from ..transform import FuseLRN

__all__ = [
    "load_exported_program",
    "exact_scalars_of",
    "export",
    "from_exported_program",
    "from_fx",
    "from_torch",
    "to_irmodule_if_torch",
]

_NARROW_DTYPES = ("float16", "bfloat16", "float32")


def _round_to(value: float, dtype: str) -> float:
    np_dtype = numpy_dtype(dtype)
    with np.errstate(over="ignore"):
        return float(np.asarray(value, dtype=np.float64).astype(np_dtype).astype(np.float64))


def exact_scalars_of(graph_module) -> dict:
    """Map the importer's rounded scalar constants back to the graph's Python floats.

    Parameters
    ----------
    graph_module : torch.fx.GraphModule or torch.fx.Graph
        The exported (or traced) graph.

    Returns
    -------
    dict
        ``{(dtype, value rounded to dtype): exact value}`` for float16, bfloat16 and float32,
        keeping only keys that a single scalar of the graph rounds to.
    """
    graph = getattr(graph_module, "graph", graph_module)
    scalars = set()
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        for arg in list(node.args) + list(node.kwargs.values()):
            if isinstance(arg, numbers.Real) and not isinstance(arg, bool | numbers.Integral):
                if np.isfinite(float(arg)):
                    scalars.add(float(arg))
    table: dict = {}
    for value in scalars:
        for dtype in _NARROW_DTYPES:
            table.setdefault((dtype, _round_to(value, dtype)), set()).add(value)
    return {key: next(iter(vals)) for key, vals in table.items() if len(vals) == 1}


def _as_tuple(example_args) -> tuple:
    if isinstance(example_args, tuple):
        return example_args
    if isinstance(example_args, list):
        return tuple(example_args)
    return (example_args,)


def export(model, example_args, *, dynamic_batch: bool = False):
    """``torch.export.export`` with an optional dynamic leading (batch) dimension.

    Parameters
    ----------
    model : torch.nn.Module
        The model, exported as it is (call ``model.eval()`` first for inference).
    example_args : torch.Tensor or tuple
        Example inputs.
    dynamic_batch : bool
        Make dimension 0 of every tensor input one symbolic ``batch`` dimension.

    Returns
    -------
    torch.export.ExportedProgram
    """
    import torch

    args = _as_tuple(example_args)
    dynamic_shapes = None
    if dynamic_batch:
        # torch.export specializes dimensions of size 0 and 1, so a batch-1 example would
        # pin the batch to 1: trace with a batch of 2 instead (rows repeated).
        args = tuple(
            a.expand(2, *a.shape[1:]).contiguous()
            if isinstance(a, torch.Tensor) and a.dim() > 0 and a.shape[0] == 1
            else a
            for a in args
        )
        batch = torch.export.Dim("batch")
        dynamic_shapes = tuple(
            {0: batch} if isinstance(a, torch.Tensor) and a.dim() > 0 else None for a in args
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.export.export(model, args, dynamic_shapes=dynamic_shapes)


def from_exported_program(exported_program, *, fuse: bool = True, **kwargs) -> tvm.IRModule:
    """TVM's ``from_exported_program`` followed by :func:`FuseLRN` with exact scalars.

    Parameters
    ----------
    exported_program : torch.export.ExportedProgram
    fuse : bool
        Run :func:`FuseLRN` (False gives TVM's plain import, for comparisons).
    **kwargs
        Passed to ``tvm.relax.frontend.torch.from_exported_program``;
        ``unwrap_unit_return_tuple`` defaults to True.

    Returns
    -------
    tvm.IRModule
    """
    from tvm.relax.frontend.torch import from_exported_program as tvm_import

    kwargs.setdefault("unwrap_unit_return_tuple", True)
    mod = tvm_import(exported_program, **kwargs)
    if not fuse:
        return mod
    return FuseLRN(exact_scalars_of(exported_program.graph_module))(mod)


def from_torch(
    model, example_args, *, dynamic_batch: bool = False, fuse: bool = True, **kwargs
) -> tvm.IRModule:
    """Import a PyTorch model into Relax with every LRN as the safe ``relax.tvm_lrn`` op.

    Parameters
    ----------
    model : torch.nn.Module
        The model (``nn.LocalResponseNorm`` and ``F.local_response_norm`` of any size,
        alpha, beta, k, rank; float32, float16 or bfloat16). It is exported as it is, so
        call ``model.eval()`` first for inference.
    example_args : torch.Tensor or tuple of torch.Tensor
        Example inputs; their shapes (and dtypes) become the module's input types.
    dynamic_batch : bool
        Make dimension 0 of every tensor input symbolic, so one compiled model runs any
        batch size.
    fuse : bool
        Rewrite LRN into the op (default). False returns TVM's plain import.
    **kwargs
        Passed to TVM's ``from_exported_program`` (e.g. ``keep_params_as_input``).

    Returns
    -------
    tvm.IRModule
        A Relax module whose ``main`` takes the tensor inputs.

    Examples
    --------
    >>> mod = tvm_lrn.from_torch(model.eval(), torch.randn(1, 3, 224, 224))
    >>> run = tvm_lrn.compile(mod, "llvm")
    """
    ep = export(model, example_args, dynamic_batch=dynamic_batch)
    return from_exported_program(ep, fuse=fuse, **kwargs)


def _lrn_modules_as_calls(gm):
    """A copy of ``gm`` where ``nn.LocalResponseNorm`` submodules are functional calls.

    TVM's FX importer converts submodules through converters that get no access to the
    block builder, so a leaf ``LocalResponseNorm`` becomes an
    ``F.local_response_norm`` call, which the custom converter below handles.
    """
    import copy

    import torch
    import torch.nn.functional as F

    gm = copy.deepcopy(gm)
    changed = False
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        sub = gm.get_submodule(node.target)
        if isinstance(sub, torch.nn.LocalResponseNorm):
            with gm.graph.inserting_after(node):
                call = gm.graph.call_function(
                    F.local_response_norm, (node.args[0], sub.size, sub.alpha, sub.beta, sub.k)
                )
            node.replace_all_uses_with(call)
            gm.graph.erase_node(node)
            changed = True
    if changed:
        gm.recompile()
    return gm


def _convert_fx_lrn(node, importer):
    """``F.local_response_norm`` node -> ``relax.tvm_lrn`` (exact Python parameters)."""
    from ..op import local_response_norm

    names = ("input", "size", "alpha", "beta", "k")
    defaults = {"alpha": 1e-4, "beta": 0.75, "k": 1.0}
    values = dict(zip(names, node.args, strict=False))
    values.update(node.kwargs)
    x = importer.env[values["input"]]
    params = {n: values.get(n, defaults.get(n)) for n in names[1:]}
    call = local_response_norm(
        x,
        int(params["size"]),
        float(params["alpha"]),
        float(params["beta"]),
        float(params["k"]),
        axis=1,
        convention="torch",
    )
    return importer.block_builder.emit(call)


def from_fx(graph_module, example_inputs, **kwargs) -> tvm.IRModule:
    """Import a torch-level FX graph with TVM's ``from_fx``; LRN becomes ``relax.tvm_lrn``.

    TVM's FX importer has no LRN converter at all (``nn.LocalResponseNorm`` and
    ``F.local_response_norm`` are refused), so both are converted straight to the op;
    LRN written out by hand (square, pool, power) is caught by :func:`FuseLRN`.

    Parameters
    ----------
    graph_module : torch.fx.GraphModule
        E.g. from ``torch.fx.symbolic_trace`` or a Dynamo graph.
    example_inputs : sequence of torch.Tensor or of (shape, dtype)
        Inputs in placeholder order.
    **kwargs
        Passed to ``tvm.relax.frontend.torch.from_fx``.

    Returns
    -------
    tvm.IRModule
    """
    import torch
    from tvm.relax.frontend.torch import from_fx as tvm_from_fx

    input_info = [
        (tuple(a.shape), str(a.dtype).replace("torch.", ""))
        if isinstance(a, torch.Tensor)
        else (tuple(a[0]), str(a[1]))
        for a in example_inputs
    ]
    kwargs.setdefault("unwrap_unit_return_tuple", True)
    custom = {"local_response_norm": _convert_fx_lrn, **kwargs.pop("custom_convert_map", {})}
    gm = _lrn_modules_as_calls(graph_module)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        mod = tvm_from_fx(gm, input_info, custom_convert_map=custom, **kwargs)
    return FuseLRN(exact_scalars_of(gm))(mod)


def to_irmodule_if_torch(obj, example_args=None, **kwargs):
    """Return ``from_torch(obj, example_args)`` for a torch module, ``obj`` otherwise.

    The hook :func:`tvm_lrn.compile` uses to accept a ``torch.nn.Module`` directly;
    it does not import torch unless torch is already loaded (a torch model implies it).

    Parameters
    ----------
    obj : torch.nn.Module, tvm.IRModule or anything else
    example_args : torch.Tensor or tuple, optional
        Required when ``obj`` is a torch module.
    **kwargs
        Passed to :func:`from_torch` (``dynamic_batch=...``).

    Returns
    -------
    tvm.IRModule or the unchanged ``obj``
    """
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not isinstance(obj, torch.nn.Module):
        return obj
    if example_args is None:
        raise ValueError("compiling a torch.nn.Module needs example_args (example inputs)")
    return from_torch(obj, example_args, **kwargs)


def load_exported_program(path):
    """``torch.export.load(path)``, with one clear error for a file that is not an
    archive of ``torch.export.save`` (torch logs its whole traceback as a warning first:
    kept quiet here, since the error says it).

    Parameters
    ----------
    path : str or os.PathLike
        A ``.pt2`` file.

    Returns
    -------
    torch.export.ExportedProgram
    """
    import torch

    export_logger = logging.getLogger("torch.export")
    caught = _Captured()
    # torch's logging gives this logger handlers of its own: swap them out, not only
    # stop propagation
    saved = export_logger.handlers, export_logger.propagate
    export_logger.handlers, export_logger.propagate = [caught], False
    try:
        return torch.export.load(path)
    except Exception as err:  # noqa: BLE001 (torch raises several kinds for a bad file)
        # torch logged the reason (a traceback) and raised "check the warnings above"
        reason = first_line("\n".join(caught.lines) or str(err), limit=200)
        raise ValueError(
            f"{path}: not a torch.export archive (torch.export.save writes one): {reason}"
        ) from None
    finally:
        export_logger.handlers, export_logger.propagate = saved


class _Captured(logging.Handler):
    """Keeps the messages (tracebacks included) a logger emits, instead of printing them."""

    def __init__(self):
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(self.format(record))
