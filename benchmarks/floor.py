#!/usr/bin/env python
"""Where the CPU time of tvm_lrn goes: the copy, the power alone, the fast path, the kernel.

The profile behind the copy-roofline targets of ``benchmarks/README.md``::

    python benchmarks/floor.py                  # 1 thread, float32, the suite's shapes
    python benchmarks/floor.py --threads 2

Contenders, all TVM kernels on the same input in one process (``TVM_NUM_THREADS`` is
set before TVM loads), timed one after the other by :func:`tvm_lrn.timing.measure`
(median and minimum of the repeats):

* ``copy_tvm``: the copy of the same bytes (``contenders_copy.py``);
* ``power_only``: ``x * d**-0.75`` with ``d = 1 + c x**2`` per element, no window,
  computed as the fast path computes it for this target (on CPUs with AVX-512 the
  refined ``vrsqrt14ps`` estimate and one square root, elsewhere two square roots and a
  division), parallel and vectorized like the copy: the arithmetic every output needs,
  without the window;
* ``tvm_lrn_unsafe``: tvm_lrn's fast path alone (window sums; no check, no guard, no fallback);
* ``tvm_lrn``: the kernel a compiled model runs (strategy rule).

Writes a tidy CSV (``results/cpu_floor.csv`` by default; rows of other thread counts
already there are kept) and prints each time as a multiple of the copy.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from pathlib import Path

import numpy as np
from cases import SHAPES, parse_shape, shape_str
from contender import LRNArgs, host_buffers
from contenders_copy import copy_primfunc
from report import read_csv, write_csv
from tvm_kernels import (
    compile_kernel,
    flat_map_primfunc,
    legalized_lrn_primfunc,
    lrn_primfunc,
    tvm_lrn_version,
    tvm_target,
)

from tvm_lrn.timing import measure

HERE = Path(__file__).resolve().parent
COLUMNS = ("op", "contender", "shape", "dtype", "target", "threads")
COLUMNS += ("median_ms", "min_ms", "gbps", "version")
#: Calls per timed repeat.
NUMBER = 10


def _power_primfunc(n: int, target):
    """``power_only``: the fast path's power of each of ``n`` float32 elements."""
    from tvm_lrn import canonicalize, compute, intrin
    from tvm_lrn.compute.fast import plain_formula

    params = canonicalize(5, 1e-4, 0.75, 1.0, ndim=1, axis=0)
    estimate = intrin.has_rsqrt_estimate(target)
    fmt = compute.number_format("float32")

    def power(a, i):
        return plain_formula(a[i], a[i] * a[i], params, fmt, estimate)

    return flat_map_primfunc(n, "float32", power)


def _kernels(shape, n: int) -> dict:
    """``{contender: (op, PrimFunc, its input shape)}`` of one shape."""
    from tvm_lrn.strategy import schedule_primfunc

    lrn, target = LRNArgs(), tvm_target("cpu")
    unsafe = lrn_primfunc(shape, "float32", lrn, target, safe_scaling=False)
    safe = legalized_lrn_primfunc(shape, "float32", lrn, "cpu")
    return {
        "copy_tvm": ("copy", copy_primfunc(n, "float32"), (n,)),
        "power_only": ("power", _power_primfunc(n, target), (n,)),
        "tvm_lrn_unsafe": ("lrn", schedule_primfunc(unsafe, target), shape),
        "tvm_lrn": ("lrn", schedule_primfunc(safe, target), shape),
    }


def profile(shape, threads: int, repeat: int) -> list[dict]:
    """The rows of one shape: each contender timed in this process."""
    import tvm

    x = (np.random.default_rng(0).standard_normal(shape) * 8).astype("float32")
    assert x.size % 16 == 0, "power_only wants a multiple of 16 elements"
    target = tvm_target("cpu")
    rows = []
    for key, (op, func, io_shape) in _kernels(shape, x.size).items():
        kernel = compile_kernel(func, "cpu")
        xa, ya = host_buffers(x.reshape(io_shape))  # backed like the suite's buffers
        xt, yt = tvm.runtime.from_dlpack(xa), tvm.runtime.from_dlpack(ya)
        timing = measure(functools.partial(kernel, xt, yt), repeat=repeat, number=NUMBER)
        rows.append(
            {
                "op": op,
                "contender": key,
                "shape": shape_str(shape),
                "dtype": "float32",
                "target": f"cpu:{target.attrs.get('mcpu', 'generic')}",
                "threads": threads,
                "median_ms": f"{timing.median * 1e3:.5g}",
                "min_ms": f"{timing.min * 1e3:.5g}",
                "gbps": f"{2 * x.nbytes / timing.median / 1e9:.4g}",
                "version": tvm_lrn_version(),
            }
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--shapes", default=None, help="e.g. 1x96x55x55,8x96x224x224")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--csv", type=Path, default=HERE / "results" / "cpu_floor.csv")
    args = parser.parse_args(argv)
    if os.environ.get("TVM_NUM_THREADS") != str(args.threads):
        # TVM sizes its thread pool when it loads: start again with the setting.
        env = {**os.environ, "TVM_NUM_THREADS": str(args.threads)}
        os.execve(sys.executable, [sys.executable, __file__, *sys.argv[1:]], env)

    shapes = [parse_shape(s) for s in args.shapes.split(",")] if args.shapes else SHAPES
    rows = []
    for shape in shapes:
        case = profile(shape, args.threads, args.repeat)
        copy = float(case[0]["median_ms"])
        print(
            f"{case[0]['shape']:>14s}  "
            + "  ".join(f"{r['contender']} {float(r['median_ms']) / copy:5.2f}x" for r in case)
            + f"   (copy {copy:.4g} ms)",
            flush=True,
        )
        rows += case
    kept = []
    if args.csv.exists():
        kept = [r for r in read_csv(args.csv) if int(r["threads"]) != args.threads]
    write_csv(kept + rows, args.csv, COLUMNS)
    print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
