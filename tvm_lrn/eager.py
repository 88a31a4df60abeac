"""Eager LRN: ``tvm_lrn.run(x, size=...)`` compiles once per kernel signature and runs."""

from __future__ import annotations

import functools

import numpy as np
import tvm
from tvm import te

from . import compute, op
from .interop import borrow_torch
from .spec import LRNParams, canonicalize, check_dtype
from .target import resolve_target

__all__ = ["run", "lrn_primfunc"]


def lrn_primfunc(
    ndim: int,
    dtype: str,
    params: LRNParams,
    *,
    safe_scaling: bool = True,
    form: str | None = None,
) -> tvm.tirx.PrimFunc:
    """A PrimFunc ``main(x, y)`` for every shape of rank ``ndim`` (int64 symbolic dims).

    Parameters
    ----------
    ndim : int
        Rank of the input.
    dtype : str
        Input dtype.
    params : LRNParams
        Canonical parameters; the axis is checked against ``ndim``.
    safe_scaling : bool
        ``False`` only for benchmarks (see :func:`tvm_lrn.compute.lrn`).
    form : str, optional
        The safe form (see :func:`tvm_lrn.compute.lrn`); by default the one for the
        current target.

    Returns
    -------
    tvm.tirx.PrimFunc
        Carries the LRN parameters as attributes (``tvm_lrn.*``).
    """
    params = params.with_axis(ndim)
    shape = [te.var(f"n{i}", dtype="int64") for i in range(ndim)]
    x = te.placeholder(shape, check_dtype(dtype), name="x")
    y = op.lrn_compute(x, params, safe_scaling=safe_scaling, form=form)
    func = te.create_prim_func([x, y])
    return func.with_attrs({"tvm_lrn." + k: v for k, v in params.as_attrs().items()})


def _form_for(target: tvm.target.Target) -> str:
    # A module-level hook (tests force each safe form through it).
    return op.form_for(target)


@functools.lru_cache(maxsize=64)
def _kernel(ndim: int, dtype: str, params: LRNParams, target_json: str, form: str):
    from .strategy import schedule_primfunc  # late: the strategy imports tvm.s_tir

    target = _TARGETS[target_json]
    if target.kind.name == "cuda":
        # The CUDA source is compiled when first loaded on the GPU: without fast math
        # (flush-to-zero and approximate division break the contract for tiny values).
        from .strategy import set_precise_cuda_math

        set_precise_cuda_math(True)
    with target:  # the compute reads target features (see tvm_lrn.compute.lrn)
        func = lrn_primfunc(ndim, dtype, params, form=form)
    func = schedule_primfunc(func, target)
    return tvm.compile(func, target=target)


_TARGETS: dict[str, tvm.target.Target] = {}


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
    key = str(target)
    _TARGETS.setdefault(key, target)
    # The form that is built, so that forms that fall back to the same kernel share it.
    form = compute.resolve_form(dtype, params, _form_for(target))
    kernel = _kernel(x.ndim, dtype, params, key, form)
    if is_torch:
        import torch

        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        if x.numel():
            kernel(borrow_torch(x), tvm.runtime.from_dlpack(out))
        return out
    dev = _device_for(target)
    x = np.ascontiguousarray(x)
    out = tvm.runtime.empty(x.shape, dtype, dev)
    if x.size:
        kernel(tvm.runtime.tensor(x, dev), out)
    return out.numpy()


def _is_torch(x) -> bool:
    mod = type(x).__module__
    return mod.startswith("torch") and hasattr(x, "__dlpack__")
