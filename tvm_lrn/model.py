"""The compiled model: :class:`Model`, what :func:`tvm_lrn.compile` returns and
:func:`tvm_lrn.load_module` loads back (:mod:`tvm_lrn.library`)."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from .errors import first_line
from .interop import (
    TVM_ALIGNMENT,
    InputError,
    borrow,
    element_alignment,
    from_tvm,
    is_torch,
    plain_cpu_tensor,
    plain_numpy_array,
    try_borrow,
)
from .output_pool import OutputPool
from .signature import check_call, destination_name, static_signatures
from .target import require_device, require_native

__all__ = ["Model"]


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


_MAIN_TWIN = destination_name("main")


def _nbytes(t: tvm.runtime.Tensor) -> int:
    return t.numel() * t.dtype.itemsize


def _refuse_overlap(name: str, borrowed: list, dest: tvm.runtime.Tensor) -> None:
    """A kernel may read an input after writing part of its output (an LRN reads a
    window around each element): ``out`` may share no memory with an input."""
    start = dest.data_ptr()
    end = start + _nbytes(dest)
    for index, t in enumerate(borrowed):
        if isinstance(t, tvm.runtime.Tensor) and t.data_ptr() < end:
            if start < t.data_ptr() + _nbytes(t):
                raise InputError(
                    f"{name}(): out= shares memory with argument {index}; pass an array of its own"
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
    lone_kernels : dict
        ``{function name: kernel name}`` of the functions that are one kernel call of
        their parameters (:mod:`tvm_lrn.destination`): a call of one with ``out=``
        calls the kernel itself.
    """

    def __init__(  # the state of a model; all but the first optional
        self,
        executable,
        target=None,
        device=None,
        schedule_sources=None,
        tuned_kernels=None,
        element_aligned=False,
        signatures=None,
        lone_kernels=None,
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
        self.lone_kernels = dict(lone_kernels or {})
        self._vm = None
        self._functions = {}
        self._alignment = element_alignment(device) if element_aligned else TVM_ALIGNMENT
        self._static = {}
        if self._alignment is None:  # a CPU model that borrows any element-aligned memory
            self._static = static_signatures(self.signatures)
        main = self._static.get("main", ())
        self._single_array = main[0] if len(main) == 1 else None
        self._pool = None  # main's OutputPool once looked for; False where there is none

    @property
    def vm(self) -> relax.VirtualMachine:
        """The Relax VM (created on first use, so CUDA builds work without a GPU)."""
        if self._vm is None:
            _ensure_precise_device_math(self.device)
            require_native(self.target, "this model")
            require_device(self.device, "this model")
            self._vm = relax.VirtualMachine(self.executable, self.device)
        return self._vm

    def __call__(self, *args, out=None):
        """Run ``main`` on ``args`` (numpy arrays, torch tensors or TVM tensors), into
        ``out`` where one is given (see :meth:`call`)."""
        single = self._single_array  # the commonest calls, inlined (see _fast_path)
        if single is not None and len(args) == 1:
            a = args[0]
            pool = self._pool if self._pool is not None else self._output_pool()
            if type(a) is np.ndarray and a.dtype is single[0] and a.shape == single[1]:
                flags = a.flags
                if not (flags.c_contiguous and flags.aligned and flags.writeable):
                    pass  # the general path borrows or copies it
                elif out is None:
                    result = pool.numpy(a) if pool else self._vm_main(a, "numpy")
                    if result is not None:
                        return result
                elif pool and plain_numpy_array(out, pool.dtype, pool.shape):
                    if not np.may_share_memory(a, out):  # the general path refuses it
                        pool.kernel(a, out)
                        return out
            elif out is None and pool and type(a) is pool.tensor_type and not a.requires_grad:
                try:
                    return pool.torch(a)  # the kernel checks dtype, shape, layout, device
                except (TypeError, ValueError, RuntimeError):
                    pass  # the general path says why, or copies it
            elif out is None and plain_cpu_tensor(a, single[2], single[1]) and a.is_contiguous():
                result = pool.torch(a) if pool else self._vm_main(a, "torch")
                if result is not None:
                    return result
        return self.call("main", *args, out=out)

    def _vm_main(self, a, kind: str):
        """``main(a)`` through the VM, for an input the fast path takes; None for a dtype
        DLPack lacks (bfloat16), which the general path copies."""
        function = self._functions.get("main") or self._function("main")
        try:
            return from_tvm(function(a), kind)  # TVM's FFI gives torch back for torch
        except BufferError:
            return None

    def call(self, name: str, *args, out=None):
        """Run the Relax function ``name`` on ``args``; see :meth:`__call__`.

        Parameters
        ----------
        name : str
            The function.
        *args
            Its arguments.
        out : numpy.ndarray, torch.Tensor or tvm.runtime.Tensor, optional
            Where to write the result of a function that returns one tensor, returned as
            given: writable C-contiguous memory on the model's device, of the result's
            dtype and shape, sharing no memory with an input. One ``out`` reused across
            calls spares each call a new result's memory, and stays in cache.

        Raises
        ------
        InputError
            ``args`` (or ``out``) do not fit the function (count, dtype, rank, shape),
            one of them cannot be handed to TVM (big-endian, masked, meta), ``out`` is
            not memory the kernel can write, or a torch input needs gradients, which a
            compiled model does not give.
        """
        if out is not None:
            return self._call_into(name, args, out)
        function = self._functions.get(name) or self._function(name)
        kind = self._fast_path(name, args)
        if kind is not None:  # TVM's FFI takes them as they are (torch ones back as torch)
            try:
                out = function(*args)
            except BufferError:
                pass  # a dtype torch's DLPack lacks (bfloat16): the general path copies
            else:
                return from_tvm(out, kind)
        check_call(name, self.signatures.get(name), args)
        kind = "tvm"
        for a in args:
            if is_torch(a):
                _refuse_grad(name, a)
                kind = "torch"
            elif kind == "tvm" and isinstance(a, np.ndarray | np.generic):
                kind = "numpy"
        out = function(*[self._to_tvm(a) for a in args])
        return from_tvm(out, kind)

    def _call_into(self, name: str, args: tuple, out):
        """:meth:`call` with ``out``: the function's destination-passing twin writes into
        ``out`` (:mod:`tvm_lrn.destination`); a function without one is run, and its
        result copied into ``out``."""
        twin = destination_name(name)
        fast = self._fast_path(twin, (*args, out))
        borrowed = [] if fast is None else [try_borrow(a, a.itemsize) for a in (*args, out)]
        if fast is None or None in borrowed:
            check_call(name, self.signatures.get(twin), args, out)
            for a in args:
                if is_torch(a):
                    _refuse_grad(name, a)
            *borrowed, dest = [self._to_tvm(a) for a in args] + [self._destination(out)]
        else:
            *borrowed, dest = borrowed
        if dest is None:  # numpy memory DLPack cannot describe: computed, then copied
            np.copyto(out, from_tvm(self._function(name)(*borrowed), "numpy"))
            return out
        _refuse_overlap(name, borrowed, dest)
        variant = self._twin(name)
        if variant is not None:
            variant(*borrowed, dest)
            return out
        result = self._function(name)(*borrowed)
        if not isinstance(result, tvm.runtime.Tensor):
            raise InputError(
                f"out= takes the result of a function returning one tensor; "
                f"{name}() returns {type(result).__name__}"
            )
        if tuple(result.shape) != tuple(dest.shape) or result.dtype != dest.dtype:
            raise InputError(
                f"{name}(): out= is {dest.dtype} {list(dest.shape)}, the result "
                f"{result.dtype} {list(result.shape)}"
            )
        result.copyto(dest)
        return out

    def _destination(self, out) -> tvm.runtime.Tensor | None:
        """``out`` as a TVM tensor over its own memory, None for a numpy bfloat16 array
        (written by numpy), or an InputError saying why not."""
        if is_torch(out) and out.requires_grad:
            raise InputError("out= requires grad: autograd cannot see a write into it")
        if isinstance(out, tvm.runtime.Tensor):
            dest = out
        elif not (isinstance(out, np.ndarray) or is_torch(out)):
            raise InputError(
                "out= must be a numpy array, a torch tensor or a tvm.runtime.Tensor, got "
                f"{type(out).__name__}"
            )
        else:
            dest = try_borrow(out, self._alignment or out.itemsize)
        if dest is not None and dest.device == self.device:
            return dest
        if dest is None and isinstance(out, np.ndarray) and out.dtype.name == "bfloat16":
            if out.flags.writeable and out.flags.c_contiguous:
                return None  # numpy can write it, DLPack has no bfloat16
        if dest is not None:
            why = f"it is on {dest.device}"
        elif isinstance(out, np.ndarray) and not out.flags.writeable:
            why = "it is read-only"
        elif not (out.flags.c_contiguous if isinstance(out, np.ndarray) else out.is_contiguous()):
            why = "it is not C-contiguous"
        else:
            why = f"TVM cannot take its memory (alignment {self._alignment or out.itemsize})"
        raise InputError(
            f"out= must be writable, C-contiguous memory on {self.device}, which a kernel "
            f"can write in place; {why}"
        )

    def _fast_path(self, name: str, args: tuple) -> str | None:
        """``"numpy"`` or ``"torch"`` when ``args`` are all writable, aligned, contiguous
        numpy arrays or all contiguous CPU torch tensors (not asking for gradients) of
        exactly the dtypes and static shapes ``name`` takes, on a CPU model, which the
        kernels take as they are; else None: the general path checks and converts.
        Python run after a kernel runs on cold caches and costs several times what it
        costs in a loop, so the common call does as little as it can."""
        expected = self._static.get(name)
        if expected is None or len(args) != len(expected) or not args:
            return None
        kind = "numpy" if type(args[0]) is np.ndarray else "torch"
        for a, (dtype, shape, name) in zip(args, expected, strict=True):
            if kind == "numpy":
                if not plain_numpy_array(a, dtype, shape):
                    return None
            elif not (plain_cpu_tensor(a, name, shape) and a.is_contiguous()):
                return None
        return kind

    def _output_pool(self):
        """The :class:`OutputPool` that ``main``'s lone kernel writes fresh outputs into,
        past the VM; False where ``main`` is no lone kernel of static shapes and a dtype
        DLPack has (looked for once)."""
        self.vm  # noqa: B018 (refuses a model for another CPU, as every call does)
        kernel = self._lone_kernel("main")
        twin = self._static.get(_MAIN_TWIN)
        self._pool = False
        if kernel is not None and twin is not None:
            dtype, shape, name = twin[-1]  # the destination: main's result
            if "bfloat16" not in (name, self._single_array[2]):  # DLPack has no bfloat16
                self._pool = OutputPool(kernel, dtype, shape)
        return self._pool

    def _twin(self, name: str):
        """What writes ``name``'s result into its last argument: the lone kernel, else the
        VM's destination-passing twin, else None (looked up once)."""
        twin = destination_name(name)
        if twin not in self._functions:
            self._functions[twin] = self._lone_kernel(name) or self._function(twin, required=False)
        return self._functions[twin]

    def _lone_kernel(self, name: str):
        """The kernel that function ``name`` only calls, which its twin's calls can call
        straight, past the VM's calling machinery (as cheap as calling the kernel)."""
        kernel = self.lone_kernels.get(name)
        if kernel is None or self._alignment is not None:  # CPU models borrow alone
            return None
        try:
            return getattr(self.executable, "mod", self.executable).get_function(
                kernel, query_imports=True
            )
        except (AttributeError, RuntimeError):
            return None

    def _function(self, name: str, *, required: bool = True):
        vm = self.vm
        try:
            function = vm[name]
        except (AttributeError, KeyError, RuntimeError) as err:
            if required:
                message = f"the model has no function {name!r} ({first_line(err)})"
                raise InputError(message) from None
            function = None
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
            ``cc``: the C++ compiler that links it (a cross compiler for another CPU
            than this one is found from the target's ``mtriple`` when not given, see
            :func:`tvm_lrn.library.compiler_for`); the rest goes to
            ``Executable.export_library`` (``fcompile``, ``options``).
        """
        from .library import export_model  # the library module loads models: imports this

        export_model(self, path, **kwargs)

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
