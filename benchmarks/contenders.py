"""The contenders of the LRN benchmark: tvm_lrn, its variants, its peers and the copy roofline.

Each contender is a factory ``make(x, lrn, threads, device) -> Bench``: it gets the input
(a numpy array), the LRN arguments (:class:`LRNArgs`, torch convention), the thread count
and the device (``"cpu"``, or ``"cuda"`` for :mod:`gpu`), does every one-time cost (compile,
export, session creation, output allocation), and returns a :class:`Bench` whose ``call``
runs the operator once and whose ``result`` hands back the last output as numpy.

Factories import their libraries lazily, so that a benchmark worker process imports only
what its contender needs. A factory raises :class:`Unsupported` for a combination it
cannot run (e.g. ONNX Runtime's LRN kernel has no float16 on CPU); the driver records
that as a skipped row instead of an error.

What each ``call`` includes is stated in :data:`CONTENDERS` and in ``benchmarks/README.md``:
TVM, ONNX Runtime and the copies write into an output allocated once; torch eager has no
``out=`` form of ``F.local_response_norm`` and allocates its output on every call;
torch.compile gets the same preallocated output as the others (its compiled function
writes into it, see :func:`make_torch_compile`).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import subprocess
from collections.abc import Callable

import numpy as np

__all__ = [
    "Bench",
    "CONTENDERS",
    "Contender",
    "LRNArgs",
    "Unsupported",
    "aligned_copy",
    "host_buffers",
    "lrn_contenders",
    "peer_keys",
]

_ALIGN = 64


class Unsupported(RuntimeError):
    """This contender cannot run this shape, dtype or device (a skip, not a failure)."""


@dataclasses.dataclass(frozen=True)
class LRNArgs:
    """LRN arguments in the PyTorch convention (``F.local_response_norm``).

    Attributes
    ----------
    size : int
        Window length.
    alpha, beta, k : float
        ``y = x / (k + alpha / size * sum(x**2)) ** beta`` (PyTorch divides alpha by size).
    axis : int
        The channel axis (PyTorch and ONNX Runtime only support 1).
    """

    size: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 1.0
    axis: int = 1

    def params(self, ndim: int):
        """Canonical :class:`tvm_lrn.spec.LRNParams` for an input of rank ``ndim``."""
        from tvm_lrn.spec import canonicalize

        return canonicalize(self.size, self.alpha, self.beta, self.k, self.axis, "torch", ndim=ndim)


@dataclasses.dataclass
class Bench:
    """A prepared contender.

    Attributes
    ----------
    call : callable
        Runs the operator once on the prepared input (asynchronous on CUDA).
    result : callable
        Returns the output of the last ``call`` as a numpy array.
    note : str
        Anything a reader of the results should know (e.g. which schedule was used).
    paired : callable, optional
        Another operator on the same input and output, timed alternately with ``call``
        in the same process, so that the ratio of the two is free of what differs between
        processes (their pages, their placement); the driver checks its output
        (``result`` after a ``paired`` call) and reports ``paired`` time / ``call`` time.
    """

    call: Callable[[], object]
    result: Callable[[], np.ndarray]
    note: str = ""
    paired: Callable[[], object] | None = None


@dataclasses.dataclass(frozen=True)
class Contender:
    """One row label of the benchmark.

    Attributes
    ----------
    key : str
        Name used on the command line and in the CSV's ``contender`` column.
    label : str
        Human-readable name for tables and plots.
    op : str
        ``"lrn"`` or ``"copy"`` (copies are checked against the input, not the LRN).
    make : callable
        The factory, ``make(x, lrn, threads, device) -> Bench``.
    version : callable
        Returns the version string of the library under test.
    devices : tuple of str
        Devices the factory supports.
    peer : bool
        True for the implementations tvm_lrn is compared against.
    what : str
        What one timed call includes.
    """

    key: str
    label: str
    op: str
    make: Callable[..., Bench]
    version: Callable[[], str]
    devices: tuple[str, ...] = ("cpu",)
    peer: bool = False
    what: str = ""


# --------------------------------------------------------------------------- helpers


def aligned_copy(x: np.ndarray, align: int = _ALIGN) -> np.ndarray:
    """A C-contiguous copy of ``x`` whose data pointer is a multiple of ``align`` bytes.

    TVM only borrows 64-byte aligned memory through DLPack, and every contender gets its
    own copy of the input with the same alignment.
    """
    raw = np.empty(x.nbytes + align, dtype=np.uint8)
    offset = (-raw.ctypes.data) % align
    out = raw[offset : offset + x.nbytes].view(x.dtype).reshape(x.shape)
    np.copyto(out, x)
    return out


def host_buffers(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The input and a zeroed output of one contender: aligned numpy arrays, whichever
    library then reads and writes them.

    Every contender that gets preallocated buffers gets them from this one allocator, so
    that they are backed alike: numpy asks Linux for transparent huge pages for arrays of
    4 MiB and more, TVM's and torch's CPU allocators do not, and a streaming kernel on
    4 KiB pages is slower (more TLB misses, prefetches stopped at every page): tvm_lrn on
    16x96x55x55 took 2.09 to 2.74 ms on TVM-allocated buffers, 1.66 to 2.30 ms on numpy's
    (``benchmarks/README.md``, Method).
    """
    return aligned_copy(x), aligned_copy(np.zeros_like(x))


