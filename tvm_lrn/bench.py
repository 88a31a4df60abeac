"""The comparison behind ``tvm-lrn bench``: tvm_lrn's kernel of one shape against torch
eager and a copy of the same bytes, on the host CPU.

The kernel is the one a model gets (legalized, then scheduled by the tuned record for
the target if there is one, else by the rule; both when there is a record), each
implementation timed by :func:`tvm_lrn.timing.measure`.
"""

from __future__ import annotations

import dataclasses

from .interop import numpy_dtype
from .spec import LRNParams

__all__ = ["Comparison", "compare"]

#: Calls per timed repetition.
NUMBER = 5


@dataclasses.dataclass(frozen=True)
class Comparison:
    """What :func:`compare` measured.

    Attributes
    ----------
    rows : list of (str, float)
        Each implementation's name and median seconds per call, tvm_lrn's first.
    tuned : bool
        Whether a tuned record was found (and timed).
    source : str
        The record's database, or why there was none.
    nbytes : int
        Bytes a call moves (the input read and the output written).
    """

    rows: list[tuple[str, float]]
    tuned: bool
    source: str
    nbytes: int


def compare(
    shape,
    dtype: str,
    params: LRNParams,
    target,
    database=None,
    *,
    repeat: int = 20,
    torch_lrn: tuple | None = None,
) -> Comparison:
    """Time LRN on one shape: tvm_lrn (tuned record and rule), torch eager, a copy.

    Parameters
    ----------
    shape : tuple of int
    dtype : str
    params : LRNParams
        Canonical parameters.
    target : tvm.target.Target
        An llvm target (the host's).
    database : str, optional
        A tuned database folder; the shipped one by default.
    repeat : int
        Timed repetitions of :data:`NUMBER` calls (the median is reported).
    torch_lrn : tuple, optional
        ``(size, alpha, beta, k)`` of ``F.local_response_norm`` for the same LRN, where
        torch has it (the torch convention on axis 1); otherwise torch eager is left out,
        as it is where torch has no kernel for the dtype.

    Returns
    -------
    Comparison
    """
    import numpy as np

    from .strategy import schedule_primfunc
    from .timing import measure
    from .tune import lrn_workloads, query_database

    func = lrn_workloads([shape], dtype, params)[0].func
    tuned, source = query_database(func, target, database)
    kernels = {"tvm_lrn (tuned)": tuned, "tvm_lrn (rule)": schedule_primfunc(func, target)}
    x_np = _cast(np.random.default_rng(0).standard_normal(shape, "float32"), dtype)
    calls = {**_kernel_calls(kernels, x_np, target), **_torch_calls(x_np, torch_lrn)}
    rows = [(name, measure(fn, repeat=repeat, number=NUMBER).median) for name, fn in calls.items()]
    return Comparison(rows, tuned is not None, source, 2 * x_np.nbytes)


def _cast(x, dtype: str):
    return x.astype(numpy_dtype(dtype))


def _kernel_calls(kernels: dict, x_np, target) -> dict:
    """A call of each scheduled PrimFunc (None: left out), built for ``target``."""
    import tvm

    from .lower import TIR_PIPELINE

    dev = tvm.cpu()
    x = tvm.runtime.tensor(x_np, dev)
    y = tvm.runtime.empty(x_np.shape, str(x_np.dtype), dev)
    calls = {}
    for name, f in kernels.items():
        if f is not None:
            f = f.with_attr("global_symbol", "main")
            kernel = tvm.compile(f, target=target, tir_pipeline=TIR_PIPELINE)["main"]
            calls[name] = lambda kernel=kernel: kernel(x, y)
    return calls


def _torch_calls(x_np, torch_lrn: tuple | None) -> dict:
    """A call of torch eager LRN (where torch has it) and of a copy of the same bytes."""
    import torch

    x = torch.from_numpy(x_np.astype("float32")).to(getattr(torch, str(x_np.dtype)))
    out = torch.empty_like(x)
    calls = {}
    if torch_lrn is not None:
        lrn = torch.nn.functional.local_response_norm
        calls["torch eager F.local_response_norm"] = lambda: lrn(x, *torch_lrn)
        try:
            calls["torch eager F.local_response_norm"]()
        except RuntimeError:  # e.g. no half-precision kernel for this op on CPU
            calls.clear()
    calls["copy of the same bytes (torch)"] = lambda: out.copy_(x)
    return calls
