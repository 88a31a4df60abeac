"""Eager LRN: ``tvm_lrn.run(x, size=...)`` compiles a model once per shape and runs it.

Each call runs a compiled one-op model (:func:`model`) specialized to the shape: the
kernel a compiled network runs, at its speed, with its zero-copy input and its pooled
output memory (an output the caller has dropped is reused by the next call instead of
fresh pages). A kernel for every shape of a rank was slower by several times and took
longer to compile than one shape does.
"""

from __future__ import annotations

import functools

import numpy as np
import tvm
from tvm import relax

from . import compute, op
from .interop import InputError, input_dtype
from .spec import LRNParams, canonicalize, check_dtype
from .target import require_device, resolve_target

__all__ = ["model", "run"]

#: Compiled shapes kept (each model keeps its pooled output memory until evicted).
CACHED_MODELS = 16

# run()'s arguments -> model()'s, so that a repeated call skips validating and resolving
# them again (which took as long as a small kernel). Keys hold the input's type, device
# and dtype object too: an input that would fail a check never matches a checked one.
_RESOLVED: dict = {}


@functools.lru_cache(maxsize=CACHED_MODELS)
def model(shape: tuple, dtype: str, params: LRNParams, target: str, form: str):
    """The compiled model ``main(x) = LRN(x)`` for inputs of ``shape``, cached.

    Parameters
    ----------
    shape : tuple of int
        The input shape.
    dtype : str
        Input dtype.
    params : LRNParams
        Canonical parameters, with the axis for ``len(shape)`` (the window is cut to
        the axis when the kernel is built, :meth:`LRNParams.clamped`).
    target : str
        The target's JSON text (``str(tvm.target.Target(...))``): hashable, so that
        equal targets share a model.
    form : str
        The safe form that legalization builds (see :mod:`tvm_lrn.compute.forms`); part
        of the key, so that a forced form gets its own model.

    Returns
    -------
    tvm_lrn.model.Model
    """
    from .build import compile as compile_model  # late: build imports the strategy

    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, dtype))
    with bb.function("main", [x]):
        with bb.dataflow():
            p = params
            y = bb.emit_output(op.tvm_lrn(x, p.lo, p.hi, p.alpha, p.beta, p.bias, p.axis))
        bb.emit_func_output(y)
    return compile_model(bb.get(), tvm.target.Target(target))


def run(x, *, size, alpha=1e-4, beta=0.75, bias=1.0, axis=1, convention="torch", target=None):
    """Apply LRN to ``x`` eagerly.

    The first call for a shape, dtype and set of parameters compiles (about as long as
    one :func:`tvm_lrn.compile` of a one-op model); later calls reuse it
    (:data:`CACHED_MODELS` are kept).

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor
        Input of rank >= 1; float16, bfloat16, float32 or float64. A torch tensor that
        requires grad gets one through ``torch.ops.tvm_lrn.local_response_norm``, whose
        backward is LRN's derivative (PyTorch's window over axis 1 of rank >= 3).
    size, alpha, beta, bias, axis, convention
        As in :func:`tvm_lrn.spec.canonicalize`.
    target : str, dict or tvm.target.Target, optional
        Where to compile and run; by default the host CPU, or CUDA for a torch tensor on
        a GPU. A CUDA target takes a torch tensor on that GPU (or copies a host input
        there and back).

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Same kind, shape and dtype as ``x``.

    Raises
    ------
    InputError
        ``x`` is not an array LRN takes (its dtype, byte order, a mask, a meta tensor).
    RuntimeError
        ``target``'s device is not on this machine (checked before compiling).
    """
    if not hasattr(x, "__dlpack__") and not isinstance(x, np.generic):
        x = np.asarray(x)  # lists and other array-likes, as numpy functions take them
    try:
        key = (type(x), getattr(x, "device", None), x.dtype, tuple(x.shape))
        key += (size, alpha, beta, bias, axis, convention, target)
        resolved = _RESOLVED.get(key)
    except TypeError:  # an unhashable argument (a dict target): resolve every time
        key, resolved = None, None
    if resolved is None or getattr(x, "requires_grad", False):
        resolved = _resolve(x, size, (alpha, beta, bias, axis, convention), target)
        if isinstance(resolved, LRNParams):  # gradients asked for: the custom op
            return _with_grad(x, resolved)
        if key is not None:
            if len(_RESOLVED) > 4 * CACHED_MODELS:
                _RESOLVED.clear()
            _RESOLVED[key] = resolved
    if 0 in resolved[0]:
        return x.clone() if hasattr(x, "clone") else np.empty_like(x)
    return model(*resolved)(x)


def _resolve(x, size, rest: tuple, target):
    """The arguments of :func:`model` for ``run(x, size, *rest, target)``, after every
    check; only the canonical parameters where ``x`` asks for gradients."""
    dtype = input_dtype(x, "run() input")
    try:
        check_dtype(dtype)
    except TypeError as err:
        raise InputError(str(err)) from None
    params = canonicalize(size, *rest, ndim=x.ndim)
    if getattr(x, "requires_grad", False):
        import torch

        if torch.is_grad_enabled():
            return params
    if target is None and getattr(x, "is_cuda", False):
        target = "cuda"  # where the tensor is, not the host CPU
    target = resolve_target(target)
    require_device(tvm.device(target.get_target_device_type(), 0), f"target {target.kind.name}")
    shape = tuple(int(d) for d in x.shape)
    # The form legalization will build, so that forms that build the same kernel share it.
    window = params.clamped(shape[params.axis]) if shape else params
    form = compute.resolve_form(dtype, window, op.form_for(target, shape, params.axis))
    return shape, dtype, params, str(target), form


def _with_grad(x, params: LRNParams):
    """LRN of a tensor that requires grad, through the custom op (it has a backward); an
    LRN the op cannot express is refused."""
    size = params.size
    if params.axis != 1 or x.dim() < 3 or (params.lo, params.hi) != (size // 2, (size - 1) // 2):
        raise InputError(
            "run(): the input requires grad, and gradients are computed for PyTorch's "
            "window over axis 1 of a rank >= 3 tensor only "
            f"(this LRN: axis {params.axis}, rank {x.dim()}, window -{params.lo}/+{params.hi}); "
            "pass x.detach() or call it under torch.no_grad()"
        )
    from .frontend.torch_op import local_response_norm

    return local_response_norm(x, size, params.alpha * size, params.beta, params.bias)
