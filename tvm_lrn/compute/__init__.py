"""The numerically safe LRN compute in TE.

:func:`lrn` builds one of the three safe forms described in :mod:`.forms`: the checked
and guarded forms in :mod:`.fast` (with the range guard of :mod:`.guard`), the scaled
form in :mod:`.scaled`. The bit-level helpers of the compute formats are in
:mod:`.formats`, the blocking geometry the guarded form and the CPU schedule share in
:mod:`.geometry`. Nothing here reads the target: the caller says which form and which
square roots (:func:`tvm_lrn.op.lrn_primfunc` chooses them for a target).
"""

from __future__ import annotations

from tvm import te

from ..spec import LRNParams, check_dtype
from .fast import checked_lrn, fast_path_only_lrn, guarded_lrn
from .formats import BETA_FLOAT32_MAX, NumberFormat, compute_dtype, number_format
from .forms import FORMS, MAX_UNROLLED_WINDOW, input_limit, resolve_form, sum_bound
from .geometry import (
    GUARD_BLOCK,
    GUARD_CHANNELS,
    GUARD_CHUNK,
    GUARD_TASKS,
    PLANE_MAX,
    chunk_rows,
    guard_block,
    plane_chunk,
    static_extents,
)
from .scaled import scaled_lrn
from .window import WindowedInput

__all__ = [
    "BETA_FLOAT32_MAX",
    "FORMS",
    "GUARD_BLOCK",
    "GUARD_CHANNELS",
    "GUARD_CHUNK",
    "GUARD_TASKS",
    "MAX_UNROLLED_WINDOW",
    "PLANE_MAX",
    "NumberFormat",
    "chunk_rows",
    "compute_dtype",
    "guard_block",
    "input_limit",
    "lrn",
    "number_format",
    "plane_chunk",
    "resolve_form",
    "static_extents",
    "sum_bound",
]


def lrn(
    data: te.Tensor,
    params: LRNParams,
    *,
    form: str,
    rsqrt_estimate: bool = False,
    safe_scaling: bool = True,
) -> te.Tensor:
    """Numerically safe LRN of ``data`` along ``params.axis``.

    Parameters
    ----------
    data : te.Tensor
        Input of any rank >= 1, static or symbolic shape, dtype float16, bfloat16,
        float32 or float64. Symbolic dimensions should be int64 (as Relax makes them) so
        that flat indices of tensors with 2**31 or more elements do not overflow.
    params : LRNParams
        Canonical parameters (see :func:`tvm_lrn.spec.canonicalize`).
    form : {"guarded", "checked", "scaled"}
        Which safe form (:mod:`tvm_lrn.compute.forms`); where the guarded or checked
        form does not apply, the scaled form is built (:func:`resolve_form`).
    rsqrt_estimate : bool
        Whether the float32 fast path takes its square roots from the hardware estimate
        of ``1/sqrt`` refined by a Newton step (:mod:`tvm_lrn.intrin`; the quarter betas
        0.25, 0.5 and 0.75): several times cheaper than correctly rounded roots, within
        the same ulp bounds. Only for code built for a target that has the estimate
        (:func:`tvm_lrn.intrin.has_rsqrt_estimate`).
    safe_scaling : bool
        Only for benchmarks: ``False`` builds the fast path alone, with no range guard
        and no fallback (unsafe), to measure what the safety costs.

    Returns
    -------
    te.Tensor
        Same shape and dtype as ``data``. The guarded form has the blocks
        ``lrn_range`` and ``lrn``; the checked form ``lrn`` alone; the scaled form
        ``lrn_window_max``, ``lrn_window_sumsq`` and ``lrn``.
    """
    dtype = check_dtype(data.dtype)
    params = params.with_axis(len(data.shape))
    form = resolve_form(dtype, params, form)
    if params.beta == 0:  # (...)**0 == 1 even for NaN/Inf: LRN is the identity
        return te.compute(data.shape, lambda *idx: data(*idx), name="lrn", tag="lrn")
    fmt = number_format(compute_dtype(dtype, params.beta))
    source = WindowedInput(data, params, fmt)
    estimate = bool(rsqrt_estimate) and fmt.float_dtype == "float32"
    if not safe_scaling:
        return fast_path_only_lrn(source, estimate)
    if form == "checked":
        return checked_lrn(source, estimate)
    if form == "guarded":
        return guarded_lrn(source, estimate)
    return scaled_lrn(source)
