"""``gpu.py --sweep``: tvm_lrn's CUDA schedule variants timed against the device copy."""

from __future__ import annotations

import statistics

import report
from cases import case_input, check_status, max_rel_err, shape_str
from contenders import CONTENDERS
from contenders_torch import free_device_memory, synchronize
from scheduler import interleaved
from tvm_kernels import lrn_primfunc, tvm_bench, tvm_target

from tvm_lrn.errors import first_line
from tvm_lrn.timing import device_clock

__all__ = ["SWEEP", "SWEEP_COLUMNS", "run_sweep", "sweep_case", "sweep_func"]

#: Schedule variants of tvm_lrn that ``--sweep`` times against the copy:
#: (label, form, channels per thread, rsqrt estimate, static shape). The first is the
#: kernel GPUs got before the checked form; ``form=None`` is the fast path alone; an
#: estimate of None is the target's default (as in ``tvm_lrn.run``).
SWEEP = (
    ("scaled c1 exact", "scaled", 1, False, True),
    ("checked c1", "checked", 1, True, True),
    ("checked c4", "checked", 4, True, True),
    ("checked c8", "checked", 8, True, True),
    ("checked c16", "checked", 16, True, True),
    ("checked c8 exact", "checked", 8, False, True),
    ("unguarded c8", None, 8, True, True),
    ("symbolic", "checked", 8, None, False),  # what tvm_lrn.run compiles
)
SWEEP_COLUMNS = (
    "variant",
    "shape",
    "dtype",
    "target",
    "median_ms",
    "min_ms",
    "gbps",
    "of_copy",
    "max_rel_err",
    "check",
)
#: Calls per repeat of every variant.
_NUMBER = 20


def sweep_func(shape, dtype: str, lrn, variant: tuple):
    """The scheduled CUDA PrimFunc of one :data:`SWEEP` variant (its fields after the
    label)."""
    from tvm_lrn.strategy import GPULRN

    form, channels, estimate, static = variant
    target = tvm_target("cuda")
    dims = tuple(shape) if static else (None,) * len(shape)
    func = lrn_primfunc(
        dims, dtype, lrn, target, form=form, safe_scaling=form is not None, rsqrt_estimate=estimate
    )
    return GPULRN(channels=channels).apply(func, target, False).mod["main"]


def _sweep_row(key: str, seconds: list[float], result, x, ref, copy_ms: float, where) -> dict:
    """The CSV row of one variant (or of the copy, ``key == "copy"``)."""
    shape, dtype, target = where
    med = statistics.median(seconds)
    op = "copy" if key == "copy" else "lrn"
    err = max_rel_err(result, x if op == "copy" else ref, dtype)
    return dict(
        variant=key,
        shape=shape_str(shape),
        dtype=dtype,
        target=target,
        median_ms=f"{med * 1e3:.6g}",
        min_ms=f"{min(seconds) * 1e3:.6g}",
        gbps=f"{2 * x.nbytes / med / 1e9:.4g}",
        of_copy=f"{copy_ms / (med * 1e3):.3f}",
        max_rel_err=f"{err:.3g}",
        check=check_status(op, err, dtype),
    )


def sweep_case(shape, dtype, lrn, args, target, log) -> list[dict]:
    """Time the :data:`SWEEP` variants and the copy on one (shape, dtype)."""
    x, ref = case_input(shape, dtype, lrn, args.seed)
    benches = {}
    for label, *variant in SWEEP:
        try:
            benches[label] = tvm_bench(sweep_func(shape, dtype, lrn, tuple(variant)), x, "cuda")
            benches[label].call()
        except Exception as err:  # noqa: BLE001  (a row, not a crash)
            log(f"  {label}: {type(err).__name__}: {first_line(err, limit=300)}")
            benches.pop(label, None)
    benches["copy"] = CONTENDERS["copy_torch"].make(x, lrn, 0, "cuda")
    benches["copy"].call()
    synchronize("cuda")
    calls = {k: (b.call, _NUMBER) for k, b in benches.items()}
    samples = interleaved(calls, args.rounds, args.repeats, device_clock("cuda"))
    copy_ms = statistics.median(samples["copy"]) * 1e3
    rows = []
    for key, secs in samples.items():
        r = _sweep_row(key, secs, benches[key].result(), x, ref, copy_ms, (shape, dtype, target))
        rows.append(r)
        log(f"  {key:18s} {r['check']:4s} {float(r['median_ms']):8.4f} ms  {r['of_copy']} of copy")
    benches.clear()
    free_device_memory("cuda")
    return rows


def run_sweep(shapes, dtypes, lrn, args, target: str, path) -> int:
    """Sweep every (shape, dtype), write the CSV at ``path``; returns the failed checks."""
    print("== schedule sweep ==")
    rows = []
    for shape in shapes:
        for dtype in dtypes:
            print(f"-- {shape_str(shape)} {dtype}")
            rows += sweep_case(shape, dtype, lrn, args, target, print)
    report.write_csv(rows, path, SWEEP_COLUMNS)
    print(f"wrote {path}")
    return sum(r["check"] != "ok" for r in rows)
