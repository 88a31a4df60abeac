"""ONNX import with ``LRN`` mapped straight to the safe ``relax.tvm_lrn`` op.

TVM 0.27's own ``LRN`` converter decomposes LRN into the unsafe pool chain, hard-codes
float32 constants (float16 models fail to import) and pads ``size // 2`` on both sides
(even sizes give a tensor one channel too long and fail). ``from_onnx`` has no hook for
custom converters, so :func:`from_onnx` swaps the module-level ``_get_convert_map`` of
TVM's ONNX frontend for the duration of one import, under a lock, and restores it in a
``finally``.

PyTorch's exporters have no ONNX ``LRN`` for ``F.local_response_norm``: they write its
decomposition (square, reshape, pad, AveragePool, scale, add, power, divide), the legacy
exporter with the pads computed from shapes and an ``If`` on the rank. Before import the
graph's constant subgraphs are folded with onnxscript's optimizer (shapes are static once
known), and ``Pad`` with constant pads becomes ``relax.op.nn.pad`` rather than TVM's
opaque TE pad, so that :func:`~tvm_lrn.transform.FuseLRN` sees the window and fuses the
chain into the safe op. Every other node goes through TVM's converters unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading

import tvm

from ..transform import FuseLRN

__all__ = ["from_onnx", "lrn_converter", "onnx_lrn_converters"]

_PATCH_LOCK = threading.RLock()
logger = logging.getLogger("tvm_lrn")


def lrn_converter():
    """The ``OnnxOpConverter`` subclass that converts ONNX ``LRN`` (every opset).

    Returns
    -------
    type
        A subclass of TVM's ``OnnxOpConverter`` whose ``_impl_v1`` (chosen for every opset,
        1 and 13 included: the attributes never changed) emits
        ``tvm_lrn.op.local_response_norm(x, size, alpha, beta, bias, axis=1,
        convention="onnx")``.
    """
    from tvm.relax.frontend.onnx import onnx_frontend

    from ..op import local_response_norm

    class LRN(onnx_frontend.OnnxOpConverter):
        """ONNX LRN -> relax.tvm_lrn (ONNX window: (size-1)//2 before, the rest after)."""

        @classmethod
        def _impl_v1(cls, bb, inputs, attr, params):
            if "size" not in attr:
                raise ValueError("ONNX LRN needs the 'size' attribute")
            return local_response_norm(
                inputs[0],
                int(attr["size"]),
                alpha=float(attr.get("alpha", 1e-4)),
                beta=float(attr.get("beta", 0.75)),
                bias=float(attr.get("bias", 1.0)),
                axis=1,
                convention="onnx",
            )

    return LRN


def pad_converter():
    """TVM's ``Pad`` converter, emitting ``relax.op.nn.pad`` for the constant mode.

    Returns
    -------
    type
        A subclass of TVM's ``Pad`` converter: constant padding (the zero padding of the
        LRN window) becomes the Relax op, which :func:`~tvm_lrn.transform.FuseLRN` reads;
        the other modes stay TVM's.
    """
    from tvm import relax
    from tvm.relax.frontend.onnx import onnx_frontend

    class Pad(onnx_frontend.Pad):
        """ONNX Pad -> relax.op.nn.pad (constant mode), else TVM's TE pads."""

        @classmethod
        def _lower_pad(cls, bb, inputs, attr, params, allowed_modes):
            if attr.get("mode", b"constant").decode("utf-8") != "constant":
                return super()._lower_pad(bb, inputs, attr, params, allowed_modes)
            before, after, value = cls._parse_pads_and_axes(inputs, params)
            widths = [int(w) for pair in zip(before, after, strict=True) for w in pair]
            return bb.emit(relax.op.nn.pad(inputs[0], widths, "constant", float(value)))

    return Pad


def onnx_lrn_converters() -> dict:
    """The converters :func:`from_onnx` adds to TVM's map (``LRN`` and ``Pad``)."""
    return {"LRN": lrn_converter(), "Pad": pad_converter()}


def fold_constants(model, shape_dict=None):
    """Fold the constant and shape-computed subgraphs of an ONNX model (onnxscript).

    Parameters
    ----------
    model : onnx.ModelProto
        Not changed.
    shape_dict : dict of str to list of int, optional
        Input shapes to fold with (overriding the model's).

    Returns
    -------
    onnx.ModelProto
        The folded model, or ``model`` itself when onnxscript is not installed (then a
        graph whose pads are computed from shapes fails to import, with TVM's error).
    """
    try:
        import onnx_ir as ir
        from onnxscript.optimizer import fold_constants as fold
        from onnxscript.optimizer import remove_unused_nodes
    except ImportError:
        logger.info("onnxscript is not installed: shape computations are not folded")
        return model
    graph = ir.from_proto(model)
    for value in graph.graph.inputs:
        if shape_dict and value.name in shape_dict:
            value.shape = ir.Shape([int(d) for d in shape_dict[value.name]])
    # ConstantOfShape is kept by default (to keep files small); here it feeds the pads.
    keep_none = lambda node: True if node.op_type == "ConstantOfShape" else None  # noqa: E731
    while fold(graph, onnx_shape_inference=True, should_fold=keep_none).modified:
        pass
    remove_unused_nodes(graph)
    return ir.to_proto(graph)


@contextlib.contextmanager
def _patched_convert_map(extra: dict):
    """Make TVM's ONNX frontend see ``extra`` converters, restoring it afterwards."""
    from tvm.relax.frontend.onnx import onnx_frontend

    with _PATCH_LOCK:
        original = onnx_frontend._get_convert_map

        def get_convert_map():
            return {**original(), **extra}

        onnx_frontend._get_convert_map = get_convert_map
        try:
            yield
        finally:
            onnx_frontend._get_convert_map = original


def from_onnx(
    model,
    shape_dict=None,
    dtype_dict=None,
    opset=None,
    *,
    keep_params_in_input=False,
    sanitize_input_names=True,
    fuse=True,
) -> tvm.IRModule:
    """Import an ONNX model into Relax with every ``LRN`` as the safe ``relax.tvm_lrn`` op.

    Parameters
    ----------
    model : onnx.ModelProto or str or os.PathLike
        The model, or a path to a ``.onnx`` file.
    shape_dict : dict of str to list of int, optional
        Input shapes overriding the model's (needed for symbolic dims you want fixed).
    dtype_dict : dict of str to str, optional
        Input dtypes overriding the model's (by default the model's declared types).
    opset : int, optional
        Override the opset read from the model.
    keep_params_in_input : bool
        Keep initializers as function parameters instead of constants.
    sanitize_input_names : bool
        Make input names valid Relax identifiers.
    fuse : bool
        Also run :func:`tvm_lrn.transform.FuseLRN`, which catches LRN written out by hand
        (pool chains) in the graph. Default True.

    Returns
    -------
    tvm.IRModule

    Notes
    -----
    ONNX ``LRN`` takes ``size``, ``alpha`` (divided by ``size``), ``beta`` and ``bias`` over
    axis 1; even sizes put ``(size-1)//2`` channels before and ``size//2`` after, which
    differs from PyTorch. Both are exact here, as are float16 and bfloat16 inputs.
    """
    import onnx
    from tvm.relax.frontend.onnx import from_onnx as tvm_from_onnx

    if not isinstance(model, onnx.ModelProto):
        model = _load(model)
    _check_shape_dict(model, shape_dict)
    model = fold_constants(model, shape_dict)
    with _patched_convert_map(onnx_lrn_converters()):
        mod = tvm_from_onnx(
            model,
            shape_dict=shape_dict,
            dtype_dict=dtype_dict,
            opset=opset,
            keep_params_in_input=keep_params_in_input,
            sanitize_input_names=sanitize_input_names,
        )
    return FuseLRN()(mod) if fuse else mod


def _load(path):
    import onnx

    if not isinstance(path, str | os.PathLike):
        raise TypeError(
            f"from_onnx takes an onnx.ModelProto or a path to a .onnx file, got "
            f"{type(path).__name__}"
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no ONNX file at {os.fspath(path)!r}")
    try:
        return onnx.load(os.fspath(path))
    except Exception as err:  # noqa: BLE001 (protobuf raises its own DecodeError)
        raise ValueError(f"{os.fspath(path)!r} is not an ONNX model: {err}") from None


def _check_shape_dict(model, shape_dict) -> None:
    if not shape_dict:
        return
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    unknown = sorted(set(shape_dict) - set(inputs))
    if unknown:
        raise ValueError(f"shape_dict names {unknown}, not inputs of the model: {inputs}")
