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

import numbers
import warnings

import numpy as np
import tvm

from ..transform import FuseLRN

__all__ = [
    "exact_scalars_of",
    "export",
    "from_exported_program",
    "from_torch",
    "to_irmodule_if_torch",
]

_NARROW_DTYPES = ("float16", "bfloat16", "float32")


def _round_to(value: float, dtype: str) -> float:
    import ml_dtypes

    np_dtype = ml_dtypes.bfloat16 if dtype == "bfloat16" else np.dtype(dtype)
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
