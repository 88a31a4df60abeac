"""Fresh outputs for ``compiled(x)`` without the Relax VM: :class:`OutputPool`.

A model whose ``main`` is one kernel of its one input (:mod:`tvm_lrn.destination`'s
lone kernels) returns, on every call, a new array that the caller owns. The VM would
allocate it from its pool and hand it over through DLPack; at kernel speed that
machinery (the VM call, two DLPack hand-overs, the Python around them, all of it run
on caches the kernel has just flushed) costs as much as a fifth of a small kernel.
The pool instead keeps a few numpy arrays of the output's shape, each with its TVM
view made once, and calls the kernel straight into one the caller no longer holds.

Each array is a 64-byte aligned window of a byte buffer of its own, as TVM's own
allocator aligns its tensors: numpy's large arrays start 16 bytes into a page, and
vector stores that straddle cache lines slow a streaming kernel.

Whether the caller still holds an array is two reference counts: the array's own
(held by a memoryview, ``np.from_dlpack``, a torch tensor made by ``torch.from_numpy``)
and its buffer's (numpy points every view, and every view of a view, at the buffer
that owns the memory). Taking an array binds it first and then checks the counts, so
two threads can never take the same one (each sees the other's reference and
allocates anew).
"""

from __future__ import annotations

import sys

import numpy as np
import tvm_ffi

from .interop import TVM_ALIGNMENT

__all__ = ["OutputPool"]


def _aligned_empty(dtype: np.dtype, shape: tuple) -> np.ndarray:
    """An uninitialized C-contiguous array whose data are :data:`TVM_ALIGNMENT` aligned
    (its ``base``: the byte buffer that owns them)."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + TVM_ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % TVM_ALIGNMENT
    return raw[start : start + nbytes].view(dtype).reshape(shape)


class OutputPool:
    """Output arrays of one dtype and shape that ``kernel(x, out)`` writes, reused once
    their caller has dropped them.

    Parameters
    ----------
    kernel : tvm_ffi.Function
        A CPU kernel taking the input, then the output, whose buffer parameters need
        one element's alignment (:data:`tvm_lrn.lower.TIR_PIPELINE`).
    dtype : numpy.dtype
        The output's dtype (one DLPack has).
    shape : tuple of int
        The output's shape.
    capacity : int
        Arrays kept at most: with more outputs alive at once, the others are new
        arrays that are not kept.
    """

    def __init__(self, kernel, dtype: np.dtype, shape: tuple, capacity: int = 4):
        self.kernel = kernel
        self.dtype = dtype
        self.shape = shape
        self.capacity = capacity
        # (array, its TVM view, the array's and its buffer's reference counts when free)
        self._arrays = []
        #: ``torch.Tensor`` once torch is imported (when the pool is made or at the first
        #: :meth:`torch` call), else None
        self.tensor_type = None
        self._from_numpy = None
        self._bind_torch(sys.modules.get("torch"))  # not imported here: no torch input yet

    def _bind_torch(self, torch) -> None:
        if torch is not None:
            self.tensor_type, self._from_numpy = torch.Tensor, torch.from_numpy

    def _take(self):
        """An array nobody else holds and its TVM view (the caller binds both)."""
        getrefcount = sys.getrefcount
        for entry in self._arrays:
            array, view, free, buffer_free = entry
            # held by the pool, the view and here; the buffer by the array alone
            if getrefcount(array) == free and getrefcount(array.base) == buffer_free:
                return array, view
        array = _aligned_empty(self.dtype, self.shape)
        view = tvm_ffi.from_dlpack(array, require_alignment=TVM_ALIGNMENT)
        if len(self._arrays) < self.capacity:
            holders = getrefcount(array)  # this binding, the view's owner, the argument
            buffer_holders = getrefcount(array.base)  # the array, the argument
            self._arrays.append((array, view, holders + 1, buffer_holders))  # and the entry
        return array, view

    def numpy(self, x) -> np.ndarray:
        """``kernel(x)`` into an array the caller owns.

        Parameters
        ----------
        x : numpy.ndarray or torch.Tensor
            The kernel's input, as the kernel takes it (checked by the caller).

        Returns
        -------
        numpy.ndarray
            A pooled array nobody else held, or a new one; the pool keeps a reference
            to it (a weak reference to it does not die with the caller's).
        """
        array, view = self._take()
        self.kernel(x, view)
        return array

    def torch(self, x):
        """``kernel(x)`` into a torch tensor the caller owns: ``torch.from_numpy`` of
        what :meth:`numpy` would return, whose storage (shared by every view of the
        tensor) holds that array."""
        if self._from_numpy is None:
            import torch

            self._bind_torch(torch)
        array, view = self._take()
        self.kernel(x, view)
        return self._from_numpy(array)
