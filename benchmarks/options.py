"""Command-line options that ``run.py`` and ``gpu.py`` share."""

from __future__ import annotations

import argparse

from cases import parse_shape
from contender import LRNArgs
from contenders import CONTENDERS

__all__ = ["add_case_options", "add_lrn_options", "check_contenders", "csv_list", "lrn_args"]


def csv_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``."""
    return [t.strip() for t in text.split(",") if t.strip()]


def add_case_options(p: argparse.ArgumentParser, dtypes, contenders) -> None:
    """``--shapes`` (default None: the script's own), ``--dtypes`` and ``--contenders``."""
    p.add_argument(
        "--shapes",
        type=lambda s: [parse_shape(t) for t in csv_list(s)],
        default=None,
        help="comma-separated, e.g. 1x96x55x55,8x96x224x224 (default: the suite)",
    )
    p.add_argument("--dtypes", type=csv_list, default=list(dtypes))
    p.add_argument("--contenders", type=csv_list, default=list(contenders))


def add_lrn_options(p: argparse.ArgumentParser) -> None:
    """The LRN arguments (PyTorch convention) and the inputs' seed."""
    p.add_argument("--size", type=int, default=5)
    p.add_argument("--alpha", type=float, default=1e-4)
    p.add_argument("--beta", type=float, default=0.75)
    p.add_argument("--k", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)


def lrn_args(args: argparse.Namespace) -> LRNArgs:
    """The :class:`contender.LRNArgs` of :func:`add_lrn_options`' options."""
    return LRNArgs(size=args.size, alpha=args.alpha, beta=args.beta, k=args.k)


def check_contenders(keys) -> None:
    """Exit with a message naming the known contenders if one of ``keys`` is not."""
    unknown = [k for k in keys if k not in CONTENDERS]
    if unknown:
        raise SystemExit(f"unknown contender(s) {unknown}; known: {', '.join(CONTENDERS)}")
