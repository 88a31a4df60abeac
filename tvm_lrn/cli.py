"""The ``tvm-lrn`` command: tune, compile, run (on a remote device), bench and demo.

Each subcommand has ``--help``. Errors a user can cause (bad arguments, missing files,
unknown targets, models without LRN) end with one ``tvm-lrn: error: ...`` line on stderr
and a non-zero exit status, not a traceback; ``TVM_LRN_DEBUG=1`` shows the traceback.
Exit status: 0 success, 1 error, 2 bad usage, 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import os
import sys

from .cli_args import (
    Parser,
    UsageError,
    add_lrn_args,
    add_target_arg,
    dtypes_arg,
    positive_int,
    shape_arg,
)
from .cli_device import add_device_args, add_run_parser, device_from_args
from .errors import first_line

__all__ = ["main"]

PROG = "tvm-lrn"


def _add_tune_parser(sub) -> None:
    t = sub.add_parser(
        "tune",
        help="tune a model's kernels (or LRN shapes) with MetaSchedule into a database",
        description="Tune every kernel of a model file, or LRN kernels of shapes or "
        "presets, with MetaSchedule; records go to --work-dir (a JSON database that "
        "`tvm-lrn compile --database` and tvm_lrn.compile(database=...) use).",
    )
    what = t.add_argument_group("what to tune (one or more of --shape/--preset, or --model)")
    what.add_argument(
        "--shape",
        type=shape_arg,
        action="append",
        default=[],
        help="input shape, e.g. 1,96,55,55 (repeatable)",
    )
    what.add_argument(
        "--preset",
        action="append",
        default=[],
        help="model shapes: alexnet, googlenet or all (repeatable)",
    )
    what.add_argument("--model", help="a torch.export .pt2 or an .onnx file")
    what.add_argument(
        "--kernels",
        choices=("all", "lrn"),
        default="all",
        help="with --model: tune every kernel (default) or the LRN kernels only",
    )
    what.add_argument(
        "--dtype",
        type=dtypes_arg,
        action="append",
        default=None,
        help="dtype(s) for --shape/--preset, e.g. float32,float16 (default float32)",
    )
    add_lrn_args(t)
    add_target_arg(t)
    _add_search_args(t)
    add_device_args(t, "measure")
    t.set_defaults(func=_cmd_tune)


def _add_search_args(t: argparse.ArgumentParser) -> None:
    t.add_argument(
        "--work-dir",
        "-o",
        default="tvm_lrn_tuning",
        help="database folder (default ./tvm_lrn_tuning)",
    )
    t.add_argument(
        "--trials", type=positive_int, default=32, help="search trials per workload (default 32)"
    )
    t.add_argument(
        "--trials-per-iter",
        type=positive_int,
        default=None,
        help="candidates per build/run batch (default min(trials, 8))",
    )
    t.add_argument(
        "--cost-model",
        choices=("auto", "xgb", "random"),
        default="auto",
        help="auto: XGBoost if installed, else random",
    )
    t.add_argument("--seed", type=int, default=None, help="search seed")
    t.add_argument(
        "--ship-to",
        metavar="ROOT",
        help="also merge the best record per workload into ROOT/<target key>/ "
        "(the layout of the shipped schedules/)",
    )
    t.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_compile_parser(sub) -> None:
    c = sub.add_parser(
        "compile",
        help="compile a .pt2 or .onnx model into a deployable library",
        description="Import a torch.export .pt2 or an ONNX file (LRN becomes the safe "
        "op), compile it for a target and write a shared library.",
    )
    c.add_argument("model", help="a torch.export .pt2 file or an .onnx file")
    c.add_argument("--output", "-o", help="library to write (default: MODEL with .so)")
    add_target_arg(c)
    c.add_argument(
        "--database",
        "-d",
        help="a tuned database folder (default: the one shipped for the target, if any)",
    )
    c.add_argument("--cc", help="the C++ compiler that links it (default: from the target)")
    c.add_argument(
        "--input-shape",
        action="append",
        default=[],
        metavar="NAME=DIMS",
        help="ONNX input shape override, e.g. x=1,3,224,224 (repeatable)",
    )
    c.set_defaults(func=_cmd_compile)


def _add_bench_parser(sub) -> None:
    b = sub.add_parser(
        "bench",
        help="time tvm_lrn against torch eager and a plain copy on one shape",
        description="Time LRN on one shape: tvm_lrn (its schedule: tuned record or rule), "
        "the rule alone when a tuned record exists, torch eager "
        "F.local_response_norm, and a copy of the same bytes.",
    )
    b.add_argument(
        "--shape", type=shape_arg, default=(1, 96, 55, 55), help="input shape (default 1,96,55,55)"
    )
    b.add_argument(
        "--dtype", default="float32", choices=("float16", "bfloat16", "float32", "float64")
    )
    add_lrn_args(b)
    add_target_arg(b)
    b.add_argument("--database", "-d", help="a tuned database folder (default: shipped)")
    b.add_argument(
        "--repeat",
        type=positive_int,
        default=20,
        help="timed repetitions (median reported, default 20)",
    )
    b.set_defaults(func=_cmd_bench)


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog=PROG, description="A numerically safe, fast LRN for Apache TVM.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    _add_tune_parser(sub)
    _add_compile_parser(sub)
    add_run_parser(sub)
    _add_bench_parser(sub)
    d = sub.add_parser(
        "demo", help="run the demo (tvm_lrn.demo); arguments pass through", add_help=False
    )
    d.add_argument("args", nargs=argparse.REMAINDER)
    d.set_defaults(func=_cmd_demo)
    return parser


# --------------------------------------------------------------------------- commands


def _load_model(path: str, input_shapes=()):
    """A .pt2 or .onnx file -> Relax module with the safe LRN op."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".pt2":
        from .frontend.torch import from_exported_program, load_exported_program

        return from_exported_program(load_exported_program(path))
    if ext == ".onnx":
        from .frontend import from_onnx

        shapes = dict(_name_shape(s) for s in input_shapes) or None
        return from_onnx(path, shape_dict=shapes)
    raise ValueError(f"unsupported model file {path!r}: expected .pt2 (torch.export) or .onnx")


