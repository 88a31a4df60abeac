"""The compiled model: :class:`Model` (what :func:`tvm_lrn.compile` returns), its export
to a shared library and :func:`load_module`, which loads one back.

An exported library gets a JSON file next to it (:data:`METADATA_SUFFIX`) with the
target and the schedule sources, so a loaded model runs on the device it was built for
and still says where its LRN schedules came from.
"""

from __future__ import annotations

import json
import os

import numpy as np
import tvm
from tvm import relax
from tvm.target import Target

from .interop import borrow_torch

__all__ = ["METADATA_SUFFIX", "Model", "load_module"]

#: Suffix of the JSON file written next to an exported library (target, schedule sources).
METADATA_SUFFIX = ".tvm_lrn.json"


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "__dlpack__")


def _ensure_precise_device_math(device) -> None:
    """CUDA kernels are compiled from source when loaded on the GPU, by default with
    ``--use_fast_math`` (flush-to-zero, approximate division), which breaks the numerical
    contract for tiny values: load them with the precise compile callback instead
    (:mod:`tvm_lrn.lower.cuda_math`)."""
    if device.dlpack_device_type() == tvm.cuda().dlpack_device_type():
        from .lower.cuda_math import set_precise_cuda_math

        set_precise_cuda_math(True)


class Model:
    """A compiled model: call it like a function.

    Calling with numpy arrays returns numpy arrays, with torch tensors torch tensors
    (zero-copy through DLPack where the memory allows), with ``tvm.runtime.Tensor``
    TVM tensors; a tuple output comes back as a tuple.

    Attributes
    ----------
    executable : tvm.runtime.Executable or tvm.runtime.Module
        What ``tvm.compile`` produced, or the loaded library.
    target : tvm.target.Target or None
        The compilation target (None if a loaded library had no metadata).
    device : tvm.runtime.Device
        Where the model runs.
    schedule_sources : dict
        ``{LRN PrimFunc name: schedule source}``, e.g. ``{"lrn": "rule:cpu"}``.
    tuned_kernels : list of str
        The other kernels (convolutions, dense layers...) that got a tuned record; the
        rest got the default schedules.
    """

    def __init__(
        self, executable, target=None, device=None, schedule_sources=None, tuned_kernels=None
    ):
        self.executable = executable
        self.target = target
        if device is None:
            device = _default_device(target, executable)
        self.device = device
        self.schedule_sources = dict(schedule_sources or {})
        self.tuned_kernels = list(tuned_kernels or [])
        self._vm = None

    @property
    def vm(self) -> relax.VirtualMachine:
        """The Relax VM (created on first use, so CUDA builds work without a GPU)."""
        if self._vm is None:
            _ensure_precise_device_math(self.device)
            self._vm = relax.VirtualMachine(self.executable, self.device)
        return self._vm

    def __call__(self, *args):
        """Run ``main`` on ``args`` (numpy arrays, torch tensors or TVM tensors)."""
        return self.call("main", *args)

    def call(self, name: str, *args):
        """Run the Relax function ``name`` on ``args``; see :meth:`__call__`."""
        kind = "tvm"
        if any(_is_torch(a) for a in args):
            kind = "torch"
        elif any(isinstance(a, np.ndarray | np.generic) for a in args):
            kind = "numpy"
        converted = [self._to_tvm(a) for a in args]
        out = self.vm[name](*converted)
        return _from_tvm(out, kind)

    def _to_tvm(self, x):
        if isinstance(x, tvm.runtime.Tensor):
            return x
        if _is_torch(x):
            return self._torch_to_tvm(x)
        if isinstance(x, np.ndarray | np.generic):
            return tvm.runtime.tensor(np.ascontiguousarray(x), self.device)
        return x  # shapes, scalars: the VM converts them itself

    def _torch_to_tvm(self, t):
        t_type, t_id = t.__dlpack_device__()
        dev = self.device
        same_device = (int(t_type), int(t_id)) == (int(dev.dlpack_device_type()), dev.index)
        if not same_device:
            # Different device: one host copy is unavoidable.
            return tvm.runtime.tensor(t.detach().cpu().contiguous().numpy(), self.device)
        return borrow_torch(t)

    def export_library(self, path, **kwargs):
        """Write a deployable shared library (and ``path + ".tvm_lrn.json"`` metadata).

        Parameters
        ----------
        path : str or os.PathLike
            Output file, e.g. ``"model.so"``.
        **kwargs
            Passed to ``Executable.export_library`` (``fcompile``, ``cc`` options).
        """
        path = os.fspath(path)
        self.executable.export_library(path, **kwargs)
        meta = {
            "target": None if self.target is None else _target_json(self.target),
            "device_type": int(self.device.dlpack_device_type()),
            "schedule_sources": self.schedule_sources,
        }
        with open(path + METADATA_SUFFIX, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1, sort_keys=True)

    def source(self) -> str:
        """Generated code: the device (e.g. CUDA) source if any, else the host LLVM IR."""
        mod = getattr(self.executable, "mod", self.executable)
        device = _device_modules(mod)
        if device:
            return "\n".join(m.inspect_source() for m in device)
        hosts = [m for m in _walk(mod) if m.kind == "llvm"]
        return "\n".join(m.inspect_source("ll") for m in hosts)

    def __repr__(self) -> str:
        target = self.target.kind.name if self.target is not None else "?"
        return f"Model(target={target}, device={self.device}, schedules={self.schedule_sources})"


