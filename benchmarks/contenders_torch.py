"""The PyTorch contenders: ``F.local_response_norm`` eager and under ``torch.compile``.

torch eager has no ``out=`` form of ``F.local_response_norm`` and allocates its output
on every call; torch.compile gets the same preallocated output as the others (its
compiled function writes into it, see :func:`make_torch_compile`). The torch tensors of
the other contenders (the copy, TVM's CUDA buffers) come from :func:`torch_buffers`.
"""

from __future__ import annotations

import numpy as np
from contender import Bench, LRNArgs, Unsupported, aligned_copy, host_buffers

__all__ = [
    "free_device_memory",
    "make_torch",
    "make_torch_compile",
    "to_numpy",
    "torch_input",
    "torch_buffers",
    "torch_version",
    "torch_with_threads",
    "synchronize",
]


def torch_with_threads(threads: int):
    """The torch module, its intra-op thread count set to ``threads`` (0: unchanged)."""
    import torch

    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return torch


def torch_input(x: np.ndarray, threads: int, device: str):
    """A torch tensor of ``x`` (an aligned copy) on ``device``."""
    torch = torch_with_threads(threads)
    t = torch.from_numpy(aligned_copy(x))
    return t.to(device) if device != "cpu" else t


def torch_buffers(x: np.ndarray, threads: int, device: str):
    """Input and preallocated output as torch tensors: :func:`contender.host_buffers` on
    the CPU, device memory otherwise."""
    torch = torch_with_threads(threads)
    if device == "cpu":
        xa, ya = host_buffers(x)
        return torch.from_numpy(xa), torch.from_numpy(ya)
    xt = torch_input(x, threads, device)
    return xt, torch.empty_like(xt)


def to_numpy(t) -> np.ndarray:
    """A torch tensor's values as a numpy array on the host."""
    return t.detach().cpu().numpy()


def synchronize(device: str) -> None:
    """Wait for the work queued on ``device``."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def free_device_memory(device: str) -> None:
    """Hand torch's cached CUDA blocks back (between cases of up to 191 MB)."""
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def torch_version() -> str:
    import torch

    return f"torch {torch.__version__}"


def make_torch(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """``torch.nn.functional.local_response_norm`` in eager mode (allocates its output)."""
    import torch.nn.functional as F

    xt = torch_input(x, threads, device)
    last = {}

    def call():
        last["y"] = F.local_response_norm(xt, lrn.size, lrn.alpha, lrn.beta, lrn.k)

    try:
        call()
    except NotImplementedError as err:  # e.g. avg_pool3d has no float16 CPU kernel
        raise Unsupported(f"torch: {str(err).splitlines()[0]}") from None

    return Bench(call, lambda: to_numpy(last["y"]), "allocates its output per call")


def make_torch_compile(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """``torch.compile`` (inductor, static shapes) of ``F.local_response_norm``.

    The compiled function writes into a preallocated output (``out.copy_(lrn(x))``), which
    inductor fuses into its kernel, so that torch.compile, like tvm_lrn, is timed without
    an allocation per call.
    """
    import torch.nn.functional as F

    torch = torch_with_threads(threads)
    xt, yt = torch_buffers(x, threads, device)

    def lrn_into(inp, out):
        out.copy_(F.local_response_norm(inp, lrn.size, lrn.alpha, lrn.beta, lrn.k))

    # One worker times many shapes with the same function: start dynamo afresh so that
    # each shape is one compilation, not a recompilation counted against the limit.
    torch._dynamo.reset()
    compiled = torch.compile(lrn_into, dynamic=False, fullgraph=True)
    with torch.no_grad():
        compiled(xt, yt)  # compile now, not in the first timed call
    synchronize(device)

    def call():
        with torch.no_grad():
            compiled(xt, yt)

    return Bench(call, lambda: to_numpy(yt), "inductor, writes a preallocated output")