def _torch(threads: int):
    import torch

    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return torch


def _torch_input(x: np.ndarray, threads: int, device: str):
    torch = _torch(threads)
    t = torch.from_numpy(aligned_copy(x))
    return t.to(device) if device != "cpu" else t


def _torch_buffers(x: np.ndarray, threads: int, device: str):
    """Input and preallocated output as torch tensors: :func:`host_buffers` on the CPU,
    device memory otherwise."""
    torch = _torch(threads)
    if device == "cpu":
        xa, ya = host_buffers(x)
        return torch.from_numpy(xa), torch.from_numpy(ya)
    xt = _torch_input(x, threads, device)
    return xt, torch.empty_like(xt)


def _to_numpy(t) -> np.ndarray:
    return t.detach().cpu().numpy()


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


def _tvm_target(device: str):
    from tvm_lrn.target import host_target, resolve_target

    return host_target() if device == "cpu" else resolve_target(device)


def _tvm_tensors(x: np.ndarray, device: str):
    """Input and output tensors for a TVM kernel: :func:`host_buffers` borrowed on the
    CPU, torch-owned memory on CUDA."""
    import tvm

    if device == "cpu":
        # borrowed, not copied: tvm.runtime.tensor would copy into TVM's own allocation
        xa, ya = host_buffers(x)
        return tvm.runtime.from_dlpack(xa), tvm.runtime.from_dlpack(ya), ya.copy
    xs, ys = _torch_buffers(x, 0, device)
    return tvm.runtime.from_dlpack(xs), tvm.runtime.from_dlpack(ys), lambda: _to_numpy(ys)


def _compile_kernel(func, device: str):
    """``tvm.compile`` a scheduled PrimFunc named ``main``."""
    import tvm

    if func.attrs is None or "global_symbol" not in func.attrs:
        func = func.with_attr("global_symbol", "main")
    executable = tvm.compile(func, target=_tvm_target(device))
    if device != "cpu" and not any(m.kind == device for m in executable.mod.imports):
        # an unscheduled PrimFunc compiles for a GPU target into host code, silently
        raise RuntimeError(f"no {device} kernel was generated (the schedule did not apply)")
    return executable["main"]


def _static_lrn_primfunc(
    shape, dtype: str, lrn: LRNArgs, *, safe_scaling: bool, device="cpu", **compute_kwargs
):
    """The LRN PrimFunc of one static shape, as Relax legalization writes it (int64 dims)
    under the target of ``device``; ``compute_kwargs`` go to :func:`tvm_lrn.compute.lrn`
    (``form``, ``rsqrt_estimate``)."""
    from tvm import te, tirx

    from tvm_lrn import compute

    params = lrn.params(len(shape))
    x = te.placeholder([tirx.IntImm("int64", d) for d in shape], dtype, name="x")
    with _tvm_target(device):
        y = compute.lrn(x, params, safe_scaling=safe_scaling, **compute_kwargs)
    func = te.create_prim_func([x, y])
    return func.with_attrs({"tvm_lrn." + k: v for k, v in params.as_attrs().items()})


