"""ONNX import with ``LRN`` mapped straight to the safe ``relax.tvm_lrn`` op.

TVM 0.27's own ``LRN`` converter decomposes LRN into the unsafe pool chain, hard-codes
float32 constants (float16 models fail to import) and pads ``size // 2`` on both sides
(even sizes give a tensor one channel too long and fail). ``from_onnx`` has no hook for
custom converters, so :func:`from_onnx` swaps the module-level ``_get_convert_map`` of
TVM's ONNX frontend for the duration of one import, under a lock, and restores it in a
``finally``. Every other node goes through TVM's converters unchanged.
"""

from __future__ import annotations

import contextlib
import threading

import tvm

from ..transform import FuseLRN

__all__ = ["from_onnx", "lrn_converter", "onnx_lrn_converters"]

_PATCH_LOCK = threading.RLock()


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


def onnx_lrn_converters() -> dict:
    """The converters :func:`from_onnx` adds to TVM's map (``{"LRN": ...}``)."""
    return {"LRN": lrn_converter()}


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
        model = onnx.load(str(model))
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
