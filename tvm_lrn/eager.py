"""Eager LRN: ``tvm_lrn.run(x, size=...)`` compiles once per kernel signature and runs."""

from __future__ import annotations

import functools

import numpy as np
import tvm

from . import compute, op
from .interop import borrow_torch
from .spec import LRNParams, canonicalize, check_dtype
from .target import resolve_target

__all__ = ["run", "kernel"]


@functools.lru_cache(maxsize=64)
def kernel(ndim: int, dtype: str, params: LRNParams, target: str, form: str):
    """The compiled LRN kernel ``(x, y)`` for every shape of rank ``ndim``, cached.

    Parameters
    ----------
    ndim : int
        Rank of the input; every dimension is a symbolic int64 extent.
    dtype : str
        Input dtype.
    params : LRNParams
        Canonical parameters, with the axis for ``ndim``.
    target : str
        The target's JSON text (``str(tvm.target.Target(...))``): hashable, so that
        equal targets share a kernel.
    form : str
        The safe form that is built (see :mod:`tvm_lrn.compute.forms`).

    Returns
    -------
    tvm.runtime.Module
        Callable as ``kernel(x, y)`` on tensors of ``target``'s device.
    """
    from .strategy import schedule_primfunc  # late: the strategy imports tvm.s_tir

    target = tvm.target.Target(target)
    if target.kind.name == "cuda":
        # The CUDA source is compiled when first loaded on the GPU: without fast math
        # (flush-to-zero and approximate division break the contract for tiny values).
        from .strategy import set_precise_cuda_math

        set_precise_cuda_math(True)
    with target:  # the compute reads target features (see tvm_lrn.op.lrn_compute)
        func = op.lrn_primfunc([None] * ndim, dtype, params, form=form)
    func = schedule_primfunc(func, target)
    return tvm.compile(func, target=target)


def _device_for(target: tvm.target.Target, index: int = 0):
    return tvm.device(target.get_target_device_type(), index)


def run(x, *, size, alpha=1e-4, beta=0.75, bias=1.0, axis=1, convention="torch", target=None):
    """Apply LRN to ``x`` eagerly.

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor
        Input of rank >= 1; float16, bfloat16, float32 or float64.
    size, alpha, beta, bias, axis, convention
        As in :func:`tvm_lrn.spec.canonicalize`.
    target : str, dict or tvm.target.Target, optional
        Where to compile and run; the host CPU by default. A CUDA target expects a torch
        tensor already on that GPU.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same kind, shape and dtype as ``x``.
    """
    is_torch = _is_torch(x)
    if is_torch:
        dtype = check_dtype(x.dtype)
    else:
        x = np.asarray(x)
        dtype = check_dtype(x.dtype.name)
    params = canonicalize(size, alpha, beta, bias, axis, convention, ndim=x.ndim)
    target = resolve_target(target)
    # The form that is built, so that forms that fall back to the same kernel share it.
    form = compute.resolve_form(dtype, params, op.form_for(target))
    compiled = kernel(x.ndim, dtype, params, str(target), form)
    if is_torch:
        import torch

        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        if x.numel():
            compiled(borrow_torch(x), tvm.runtime.from_dlpack(out))
        return out
    dev = _device_for(target)
    x = np.ascontiguousarray(x)
    out = tvm.runtime.empty(x.shape, dtype, dev)
    if x.size:
        compiled(tvm.runtime.tensor(x, dev), out)
    return out.numpy()


def _is_torch(x) -> bool:
    mod = type(x).__module__
    return mod.startswith("torch") and hasattr(x, "__dlpack__")