def _legalized_lrn_primfunc(shape, dtype: str, lrn: LRNArgs, device: str):
    """The PrimFunc ``relax.tvm_lrn`` legalizes to for ``shape`` on ``device`` (what a
    compiled model runs: for these static NCHW shapes the checked form, on CPUs and GPUs)."""
    from tvm_lrn import tune

    with _tvm_target(device):
        work = tune.lrn_workloads(
            [tuple(shape)],
            dtype,
            size=lrn.size,
            alpha=lrn.alpha,
            beta=lrn.beta,
            bias=lrn.k,
            axis=lrn.axis,
            convention="torch",
        )
    return work[0].func


def _tvm_bench(func, x: np.ndarray, device: str, note: str = "") -> Bench:
    kernel = _compile_kernel(func, device)
    xt, yt, result = _tvm_tensors(x, device)
    return Bench(lambda: kernel(xt, yt), result, note)


# --------------------------------------------------------------------------- versions


@functools.lru_cache(maxsize=1)
def _git_describe() -> str:
    """Short commit of the checkout, ``+dirty`` if tvm_lrn/ has uncommitted changes."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "tvm_lrn"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f"g{head}{'+dirty' if dirty else ''}"


def _v_tvm_lrn() -> str:
    import tvm

    import tvm_lrn

    git = _git_describe()
    return f"tvm_lrn {tvm_lrn.__version__}{'+' + git if git else ''}; tvm {tvm.__version__}"


def _v_tvm() -> str:
    import tvm

    return f"tvm {tvm.__version__}"


def _v_tvm_torch() -> str:
    import torch
    import tvm

    return f"tvm {tvm.__version__}; torch {torch.__version__}"


def _v_torch() -> str:
    import torch

    return f"torch {torch.__version__}"


def _v_ort() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"


def _v_numpy() -> str:
    return f"numpy {np.__version__}"


# --------------------------------------------------------------------------- tvm_lrn


def make_tvm_lrn(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """tvm_lrn's kernel exactly as a compiled model runs it: the PrimFunc ``relax.tvm_lrn``
    legalizes to (static shape), scheduled by the strategy rule."""
    from tvm_lrn.strategy import schedule_primfunc

    func = _legalized_lrn_primfunc(x.shape, x.dtype.name, lrn, device)
    return _tvm_bench(schedule_primfunc(func, _tvm_target(device)), x, device, "strategy rule")


def make_tvm_lrn_dynamic(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """tvm_lrn's symbolic-shape kernel, the one ``tvm_lrn.run`` compiles once per rank."""
    from tvm_lrn.eager import lrn_primfunc
    from tvm_lrn.strategy import schedule_primfunc

    func = lrn_primfunc(x.ndim, x.dtype.name, lrn.params(x.ndim))
    return _tvm_bench(schedule_primfunc(func, _tvm_target(device)), x, device, "symbolic shape")


