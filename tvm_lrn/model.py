"""The compiled model: :class:`Model` (what :func:`tvm_lrn.compile` returns), its export
to a shared library and :func:`load_module`, which loads one back.

An exported library gets a JSON file next to it (:data:`METADATA_SUFFIX`) with the
target and the schedule sources, so a loaded model runs on the device it was built for
and still says where its LRN schedules came from.
"""

from __future__ import annotations

import functools
import json
import os
import sys

import numpy as np
import tvm
import tvm_ffi
from tvm import relax
from tvm.target import Target

from .errors import first_line
from .interop import (
    TVM_ALIGNMENT,
    InputError,
    borrow,
    element_alignment,
    is_torch,
    on_host,
    try_borrow,
)
from .signature import check_call
from .target import require_device

__all__ = ["METADATA_SUFFIX", "Model", "load_module"]

#: Suffix of the JSON file written next to an exported library (target, schedule sources).
METADATA_SUFFIX = ".tvm_lrn.json"


def _static_signatures(signatures: dict) -> dict:
    """``{name: ((numpy dtype, shape, dtype name), ...)}`` of the functions that take only
    tensors of static shapes and numpy dtypes (for :meth:`Model._fast_path`; the name
    too, since numpy makes it anew on every ``dtype.name``)."""
    out = {}
    for name, signature in signatures.items():
        try:
            out[name] = tuple(
                (np.dtype(spec["dtype"]), tuple(int(d) for d in spec["shape"]), spec["dtype"])
                for spec in signature
            )
        except (TypeError, ValueError, KeyError):
            continue  # a non-tensor, symbolic or non-numpy parameter
    return out


@functools.cache
def _torch_dtype(name: str):
    import torch

    return getattr(torch, name, None)


def _plain_cpu_tensor(t, dtype: str, shape: tuple) -> bool:
    """Whether ``t`` is a CPU torch tensor of ``dtype`` (a name) and ``shape`` that asks
    for no gradient (what the fast path takes)."""
    torch = sys.modules.get("torch")  # not imported: ``t`` is no tensor
    return (
        torch is not None
        and type(t) is torch.Tensor
        and t.dtype is _torch_dtype(dtype)
        and t.shape == shape
        and t.is_cpu
        and not (t.requires_grad and torch.is_grad_enabled())
    )


def _torch_from_dlpack(out):
    return sys.modules["torch"].from_dlpack(out)