def _name_shape(text: str):
    name, sep, dims = text.partition("=")
    if not sep or not name:
        raise ValueError(f"invalid --input-shape {text!r} (expected NAME=1,3,224,224)")
    return name, list(shape_arg(dims))


def _cmd_tune(args) -> int:
    from . import tune as tuning

    shapes = list(args.shape)
    for preset in args.preset:
        names = list(tuning.PRESETS) if preset == "all" else [preset]
        for name in names:
            if name not in tuning.PRESETS:
                raise UsageError(
                    f"{PROG} tune: error: unknown preset {name!r} "
                    f"(choose from {', '.join(tuning.PRESETS)}, all)"
                )
            shapes += [s for s in tuning.PRESETS[name] if s not in shapes]
    if args.model and shapes:
        raise UsageError(f"{PROG} tune: error: give --model or --shape/--preset, not both")
    if not args.model and not shapes:
        raise UsageError(f"{PROG} tune: error: nothing to tune: give --shape, --preset or --model")
    dtypes = [d for group in (args.dtype or [["float32"]]) for d in group]
    kwargs = dict(
        target=args.target,
        work_dir=args.work_dir,
        trials=args.trials,
        trials_per_iter=args.trials_per_iter,
        cost_model=args.cost_model,
        seed=args.seed,
        progress=not args.no_progress,
        ship_to=args.ship_to,
        device=device_from_args(args),
        cc=args.cc,
    )
    if args.model:
        result = tuning.tune(_load_model(args.model), kernels=args.kernels, **kwargs)
    else:
        result = tuning.tune(
            shapes=shapes,
            dtypes=list(dict.fromkeys(dtypes)),
            size=args.size,
            alpha=args.alpha,
            beta=args.beta,
            bias=args.bias,
            axis=args.axis,
            convention=args.convention,
            **kwargs,
        )
    print(result.table())
    print(
        f"target {tuning.target_key(result.target)}, cost model {result.cost_model}, "
        f"{result.seconds:.0f} s; kernels as called: {result.latency * 1e3:.3f} ms; "
        f"database: {result.work_dir}"
    )
    if result.shipped_to:
        print(f"best records merged into {result.shipped_to}")
    if result.interrupted:
        print(f"{PROG}: interrupted; the database keeps what was measured", file=sys.stderr)
        return 130
    return 0


