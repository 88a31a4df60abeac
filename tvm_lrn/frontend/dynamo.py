"""``torch.compile(model, backend="tvm_lrn")``: safe LRN inside PyTorch's own compiler.

The backend is registered through the package's entry point (group
``torch_dynamo_backends``, name ``tvm_lrn``), so ``torch.compile`` finds it by name once
the package is installed. Dynamo hands over an FX ``GraphModule`` at the torch level
(``F.local_response_norm`` is still one call there) plus example inputs.

By default the backend rewrites every LRN call into the custom op
``torch.ops.tvm_lrn.local_response_norm`` (:mod:`tvm_lrn.frontend.torch_op`: the TVM
kernel, with a fake implementation and a backward) and hands the graph to inductor,
which compiles convolutions and the rest as it always does.

With ``options={"whole_graph": True}`` the whole graph goes to TVM instead
(:func:`compile_graph`): the path of :func:`tvm_lrn.from_torch` (``torch.export``,
TVM's importer, :func:`~tvm_lrn.transform.FuseLRN`) and :func:`tvm_lrn.compile`. If
``torch.export`` refuses the graph, TVM's FX importer takes it
(:func:`tvm_lrn.frontend.torch.from_fx`). A graph that path cannot take (symbolic sizes
passed as inputs, as ``dynamic=True`` and Dynamo's recompiles after a new shape give; an
op TVM does not import; a graph that needs gradients, which a TVM model does not give)
goes the default way instead, with a warning: never eagerly, where LRN would overflow,
and never detached.
"""

from __future__ import annotations

import logging
import warnings

from ..errors import first_line

__all__ = ["compile_graph", "tvm_lrn_backend"]

logger = logging.getLogger("tvm_lrn")


def compile_graph(gm, example_inputs, target=None):
    """Compile a Dynamo ``GraphModule`` into a callable with the graph's calling convention.

    Parameters
    ----------
    gm : torch.fx.GraphModule
        The graph Dynamo captured (it returns a tuple of tensors).
    example_inputs : list of torch.Tensor
        Example inputs in the graph's placeholder order.
    target : None, str, dict or tvm.target.Target
        Where to compile for (default this CPU).

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
        ``whole_graph=True`` compiles the whole graph with TVM (else LRN becomes the
        custom op and inductor compiles the graph); ``target=`` (default this CPU) for
        the whole graph. Other keys are ignored.

    Returns
    -------
    callable
        The compiled graph.
    """
    import torch

    # torch.compile(..., options={...}) hands a callable backend ``options=`` itself.
    options = {**options, **(options.pop("options", None) or {})}
    if not options.get("whole_graph", False):
        return _inductor_with_safe_lrn(gm, example_inputs)
    if torch.is_grad_enabled() and any(getattr(a, "requires_grad", False) for a in example_inputs):
        warnings.warn(
            "tvm_lrn backend: the graph needs gradients (inputs or parameters require "
            "grad), which a whole-graph TVM model does not compute; inductor compiles it "
            "with the safe LRN op, which has a backward (torch.no_grad() or "
            "torch.inference_mode() around the call gives the whole-graph mode)",
            stacklevel=2,
        )
        return _inductor_with_safe_lrn(gm, example_inputs)
    if not all(isinstance(a, torch.Tensor) for a in example_inputs):
        warnings.warn(
            "tvm_lrn backend: the graph takes symbolic sizes, which the whole-graph mode "
            "cannot compile; inductor compiles it with the safe LRN op instead",
            stacklevel=2,
        )
        return _inductor_with_safe_lrn(gm, example_inputs)
    try:
        return compile_graph(gm, example_inputs, options.get("target"))
    except Exception as err:  # noqa: BLE001 (any import/compile failure: stay correct)
        logger.warning("tvm_lrn backend: compiling the graph failed (%s)", err)
        warnings.warn(
            f"tvm_lrn backend: the whole graph did not compile ({first_line(err)}); "
            "inductor compiles it with the safe LRN op instead",
            stacklevel=2,
        )
        return _inductor_with_safe_lrn(gm, example_inputs)


def _inductor_with_safe_lrn(gm, example_inputs):
    """Inductor's compilation of ``gm`` with every LRN call as the safe custom op (it
    takes symbolic sizes too: the op's kernel is compiled per rank, not per shape)."""
    from torch._inductor.compile_fx import compile_fx

    from .torch_op import replace_lrn

    logger.info("tvm_lrn backend: %d LRN calls -> tvm_lrn custom op", replace_lrn(gm))
    return compile_fx(gm, example_inputs)