def _walk(mod, seen=None):
    seen = [] if seen is None else seen
    if any(mod.same_as(m) for m in seen):  # a device module may be imported twice
        return
    seen.append(mod)
    yield mod
    for sub in mod.imports:
        yield from _walk(sub, seen)


def _device_modules(mod):
    return [m for m in _walk(mod) if m.kind in ("cuda", "rocm", "hip", "metal", "opencl")]


def _default_device(target, executable):
    if target is not None:
        return tvm.device(target.get_target_device_type(), 0)
    mod = getattr(executable, "mod", executable)
    kinds = {m.kind for m in _device_modules(mod)}
    if "cuda" in kinds:
        return tvm.cuda(0)
    if kinds & {"rocm", "hip"}:
        return tvm.rocm(0)
    if "metal" in kinds:
        return tvm.metal(0)
    return tvm.cpu(0)


def _target_json(target: Target) -> dict:
    return json.loads(str(target))  # a Target prints as its JSON config (host included)


def _from_tvm(out, kind: str):
    if isinstance(out, tvm.runtime.Tensor):
        if kind == "torch":
            import torch

            return torch.from_dlpack(out)
        if kind == "numpy":
            return out.numpy()
        return out
    if isinstance(out, list | tuple | tvm.ir.Array):
        return tuple(_from_tvm(o, kind) for o in out)
    return out


def _read_metadata(path: str) -> dict:
    """The metadata written next to ``path`` by :meth:`Model.export_library`, or {}."""
    meta_path = path + METADATA_SUFFIX
    if not os.path.exists(meta_path):
        return {}
    with open(meta_path, encoding="utf-8") as f:
        return json.load(f)


def load_module(path, device=None) -> Model:
    """Load a library written by :meth:`Model.export_library`.

    Parameters
    ----------
    path : str or os.PathLike
        The shared library.
    device : tvm.runtime.Device, optional
        Where to run; by default the device of the target it was built for (from the
        metadata file next to it, else from the kinds of its device modules).

    Returns
    -------
    Model
    """
    path = os.fspath(path)
    lib = tvm.runtime.load_module(path)
    meta = _read_metadata(path)
    target = None
    if meta.get("target"):
        try:
            target = Target(meta["target"])
        except (ValueError, TypeError, RuntimeError):
            target = None
    if device is None and meta.get("device_type") is not None:
        device = tvm.device(int(meta["device_type"]), 0)
    return Model(
        lib, target=target, device=device, schedule_sources=meta.get("schedule_sources", {})
    )
