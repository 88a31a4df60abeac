"""Precise (no fast-math) compilation of CUDA source.

TVM compiles CUDA source at module load through the global callback
``tvm_callback_cuda_compile``, and both its paths (nvrtc by default, nvcc with
``TVM_CUDA_COMPILE_MODE=nvcc``) pass ``--use_fast_math``. That flushes subnormals to
zero (``.ftz``), and maps ``powf``/``exp2f`` to approximate intrinsics, breaking the
contract for tiny inputs and results. :func:`precise_cuda_math` (a context manager) and
:func:`set_precise_cuda_math` (process-wide) register a replacement callback that
compiles without fast math:

* nvcc (preferred whenever ``nvcc`` is on PATH): TVM's nvcc path with
  ``TVM_CUDA_NVCC_NO_FAST_MATH=1`` for the duration of the call, so no
  ``--use_fast_math`` at all;
* nvrtc (no nvcc): TVM's nvrtc path with ``--ftz=false --prec-div=true --prec-sqrt=true``
  appended through ``TVM_CUDA_NVRTC_EXTRA_OPTS``. These undo the flush-to-zero and the
  approximate division/sqrt; whether ``powf`` also leaves its fast-math intrinsic there
  has not been verified (needs a GPU box with ``cuda-bindings``; scripts/gpu_check.py
  reports it), so prefer nvcc.

Why process-wide: the CUDA runtime module looks the callback up by that global name
when a module is first loaded or a kernel first looked up on the device (at the first
call of a compiled function, not in ``tvm.compile``), and TVM offers no per-module or
per-target hook. So the replacement has to be the registered global function at that
moment; :func:`set_precise_cuda_math` registers it and keeps the previous one to
restore.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import threading

import tvm_ffi

__all__ = [
    "PRECISE_NVRTC_OPTS",
    "precise_cuda_compile",
    "precise_cuda_math",
    "set_precise_cuda_math",
]

#: nvrtc options appended after TVM's ``--use_fast_math`` to undo its numerics.
PRECISE_NVRTC_OPTS = "--ftz=false --prec-div=true --prec-sqrt=true"

_CALLBACK = "tvm_callback_cuda_compile"

_lock = threading.RLock()
_saved: list = []  # callbacks replaced by set_precise_cuda_math / precise_cuda_math


def precise_cuda_compile(code: str, target_format: str | None = None, compiler: str | None = None):
    """Compile CUDA source without fast math, as TVM's compile callback would.

    Parameters
    ----------
    code : str
        CUDA C source (``ex.mod.imports[0].inspect_source()``).
    target_format : str, optional
        ``"ptx"``, ``"cubin"`` or ``"fatbin"``; by default fatbin (nvcc) or cubin (nvrtc).
    compiler : {"nvcc", "nvrtc"}, optional
        By default nvcc when it is on PATH, else nvrtc.

    Returns
    -------
    bytes
        The compiled module. The architecture comes from ``Target.current()`` or, when
        no target is set, from the GPU present (TVM's rule).
    """
    from tvm.support import nvcc

    if compiler is None:
        compiler = "nvcc" if shutil.which("nvcc") else "nvrtc"
    if compiler == "nvcc":
        env = {"TVM_CUDA_NVCC_NO_FAST_MATH": "1"}
        fmt = target_format or "fatbin"
    elif compiler == "nvrtc":
        extra = os.environ.get("TVM_CUDA_NVRTC_EXTRA_OPTS", "")
        env = {"TVM_CUDA_NVRTC_EXTRA_OPTS": f"{extra} {PRECISE_NVRTC_OPTS}".strip()}
        fmt = target_format or "cubin"
    else:
        raise ValueError(f"compiler must be 'nvcc' or 'nvrtc', got {compiler!r}")
    with _lock, _environ(env):
        return bytes(nvcc.compile_cuda(code, target_format=fmt, compiler=compiler))


def _callback(code, *_):
    # TVM calls the callback with the source only; tolerate a target argument too.
    return precise_cuda_compile(str(code))


def set_precise_cuda_math(enabled: bool = True) -> None:
    """Make every later CUDA module load compile without fast math (process-wide).

    Parameters
    ----------
    enabled : bool
        True installs the precise callback (idempotent); False restores the callback
        that was registered before the first ``set_precise_cuda_math(True)``.
    """
    import tvm.support.nvcc  # noqa: F401  (registers TVM's default callback first)

    with _lock:
        if enabled:
            if not _saved:
                _saved.append(tvm_ffi.get_global_func(_CALLBACK, allow_missing=True))
                tvm_ffi.register_global_func(_CALLBACK, _callback, override=True)
        elif _saved:
            previous = _saved.pop()
            if previous is not None:
                tvm_ffi.register_global_func(_CALLBACK, previous, override=True)


@contextlib.contextmanager
def precise_cuda_math():
    """Context manager: CUDA modules loaded inside compile without fast math.

    Wrap the first call of a compiled function (that is when TVM JIT-compiles CUDA
    source), e.g.::

        with tvm_lrn.lower.cuda_math.precise_cuda_math():
            y = tvm_lrn.run(x_cuda, size=5, target="cuda")

    Nested use is fine; the previous callback is restored on exit.
    """
    with _lock:
        was_on = bool(_saved)
        set_precise_cuda_math(True)
    try:
        yield
    finally:
        if not was_on:
            set_precise_cuda_math(False)


@contextlib.contextmanager
def _environ(values: dict):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
