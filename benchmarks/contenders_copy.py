"""The copy roofline: copies of the same bytes by numpy, torch and a TVM kernel.

A one-pass operator cannot be faster than copying its input into its output; the
fastest of these copies in a case is its roofline (``benchmarks/README.md``).
"""

from __future__ import annotations

import numpy as np
from contender import Bench, LRNArgs, Unsupported, host_buffers

__all__ = ["copy_primfunc", "make_copy_numpy", "make_copy_torch", "make_copy_tvm", "numpy_version"]


def numpy_version() -> str:
    return f"numpy {np.__version__}"


def make_copy_numpy(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """``np.copyto`` of the same bytes (one thread; glibc memcpy, non-temporal stores for
    large sizes)."""
    if device != "cpu":
        raise Unsupported("host memory only")
    xa, ya = host_buffers(x)
    return Bench(lambda: np.copyto(ya, xa), lambda: ya.copy(), "memcpy, 1 thread")


def make_copy_torch(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """``out.copy_(x)`` in torch (multi-threaded on CPU, a device-to-device copy on CUDA)."""
    from contenders_torch import to_numpy, torch_buffers

    xt, yt = torch_buffers(x, threads, device)
    return Bench(lambda: yt.copy_(xt), lambda: to_numpy(yt), "Tensor.copy_")


def _as_words(a: np.ndarray) -> np.ndarray:
    """A flat view of ``a``'s bytes (C-contiguous) as the widest unsigned words that divide
    its size.

    A copy moves bytes, not numbers: copying float16 as float16 would let LLVM widen the
    values through conversions on CPUs without native half-precision vectors.
    """
    flat = a.reshape(-1).view(np.uint8)
    for word in (np.uint64, np.uint32, np.uint16):
        if flat.size % np.dtype(word).itemsize == 0:
            return flat.view(word)
    return flat


def copy_primfunc(n: int, dtype: str):
    """A flat copy of ``n`` elements: parallel chunks of vectorized 64-byte moves."""
    from tvm_kernels import flat_map_primfunc

    return flat_map_primfunc(n, dtype, lambda a, i: a[i])


def make_copy_tvm(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """A TVM copy kernel (parallel over chunks, 64-byte vector loads and stores)."""
    if device != "cpu":
        raise Unsupported("CPU kernel only")
    import tvm
    from tvm_kernels import compile_kernel

    xa, ya = host_buffers(x)
    words = _as_words(xa)
    kernel = compile_kernel(copy_primfunc(words.size, words.dtype.name), device)
    xt = tvm.runtime.from_dlpack(words)
    yt = tvm.runtime.from_dlpack(_as_words(ya))
    return Bench(lambda: kernel(xt, yt), ya.copy, "parallel, vectorized")
