"""What a contender of the LRN benchmark is, what it gets and what it gives back.

Each contender is a factory ``make(x, lrn, threads, device) -> Bench``: it gets the input
(a numpy array), the LRN arguments (:class:`LRNArgs`, torch convention), the thread count
and the device (``"cpu"``, or ``"cuda"`` for ``gpu.py``), does every one-time cost
(compile, export, session creation, output allocation), and returns a :class:`Bench`
whose ``call`` runs the operator once and whose ``result`` hands back the last output as
numpy. The factories live in one module per framework (``contenders_tvm.py``,
``contenders_torch.py``, ``contenders_onnx.py``, ``contenders_copy.py``) and import their
libraries lazily, so that a worker process imports only what its contender needs; the
registry is ``contenders.py``.

A factory raises :class:`Unsupported` for a combination it cannot run (e.g. ONNX
Runtime's LRN kernel has no float16 on CPU); the driver records that as a skipped row
instead of an error.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

__all__ = ["Bench", "Contender", "LRNArgs", "Unsupported", "aligned_copy", "host_buffers"]

_ALIGN = 64


class Unsupported(RuntimeError):
    """This contender cannot run this shape, dtype or device (a skip, not a failure)."""


@dataclasses.dataclass(frozen=True)
class LRNArgs:
    """LRN arguments in the PyTorch convention (``F.local_response_norm``).

    Attributes
    ----------
    size : int
        Window length.
    alpha, beta, k : float
        ``y = x / (k + alpha / size * sum(x**2)) ** beta`` (PyTorch divides alpha by size).
    axis : int
        The channel axis (PyTorch and ONNX Runtime only support 1).
    """

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0
    axis: int = 1

    def params(self, ndim: int):
        """Canonical :class:`tvm_lrn.spec.LRNParams` for an input of rank ``ndim``."""
        from tvm_lrn.spec import canonicalize

        return canonicalize(self.size, self.alpha, self.beta, self.k, self.axis, "torch", ndim=ndim)


@dataclasses.dataclass
class Bench:
    """A prepared contender.

    Attributes
    ----------
    call : callable
        Runs the operator once on the prepared input (asynchronous on CUDA).
    result : callable
        Returns the output of the last ``call`` as a numpy array.
    note : str
        Anything a reader of the results should know (e.g. which schedule was used).
    paired : callable, optional
        Another operator on the same input and output, timed alternately with ``call``
        in the same process, so that the ratio of the two is free of what differs between
        processes (their pages, their placement); the driver checks its output
        (``result`` after a ``paired`` call) and reports ``paired`` time / ``call`` time.
    """

    call: Callable[[], object]
    result: Callable[[], np.ndarray]
    note: str = ""
    paired: Callable[[], object] | None = None


@dataclasses.dataclass(frozen=True)
class Contender:
    """One row label of the benchmark.

    Attributes
    ----------
    key : str
        Name used on the command line and in the CSV's ``contender`` column.
    label : str
        Human-readable name for tables and plots.
    op : str
        ``"lrn"`` or ``"copy"`` (copies are checked against the input, not the LRN).
    make : callable
        The factory, ``make(x, lrn, threads, device) -> Bench``.
    version : callable
        Returns the version string of the library under test.
    devices : tuple of str
        Devices the factory supports.
    peer : bool
        True for the implementations tvm_lrn is compared against.
    what : str
        What one timed call includes.
    """

    key: str
    label: str
    op: str
    make: Callable[..., Bench]
    version: Callable[[], str]
    devices: tuple[str, ...] = ("cpu",)
    peer: bool = False
    what: str = ""


def aligned_copy(x: np.ndarray, align: int = _ALIGN) -> np.ndarray:
    """A C-contiguous copy of ``x`` whose data pointer is a multiple of ``align`` bytes.

    TVM only borrows 64-byte aligned memory through DLPack, and every contender gets its
    own copy of the input with the same alignment.
    """
    raw = np.empty(x.nbytes + align, dtype=np.uint8)
    offset = (-raw.ctypes.data) % align
    out = raw[offset : offset + x.nbytes].view(x.dtype).reshape(x.shape)
    np.copyto(out, x)
    return out


def host_buffers(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The input and a zeroed output of one contender: aligned numpy arrays, whichever
    library then reads and writes them.

    Every contender that gets preallocated buffers gets them from this one allocator, so
    that they are backed alike: numpy asks Linux for transparent huge pages for arrays of
    4 MiB and more, TVM's and torch's CPU allocators do not, and a streaming kernel on
    4 KiB pages is slower (more TLB misses, prefetches stopped at every page; measured in
    ``benchmarks/README.md``, Method).
    """
    return aligned_copy(x), aligned_copy(np.zeros_like(x))
