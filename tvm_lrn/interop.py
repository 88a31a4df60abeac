"""Handing torch tensors to TVM without a copy where TVM accepts the memory."""

from __future__ import annotations

import tvm

__all__ = ["borrow_torch"]


def borrow_torch(t) -> tvm.runtime.Tensor:
    """A TVM tensor over ``t``'s memory (DLPack), or over one copy where TVM refuses it.

    Parameters
    ----------
    t : torch.Tensor
        Any layout; a non-contiguous tensor is made contiguous first.

    Returns
    -------
    tvm.runtime.Tensor
        Shares memory with ``t`` when ``t`` is contiguous and 64-byte aligned (TVM only
        borrows aligned memory; ``torch.from_numpy`` results often are not).
    """
    t = t.detach().contiguous()
    try:
        return tvm.runtime.from_dlpack(t)
    except (ValueError, RuntimeError):
        return tvm.runtime.from_dlpack(t.clone())
