"""``torch.compile(model, backend="tvm_lrn")``: compile Dynamo graphs with TVM and safe LRN.

The backend is registered through the package's entry point (group
``torch_dynamo_backends``, name ``tvm_lrn``), so ``torch.compile`` finds it by name once
the package is installed. Dynamo hands over an FX ``GraphModule`` at the torch level
(``F.local_response_norm`` is still one call there) plus example inputs; the backend runs
it through the same path as :func:`tvm_lrn.from_torch` (``torch.export``, TVM's importer,
:func:`~tvm_lrn.transform.FuseLRN`) and :func:`tvm_lrn.compile`, and returns a callable.
If ``torch.export`` refuses the graph, TVM's FX importer takes it instead
(:func:`tvm_lrn.frontend.torch.from_fx`, LRN converted straight to the op).
A graph the path cannot take (symbolic sizes passed as inputs, an op TVM does not import)
falls back to running eagerly, with a warning, instead of failing the user's model.
"""

from __future__ import annotations

import logging
import warnings

__all__ = ["compile_graph", "tvm_lrn_backend"]

logger = logging.getLogger("tvm_lrn")


def compile_graph(gm, example_inputs, target="llvm"):
    """Compile a Dynamo ``GraphModule`` into a callable with the graph's calling convention.

    Parameters
    ----------
    gm : torch.fx.GraphModule
        The graph Dynamo captured (it returns a tuple of tensors).
    example_inputs : list of torch.Tensor
        Example inputs in the graph's placeholder order.
    target : str, dict or tvm.target.Target
        Where to compile for (default the host CPU, ``"llvm"``).

    Returns
    -------
    callable
        ``f(*tensors) -> tuple of torch.Tensor``.
    """
    from ..build import compile as compile_model
    from .torch import from_fx, from_torch

    try:
        # Keep the graph's tuple output (Dynamo expects one), even for a single result.
        mod = from_torch(gm, tuple(example_inputs), unwrap_unit_return_tuple=False)
    except Exception as err:  # noqa: BLE001 (torch.export refuses some graphs)
        logger.info("tvm_lrn backend: torch.export failed (%s); using TVM's FX importer", err)
        mod = from_fx(gm, example_inputs, unwrap_unit_return_tuple=False)
    model = compile_model(mod, target)

    def run(*args):
        out = model(*args)
        return tuple(out) if isinstance(out, tuple | list) else (out,)

    run.tvm_lrn_model = model  # for inspection (schedule sources, generated code)
    run.tvm_lrn_module = mod
    return run


def tvm_lrn_backend(gm, example_inputs, **options):
    """The ``torch.compile`` backend ``"tvm_lrn"``.

    Parameters
    ----------
    gm : torch.fx.GraphModule
        Graph captured by Dynamo.
    example_inputs : list
        Its example inputs.
    **options
        ``target=`` (default ``"llvm"``); other keys are ignored.

    Returns
    -------
    callable
        The compiled graph, or ``gm.forward`` if it could not be compiled.
    """
    import torch

    target = options.get("target", "llvm")
    if not all(isinstance(a, torch.Tensor) for a in example_inputs):
        warnings.warn(
            "tvm_lrn backend: graph takes non-tensor inputs (symbolic sizes); running it "
            "eagerly. Use torch.compile(..., dynamic=False) or tvm_lrn.from_torch("
            "dynamic_batch=True) for a compiled dynamic batch.",
            stacklevel=2,
        )
        return gm.forward
    try:
        return compile_graph(gm, example_inputs, target)
    except Exception as err:  # noqa: BLE001 (any import/compile failure: stay correct)
        logger.warning("tvm_lrn backend: compiling the graph failed (%s); running eagerly", err)
        warnings.warn(f"tvm_lrn backend fell back to eager: {err}", stacklevel=2)
        return gm.forward
