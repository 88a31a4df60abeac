#!/usr/bin/env python
"""CPU benchmark of tvm_lrn against its peers and the copy roofline.

One command regenerates everything::

    python benchmarks/run.py                 # full suite (~21 min on 2 cores), CSV + PNG + README
    python benchmarks/run.py --quick         # smoke run: N=1 shapes, fewer repeats
    python benchmarks/run.py --threads 2 --shapes 1x96x55x55,8x96x224x224 --dtypes float32
    python benchmarks/run.py --contenders tvm_lrn,torch_compile,copy_numpy

How it measures (``benchmarks/README.md``, Method): each contender runs in its own worker
process per thread count (``worker.py``); per case the workers prepare in parallel, then
check their output against ``tvm_lrn.reference`` and calibrate one at a time, then take
turns in interleaved rounds while the others are stopped (``scheduler.py``). The CSV
keeps the median and the minimum over all repeats. A contender whose output fails the
check is still timed but flagged (``check=FAIL``); one that cannot run a case (e.g. torch
eager has no float16 CPU kernel) gets a ``skip`` row with the reason.

Outputs (``report.py``): the tidy CSV (``--csv``), a ratio summary next to it
(``*_ratios.csv``), the plot (``--plot``, needs matplotlib: ``pip install -e .[bench]``)
and the table between the markers in ``benchmarks/README.md`` (full runs;
``--readme``/``--no-readme``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import report
from cases import DTYPES, QUICK_SHAPES, SHAPES
from contenders import CONTENDERS
from options import add_case_options, add_lrn_options, check_contenders, csv_list, lrn_args
from plot import save_plot
from scheduler import TimingPlan
from suite import Suite, run_suite

HERE = Path(__file__).resolve().parent

#: The timing of ``--quick`` and of full runs, where the options leave it open.
QUICK_PLAN = dict(rounds=2, repeats=2, budget_s=0.3, min_repeat_ms=5.0, min_samples=2)
FULL_PLAN = dict(rounds=10, repeats=3, budget_s=1.5, min_repeat_ms=20.0, min_samples=3)


def _add_timing_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (most)")
    p.add_argument("--min-samples", type=int, default=None, help="fewest repeats per case")
    p.add_argument(
        "--slow-s",
        type=float,
        default=0.25,
        help="a call this slow is timed once per repeat, its calibration call counts",
    )
    p.add_argument("--repeats", type=int, default=None, help="repeats per round (most)")
    p.add_argument("--budget-s", type=float, default=None, help="seconds per contender and case")
    p.add_argument("--min-repeat-ms", type=float, default=None, help="shortest repeat")
    p.add_argument(
        "--warmup-ms",
        type=float,
        default=10.0,
        help="untimed calls (at least two) before each worker's check and each of its turns",
    )
    p.add_argument(
        "--settle-ms",
        type=float,
        default=10.0,
        help="pause between stopping the other workers and a worker's turn",
    )


def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per worker reply")
    p.add_argument("--csv", type=Path, default=None)
    p.add_argument("--plot", type=Path, default=None)
    p.add_argument("--no-plot", action="store_true")
    p.add_argument(
        "--readme",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="update benchmarks/README.md (default: on for full runs, off for --quick)",
    )
    p.add_argument("--log-dir", default=None, help="keep the workers' logs here")


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of the driver."""
    p = argparse.ArgumentParser(
        description="Benchmark tvm_lrn against its peers and the copy roofline on CPU.",
        epilog=f"contenders: {', '.join(CONTENDERS)}",
    )
    p.add_argument("--quick", action="store_true", help="N=1 shapes, 2 short rounds")
    p.add_argument("--threads", type=lambda s: [int(t) for t in csv_list(s)], default=[1, 2])
    add_case_options(p, DTYPES, CONTENDERS)
    p.add_argument("--skip", type=csv_list, default=[], help="contenders to leave out")
    _add_timing_options(p)
    add_lrn_options(p)
    _add_output_options(p)
    return p


def timing_plan(args: argparse.Namespace) -> TimingPlan:
    """The :class:`scheduler.TimingPlan` of the options, ``--quick``'s or a full run's
    defaults where they leave it open."""
    defaults = QUICK_PLAN if args.quick else FULL_PLAN
    plan = {k: v if getattr(args, k) is None else getattr(args, k) for k, v in defaults.items()}
    return TimingPlan(
        rounds=plan["rounds"],
        repeats=plan["repeats"],
        min_samples=min(plan["min_samples"], plan["rounds"] * plan["repeats"]),
        budget_s=plan["budget_s"],
        slow_s=args.slow_s,
        min_repeat_s=plan["min_repeat_ms"] / 1e3,
        warmup_s=args.warmup_ms / 1e3,
        settle_s=args.settle_ms / 1e3,
    )


def _suite(args: argparse.Namespace) -> Suite:
    check_contenders(args.contenders + args.skip)
    return Suite(
        contenders=[k for k in args.contenders if k not in args.skip],
        threads=args.threads,
        shapes=args.shapes or list(QUICK_SHAPES if args.quick else SHAPES),
        dtypes=args.dtypes,
        lrn=lrn_args(args),
        seed=args.seed,
        timeout=args.timeout,
        log_dir=args.log_dir,
    )


def _write_outputs(rows: list[dict], args: argparse.Namespace) -> None:
    """The CSV and its ratios, the plot and the README's table, as the options say."""
    csv_path = args.csv or report.RESULTS / f"{'cpu_quick' if args.quick else 'cpu'}.csv"
    ratio_path = report.write_results(rows, csv_path)
    print(f"wrote {csv_path} and {ratio_path}")
    meta = report.run_meta()
    if not args.no_plot:
        title = f"LRN on {meta['cpu']} ({meta['date']})"
        save_plot(rows, args.plot or csv_path.with_suffix(".png"), title)
    if args.readme if args.readme is not None else not args.quick:
        report.update_readme(report.markdown_table(rows, meta), HERE / "README.md")
        print(f"updated {HERE / 'README.md'}")


def main(argv=None) -> int:
    """Run the CPU suite as the command line says; 0 when done (failed checks included:
    they are rows of the results, and listed at the end)."""
    args = build_parser().parse_args(argv)
    suite, plan = _suite(args), timing_plan(args)
    t0 = time.perf_counter()
    rows = run_suite(suite, plan)
    _write_outputs(rows, args)
    print(f"done in {time.perf_counter() - t0:.0f} s")
    for line in report.failures(rows):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