def _refuse_grad(name: str, t) -> None:
    """A compiled model has no backward: an input that asks for gradients is refused
    rather than detached silently."""
    if t.requires_grad:
        import torch

        if torch.is_grad_enabled():
            raise InputError(
                f"{name}(): an input requires grad, but a compiled model computes no "
                "gradients; call it under torch.no_grad() or torch.inference_mode(), or "
                "pass x.detach() (torch.compile(model, backend='tvm_lrn') trains)"
            )


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
    element_aligned : bool
        Whether the kernels were built with :data:`tvm_lrn.lower.TIR_PIPELINE`, whose CPU
        kernels read inputs aligned to one element: then any numpy array or torch tensor
        is borrowed, not copied; else only 64-byte aligned memory is.
    signatures : dict
        ``{function name: what it takes}`` (:mod:`tvm_lrn.signature`), checked before
        every call; a function missing from it is not checked.
    """

    def __init__(  # noqa: PLR0913  (the state of a model; all but the first optional)
        self,
        executable,
        target=None,
        device=None,
        schedule_sources=None,
        tuned_kernels=None,
        element_aligned=False,
        signatures=None,
    ):
        self.executable = executable
        self.target = target
        if device is None:
            device = _default_device(target, executable)
        self.device = device
        self.schedule_sources = dict(schedule_sources or {})
        self.tuned_kernels = list(tuned_kernels or [])
        self.element_aligned = bool(element_aligned)
        self.signatures = dict(signatures or {})
        self._vm = None
        self._functions = {}
        self._alignment = element_alignment(device) if element_aligned else TVM_ALIGNMENT
        self._static = {}
        if self._alignment is None:  # a CPU model that borrows any element-aligned memory
            self._static = _static_signatures(self.signatures)
        main = self._static.get("main", ())
        self._single_array = main[0][:2] if len(main) == 1 else None

    @property
    def vm(self) -> relax.VirtualMachine:
        """The Relax VM (created on first use, so CUDA builds work without a GPU)."""
        if self._vm is None:
            _ensure_precise_device_math(self.device)
            require_device(self.device, "this model")
            self._vm = relax.VirtualMachine(self.executable, self.device)
        return self._vm

    def __call__(self, *args):
        """Run ``main`` on ``args`` (numpy arrays, torch tensors or TVM tensors)."""
        single = self._single_array  # the commonest call, inlined (see _fast_path)
        if single is not None and len(args) == 1:
            a = args[0]
            if type(a) is np.ndarray and a.dtype is single[0] and a.shape == single[1]:
                function = self._functions.get("main") or self._function("main")
                try:
                    t = tvm_ffi.from_dlpack(
                        a, require_alignment=a.itemsize, require_contiguous=True
                    )
                except (ValueError, RuntimeError, TypeError, BufferError):
                    t = None  # read-only or misaligned memory: the general path copies it
                if t is not None:
                    out = function(t)
                    return (
                        np.from_dlpack(out)
                        if type(out) is tvm.runtime.Tensor
                        else _from_tvm(out, "numpy")
                    )
        return self.call("main", *args)

    def call(self, name: str, *args):
        """Run the Relax function ``name`` on ``args``; see :meth:`__call__`.

        Raises
        ------
        InputError
            ``args`` do not fit the function (count, dtype, rank, shape), one of them
            cannot be handed to TVM (big-endian, masked, meta), or a torch input needs
            gradients, which a compiled model does not give.
        """
        function = self._functions.get(name) or self._function(name)
        fast = self._fast_path(name, args)
        if fast is not None:
            kind, borrowed = fast
            out = function(*borrowed)
            if type(out) is tvm.runtime.Tensor:
                return np.from_dlpack(out) if kind == "numpy" else _torch_from_dlpack(out)
            return _from_tvm(out, kind)
        check_call(name, self.signatures.get(name), args)
        kind = "tvm"
        for a in args:
            if is_torch(a):
                _refuse_grad(name, a)
                kind = "torch"
            elif kind == "tvm" and isinstance(a, np.ndarray | np.generic):
                kind = "numpy"
        out = function(*[self._to_tvm(a) for a in args])
        return _from_tvm(out, kind)

    def _fast_path(self, name: str, args: tuple):
        """``(kind, borrowed args)`` when ``args`` are all numpy arrays or all CPU torch
        tensors (not asking for gradients) of exactly the dtypes and static shapes
        ``name`` takes, on a CPU model; else None: the general path checks and converts.
        Python run after a kernel runs on cold caches and costs several times what it
        costs in a loop, so the common call does as little as it can."""
        expected = self._static.get(name)
        if expected is None or len(args) != len(expected) or not args:
            return None
        kind = "numpy" if type(args[0]) is np.ndarray else "torch"
        borrowed = []
        for a, (dtype, shape, name) in zip(args, expected, strict=True):
            if kind == "numpy":
                if type(a) is not np.ndarray or a.dtype is not dtype or a.shape != shape:
                    return None
            elif not _plain_cpu_tensor(a, name, shape):
                return None
            t = try_borrow(a, a.itemsize)
            if t is None:
                return None
            borrowed.append(t)
        return kind, borrowed

    def _function(self, name: str):
        vm = self.vm
        try:
            function = vm[name]
        except (AttributeError, KeyError, RuntimeError) as err:
            raise InputError(f"the model has no function {name!r} ({first_line(err)})") from None
        self._functions[name] = function  # a VM lookup costs as much as a small call
        return function

    def _to_tvm(self, x):
        if isinstance(x, tvm.runtime.Tensor):
            return x
        if is_torch(x):
            x = x.detach()  # no gradient is asked for (checked in call)
        elif not isinstance(x, np.ndarray | np.generic):
            return x  # shapes, scalars: the VM converts them itself
        return borrow(x, self.device, self._alignment)

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
        folder = os.path.dirname(os.path.abspath(path))
        if os.path.isdir(path):
            raise IsADirectoryError(f"export_library: {path} is a folder; name a file in it")
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"export_library: the folder {folder} does not exist")
        try:
            self.executable.export_library(path, **kwargs)
        except Exception as err:  # noqa: BLE001 (the compiler's or linker's failure)
            raise RuntimeError(f"export_library to {path} failed: {first_line(err)}") from None
        meta = {
            "target": None if self.target is None else _target_json(self.target),
            "device_type": int(self.device.dlpack_device_type()),
            "schedule_sources": self.schedule_sources,
            "element_aligned": self.element_aligned,
            "signatures": self.signatures,
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
            return _numpy_view(out)
        return out
    if isinstance(out, list | tuple | tvm.ir.Array):
        return tuple(_from_tvm(o, kind) for o in out)
    return out


def _numpy_view(out: tvm.runtime.Tensor) -> np.ndarray:
    """``out`` as numpy without a copy where numpy can view it (a CPU tensor of a numpy
    dtype). The VM's pooled allocator then gets the memory back when the caller drops the
    array, so the next call reuses it instead of faulting in fresh pages."""
    if on_host(out.device):
        try:
            return np.from_dlpack(out)
        except (TypeError, BufferError, RuntimeError, ValueError):
            pass  # bfloat16 has no numpy DLPack dtype
    return out.numpy()


def _read_metadata(path: str) -> dict:
    """The metadata written next to ``path`` by :meth:`Model.export_library`, or {}."""
    meta_path = path + METADATA_SUFFIX
    if not os.path.exists(meta_path):
        return {}
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{meta_path}: not tvm_lrn metadata ({first_line(err)}); export the model again, "
            "or delete the file to load the library without it"
        ) from None
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path}: not tvm_lrn metadata (a JSON object is expected)")
    return meta


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
    if os.path.isdir(path):
        raise IsADirectoryError(f"load_module: {path} is a folder, not a library")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_module: no file {path}")
    meta = _read_metadata(path)
    try:
        lib = tvm.runtime.load_module(path)
    except Exception as err:  # noqa: BLE001 (the loader's error types come from C++)
        raise ValueError(
            f"load_module: {path} is not a library TVM can load ({first_line(err)}); "
            "export one with Model.export_library"
        ) from None
    target = None
    if meta.get("target"):
        try:
            target = Target(meta["target"])
        except (ValueError, TypeError, RuntimeError):
            target = None
    if device is None and meta.get("device_type") is not None:
        device = tvm.device(int(meta["device_type"]), 0)
    return Model(
        lib,
        target=target,
        device=device,
        schedule_sources=meta.get("schedule_sources", {}),
        element_aligned=meta.get("element_aligned", False),
        signatures=meta.get("signatures"),
    )
