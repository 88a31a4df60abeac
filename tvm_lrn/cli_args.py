"""Argument types and parser pieces shared by the ``tvm-lrn`` subcommands."""

from __future__ import annotations

import argparse

from .errors import first_line

__all__ = [
    "Parser",
    "UsageError",
    "add_lrn_args",
    "add_target_arg",
    "dtypes_arg",
    "positive_int",
    "shape_arg",
    "target_arg",
]


class UsageError(Exception):
    """A bad command line (exit status 2)."""


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error instead of usage + error."""

    def error(self, message):
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


# --------------------------------------------------------------------------- arguments


def shape_arg(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid shape {text!r} (expected e.g. 1,96,55,55)"
        ) from None
    if not dims or any(d < 1 for d in dims):
        raise argparse.ArgumentTypeError(f"invalid shape {text!r}: dimensions must be >= 1")
    return dims


def dtypes_arg(text: str) -> list[str]:
    from .spec import FLOAT_DTYPES

    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in FLOAT_DTYPES]
    if bad or not names:
        raise argparse.ArgumentTypeError(
            f"invalid dtype {text!r} (choose from {', '.join(FLOAT_DTYPES)})"
        )
    return names


def positive_int(text: str) -> int:
    value = int(text) if text.strip().isdigit() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def target_arg(text: str):
    """A target name, tag or JSON dict; checked early for a one-line error."""
    import json

    from .target import resolve_target

    value = text
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(f"invalid target JSON {text!r}: {err}") from None
    try:
        return resolve_target(value)
    except (ValueError, TypeError) as err:
        raise argparse.ArgumentTypeError(first_line(err)) from None
    except Exception as err:  # a TVM error naming the unknown kind or tag
        raise argparse.ArgumentTypeError(
            f"unknown or invalid target {text!r}: {first_line(err)}"
        ) from None


def add_lrn_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("LRN parameters")
    g.add_argument("--size", type=positive_int, default=5, help="window size (default 5)")
    g.add_argument("--alpha", type=float, default=1e-4, help="alpha (default 1e-4)")
    g.add_argument("--beta", type=float, default=0.75, help="beta (default 0.75)")
    g.add_argument("--bias", "-k", type=float, default=1.0, help="bias / k (default 1)")
    g.add_argument("--axis", type=int, default=1, help="normalized axis (default 1)")
    g.add_argument(
        "--convention",
        default="torch",
        choices=("torch", "onnx", "tensorflow", "caffe"),
        help="whose definition of size and alpha (default torch)",
    )


def add_target_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--target",
        "-t",
        type=target_arg,
        default=None,
        help='"host" (default), "llvm", "cuda", a tag like nvidia/nvidia-h100, '
        'or TVM JSON such as \'{"kind": "llvm", "mcpu": "znver4"}\'',
    )
