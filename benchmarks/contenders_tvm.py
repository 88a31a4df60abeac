"""The TVM contenders: tvm_lrn's kernels (as compiled models run them, tuned, symbolic,
unguarded) and TVM's own LRN (``topi.nn.lrn``, the plain PyTorch import).

TVM kernels write into an output allocated once (:func:`tvm_kernels.tvm_tensors`); the
Relax VM of the plain import allocates its output per call.
"""

from __future__ import annotations

import numpy as np
from contender import Bench, LRNArgs, Unsupported
from tvm_kernels import (
    compile_kernel,
    legalized_lrn_primfunc,
    lrn_primfunc,
    tvm_bench,
    tvm_target,
    tvm_tensors,
)

__all__ = [
    "make_topi",
    "make_tvm_import",
    "make_tvm_lrn",
    "make_tvm_lrn_dynamic",
    "make_tvm_lrn_tuned",
    "make_tvm_lrn_unsafe",
    "rule_scheduled",
    "tvm_torch_version",
]


def tvm_torch_version() -> str:
    import torch
    import tvm

    return f"tvm {tvm.__version__}; torch {torch.__version__}"


def rule_scheduled(func, device: str):
    """``func`` scheduled by the strategy rule of ``device``'s target."""
    from tvm_lrn.strategy import schedule_primfunc

    return schedule_primfunc(func, tvm_target(device))


def make_tvm_lrn(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """tvm_lrn's kernel exactly as a compiled model runs it: the PrimFunc ``relax.tvm_lrn``
    legalizes to (static shape), scheduled by the strategy rule."""
    func = legalized_lrn_primfunc(x.shape, x.dtype.name, lrn, device)
    return tvm_bench(rule_scheduled(func, device), x, device, "strategy rule")


def make_tvm_lrn_dynamic(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """tvm_lrn's symbolic-shape kernel, the one ``tvm_lrn.run`` compiles once per rank."""
    func = lrn_primfunc((None,) * x.ndim, x.dtype.name, lrn)
    return tvm_bench(rule_scheduled(func, device), x, device, "symbolic shape")


def make_tvm_lrn_tuned(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """tvm_lrn with the best record of the shipped MetaSchedule database for this target."""
    try:
        from tvm_lrn import tune
    except ImportError as err:  # the tuning module is optional
        raise Unsupported(f"tvm_lrn.tune unavailable: {err}") from None
    func = legalized_lrn_primfunc(x.shape, x.dtype.name, lrn, device)
    scheduled, why = tune.query_database(func, tvm_target(device))
    if scheduled is None:
        raise Unsupported(why)
    return tvm_bench(scheduled, x, device, why)


def make_tvm_lrn_unsafe(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """The fast path of the same kernel alone (static shape, strategy rule): no range
    guard and no fallback, so not safe; it measures what the safety costs.

    On the CPU, tvm_lrn's own kernel is its ``paired`` operator on the same buffers: the
    safety cost is the ratio of two kernels, and timed in two processes it carried their
    difference (``benchmarks/README.md``, Method). ``gpu.py`` times every contender in
    one process already.
    """
    target = tvm_target(device)
    unsafe = lrn_primfunc(x.shape, x.dtype.name, lrn, target, safe_scaling=False)
    fast = compile_kernel(rule_scheduled(unsafe, device), device)
    xt, yt, result = tvm_tensors(x, device)
    bench = Bench(lambda: fast(xt, yt), result, "benchmark-only, unsafe")
    if device == "cpu":
        safe = legalized_lrn_primfunc(x.shape, x.dtype.name, lrn, device)
        kernel = compile_kernel(rule_scheduled(safe, device), device)
        bench.paired = lambda: kernel(xt, yt)
        bench.note += "; paired with tvm_lrn"
    return bench


def make_topi(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """``tvm.topi.nn.lrn`` compiled with no schedule (TVM's only packaged LRN compute)."""
    if device != "cpu":
        raise Unsupported("an unscheduled PrimFunc has no GPU kernel")
    if lrn.size % 2 == 0:
        raise Unsupported("topi.nn.lrn has a symmetric window: odd sizes only")
    from tvm import te, topi

    data = te.placeholder(x.shape, x.dtype.name, name="x")
    # topi divides alpha by size, like PyTorch.
    out = topi.nn.lrn(data, lrn.size, lrn.axis, lrn.alpha, lrn.beta, lrn.k)
    return tvm_bench(te.create_prim_func([data, out]), x, device, "no schedule")


def _torch_lrn_module(lrn: LRNArgs):
    """A ``torch.nn.Module`` calling ``F.local_response_norm`` with ``lrn``."""
    import torch
    import torch.nn.functional as F

    class LRN(torch.nn.Module):
        def forward(self, x):
            return F.local_response_norm(x, lrn.size, lrn.alpha, lrn.beta, lrn.k)

    return LRN().eval()


def make_tvm_import(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """TVM's own PyTorch import of ``F.local_response_norm`` (``from_exported_program``),
    compiled by ``tvm.compile`` with the default Relax pipeline, run by the Relax VM."""
    import tvm
    from contenders_torch import torch_with_threads
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    torch = torch_with_threads(threads)
    example = torch.from_numpy(np.ascontiguousarray(x))
    with torch.no_grad():
        exported = torch.export.export(_torch_lrn_module(lrn), (example,))
    executable = tvm.compile(from_exported_program(exported), target=tvm_target(device))
    dev = tvm.cpu(0) if device == "cpu" else tvm.cuda(0)
    main = relax.VirtualMachine(executable, dev)["main"]
    xt, _, _ = tvm_tensors(x, device)
    last = {}

    def call():
        last["y"] = main(xt)

    def result():
        out = last["y"]
        if not hasattr(out, "numpy"):  # a tuple of outputs
            out = out[0]
        return out.numpy()

    return Bench(call, result, "decomposed ops, default pipeline")
