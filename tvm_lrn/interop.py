"""Handing numpy arrays and torch tensors to TVM without a copy where TVM accepts the
memory."""

from __future__ import annotations

import functools
import sys

import numpy as np
import tvm
import tvm_ffi

__all__ = [
    "TVM_ALIGNMENT",
    "InputError",
    "borrow",
    "element_alignment",
    "from_tvm",
    "input_dtype",
    "is_torch",
    "numpy_dtype",
    "on_host",
    "plain_cpu_tensor",
    "plain_numpy_array",
    "try_borrow",
]

#: The alignment TVM declares for buffer parameters (and its DLPack import requires).
TVM_ALIGNMENT = 64

_DLPACK_CPU = 1  # kDLCPU: the DLPack device type of host memory


def numpy_dtype(name: str) -> np.dtype:
    """The numpy dtype of a TVM dtype name (``"bfloat16"`` is ml_dtypes')."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def is_torch(x) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "__dlpack__")


def on_host(device) -> bool:
    """Whether ``device`` (a ``tvm.runtime.Device``) is host memory."""
    return device.dlpack_device_type() == _DLPACK_CPU


class InputError(TypeError, ValueError):
    """An input tvm_lrn cannot take (kind, dtype, byte order, shape, count): one type for
    all of them, a TypeError and a ValueError, so that either ``except`` catches it."""


def input_dtype(x, where: str) -> str:
    """The dtype name of ``x`` (a numpy array, torch tensor or TVM tensor), after checking
    that its memory can be handed to TVM; else raise :class:`InputError` saying what to
    do.

    Parameters
    ----------
    x : object
        The input.
    where : str
        What ``x`` is, for the message (e.g. ``"main() argument 0"``).
    """
    if isinstance(x, tvm.runtime.Tensor):
        return str(x.dtype)
    if isinstance(x, np.ma.MaskedArray):
        raise InputError(
            f"{where} is a masked array, whose mask tvm_lrn would lose: pass "
            "x.filled(value) (or np.asarray(x) to ignore the mask)"
        )
    if isinstance(x, np.ndarray | np.generic):
        if not x.dtype.isnative:
            raise InputError(
                f"{where} is big-endian ({x.dtype.str}); TVM reads native byte order: pass "
                "x.astype(x.dtype.newbyteorder('='))"
            )
        return x.dtype.name
    if is_torch(x):
        if x.device.type == "meta":
            raise InputError(
                f"{where} is a meta tensor, which has no data to compute on: pass a "
                "tensor on the CPU or a GPU (torch.compile traces the op through its fake "
                "implementation instead)"
            )
        return str(x.dtype).replace("torch.", "")
    raise InputError(
        f"{where} must be a numpy array, a torch tensor or a tvm.runtime.Tensor, "
        f"got {type(x).__name__}"
    )


@functools.cache
def _torch_dtype(name: str):
    import torch

    return getattr(torch, name, None)


def plain_cpu_tensor(t, dtype: str, shape: tuple) -> bool:
    """Whether ``t`` is a CPU torch tensor of ``dtype`` (a name) and ``shape`` that asks
    for no gradient (what a compiled model's fast path takes)."""
    torch = sys.modules.get("torch")  # not imported: ``t`` is no tensor
    return (
        torch is not None
        and type(t) is torch.Tensor
        and t.dtype is _torch_dtype(dtype)
        and t.shape == shape
        and t.is_cpu
        and not (t.requires_grad and torch.is_grad_enabled())
    )


def plain_numpy_array(a, dtype: np.dtype, shape: tuple) -> bool:
    """Whether ``a`` is a writable, aligned, C-contiguous numpy array of exactly ``dtype``
    and ``shape`` (what a compiled model's fast path hands to a kernel as it is)."""
    if type(a) is not np.ndarray or a.dtype is not dtype or a.shape != shape:
        return False
    flags = a.flags
    return flags.c_contiguous and flags.aligned and flags.writeable


def element_alignment(device) -> int | None:
    """The alignment kernels built with :data:`tvm_lrn.lower.TIR_PIPELINE` need on
    ``device``: None (one element) on the CPU, :data:`TVM_ALIGNMENT` elsewhere
    (:mod:`tvm_lrn.lower.param_alignment`)."""
    return None if on_host(device) else TVM_ALIGNMENT


def try_borrow(x, alignment: int) -> tvm.runtime.Tensor | None:
    """A TVM tensor over ``x``'s memory (contiguous, on its own device, ``alignment``
    bytes aligned), or None where TVM cannot take it as it is."""
    try:
        return tvm_ffi.from_dlpack(x, require_alignment=alignment, require_contiguous=True)
    except (ValueError, RuntimeError, TypeError, BufferError):
        return None  # read-only numpy memory, a dtype DLPack lacks, misaligned memory


def borrow(x, device, alignment: int | None = TVM_ALIGNMENT) -> tvm.runtime.Tensor:
    """A TVM tensor on ``device`` over ``x``'s memory, or over one copy where it cannot be.

    Parameters
    ----------
    x : numpy.ndarray or torch.Tensor
        Any layout; a non-contiguous one is made contiguous first. The caller has
        checked its dtype and detached it from autograd.
    device : tvm.runtime.Device
        Where the kernel runs; memory elsewhere is copied there.
    alignment : int or None
        Bytes the kernel needs its parameters aligned to; None: one element (the CPU
        kernels of :data:`tvm_lrn.lower.TIR_PIPELINE`, :func:`element_alignment`).

    Returns
    -------
    tvm.runtime.Tensor
        Shares memory with ``x`` when it is contiguous, aligned and on ``device``.
    """
    if isinstance(x, np.ndarray | np.generic):
        x = np.asarray(x, order="C")  # keeps a 0-d array 0-d, unlike ascontiguousarray
        same_device = on_host(device)
    else:
        x = x.contiguous()
        kind, index = x.__dlpack_device__()
        same_device = (int(kind), int(index)) == (int(device.dlpack_device_type()), device.index)
    if same_device:
        borrowed = try_borrow(x, alignment or x.itemsize)
        if borrowed is not None:
            return borrowed
    if isinstance(x, np.ndarray):
        return tvm.runtime.tensor(x, device)
    if same_device:  # a copy on the same device keeps it off the host
        return tvm.runtime.from_dlpack(x.clone())
    # through torch's memory, not numpy's: numpy has no bfloat16
    return tvm.runtime.from_dlpack(x.cpu().clone()).copyto(device)


def from_tvm(out, kind: str):
    """A function's result in the kind of array its caller gave.

    Parameters
    ----------
    out : tvm.runtime.Tensor, tuple or other
        What a Relax function returned; tuples are converted element by element, other
        values (shapes, scalars) returned as they are.
    kind : str
        ``"numpy"`` (a zero-copy view where numpy has the dtype), ``"torch"`` (through
        DLPack) or ``"tvm"`` (unchanged).

    Returns
    -------
    numpy.ndarray, torch.Tensor, tvm.runtime.Tensor or tuple
    """
    if isinstance(out, tvm.runtime.Tensor):
        if kind == "torch":
            import torch

            return torch.from_dlpack(out)
        if kind == "numpy":
            return _numpy_view(out)
        return out
    if isinstance(out, list | tuple | tvm.ir.Array):
        return tuple(from_tvm(o, kind) for o in out)
    return out


def _numpy_view(out: tvm.runtime.Tensor) -> np.ndarray:
    """``out`` as numpy without a copy where numpy can view it (a CPU tensor of a numpy
    dtype). The VM's pooled allocator then gets the memory back when the caller drops the
    array, so the next call reuses it instead of faulting in fresh pages."""
    if on_host(out.device):
        try:
            return np.from_dlpack(out)
        except (TypeError, BufferError, RuntimeError, ValueError):
            pass  # bfloat16 has no numpy DLPack dtype
    return out.numpy()