def make_tvm_lrn_tuned(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """tvm_lrn with the best record of the shipped MetaSchedule database for this target."""
    try:
        from tvm_lrn import tune
    except ImportError as err:  # the tuning module is optional
        raise Unsupported(f"tvm_lrn.tune unavailable: {err}") from None
    target = _tvm_target(device)
    func = _legalized_lrn_primfunc(x.shape, x.dtype.name, lrn, device)
    scheduled, why = tune.query_database(func, target)
    if scheduled is None:
        raise Unsupported(why)
    return _tvm_bench(scheduled, x, device, why)


def make_tvm_lrn_unsafe(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """The fast path of the same kernel alone (static shape, strategy rule): no range
    guard and no fallback, so not safe; it measures what the safety costs.

    On the CPU, tvm_lrn's own kernel is its ``paired`` operator on the same buffers: the
    safety cost is the ratio of two kernels, and timed in two processes it carried their
    difference (the same two kernels differed by 0.95x to 1.22x from one pair of
    processes to the next, by the median of a case; alternately in one process, by 0.98x
    to 1.01x). :mod:`gpu` times every contender in one process already.
    """
    from tvm_lrn.strategy import schedule_primfunc

    target = _tvm_target(device)
    unsafe = _static_lrn_primfunc(x.shape, x.dtype.name, lrn, safe_scaling=False, device=device)
    fast = _compile_kernel(schedule_primfunc(unsafe, target), device)
    xt, yt, result = _tvm_tensors(x, device)
    bench = Bench(lambda: fast(xt, yt), result, "benchmark-only, unsafe")
    if device == "cpu":
        safe = _legalized_lrn_primfunc(x.shape, x.dtype.name, lrn, device)
        kernel = _compile_kernel(schedule_primfunc(safe, target), device)
        bench.paired = lambda: kernel(xt, yt)
        bench.note += "; paired with tvm_lrn"
    return bench


# --------------------------------------------------------------------------- TVM peers


def make_topi(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """``tvm.topi.nn.lrn`` compiled with no schedule (TVM's only packaged LRN compute)."""
    if device != "cpu":
        raise Unsupported("an unscheduled PrimFunc has no GPU kernel")
    if lrn.size % 2 == 0:
        raise Unsupported("topi.nn.lrn has a symmetric window: odd sizes only")
    from tvm import te, topi

    data = te.placeholder(x.shape, x.dtype.name, name="x")
    # topi divides alpha by size, like PyTorch.
    out = topi.nn.lrn(data, lrn.size, lrn.axis, lrn.alpha, lrn.beta, lrn.k)
    return _tvm_bench(te.create_prim_func([data, out]), x, device, "no schedule")


class _LRNModule:
    """Built lazily as a ``torch.nn.Module`` calling ``F.local_response_norm``."""

    @staticmethod
    def make(lrn: LRNArgs):
        import torch
        import torch.nn.functional as F

        class LRN(torch.nn.Module):
            def forward(self, x):
                return F.local_response_norm(x, lrn.size, lrn.alpha, lrn.beta, lrn.k)

        return LRN().eval()


def make_tvm_import(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """TVM's own PyTorch import of ``F.local_response_norm`` (``from_exported_program``),
    compiled by ``tvm.compile`` with the default Relax pipeline, run by the Relax VM."""
    import tvm
    from tvm import relax
    from tvm.relax.frontend.torch import from_exported_program

    torch = _torch(threads)
    example = torch.from_numpy(np.ascontiguousarray(x))
    with torch.no_grad():
        exported = torch.export.export(_LRNModule.make(lrn), (example,))
    mod = from_exported_program(exported)
    target = _tvm_target(device)
    executable = tvm.compile(mod, target=target)
    dev = tvm.cpu(0) if device == "cpu" else tvm.cuda(0)
    vm = relax.VirtualMachine(executable, dev)
    xt, _, _ = _tvm_tensors(x, device)
    main = vm["main"]
    last = {}

    def call():
        out = main(xt)
        last["y"] = out

    def result():
        out = last["y"]
        if not hasattr(out, "numpy"):  # a tuple of outputs
            out = out[0]
        return out.numpy()

    return Bench(call, result, "decomposed ops, default pipeline")


# --------------------------------------------------------------------------- torch


def make_torch(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """``torch.nn.functional.local_response_norm`` in eager mode (allocates its output)."""
    import torch.nn.functional as F

    xt = _torch_input(x, threads, device)
    last = {}

    def call():
        last["y"] = F.local_response_norm(xt, lrn.size, lrn.alpha, lrn.beta, lrn.k)

    try:
        call()
    except NotImplementedError as err:  # e.g. avg_pool3d has no float16 CPU kernel
        raise Unsupported(f"torch: {str(err).splitlines()[0]}") from None

    return Bench(call, lambda: _to_numpy(last["y"]), "allocates its output per call")


def make_torch_compile(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """``torch.compile`` (inductor, static shapes) of ``F.local_response_norm``.

    The compiled function writes into a preallocated output (``out.copy_(lrn(x))``), which
    inductor fuses into its kernel, so that torch.compile, like tvm_lrn, is timed without
    an allocation per call.
    """
    import torch.nn.functional as F

    torch = _torch(threads)
    xt, yt = _torch_buffers(x, threads, device)

    def lrn_into(inp, out):
        out.copy_(F.local_response_norm(inp, lrn.size, lrn.alpha, lrn.beta, lrn.k))

    # One worker times many shapes with the same function: start dynamo afresh so that
    # each shape is one compilation, not a recompilation counted against the limit.
    torch._dynamo.reset()
    compiled = torch.compile(lrn_into, dynamic=False, fullgraph=True)
    with torch.no_grad():
        compiled(xt, yt)  # compile now, not in the first timed call
    _sync(device)

    def call():
        with torch.no_grad():
            compiled(xt, yt)

    return Bench(call, lambda: _to_numpy(yt), "inductor, writes a preallocated output")


# --------------------------------------------------------------------------- ONNX Runtime


def make_ort(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """ONNX Runtime's ``LRN`` kernel (CPU execution provider), IO-bound to preallocated
    numpy buffers."""
    if device != "cpu":
        raise Unsupported("CPU execution provider only")
    if lrn.axis != 1:
        raise Unsupported("ONNX LRN normalizes axis 1 only")
    import onnx
    import onnxruntime as ort
    from onnx import helper

    elem = onnx.helper.np_dtype_to_tensor_dtype(x.dtype)
    node = helper.make_node(
        "LRN", ["x"], ["y"], size=lrn.size, alpha=lrn.alpha, beta=lrn.beta, bias=lrn.k
    )
    graph = helper.make_graph(
        [node],
        "lrn",
        [helper.make_tensor_value_info("x", elem, list(x.shape))],
        [helper.make_tensor_value_info("y", elem, list(x.shape))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(
            model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
    except Exception as err:  # ORT raises its own exception types for missing kernels
        if "NOT_IMPLEMENTED" in str(err) or "Could not find an implementation" in str(err):
            raise Unsupported(f"no {x.dtype.name} LRN kernel in ONNX Runtime") from None
        raise
    xa, ya = host_buffers(x)
    binding = sess.io_binding()
    binding.bind_cpu_input("x", xa)
    binding.bind_output("y", "cpu", 0, x.dtype, list(x.shape), ya.ctypes.data)
    return Bench(lambda: sess.run_with_iobinding(binding), lambda: ya.copy(), "io_binding")


# --------------------------------------------------------------------------- copies


def make_copy_numpy(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """``np.copyto`` of the same bytes (one thread; glibc memcpy, non-temporal stores for
    large sizes)."""
    if device != "cpu":
        raise Unsupported("host memory only")
    xa, ya = host_buffers(x)
    return Bench(lambda: np.copyto(ya, xa), lambda: ya.copy(), "memcpy, 1 thread")


def make_copy_torch(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """``out.copy_(x)`` in torch (multi-threaded on CPU, a device-to-device copy on CUDA)."""
    xt, yt = _torch_buffers(x, threads, device)
    return Bench(lambda: yt.copy_(xt), lambda: _to_numpy(yt), "Tensor.copy_")


def _as_words(a: np.ndarray) -> np.ndarray:
    """A flat view of ``a``'s bytes (C-contiguous) as the widest unsigned words that divide
    its size.

    A copy moves bytes, not numbers: copying float16 as float16 would let LLVM widen the
    values through conversions on CPUs without native half-precision vectors.
    """
    flat = a.reshape(-1).view(np.uint8)
    for word in (np.uint64, np.uint32, np.uint16):
        if flat.size % np.dtype(word).itemsize == 0:
            return flat.view(word)
    return flat


def _copy_primfunc(n: int, dtype: str):
    """A flat copy of ``n`` elements: parallel chunks of vectorized 64-byte moves."""
    from tvm import s_tir, te

    a = te.placeholder((n,), dtype, name="a")
    b = te.compute((n,), lambda i: a[i], name="b")
    sch = s_tir.Schedule(te.create_prim_func([a, b]))
    (loop,) = sch.get_loops(sch.get_sblock("b"))
    lanes = 64 // np.dtype(dtype).itemsize
    while lanes > 1 and n % lanes:
        lanes //= 2
    rows = n // lanes
    chunk = max(d for d in range(1, min(rows, 4096) + 1) if rows % d == 0)
    outer, _, inner = sch.split(loop, [None, chunk, lanes])
    sch.parallel(outer)
    sch.vectorize(inner)
    return sch.mod["main"]


def make_copy_tvm(x, lrn: LRNArgs, threads: int, device: str) -> Bench:
    """A TVM copy kernel (parallel over chunks, 64-byte vector loads and stores)."""
    if device != "cpu":
        raise Unsupported("CPU kernel only")
    import tvm

    xa, ya = host_buffers(x)
    words = _as_words(xa)
    kernel = _compile_kernel(_copy_primfunc(words.size, words.dtype.name), device)
    xt = tvm.runtime.from_dlpack(words)
    yt = tvm.runtime.from_dlpack(_as_words(ya))
    return Bench(lambda: kernel(xt, yt), ya.copy, "parallel, vectorized")


# --------------------------------------------------------------------------- registry

_PRE = "preallocated output"

CONTENDERS: dict[str, Contender] = {
    c.key: c
    for c in [
        Contender(
            "tvm_lrn",
            "tvm_lrn",
            "lrn",
            make_tvm_lrn,
            _v_tvm_lrn,
            ("cpu", "cuda"),
            what=f"static-shape kernel (as in a compiled model), strategy rule, {_PRE}",
        ),
        Contender(
            "tvm_lrn_tuned",
            "tvm_lrn (tuned)",
            "lrn",
            make_tvm_lrn_tuned,
            _v_tvm_lrn,
            ("cpu", "cuda"),
            what=f"best record of the shipped MetaSchedule database, {_PRE}",
        ),
        Contender(
            "tvm_lrn_dyn",
            "tvm_lrn (symbolic)",
            "lrn",
            make_tvm_lrn_dynamic,
            _v_tvm_lrn,
            ("cpu", "cuda"),
            what=f"symbolic-shape kernel of tvm_lrn.run, strategy rule, {_PRE}",
        ),
        Contender(
            "tvm_lrn_unsafe",
            "tvm_lrn (unguarded)",
            "lrn",
            make_tvm_lrn_unsafe,
            _v_tvm_lrn,
            ("cpu", "cuda"),
            what=f"the fast path alone, no check and no fallback (benchmark only), {_PRE}",
        ),
        Contender(
            "topi",
            "topi.nn.lrn",
            "lrn",
            make_topi,
            _v_tvm,
            peer=True,
            what=f"tvm.topi.nn.lrn, no schedule, {_PRE}",
        ),
        Contender(
            "tvm_import",
            "TVM plain import",
            "lrn",
            make_tvm_import,
            _v_tvm_torch,
            peer=True,
            what="from_exported_program + tvm.compile, Relax VM call (VM allocates)",
        ),
        Contender(
            "torch",
            "torch eager",
            "lrn",
            make_torch,
            _v_torch,
            ("cpu", "cuda"),
            peer=True,
            what="F.local_response_norm, allocates its output per call",
        ),
        Contender(
            "torch_compile",
            "torch.compile",
            "lrn",
            make_torch_compile,
            _v_torch,
            ("cpu", "cuda"),
            peer=True,
            what=f"inductor, static shapes, {_PRE} (out.copy_ fused)",
        ),
        Contender(
            "ort",
            "ONNX Runtime",
            "lrn",
            make_ort,
            _v_ort,
            peer=True,
            what=f"LRN node, CPU EP, intra_op_num_threads=threads, io_binding, {_PRE}",
        ),
        Contender(
            "copy_numpy",
            "copy (numpy)",
            "copy",
            make_copy_numpy,
            _v_numpy,
            what="np.copyto, memcpy on one thread",
        ),
        Contender(
            "copy_torch",
            "copy (torch)",
            "copy",
            make_copy_torch,
            _v_torch,
            ("cpu", "cuda"),
            what="Tensor.copy_, multi-threaded",
        ),
        Contender(
            "copy_tvm",
            "copy (TVM)",
            "copy",
            make_copy_tvm,
            _v_tvm,
            what="TVM kernel, parallel, 64-byte vectors",
        ),
    ]
}


def lrn_contenders() -> list[str]:
    """Keys of the contenders that compute LRN (not the copies)."""
    return [k for k, c in CONTENDERS.items() if c.op == "lrn"]


def peer_keys() -> list[str]:
    """Keys of the peers (implementations other than tvm_lrn)."""
    return [k for k, c in CONTENDERS.items() if c.peer]
