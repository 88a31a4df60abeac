"""tvm_lrn as its users call it: a compiled model's ``compiled(x)`` and ``tvm_lrn.run(x)``.

Unlike the kernel rows, these get no preallocated buffers: the input is a plain numpy
array (or ``torch.from_numpy`` of one), as a user holds it, and every call returns a
new output, kept until the next call returns (as ``y = compiled(x)`` in a loop keeps
it); ``compiled_out`` passes one preallocated ``out=`` every call instead. What the rows
cost over the ``tvm_lrn`` kernel is the price of the user path: argument checks, the
Relax VM, handing memory over, and the output's allocation. Each is timed alternately
with that kernel (``Bench.paired``: the kernel of the ``tvm_lrn`` row, reading the same
user array, into a preallocated output) in its own process, since the ratio of two
processes' times also holds their buffers' placement (``benchmarks/README.md``, Method).
"""

from __future__ import annotations

import numpy as np
from contender import Bench, LRNArgs, Unsupported

__all__ = [
    "make_compiled_numpy",
    "make_compiled_out",
    "make_compiled_torch",
    "make_run_numpy",
    "make_two_outputs",
]


def _user_array(x: np.ndarray) -> np.ndarray:
    """A copy of ``x`` from numpy's own allocator (16-byte aligned, huge pages from
    4 MiB on), as a user's array is: not the benchmark's 64-byte aligned buffers."""
    return np.array(x, copy=True)


def _on_the_cpu(device: str) -> None:
    if device != "cpu":
        raise Unsupported("the user paths are measured on the CPU")


def _compiled_model(x: np.ndarray, lrn: LRNArgs, device: str):
    """``tvm_lrn.compile`` of a Relax ``main(x)`` of one LRN (the model ``from_torch``
    gives for ``nn.LocalResponseNorm``, built for every dtype, float16 included)."""
    from tvm import relax

    import tvm_lrn

    _on_the_cpu(device)
    bb = relax.BlockBuilder()
    data = relax.Var("x", relax.TensorType(x.shape, x.dtype.name))
    with bb.function("main", [data]):
        with bb.dataflow():
            call = tvm_lrn.local_response_norm(data, lrn.size, lrn.alpha, lrn.beta, lrn.k)
            out = bb.emit_output(call)
        bb.emit_func_output(out)
    return tvm_lrn.compile(bb.get(), "host")


def _kernel_on(x: np.ndarray, lrn: LRNArgs, device: str):
    """The ``tvm_lrn`` row's kernel and ``x`` as the TVM tensor it reads."""
    import tvm_ffi
    from contenders_tvm import rule_scheduled
    from tvm_kernels import compile_kernel, legalized_lrn_primfunc

    func = legalized_lrn_primfunc(x.shape, x.dtype.name, lrn, device)
    kernel = compile_kernel(rule_scheduled(func, device), device)
    return kernel, tvm_ffi.from_dlpack(x, require_alignment=x.itemsize)  # element-aligned


def _outputs(x: np.ndarray, count: int) -> list:
    """``count`` preallocated outputs like ``x``, each with its TVM tensor."""
    import tvm
    from contender import aligned_copy

    ys = [aligned_copy(np.zeros_like(x)) for _ in range(count)]
    return [(y, tvm.runtime.from_dlpack(y)) for y in ys]


def _paired_kernel(x: np.ndarray, lrn: LRNArgs, device: str, last: dict):
    """The ``tvm_lrn`` row's kernel on the user's array ``x`` into a preallocated output,
    which it leaves in ``last["y"]`` (so the driver checks its output too)."""
    kernel, xt = _kernel_on(x, lrn, device)
    [(y, yt)] = _outputs(x, 1)

    def paired():
        kernel(xt, yt)
        last["y"] = y

    return paired


def _returning(fn, x, lrn: LRNArgs, device: str, out=None) -> Bench:
    last = {}

    def call():
        last["y"] = fn(x) if out is None else fn(x, out=out)

    def result():
        y = last["y"]
        return y if isinstance(y, np.ndarray) else y.numpy()

    return Bench(call, result, paired=_paired_kernel(np.asarray(x), lrn, device, last))


def make_compiled_numpy(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """A compiled one-LRN model called on a numpy array: numpy out."""
    bench = _returning(_compiled_model(x, lrn, device), _user_array(x), lrn, device)
    bench.note = "numpy in, numpy out (zero-copy views)"
    return bench


def make_compiled_out(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """The same model writing into one preallocated numpy ``out=`` on every call."""
    model = _compiled_model(x, lrn, device)
    bench = _returning(model, _user_array(x), lrn, device, out=np.empty_like(x))
    bench.note = "numpy in, out= one preallocated numpy array"
    return bench


def make_compiled_torch(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """The same model called on ``torch.from_numpy`` of a user's array: torch out."""
    import torch
    from contenders_torch import torch_with_threads

    torch_with_threads(threads)
    model = _compiled_model(x, lrn, device)
    bench = _returning(model, torch.from_numpy(_user_array(x)), lrn, device)
    bench.note = "torch.from_numpy in, torch out (DLPack)"
    return bench


def make_run_numpy(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """``tvm_lrn.run(x, size=..., alpha=..., beta=..., bias=...)`` on a numpy array (its
    first call, which compiles for the shape, is the benchmark's untimed warm-up)."""
    import tvm_lrn

    _on_the_cpu(device)

    def lrn_call(a):
        return tvm_lrn.run(a, size=lrn.size, alpha=lrn.alpha, beta=lrn.beta, bias=lrn.k)

    bench = _returning(lrn_call, _user_array(x), lrn, device)
    bench.call()  # compile here, in the preparation phase
    bench.note = "numpy in, numpy out"
    return bench


def make_two_outputs(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """The ``tvm_lrn`` row's kernel writing alternately into two preallocated outputs:
    what any call that returns new memory while the caller holds the last result (as
    ``y = compiled(x)`` in a loop does) costs in cache, with no calling machinery."""
    _on_the_cpu(device)
    user = _user_array(x)
    kernel, xt = _kernel_on(user, lrn, device)
    outputs, last = _outputs(user, 2), {}

    def call():
        y, yt = outputs[0]
        kernel(xt, yt)
        last["y"] = y
        outputs.reverse()

    bench = Bench(call, lambda: last["y"], paired=_paired_kernel(user, lrn, device, last))
    bench.note = "kernel alone, two outputs in turn: the floor of returning fresh memory"
    return bench