def _cmd_compile(args) -> int:
    import tvm_lrn

    from .target import resolve_target
    from .tune import target_key

    mod = _load_model(args.model, args.input_shape)
    target = args.target if args.target is not None else resolve_target(None)
    if args.database is not None:
        from .tune import load_database

        load_database(args.database)  # a one-line error now rather than deep in compile
    model = tvm_lrn.compile(mod, target, database=args.database)
    output = args.output or os.path.splitext(args.model)[0] + ".so"
    model.export_library(output, cc=args.cc, source=os.path.abspath(args.model))
    print(
        f"wrote {output} for {target.kind.name} {target.attrs.get('mtriple', '')} "
        f"({target_key(target)})"
    )
    for name, source in sorted(model.schedule_sources.items()):
        print(f"  {name}: {source}")
    print(f"  other kernels with a tuned record: {len(model.tuned_kernels)} (the rest: defaults)")
    return 0


def _cmd_bench(args) -> int:
    from .bench import compare
    from .spec import canonicalize
    from .target import resolve_target
    from .tune import target_key

    target = args.target if args.target is not None else resolve_target(None)
    if target.kind.name != "llvm":
        raise ValueError("bench runs on the host CPU only (an llvm target)")
    lrn = (args.size, args.alpha, args.beta, args.bias, args.axis, args.convention)
    params = canonicalize(*lrn, ndim=len(args.shape))
    eager = None  # F.local_response_norm's arguments, where it computes the same LRN
    if args.convention == "torch" and args.axis == 1 and len(args.shape) >= 3:
        eager = lrn[:4]
    found = compare(
        args.shape, args.dtype, params, target, args.database, repeat=args.repeat, torch_lrn=eager
    )
    shape = "x".join(map(str, args.shape))
    source = found.source if found.tuned else f"none ({found.source})"
    print(
        f"LRN {args.dtype} {shape} size={args.size} on {target_key(target)}; tuned record: {source}"
    )
    base = found.rows[0][1]
    print(f"{'implementation':34} {'median us':>10} {'GB/s':>8} {'time / tvm_lrn':>15}")
    for name, seconds in found.rows:
        gbps = found.nbytes / seconds / 1e9
        print(f"{name:34} {seconds * 1e6:10.1f} {gbps:8.2f} {seconds / base:14.2f}x")
    return 0


def _cmd_demo(args) -> int:
    try:
        from . import demo
    except ImportError as err:
        raise RuntimeError(f"the demo is not available: {err}") from None
    rc = demo.main(args.args)
    return int(rc or 0)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    """Run the ``tvm-lrn`` command.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; ``sys.argv[1:]`` by default.

    Returns
    -------
    int
        The exit status (also what the console script exits with).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = os.environ.get("TVM_LRN_DEBUG", "") not in ("", "0")
    try:
        if argv[:1] == ["demo"]:
            # Everything after "demo" belongs to the demo (its own --help included);
            # argparse's REMAINDER would refuse arguments that start with "-".
            return _cmd_demo(argparse.Namespace(args=argv[1:]))
        parser = _parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        return int(args.func(args) or 0)
    except SystemExit as done:  # --help, --version
        return int(done.code or 0) if isinstance(done.code, int | None) else 1
    except UsageError as err:
        print(str(err), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if debug:
            raise
        print(f"{PROG}: error: {first_line(err)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
