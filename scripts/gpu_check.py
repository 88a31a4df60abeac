#!/usr/bin/env python
"""One-shot GPU check of tvm-lrn on CUDA: the numerical contract, then speed.

Run once on a CUDA machine (written for an H100) from the repository root::

    python scripts/gpu_check.py                 # contract + timing, CSV in benchmarks/
    python scripts/gpu_check.py --skip-timing   # contract only (about a minute)
    python scripts/gpu_check.py --fast-math     # also run the contract with TVM's default
                                                # --use_fast_math build, to see what it breaks

Part 1 runs ``tvm_lrn.run`` on torch CUDA tensors (float16, bfloat16, float32, float64;
log-uniform magnitudes over each dtype's whole range, subnormals included; bias 0 with
tiny inputs; windows mixing the largest and smallest magnitudes; channels-first and
channels-last) and checks every output against the exact reference with
``tests/accuracy.py``'s ``check_against_exact``. CUDA is compiled without fast math
(``tvm_lrn.strategy.gpu.set_precise_cuda_math``).

Part 2 times LRN on tensors of 64 MiB and more against torch eager and torch.compile
(``tvm_lrn.timing.measure`` with CUDA events, median of repeats), prints a table and
writes a CSV.

Exit status: 0 when every contract case passed, 1 when one failed, 2 when no CUDA GPU
(or no CUDA-enabled torch) is available.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import sys
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, ROOT)

DTYPES = ("float16", "bfloat16", "float32", "float64")


def cuda_or_exit():
    """The torch module, if it sees a CUDA GPU; otherwise exit with status 2."""
    try:
        import torch
    except ImportError:
        print("gpu_check: torch is not installed", file=sys.stderr)
        sys.exit(2)
    if not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA GPU visible to torch "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda}). "
            "Run this script on a machine with an NVIDIA GPU and a CUDA build of torch.",
            file=sys.stderr,
        )
        sys.exit(2)
    return torch


# ------------------------------------------------------------------ conversions


def _to_torch(x_np, torch, device):
    import numpy as np

    if x_np.dtype.name == "bfloat16":  # torch cannot read ml_dtypes.bfloat16 directly
        bits = torch.from_numpy(np.ascontiguousarray(x_np).view(np.int16))
        return bits.view(torch.bfloat16).to(device)
    return torch.from_numpy(np.ascontiguousarray(x_np)).to(device)


def _to_numpy(t, dtype):
    import ml_dtypes

    t = t.detach().cpu().contiguous()
    if dtype == "bfloat16":
        import torch

        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


# ------------------------------------------------------------------ inputs


def _log_uniform(rng, shape, dtype):
    """Random signs and magnitudes log-uniform from the smallest subnormal to the max."""
    import ml_dtypes
    import numpy as np
    from accuracy import np_dtype

    fi = ml_dtypes.finfo(np_dtype(dtype))
    lo = np.log2(float(fi.smallest_subnormal))
    hi = np.log2(float(fi.max))
    mag = np.exp2(rng.uniform(lo, hi, shape))
    mag = np.minimum(mag, float(fi.max))
    return (mag * rng.choice([-1.0, 1.0], shape)).astype(np_dtype(dtype))


def _mixed_windows(shape, axis, dtype):
    """Largest finite and smallest subnormal magnitudes alternating along the axis."""
    import ml_dtypes
    import numpy as np
    from accuracy import np_dtype

    fi = ml_dtypes.finfo(np_dtype(dtype))
    idx = np.arange(shape[axis]).reshape(
        [-1 if d == axis % len(shape) else 1 for d in range(len(shape))]
    )
    pattern = np.where(idx % 3 == 0, float(fi.max), float(fi.smallest_subnormal))
    pattern = np.where(idx % 3 == 2, float(fi.smallest_normal), pattern)
    sign = np.where(idx % 2 == 0, 1.0, -1.0)
    return np.broadcast_to(pattern * sign, shape).astype(np_dtype(dtype))


def contract_cases(rng):
    """(name, x_np, lrn kwargs) for every dtype."""
    import ml_dtypes
    import numpy as np
    from accuracy import np_dtype

    cases = []
    for dtype in DTYPES:
        fi = ml_dtypes.finfo(np_dtype(dtype))
        tiny = float(fi.smallest_subnormal)
        base = dict(alpha=1e-4, beta=0.75, bias=1.0)
        x = _log_uniform(rng, (4, 32, 17, 9), dtype)
        cases.append((f"{dtype} log-uniform torch size5", x, dict(size=5, axis=1, **base)))
        cases.append(
            (f"{dtype} log-uniform onnx size4", x, dict(size=4, axis=1, convention="onnx", **base))
        )
        xl = _log_uniform(rng, (3, 11, 7, 48), dtype)
        cases.append((f"{dtype} log-uniform channels-last", xl, dict(size=5, axis=-1, **base)))
        small = np.exp2(
            rng.uniform(np.log2(tiny), np.log2(float(fi.smallest_normal)) + 4, (2, 40, 33))
        )
        small = (small * rng.choice([-1.0, 1.0], small.shape)).astype(np_dtype(dtype))
        cases.append(
            (
                f"{dtype} bias=0 tiny inputs",
                small,
                dict(size=5, alpha=1.0, beta=0.75, bias=0.0, axis=1),
            )
        )
        cases.append(
            (
                f"{dtype} bias=0 beta=0.5 tiny",
                small,
                dict(size=3, alpha=2.0, beta=0.5, bias=0.0, axis=1),
            )
        )
        mixed = _mixed_windows((2, 30, 5, 7), 1, dtype)
        cases.append((f"{dtype} max/min mixed windows", mixed, dict(size=5, axis=1, **base)))
        cases.append(
            (
                f"{dtype} max/min mixed, bias 0",
                mixed,
                dict(size=7, alpha=1.0, beta=0.75, bias=0.0, axis=1),
            )
        )
        x1 = _log_uniform(rng, (100_003,), dtype)
        cases.append((f"{dtype} rank-1 odd length", x1, dict(size=9, axis=0, **base)))
    return cases


def run_contract(torch, device, label, dtypes=DTYPES):
    """Run the contract cases of ``dtypes``; returns (rows, number of failures)."""
    import numpy as np
    from accuracy import check_against_exact

    import tvm_lrn
    from tvm_lrn import reference
    from tvm_lrn.errors import first_line
    from tvm_lrn.spec import canonicalize

    rng = np.random.default_rng(20240601)
    rows, failures = [], 0
    for name, x_np, kw in contract_cases(rng):
        if x_np.dtype.name not in dtypes:  # (the other cases' inputs stay the same)
            continue
        params = canonicalize(
            kw["size"],
            kw.get("alpha", 1e-4),
            kw.get("beta", 0.75),
            kw.get("bias", 1.0),
            kw.get("axis", 1),
            kw.get("convention", "torch"),
            ndim=x_np.ndim,
        )
        dtype = x_np.dtype.name
        t0 = time.perf_counter()
        try:
            y = tvm_lrn.run(_to_torch(x_np, torch, device), target="cuda", **kw)
            torch.cuda.synchronize()
            out = _to_numpy(y, dtype)
            worst = check_against_exact(out, reference.lrn_exact(x_np, params), dtype)
            status, detail = "ok", f"{worst:.3f} ulp"
        except AssertionError as err:
            failures += 1
            status, detail = "FAIL", first_line(err, limit=100)
        except Exception as err:  # noqa: BLE001  (report and go on with the other cases)
            failures += 1
            status, detail = "ERROR", f"{type(err).__name__}: {first_line(err, limit=90)}"
            traceback.print_exc(limit=3)
        rows.append((label, name, status, detail, time.perf_counter() - t0))
        print(f"  [{label}] {name:40s} {status:5s} {detail}")
    return rows, failures


# ------------------------------------------------------------------ timing


TIMING_SHAPES = [
    ("float32", (32, 96, 112, 112)),  # 154 MB, AlexNet/GoogLeNet-like NCHW
    ("float16", (64, 96, 112, 112)),  # 154 MB
    ("bfloat16", (64, 96, 112, 112)),
    ("float32", (8, 256, 64, 64)),  # 34 MB in, 67 MB in+out
    ("float64", (16, 96, 112, 112)),  # 154 MB
]


#: The columns of the timing table and CSV.
TIMING_NAMES = ("tvm_lrn", "torch_eager", "torch_compile")
TIMING_COLUMNS = ["dtype", "shape", "MiB"]
TIMING_COLUMNS += [f"{name}_{unit}" for name in TIMING_NAMES for unit in ("ms", "GBps")]
TIMING_COLUMNS += ["max_rel_diff_vs_torch"]


def _timing_row(torch, compiled, x, repeats) -> dict:
    """The times of tvm_lrn, torch eager and torch.compile on ``x``, and how far torch's
    output is from ours."""
    import torch.nn.functional as F

    import tvm_lrn
    from tvm_lrn.errors import first_line
    from tvm_lrn.timing import cuda_event_clock, measure

    size, alpha, beta, k = 5, 1e-4, 0.75, 2.0
    nbytes = x.numel() * x.element_size()
    dtype = str(x.dtype).removeprefix("torch.")
    row = {"dtype": dtype, "shape": "x".join(map(str, x.shape)), "MiB": nbytes / 2**20}
    calls = {
        "tvm_lrn": lambda: tvm_lrn.run(
            x, size=size, alpha=alpha, beta=beta, bias=k, axis=1, target="cuda"
        ),
        "torch_eager": lambda: F.local_response_norm(x, size, alpha, beta, k),
        "torch_compile": lambda: compiled(x, size, alpha, beta, k),
    }
    for name, fn in calls.items():
        try:
            sec = measure(fn, repeat=repeats, warmup=3, clock=cuda_event_clock()).median
            row[f"{name}_ms"] = sec * 1e3
            row[f"{name}_GBps"] = 2 * nbytes / sec / 1e9  # read x, write y
        except Exception as err:  # noqa: BLE001
            row[f"{name}_ms"] = float("nan")
            row[f"{name}_GBps"] = float("nan")
            print(f"  {name} {dtype} failed: {type(err).__name__}: {first_line(err, limit=120)}")
    # torch computes in the input dtype (unsafe); report how far it is from ours
    try:
        ref = calls["tvm_lrn"]().float()
        row["max_rel_diff_vs_torch"] = float(
            ((calls["torch_eager"]().float() - ref).abs() / ref.abs().clamp_min(1e-30)).max()
        )
    except Exception:  # noqa: BLE001
        row["max_rel_diff_vs_torch"] = float("nan")
    return row


def run_timing(torch, device, repeats, csv_path):
    """Time every :data:`TIMING_SHAPES` case, print the table and write the CSV."""
    import torch.nn.functional as F

    compiled = torch.compile(F.local_response_norm)
    results = []
    for dtype, shape in TIMING_SHAPES:
        x = torch.randn(shape, device=device, dtype=torch.float32).to(getattr(torch, dtype))
        results.append(_timing_row(torch, compiled, x, repeats))
        del x
        torch.cuda.empty_cache()
    cols = TIMING_COLUMNS
    print()
    print(" | ".join(f"{c:>14s}" for c in cols))
    for row in results:
        print(
            " | ".join(
                f"{row[c]:>14.3f}" if isinstance(row[c], float) else f"{row[c]:>14s}" for c in cols
            )
        )
    os.makedirs(os.path.dirname(os.path.abspath(csv_path)), exist_ok=True)
    with open(csv_path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=cols)
        writer.writeheader()
        writer.writerows(results)
    print(f"\nwrote {csv_path}")
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-timing", action="store_true", help="contract cases only")
    parser.add_argument("--skip-contract", action="store_true", help="timing only")
    parser.add_argument(
        "--fast-math",
        action="store_true",
        help="also run the contract with TVM's default fast-math CUDA build",
    )
    parser.add_argument("--repeats", type=int, default=20, help="timed repeats per case")
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    parser.add_argument("--csv", default=os.path.join(ROOT, "benchmarks", f"gpu_check_{stamp}.csv"))
    args = parser.parse_args(argv)

    torch = cuda_or_exit()
    import tvm

    import tvm_lrn
    from tvm_lrn.strategy import gpu as gpu_strategy

    device = torch.device("cuda")
    print(
        f"GPU: {torch.cuda.get_device_name(0)} | torch {torch.__version__} | "
        f"tvm {tvm.__version__} | tvm_lrn {tvm_lrn.__version__} | {platform.node()}"
    )
    import shutil

    print(f"CUDA compile for tvm_lrn: precise ({'nvcc' if shutil.which('nvcc') else 'nvrtc'})")

    failures = 0
    if not args.skip_contract:
        gpu_strategy.set_precise_cuda_math(True)
        print("\n== numerical contract (precise CUDA math) ==")
        _, fails = run_contract(torch, device, "precise")
        failures += fails
        if args.fast_math:
            # Compiled kernels are cached (and JIT-compiled once): drop them so that the
            # fast-math build really happens, and again afterwards.
            from tvm_lrn import eager

            eager.kernel.cache_clear()
            gpu_strategy.set_precise_cuda_math(False)
            print("\n== numerical contract (TVM default --use_fast_math), for information ==")
            run_contract(torch, device, "fast-math")
            eager.kernel.cache_clear()
            gpu_strategy.set_precise_cuda_math(True)
        print(f"\ncontract: {'all passed' if failures == 0 else f'{failures} case(s) FAILED'}")
    if not args.skip_timing:
        gpu_strategy.set_precise_cuda_math(True)
        print("\n== timing (median of CUDA-event timings) ==")
        run_timing(torch, device, args.repeats, args.csv)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
