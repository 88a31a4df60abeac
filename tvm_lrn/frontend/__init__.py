"""Model import: PyTorch (torch.export) and ONNX, with LRN as the safe ``relax.tvm_lrn`` op.

The submodules import torch / onnx only when called, so importing this package is cheap.
"""

from __future__ import annotations

__all__ = ["from_onnx", "from_torch", "to_irmodule_if_torch"]


def from_torch(model, example_args, *, dynamic_batch=False, **kwargs):
    """See :func:`tvm_lrn.frontend.torch.from_torch`."""
    from .torch import from_torch as _from_torch

    return _from_torch(model, example_args, dynamic_batch=dynamic_batch, **kwargs)


def from_onnx(model, shape_dict=None, dtype_dict=None, opset=None, **kwargs):
    """See :func:`tvm_lrn.frontend.onnx.from_onnx`."""
    from .onnx import from_onnx as _from_onnx

    return _from_onnx(model, shape_dict, dtype_dict, opset, **kwargs)


def to_irmodule_if_torch(obj, example_args=None, **kwargs):
    """See :func:`tvm_lrn.frontend.torch.to_irmodule_if_torch`."""
    from .torch import to_irmodule_if_torch as _convert

    return _convert(obj, example_args, **kwargs)
