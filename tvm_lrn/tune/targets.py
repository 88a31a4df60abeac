"""Target keys: the name of a target's folder of tuned schedules."""

from __future__ import annotations

import os
import re

from tvm.target import Target, codegen

from ..target import resolve_target

__all__ = ["physical_cores", "target_key", "tuning_target"]


def _x86_isa(target: Target) -> str:
    for isa, feature in (("avx512", "avx512f"), ("avx2", "avx2"), ("sse4", "sse4.2")):
        if codegen.target_has_features(feature, target):
            return isa
    return "generic"


def _arm_isa(target: Target) -> str:
    for isa in ("sve", "neon"):
        if codegen.target_has_features(isa, target):
            return isa
    return "generic"


def target_key(target) -> str:
    """The name of a target's folder of tuned schedules.

    Records tuned for one CPU model or GPU architecture are only valid there, so the key
    holds what changes the generated code: ``llvm-<mcpu>-<vector ISA>`` for CPUs (e.g.
    ``llvm-znver4-avx512``), ``cuda-<arch>`` for CUDA (e.g. ``cuda-sm_90``), and
    ``<kind>-<arch or mcpu>`` for other kinds.

    Parameters
    ----------
    target : None, str, dict or tvm.target.Target
        As :func:`tvm_lrn.target.resolve_target` accepts; None is the host CPU.

    Returns
    -------
    str
    """
    target = resolve_target(target)
    kind = target.kind.name
    attrs = target.attrs
    if kind == "llvm":
        mcpu = str(attrs.get("mcpu", "") or "generic")
        triple = str(attrs.get("mtriple", "") or "")
        if triple.startswith(("aarch64", "arm")):
            isa = _arm_isa(target)
        elif triple.startswith(("riscv", "wasm", "powerpc", "ppc")):
            isa = triple.split("-")[0]
        else:
            isa = _x86_isa(target)
        key = f"llvm-{mcpu}-{isa}"
    elif "arch" in attrs and attrs["arch"]:
        key = f"{kind}-{attrs['arch']}"
    elif "mcpu" in attrs and attrs["mcpu"]:
        key = f"{kind}-{attrs['mcpu']}"
    else:
        key = kind
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", key)


def tuning_target(target) -> Target:
    """``target`` as MetaSchedule wants it: llvm targets need ``num-cores``.

    Parameters
    ----------
    target : None, str, dict or tvm.target.Target

    Returns
    -------
    tvm.target.Target
        The same target, with ``num-cores`` (:func:`physical_cores`) on llvm.
    """
    target = resolve_target(target)
    if target.kind.name != "llvm" or "num-cores" in target.attrs:
        return target
    config = dict(target.export())
    config["num-cores"] = physical_cores()
    host = config.pop("host", None)
    return Target(config, host=host) if host else Target(config)


def physical_cores() -> int:
    """Physical cores of this machine (logical ones where psutil cannot tell)."""
    import psutil

    return int(psutil.cpu_count(logical=False) or os.cpu_count() or 1)
