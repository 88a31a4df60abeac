"""Target resolution: a name, a JSON dict or a tvm.target.Target, with clear errors."""

from __future__ import annotations

import functools

from tvm.target import Target

__all__ = ["resolve_target", "host_target", "is_generic_host_cpu"]


@functools.lru_cache(maxsize=1)
def host_target() -> Target:
    """The host CPU as an llvm target with its mtriple and mcpu (for vector widths)."""
    return Target.from_device("cpu")


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
        return target
    if not isinstance(target, (str, dict)):
        raise TypeError(f"target must be a str, dict or tvm.target.Target, got {target!r}")
    try:
        return Target(target)
    except (ValueError, TypeError) as err:  # what Target raises for unknown kinds/options
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"unknown or invalid target {target!r}: {first}") from None


def is_generic_host_cpu(target: Target) -> bool:
    """Whether ``target`` is a plain ``"llvm"`` for the host's triple: TVM then compiles
    for the baseline CPU of that triple (SSE2 on x86-64), not for the host's own CPU."""
    if target.kind.name != "llvm" or target.attrs.get("mcpu"):
        return False
    return str(target.attrs.get("mtriple", "")) == str(host_target().attrs.get("mtriple", ""))
