"""``tvm-lrn run``, and the device arguments of ``tune``: models on remote devices
through TVM's RPC tracker (:mod:`tvm_lrn.remote`)."""

from __future__ import annotations

import argparse
import os

import numpy as np

from .cli_args import positive_int

__all__ = ["add_device_args", "add_run_parser", "device_from_args"]


def add_device_args(p: argparse.ArgumentParser, what: str) -> None:
    """``--rpc HOST:PORT``, ``--key KEY`` and ``--cc`` on ``p``."""
    from .remote import TRACKER_ENV

    g = p.add_argument_group(
        "remote device", f"{what} on the devices registered with an RPC tracker under a key"
    )
    g.add_argument(
        "--rpc", metavar="HOST:PORT", help=f"the tracker (else ${TRACKER_ENV[0]}:${TRACKER_ENV[1]})"
    )
    g.add_argument("--key", help=f"the device key (else ${TRACKER_ENV[2]})")
    g.add_argument("--cc", help="the C++ cross compiler (default: from the target's mtriple)")


def device_from_args(args, required: bool = False):
    """The :class:`~tvm_lrn.remote.RemoteDevice` the arguments (or the environment)
    name; None where none is named and ``required`` is false."""
    from .remote import TRACKER_ENV, RemoteDevice

    named = args.rpc or args.key or any(os.environ.get(v) for v in TRACKER_ENV)
    if not named and not required:
        return None
    return RemoteDevice.resolve(args.rpc, args.key)


def add_run_parser(sub) -> None:
    """The ``run`` subcommand."""
    r = sub.add_parser(
        "run",
        help="run a compiled library on a remote device: outputs checked, time per call",
        description="Upload a library (tvm-lrn compile, export_library) to a device of an "
        "RPC tracker, run it on given or random inputs, time it by the device's clock, "
        "and check its outputs against float64 torch on this machine.",
    )
    r.add_argument("library", help="a library written by tvm-lrn compile or export_library")
    add_device_args(r, "run")
    r.add_argument(
        "--input",
        "-i",
        action="append",
        default=[],
        metavar="X.npy",
        help="an input of main, in order (default: normal random ones)",
    )
    r.add_argument("--scale", type=float, default=1.0, help="random inputs times this")
    r.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    r.add_argument(
        "--check",
        metavar="MODEL.pt2",
        help="the torch.export model to check "
        "against in float64 (default: the one the library was compiled from)",
    )
    r.add_argument(
        "--tolerance",
        type=float,
        default=1e-3,
        help="largest relative error that passes (default 1e-3)",
    )
    r.add_argument("--number", type=positive_int, default=10, help="calls per timing")
    r.add_argument("--repeat", type=positive_int, default=3, help="timings (median shown)")
    r.set_defaults(func=cmd_run)


def _inputs(args, meta: dict):
    from .remote import random_inputs

    if args.input:
        missing = [p for p in args.input if not os.path.isfile(p)]
        if missing:
            raise FileNotFoundError(f"no input file {missing[0]}")
        return [np.load(p, allow_pickle=False) for p in args.input]
    signature = meta.get("signatures", {}).get("main")
    if not signature:
        raise ValueError(f"{args.library} has no signature in its metadata: give --input")
    return random_inputs(signature, args.scale, args.seed)


def _reference(args, meta: dict):
    from .remote import pt2_reference

    path = args.check or meta.get("source")
    if not path or not str(path).endswith(".pt2"):
        return None, None
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no model {path} to check against (give --check)")
    return pt2_reference(path), path


def cmd_run(args) -> int:
    """Run ``args.library`` on the device; 1 when an output is off by more than the
    tolerance."""
    from .library import read_metadata
    from .remote import run

    if not os.path.isfile(args.library):
        raise FileNotFoundError(f"no library {args.library}")
    device = device_from_args(args, required=True)
    meta = read_metadata(args.library)
    inputs = _inputs(args, meta)
    reference, source = _reference(args, meta)
    result = run(
        args.library, inputs, device, reference=reference, number=args.number, repeat=args.repeat
    )
    print(
        f"ran {args.library} on {result.device}: {result.seconds * 1e3:.3f} ms per call "
        f"(median of {args.repeat} x {args.number} calls, the device's clock)"
    )
    worst = 0.0
    for i, y in enumerate(result.outputs):
        line = f"  output {i}: {'x'.join(map(str, y.shape))} {y.dtype}"
        if result.errors is not None:
            worst = max(worst, result.errors[i])
            line += f", relative error {result.errors[i]:.2e} against float64 torch ({source})"
        print(line)
    if result.errors is None:
        print("  not checked: no .pt2 to check against (give --check MODEL.pt2)")
    if not worst <= args.tolerance:
        print(f"  error above the tolerance {args.tolerance:g}")
        return 1
    return 0
