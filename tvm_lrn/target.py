"""Target resolution: a name, a JSON dict or a tvm.target.Target, with clear errors."""

from __future__ import annotations

import functools
import logging

from tvm.target import Target, codegen

__all__ = [
    "cpu_triple",
    "foreign_arch",
    "host_target",
    "host_target_on_one_core",
    "is_generic_host_cpu",
    "require_device",
    "require_native",
    "resolve_target",
    "warn_if_generic_cpu",
]

logger = logging.getLogger("tvm_lrn")


@functools.lru_cache(maxsize=1)
def host_target() -> Target:
    """The host CPU as an llvm target with its mtriple and mcpu (for vector widths)."""
    return Target.from_device("cpu")


@functools.lru_cache(maxsize=1)
def host_target_on_one_core() -> Target:
    """:func:`host_target` with ``num-cores`` 1: its kernels run on the calling thread,
    without TVM's thread pool (:mod:`tvm_lrn.lower.one_core`)."""
    return Target({**host_target().export(), "num-cores": 1})


def resolve_target(target=None) -> Target:
    """Turn ``target`` into a :class:`tvm.target.Target`.

    Parameters
    ----------
    target : None, str, dict or Target
        None or ``"host"``/``"cpu"`` is the host CPU; a string is a target kind
        (``"llvm"``, ``"cuda"``) or tag (``"nvidia/nvidia-h100"``); a dict is TVM's JSON
        form, e.g. ``{"kind": "llvm", "mcpu": "skylake-avx512"}``.

    Returns
    -------
    tvm.target.Target
    """
    if target is None or (isinstance(target, str) and target in ("host", "cpu")):
        return host_target()
    if isinstance(target, Target):
        return _check_mcpu(target, target)
    if not isinstance(target, (str, dict)):
        raise TypeError(f"target must be a str, dict or tvm.target.Target, got {target!r}")
    try:
        resolved = Target(target)
    except (ValueError, TypeError) as err:  # what Target raises for unknown kinds/options
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"unknown or invalid target {target!r}: {first}") from None
    return _check_mcpu(resolved, target)


def _check_mcpu(target: Target, given) -> Target:
    """``target``, unless LLVM does not know its ``mcpu``: LLVM would then compile for its
    generic CPU and print a warning for every kernel, so the target is refused once."""
    for t in (target, target.host):
        mcpu = t.attrs.get("mcpu") if t is not None and t.kind.name == "llvm" else None
        if not mcpu:
            continue
        triple = str(t.attrs.get("mtriple") or codegen.llvm_get_system_triple())
        if not codegen.llvm_is_valid_cpu(str(mcpu), triple):
            raise ValueError(
                f"unknown or invalid target {given!r}: LLVM knows no CPU {str(mcpu)!r} for "
                f"{triple} (tvm.target.codegen.llvm_get_cpu_archlist(target) lists them)"
            )
    return target


def is_generic_host_cpu(target: Target) -> bool:
    """Whether ``target`` is a plain ``"llvm"`` for the host's triple: TVM then compiles
    for the baseline CPU of that triple (SSE2 on x86-64), not for the host's own CPU."""
    if target.kind.name != "llvm" or target.attrs.get("mcpu"):
        return False
    return str(target.attrs.get("mtriple", "")) == str(host_target().attrs.get("mtriple", ""))


def warn_if_generic_cpu(target: Target) -> None:
    """Log a warning when ``target`` is the plain ``"llvm"`` of :func:`is_generic_host_cpu`."""
    if is_generic_host_cpu(target):
        logger.warning(
            "target %s has no mcpu, so TVM compiles for the baseline CPU (on x86-64 without "
            'AVX); target="host" or {"kind": "llvm", "mcpu": "%s"} compiles for this one',
            target,
            host_target().attrs.get("mcpu", ""),
        )


def require_device(device, what: str) -> None:
    """Raise RuntimeError unless this machine has ``device`` (a ``tvm.runtime.Device``).

    Parameters
    ----------
    device : tvm.runtime.Device
    what : str
        What needs it, for the message (e.g. ``"target cuda"``, ``"this model"``).
    """
    if not device.exist:
        raise RuntimeError(
            f"{what} runs on {device}, and this machine does not have one (no {device} "
            "here); tvm_lrn.compile(..., target=...) and export_library build for it "
            "without one"
        )


def cpu_triple(target: Target | None) -> str:
    """The ``mtriple`` of ``target``'s CPU code (its host's, for a GPU target); "" where
    it names none (this machine's)."""
    cpu = None if target is None else target if target.kind.name in ("llvm", "c") else target.host
    return str(cpu.attrs.get("mtriple", "") or "") if cpu is not None else ""


def foreign_arch(target: Target | None) -> str | None:
    """The CPU architecture ``target``'s host code is for (e.g. ``"aarch64"``), or None
    where it is this machine's."""
    arch = cpu_triple(target).split("-")[0]
    host = str(codegen.llvm_get_system_triple()).split("-")[0]
    return arch if arch and arch != host else None


def require_native(target: Target | None, what: str) -> None:
    """Raise RuntimeError when ``target``'s code is for another CPU than this one.

    Parameters
    ----------
    target : tvm.target.Target or None
    what : str
        What was built for it, for the message (e.g. ``"this model"``).
    """
    arch = foreign_arch(target)
    if arch is not None:
        raise RuntimeError(
            f"{what} is compiled for {arch}, not for this machine: export it "
            "(export_library) and run it there, e.g. with tvm_lrn.remote.run(model, inputs, "
            "device) or tvm-lrn run --rpc HOST:PORT --key KEY"
        )
