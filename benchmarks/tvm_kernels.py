"""The TVM side of the benchmarks: targets, buffers, PrimFuncs and their compilation.

Every TVM kernel of the benchmarks (``contenders_tvm.py``, ``contenders_copy.py``,
``gpu.py``'s sweep, ``floor.py``) is built here: the LRN PrimFunc by
:func:`lrn_primfunc` (or :func:`legalized_lrn_primfunc`, what a compiled model gets),
flat elementwise kernels by :func:`flat_map_primfunc`, and all of them compiled by
:func:`compile_kernel` with the project's TIR pipeline.
"""

from __future__ import annotations

import contextlib
import functools
import os
import subprocess

import numpy as np
from contender import Bench, LRNArgs, host_buffers

__all__ = [
    "compile_kernel",
    "flat_map_primfunc",
    "legalized_lrn_primfunc",
    "lrn_primfunc",
    "tvm_bench",
    "tvm_lrn_version",
    "tvm_target",
    "tvm_tensors",
    "tvm_version",
]


def tvm_target(device: str):
    """The TVM target of ``device``: this host's CPU, or e.g. ``"cuda"``."""
    from tvm_lrn.target import host_target, resolve_target

    return host_target() if device == "cpu" else resolve_target(device)


def tvm_tensors(x: np.ndarray, device: str):
    """``(input, output, result)`` for a TVM kernel: :func:`contender.host_buffers`
    borrowed on the CPU, torch-owned memory on CUDA; ``result()`` copies the output
    back as numpy."""
    import tvm

    if device == "cpu":
        # borrowed, not copied: tvm.runtime.tensor would copy into TVM's own allocation
        xa, ya = host_buffers(x)
        return tvm.runtime.from_dlpack(xa), tvm.runtime.from_dlpack(ya), ya.copy
    from contenders_torch import to_numpy, torch_buffers

    xs, ys = torch_buffers(x, 0, device)
    return tvm.runtime.from_dlpack(xs), tvm.runtime.from_dlpack(ys), lambda: to_numpy(ys)


def compile_kernel(func, device: str):
    """``tvm.compile`` a scheduled PrimFunc (named ``main``) for ``device`` with the
    project's TIR pipeline; returns the kernel."""
    import tvm

    from tvm_lrn.lower import TIR_PIPELINE

    if func.attrs is None or "global_symbol" not in func.attrs:
        func = func.with_attr("global_symbol", "main")
    executable = tvm.compile(func, target=tvm_target(device), tir_pipeline=TIR_PIPELINE)
    if device != "cpu" and not any(m.kind == device for m in executable.mod.imports):
        # an unscheduled PrimFunc compiles for a GPU target into host code, silently
        raise RuntimeError(f"no {device} kernel was generated (the schedule did not apply)")
    return executable["main"]


def tvm_bench(func, x: np.ndarray, device: str, note: str = "") -> Bench:
    """A :class:`contender.Bench` of a scheduled ``(x, y)`` PrimFunc on fresh buffers."""
    kernel = compile_kernel(func, device)
    xt, yt, result = tvm_tensors(x, device)
    return Bench(lambda: kernel(xt, yt), result, note)


def lrn_primfunc(shape, dtype: str, lrn: LRNArgs, target=None, **options):
    """:func:`tvm_lrn.op.lrn_primfunc` of ``shape`` (each None a symbolic extent) for the
    benchmark's LRN arguments, built under ``target`` where one is given: the safe form
    and the square roots that ``options`` leave to the compute are that target's."""
    from tvm_lrn import op

    with target if target is not None else contextlib.nullcontext():
        return op.lrn_primfunc(shape, dtype, lrn.params(len(shape)), **options)


def legalized_lrn_primfunc(shape, dtype: str, lrn: LRNArgs, device: str):
    """The PrimFunc ``relax.tvm_lrn`` legalizes to for ``shape`` on ``device`` (what a
    compiled model runs: for these static NCHW shapes the checked form, on CPUs and
    GPUs)."""
    from tvm_lrn import tune

    with tvm_target(device):
        work = tune.lrn_workloads(
            [tuple(shape)],
            dtype,
            size=lrn.size,
            alpha=lrn.alpha,
            beta=lrn.beta,
            bias=lrn.k,
            axis=lrn.axis,
            convention="torch",
        )
    return work[0].func


def flat_map_primfunc(n: int, dtype: str, element):
    """``b[i] = element(a, i)`` over ``n`` elements: parallel chunks of 64-byte vectors.

    The schedule of the copy roofline (``copy_tvm``) and of ``floor.py``'s power alone.
    """
    from tvm import s_tir, te

    a = te.placeholder((n,), dtype, name="a")
    b = te.compute((n,), lambda i: element(a, i), name="b")
    sch = s_tir.Schedule(te.create_prim_func([a, b]))
    (loop,) = sch.get_loops(sch.get_sblock("b"))
    lanes = 64 // np.dtype(dtype).itemsize
    while lanes > 1 and n % lanes:
        lanes //= 2
    rows = n // lanes
    chunk = max(d for d in range(1, min(rows, 4096) + 1) if rows % d == 0)
    outer, _, inner = sch.split(loop, [None, chunk, lanes])
    sch.parallel(outer)
    sch.vectorize(inner)
    return sch.mod["main"]


@functools.lru_cache(maxsize=1)
def _git_describe() -> str:
    """Short commit of the checkout, ``+dirty`` if tvm_lrn/ has uncommitted changes."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def git(*args) -> str:
        done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        done.check_returncode()
        return done.stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "tvm_lrn")
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f"g{head}{'+dirty' if dirty else ''}"


def tvm_lrn_version() -> str:
    """tvm_lrn's version with the checkout's commit, and TVM's."""
    import tvm

    import tvm_lrn

    git = _git_describe()
    return f"tvm_lrn {tvm_lrn.__version__}{'+' + git if git else ''}; tvm {tvm.__version__}"


def tvm_version() -> str:
    import tvm

    return f"tvm {tvm.__version__}"
