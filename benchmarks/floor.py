#!/usr/bin/env python
"""Where the CPU time of tvm_lrn goes: the copy, the power alone, the fast path, the kernel.

The profile behind the copy-roofline targets of ``benchmarks/README.md``::

    python benchmarks/floor.py                  # 1 thread, float32, the suite's shapes
    python benchmarks/floor.py --threads 2

Contenders, all TVM kernels on the same input in one process (``TVM_NUM_THREADS`` is
set before TVM loads), timed with ``time_evaluator`` (median and minimum of the repeats):

* ``copy_tvm``: the copy of the same bytes (``benchmarks/contenders.py``);
* ``power_only``: ``x * d**-0.75`` with ``d = 1 + c x**2`` per element, no window,
  computed as the fast path computes it for this target (``compute._plain``: on CPUs
  with AVX-512 the refined ``vrsqrt14ps`` estimate and one square root, elsewhere two
  square roots and a division), parallel and vectorized like the copy: the arithmetic
  every output needs, without the window;
* ``tvm_lrn_unsafe``: tvm_lrn's fast path alone (window sums; no check, no guard, no fallback);
* ``tvm_lrn``: the kernel a compiled model runs (strategy rule).

Writes a tidy CSV (``results/cpu_floor.csv`` by default; rows of other thread counts
already there are kept) and prints each time as a multiple of the copy.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
COLUMNS = ("op", "contender", "shape", "dtype", "target", "threads")
COLUMNS += ("median_ms", "min_ms", "gbps", "version")


def _power_primfunc(n: int, target):
    from tvm import s_tir, te

    from tvm_lrn import canonicalize, compute, intrin

    a = te.placeholder((n,), "float32", name="a")
    params = canonicalize(5, 1e-4, 0.75, 1.0, ndim=1, axis=0)
    estimate = intrin.has_rsqrt_estimate(target)

    def power(i):
        return compute._plain(a[i], a[i] * a[i], params, compute._FORMATS["float32"], estimate)

    sch = s_tir.Schedule(te.create_prim_func([a, te.compute((n,), power, name="b")]))
    (loop,) = sch.get_loops(sch.get_sblock("b"))
    rows = n // 16
    chunk = max(d for d in range(1, min(rows, 4096) + 1) if rows % d == 0)
    outer, _, inner = sch.split(loop, [None, chunk, 16])
    sch.parallel(outer)
    sch.vectorize(inner)
    return sch.mod["main"]


def measure(shape, threads: int, repeat: int) -> list[dict]:
    import numpy as np
    import tvm

    sys.path.insert(0, str(HERE))
    import contenders as c
    from run import shape_str

    lrn = c.LRNArgs()
    x = (np.random.default_rng(0).standard_normal(shape) * 8).astype("float32")
    n = x.size
    assert n % 16 == 0, "power_only wants a multiple of 16 elements"
    target = c._tvm_target("cpu")
    kernels = {
        "copy_tvm": ("copy", c._copy_primfunc(n, "float32"), (n,)),
        "power_only": ("power", _power_primfunc(n, target), (n,)),
        "tvm_lrn_unsafe": (
            "lrn",
            c._static_lrn_primfunc(shape, "float32", lrn, safe_scaling=False),
            shape,
        ),
        "tvm_lrn": ("lrn", c._legalized_lrn_primfunc(shape, "float32", lrn, "cpu"), shape),
    }
    from tvm_lrn.strategy import schedule_primfunc

    rows = []
    for key, (op, func, io_shape) in kernels.items():
        if op == "lrn":
            func = schedule_primfunc(func, target)
        mod = tvm.compile(func.with_attr("global_symbol", "main"), target=target).mod
        xa, ya = c.host_buffers(x.reshape(io_shape))  # backed like the suite's buffers
        xt, yt = tvm.runtime.from_dlpack(xa), tvm.runtime.from_dlpack(ya)
        timer = mod.time_evaluator("main", tvm.cpu(), number=10, repeat=repeat)
        res = timer(xt, yt)
        median, best = float(np.median(res.results)), float(min(res.results))
        rows.append(
            {
                "op": op,
                "contender": key,
                "shape": shape_str(shape),
                "dtype": "float32",
                "target": f"cpu:{target.attrs.get('mcpu', 'generic')}",
                "threads": threads,
                "median_ms": f"{median * 1e3:.5g}",
                "min_ms": f"{best * 1e3:.5g}",
                "gbps": f"{2 * x.nbytes / median / 1e9:.4g}",
                "version": c._v_tvm_lrn(),
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

    sys.path.insert(0, str(HERE))
    from run import SHAPES, parse_shape

    shapes = [parse_shape(s) for s in args.shapes.split(",")] if args.shapes else SHAPES
    rows = []
    for shape in shapes:
        case = measure(shape, args.threads, args.repeat)
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
        with args.csv.open() as f:
            kept = [r for r in csv.DictReader(f) if int(r["threads"]) != args.threads]
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    with args.csv.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(kept + rows)
    print(f"wrote {args.csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
