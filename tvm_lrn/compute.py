"""The numerically safe LRN compute in TE.

For output ``i`` with window ``W(i)`` along the LRN axis::

    y_i = x_i * (bias + alpha * s_i) ** -beta,    s_i = sum_{j in W(i)} x_j ** 2

computed so that no intermediate overflows or underflows unless the result does, in
one of three forms (all meet the same contract; tests run each).

**The guarded form** (float16, bfloat16 and float32 inputs with ``beta <= 2``, windows
up to :data:`MAX_UNROLLED_WINDOW`, ordinary ``bias``/``alpha``; what CPUs get for
symbolic and channels-last shapes):

1. The largest input magnitude of each guard block (:func:`guard_block`: a run of
   channels along the LRN axis, with the ``size - 1`` halo channels their windows
   reach, times a chunk of rows of the plane; a row along the axis when it is the last
   one), as integer bits (reduction ``lrn_range``; NaN and Inf compare above every
   number).
2. Where that is at most :func:`_input_limit` (so every window sum is at most
   :func:`_sum_bound`, a bound derived from ``bias``, ``alpha`` and ``beta`` under which
   no intermediate can leave the comfortable normal range), the textbook formula in
   float32, with square roots and one division for the quarter betas (on CPUs with
   AVX-512, the refined estimate of ``d**-0.5`` and one root of it:
   :mod:`tvm_lrn.intrin`), each window sum computed in the output's own loop: the fast
   path. Elsewhere the same formula in float64 from the window itself, unrolled:
   float64 holds the square of any float32 number, so nothing can overflow or underflow
   there, and Inf/NaN follow the rule below.

The choice is one branch per guard block, not a select per element, so the fallback
costs nothing where it is not taken; and the guard reads inputs, not window sums, so
the sums need no buffer of their own.

**The checked form** (what GPU targets get, and CPUs for static planes after the LRN
axis, where the guarded form would apply; see :func:`form_for`): the same fast path and
float64 fallback, chosen per output by its own float32 window sum (``s <= _sum_bound``;
NaN compares false). That is one branch per output, which a GPU thread takes cheaply,
and no pass over the tensor before the outputs. On CPUs a branch per output would stop
the loops from vectorizing, so the CPU schedule computes each task (a block of
channels times a plane chunk) with the fast path alone while it keeps the largest
window sum, and computes the task again, per output, only when that sum fails the
check (:mod:`tvm_lrn.strategy.cpu`).

**The scaled form** (float64 inputs, float32 with ``beta > 2`` (computed in float64),
long windows, extreme ``bias``: wherever the other two do not apply):

1. ``M = max |x_j|`` over the window (reduction ``lrn_window_max``).
2. ``S = sum (x_j * 2**k) ** 2`` with ``2**k`` the power of two that brings ``M`` near 1
   (reduction ``lrn_window_sumsq``). Scaling by a power of two is exact, so
   ``s = 2**(-2k) * S`` holds to the rounding of the sum alone.
3. ``bias + alpha * s = 2**G * D`` with an integer ``G`` and ``1 <= D < 4``: both terms
   are brought to the larger one's exponent, the smaller one may vanish harmlessly.
4. ``y = x_i * 2**(-beta * G) * D**-beta``. ``beta * G`` is split exactly into an integer
   and a fraction (``beta`` is cut into a short head, whose product with ``G`` is exact,
   and a tail), ``x_i`` is split into mantissa and exponent, and all integer exponents
   are applied once at the end by an overflow- and underflow-correct ``ldexp``.

Powers of two are built by writing the exponent bits (``reinterpret``), which
vectorizes, not by ``ldexp`` (a scalar libm call on CPUs). float16 and bfloat16 are
computed in float32 and rounded once; float32 in float32, float64 in float64.

Non-finite inputs follow one rule (documented in README.md, tested):

* ``beta == 0``: LRN is the identity, ``y = x``.
* a NaN anywhere in the window of ``i`` gives NaN at ``i``;
* otherwise, if the window holds +-Inf: with ``alpha == 0`` the window does not enter
  and ``y = x_i * bias**-beta``; with ``alpha > 0`` the sum is +Inf, so a finite ``x_i``
  gives ``+-0``, and ``x_i = +-Inf`` gives the limit of ``t * (alpha * t**2)**-beta``:
  ``+-Inf`` for ``beta < 1/2``, ``+-0`` for ``beta > 1/2``, NaN for ``beta == 1/2``
  (the limit depends on how many entries are infinite).
* ``x_i == 0`` gives ``x_i`` (a signed zero), also with ``bias == 0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from tvm import te, tirx
from tvm.target import Target

from . import intrin
from .spec import LRNParams, check_dtype

__all__ = [
    "lrn",
    "compute_dtype",
    "chunk_rows",
    "plane_chunk",
    "guard_block",
    "form_for",
    "resolve_form",
    "FORMS",
]

# Bits of beta's head: beta_head * G must be exact for |G| < 2**_G_BITS.
_G_BITS = 12


@dataclass(frozen=True)
class _Format:
    """IEEE binary format of the compute dtype and its bit-level helpers."""

    float: str
    int: str
    mant: int  # stored mantissa bits
    ebias: int

    @property
    def p(self) -> int:  # precision in bits
        return self.mant + 1

    @property
    def emin(self) -> int:
        return 1 - self.ebias

    @property
    def emax(self) -> int:
        return self.ebias

    def i(self, value: int):
        return tirx.const(int(value), self.int)

    def f(self, value: float):
        value = float(value)
        if self.float == "float64" and not value.is_integer():
            # TVM's CUDA codegen prints float64 constants in fixed notation with 15
            # decimals: 1e-30 becomes 0 and 2e-5/3 loses its last digits. Their bits are
            # exact on every backend (and the compiler folds them).
            bits = int(np.array(value, dtype=np.float64).view(np.int64))
            return tirx.reinterpret("float64", tirx.const(bits, "int64"))
        return tirx.const(value, self.float)

    def exponent(self, v):
        """Unbiased exponent of |v|; subnormals and zero report ``emin``."""
        field = (tirx.reinterpret(self.int, v) >> self.i(self.mant)) & self.i(2 * self.ebias + 1)
        return tirx.max(field, self.i(1)) - self.i(self.ebias)

    def pow2(self, e):
        """Exactly ``2**e`` for an integer ``emin <= e <= emax`` (no libm call)."""
        return tirx.reinterpret(self.float, (e + self.i(self.ebias)) << self.i(self.mant))

    def mantissa(self, v):
        """``v`` with its exponent set to 0: in +-[1, 2) for a normal ``v``, sign kept."""
        keep = ~((2 * self.ebias + 1) << self.mant)  # sign and mantissa bits
        bits = tirx.reinterpret(self.int, v) & self.i(keep)
        return tirx.reinterpret(self.float, bits | self.i(self.ebias << self.mant))

    def magnitude_bits(self, v):
        """The bits of |v| as an integer: ordered like |v|, NaN above Inf."""
        return tirx.reinterpret(self.int, v) & self.i((1 << self.sign_shift) - 1)

    def isnan(self, v):
        # Integer compares: tirx.isnan and x != x do not vectorize (or get folded away).
        return self.magnitude_bits(v) > self.i(self.inf_bits)

    def isinf(self, v):
        return self.magnitude_bits(v) == self.i(self.inf_bits)

    @property
    def sign_shift(self) -> int:  # position of the sign bit
        return self.mant + (2 * self.ebias + 1).bit_length()

    @property
    def inf_bits(self) -> int:
        return (2 * self.ebias + 1) << self.mant

    def masked(self, valid, v):
        """``v`` where ``valid``, else +0, by clearing bits (also for NaN and Inf).

        Not a ``Select``: TVM's simplifier assumes a select's condition inside its
        branches and would drop the clamp of the window load index there, although
        both branches are evaluated (out-of-bounds loads at the padding).
        """
        keep = tirx.Select(valid, self.i(-1), self.i(0))
        return tirx.reinterpret(self.float, tirx.reinterpret(self.int, v) & keep)

    def signed_zero(self, v):
        """+0 or -0 with the sign of ``v`` (``v * 0`` is folded to +0 by TVM's simplifier)."""
        sign = -(1 << self.sign_shift)  # only the sign bit set
        return tirx.reinterpret(self.float, tirx.reinterpret(self.int, v) & self.i(sign))

    def clamp(self, e, lo: int, hi: int | None = None):
        e = tirx.max(e, self.i(lo))
        return e if hi is None else tirx.min(e, self.i(hi))

    def ldexp(self, m, n):
        """``m * 2**n`` for ``1 <= |m| < 2`` and any integer ``n``, rounded once.

        Exponents beyond the range are clamped where the result is 0 or Inf anyway; a
        subnormal result is produced by one final multiplication, so it is rounded once.
        """
        n = self.clamp(n, self.emin - self.p - 2, self.emax + 1)
        shift = tirx.Select(n <= self.i(self.emin), self.i(-(self.p + 2)), self.i(1))
        return (m * self.pow2(n - shift)) * self.pow2(shift)


_FORMATS = {
    "float32": _Format("float32", "int32", 23, 127),
    "float64": _Format("float64", "int64", 52, 1023),
}


#: Above this beta, inputs of up to 32 bits are computed in float64: the result's
#: relative error is about beta times that of the window sum, so float32 arithmetic
#: would no longer meet the 8-ulp bound.
BETA_FLOAT32_MAX = 2.0


def compute_dtype(dtype: str, beta: float = 0.75) -> str:
    """The dtype LRN computes in for inputs of ``dtype`` and exponent ``beta``.

    float64 for float64 inputs and for ``beta > BETA_FLOAT32_MAX``, else float32.
    """
    if check_dtype(dtype) == "float64" or beta > BETA_FLOAT32_MAX:
        return "float64"
    return "float32"


def _split(value: float, fmt: _Format) -> tuple[float, int]:
    """``value > 0`` as ``m * 2**e`` with ``1 <= m < 2`` (m rounded to the format)."""
    m, e = math.frexp(value)
    m = float(np.array(2 * m, dtype=fmt.float))
    if m >= 2.0:  # rounding carried into the exponent
        m, e = m / 2, e + 1
    return m, e - 1


def _split_beta(beta: float, fmt: _Format) -> tuple[float, float]:
    """``beta = head + tail`` with ``head * G`` exact for ``|G| < 2**_G_BITS``."""
    if beta == 0:
        return 0.0, 0.0
    bits = fmt.p - _G_BITS
    m, e = math.frexp(beta)
    head = math.ldexp(round(math.ldexp(m, bits)), e - bits)
    return head, beta - head


def _window(shape, axis: int, lo: int):
    """Index helpers: the window position ``r`` of output ``idx`` and its validity."""
    extent = shape[axis]

    def at(idx, r):
        j = idx[axis] + r - lo
        return j, tirx.all(j >= 0, j < extent)

    return at


def lrn(
    data: te.Tensor,
    params: LRNParams,
    *,
    safe_scaling: bool = True,
    form: str | None = None,
    rsqrt_estimate: bool | None = None,
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
    safe_scaling : bool
        Only for benchmarks: ``False`` builds the fast path alone, with no range guard
        and no fallback (unsafe), to measure what the safety costs.
    form : {"guarded", "checked", "scaled"}, optional
        Which safe form (see the module docstring). ``"guarded"`` (one range guard per
        block of the tensor, what CPUs want) and ``"checked"`` (each output checks its
        own window sum, what GPUs want: no pass over the tensor before the outputs)
        apply to float32 compute with windows up to :data:`MAX_UNROLLED_WINDOW` and
        ordinary ``bias``/``alpha``; elsewhere both give the scaled form, which always
        applies. ``None`` (default): :func:`form_for` the current target
        (``Target.current()``).
    rsqrt_estimate : bool, optional
        Whether the float32 fast path takes its square roots from the hardware estimate
        of ``1/sqrt`` refined by a Newton step (:mod:`tvm_lrn.intrin`; the quarter betas
        0.25, 0.5 and 0.75), which is several times cheaper than the correctly rounded
        roots and stays within the same ulp bounds. ``None`` (default): where the
        current target (``Target.current()``) has it; only pass ``True`` for code built
        for such a target.

    Returns
    -------
    te.Tensor
        Same shape and dtype as ``data``. The guarded form has the blocks
        ``lrn_range`` and ``lrn``; the checked form ``lrn`` alone; the scaled form
        ``lrn_window_max``, ``lrn_window_sumsq`` and ``lrn``.
    """
    dtype = check_dtype(data.dtype)
    params = params.with_axis(len(data.shape))
    target = Target.current(allow_none=True)
    form = resolve_form(dtype, params, form or form_for(target, data.shape, params.axis))
    fmt = _FORMATS[compute_dtype(dtype, params.beta)]
    shape, axis = data.shape, params.axis
    at = _window(shape, axis, params.lo)
    index_dtype = shape[axis].dtype if hasattr(shape[axis], "dtype") else "int32"

    def x(*idx):
        if dtype == "bfloat16":
            # Widen by moving the bits (exact); TVM 0.27's bfloat16 legalization corrupts
            # some bfloat16 loads (e.g. inside let bindings that passes may introduce).
            bits = tirx.reinterpret("uint16", data(*idx)).astype("uint32")
            return tirx.reinterpret("float32", bits << tirx.const(16, "uint32")).astype(fmt.float)
        return data(*idx).astype(fmt.float)

    def reduce_axis(name):
        zero, size = tirx.const(0, index_dtype), tirx.const(params.size, index_dtype)
        return te.reduce_axis((zero, size), name=name)

    def windowed(idx, r):
        # The load index is clamped into the axis and the zero padding applied to the
        # result with a bit mask (see _Format.masked): every load is in bounds and
        # vectorizes, also when the LRN axis is the vectorized one (a lazy if_then_else
        # would make TVM scalarize such loops).
        j, valid = at(idx, r)
        shifted = list(idx)
        shifted[axis] = tirx.max(tirx.min(j, shape[axis] - 1), 0)
        return x(*shifted), valid

    if params.beta == 0:  # (...)**0 == 1 even for NaN/Inf: LRN is the identity
        return te.compute(shape, lambda *idx: data(*idx), name="lrn", tag="lrn")
    if rsqrt_estimate is None:
        rsqrt_estimate = intrin.has_rsqrt_estimate(target)
    estimate = rsqrt_estimate and fmt.float == "float32"
    if not safe_scaling:
        return _unscaled_lrn(data, params, fmt, x, windowed, estimate)

    if form != "scaled":
        return _fast_or_wide(data, params, fmt, x, windowed, estimate, form == "checked")
    return _scaled_lrn(data, params, fmt, x, windowed, reduce_axis)


def resolve_form(dtype: str, params: LRNParams, form: str) -> str:
    """The safe form :func:`lrn` builds for ``form``: ``"scaled"`` where the guarded and
    checked forms do not apply (see :func:`lrn`) and for ``beta == 0`` (the identity
    whatever the form), else ``form`` itself.

    Parameters
    ----------
    dtype : str
        Input dtype.
    params : LRNParams
        Canonical parameters.
    form : {"guarded", "checked", "scaled"}
        The form asked for.

    Returns
    -------
    str
    """
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    if params.beta == 0:
        return "scaled"
    fmt = _FORMATS[compute_dtype(check_dtype(dtype), params.beta)]
    return form if form != "scaled" and _guarded_form_applies(params, fmt) else "scaled"


#: The safe forms of :func:`lrn`.
FORMS = ("guarded", "checked", "scaled")


def form_for(target, shape=None, axis: int | None = None) -> str:
    """The safe form of :func:`lrn` that suits ``target`` (and, on CPUs, the input).

    Parameters
    ----------
    target : tvm.target.Target or None
        The compilation target, if known.
    shape : sequence of int or PrimExpr, optional
        The input shape (CPUs: see below).
    axis : int, optional
        The LRN axis, non-negative (with ``shape``).

    Returns
    -------
    str
        ``"checked"`` for GPU targets with float64 (CUDA, ROCm, and others that declare
        ``supports_float64``), whose threads each compute outputs from their own windows
        and take a branch per thread cheaply; ``"scaled"`` for other GPU targets (Metal
        has no float64 for the fallback, and OpenCL and Vulkan devices need not have
        it). CPUs: ``"checked"`` where the CPU schedule computes the input in plane
        chunks (:func:`plane_chunk`), whose tasks take the fast path for all of their
        outputs and redo a task only when one of its window sums failed the check (no
        pass over the tensor before the outputs); ``"guarded"`` elsewhere (symbolic or
        channels-last shapes: one branch per guard block for the vector loops). The
        first two fall back to ``"scaled"`` where they do not apply.
    """
    if target is None or "gpu" not in target.keys:
        planes = shape is not None and axis is not None and plane_chunk(shape, axis)
        return "checked" if planes else "guarded"
    float64 = target.kind.name in ("cuda", "rocm") or target.attrs.get("supports_float64")
    return "checked" if float64 else "scaled"


#: Longest window the float64 fallback of the guarded form unrolls (one load per step).
MAX_UNROLLED_WINDOW = 32


def _guarded_form_applies(params: LRNParams, fmt: _Format) -> bool:
    """Whether the guarded form (float32 fast path, float64 fallback) serves ``params``.

    It needs float32 compute (inputs of at most 32 bits, ``beta <= 2``), a window short
    enough to unroll, a fast range (:func:`_sum_bound`), and parameters for which
    float64 holds every intermediate of the fallback: squares of float32 numbers lie in
    ``2**[-298, 256]``, so ``bias`` and ``alpha`` only must not be absurdly small
    (``d`` would become subnormal) or large.
    """
    if fmt.float != "float32" or params.size > MAX_UNROLLED_WINDOW:
        return False
    if _sum_bound(params, fmt) is None:
        return False
    alpha_ok = params.alpha == 0 or 2.0**-700 <= params.alpha <= 2.0**700
    return params.bias >= 2.0**-1000 and alpha_ok  # (bias > 0: _sum_bound has a range)


def _fast_or_wide(data, params: LRNParams, fmt: _Format, x, windowed, estimate, checked):
    """The guarded form (blocks ``lrn_range``, ``lrn``) or, with ``checked``, the checked
    form (block ``lrn`` alone): the float32 fast path where it is safe, else the float64
    window.

    Guarded: where no input of a guard block exceeds :func:`_input_limit` in magnitude,
    no window sum of its outputs can exceed :func:`_sum_bound`, so the textbook formula in
    float32 cannot overflow or underflow, and is taken, with each window sum computed in
    the output's own loop. The choice is one branch per guard block (see
    :func:`guard_block`), so the fallback costs nothing where it is not taken.

    Checked: each output takes the fast path where its own float32 window sum is at most
    :func:`_sum_bound` (so is every square in it, and NaN compares false). One branch per
    output: on GPUs a thread takes it cheaply and no pass over the tensor precedes the
    outputs.

    Elsewhere (huge values, Inf, NaN) the output is computed in float64 from the window
    itself, unrolled: float64 holds the square of every float32 number, so it needs no
    scaling.
    """
    if checked:
        bound = fmt.f(_sum_bound(params, fmt))
    else:
        in_range = _range_guard(data.shape, params, fmt, x, _input_limit(params, fmt))

    def output(*idx):
        sumsq = _window_sumsq(idx, windowed, params.size, fmt)
        fast = _plain(x(*idx), sumsq, params, fmt, estimate)
        wide = _wide(idx, x, windowed, params).astype(fmt.float)
        safe = sumsq <= bound if checked else in_range(idx)
        return tirx.if_then_else(safe, fast, wide).astype(data.dtype)

    return te.compute(data.shape, output, name="lrn", tag="lrn")


def _window_sumsq(idx, windowed, size: int, fmt: _Format):
    """The window sum of squares at ``idx`` in ``fmt``, unrolled, in the order of
    ``te.sum``."""
    s = None
    for r in range(size):
        value, valid = windowed(idx, r)
        value = value.astype(fmt.float)
        term = fmt.masked(valid, value * value)
        s = term if s is None else s + term
    return s


def _wide(idx, x, windowed, params: LRNParams):
    """The fallback of the guarded form: LRN at ``idx`` in float64, window unrolled."""
    wide = _FORMATS["float64"]
    s = _window_sumsq(idx, windowed, params.size, wide)
    xi = x(*idx).astype(wide.float)
    y = _plain(xi, s, params, wide)
    # Special values (module docstring). NaN and Inf mostly propagate by themselves:
    # a NaN makes s NaN, an Inf makes s Inf and a finite x_i / Inf**beta a signed zero.
    if params.alpha > 0:
        y = tirx.Select(wide.isinf(xi), _inf_rule(xi, y, params, wide), y)
    y = tirx.Select(xi == wide.f(0.0), xi, y)  # also 0 / 0 when bias == 0
    return tirx.Select(wide.isnan(s), wide.f(math.nan), y)


def _scaled_lrn(data, params: LRNParams, fmt: _Format, x, windowed, reduce_axis):
    """The scaled form (blocks ``lrn_window_max``, ``lrn_window_sumsq``, ``lrn``)."""
    shape = data.shape
    r_max = reduce_axis("r_max")

    def window_max(*idx):
        value, valid = windowed(idx, r_max)
        return te.max(fmt.masked(valid, tirx.abs(value)), axis=r_max)

    wmax = te.compute(shape, window_max, name="lrn_window_max")

    def scale_exponent(m):
        # 2**k brings the window maximum into [1, 4); clamped so that 2**k is normal.
        return fmt.clamp(-fmt.exponent(m), fmt.emin, fmt.emax - 1)

    r_sum = reduce_axis("r_sum")

    def window_sumsq(*idx):
        value, valid = windowed(idx, r_sum)
        scaled = value * fmt.pow2(scale_exponent(wmax(*idx)))
        return te.sum(fmt.masked(valid, scaled * scaled), axis=r_sum)

    sumsq = te.compute(shape, window_sumsq, name="lrn_window_sumsq")

    def output(*idx):
        y = _finish(x(*idx), wmax(*idx), sumsq(*idx), scale_exponent(wmax(*idx)), params, fmt)
        return y.astype(data.dtype)

    return te.compute(shape, output, name="lrn", tag="lrn")


def _sum_bound(params: LRNParams, fmt: _Format) -> float | None:
    """Largest window sum of squares up to which the plain formula is exact enough.

    With ``s <= S`` (so every ``|x_j| <= sqrt(S)`` in the window): ``s`` itself,
    ``d = bias + alpha * s``, ``d**-beta`` and ``y`` all stay within
    ``2**(+-(emax - p))``, far from overflow and from the subnormals, and squares that
    underflow are below ``2**-(p + 8)`` of ``bias``, so they cannot change ``d``. None
    when the parameters leave no such range (``bias`` tiny or huge, or ``beta`` so large
    that ``d**-beta`` underflows at once).
    """
    alpha, beta, bias = params.alpha, params.beta, params.bias
    if bias <= 0:
        return None
    span = fmt.emax - fmt.p  # 2**span: comfortably inside the normal range
    log_bias = math.log2(bias)
    if log_bias < -span or -beta * log_bias > span:
        return None
    # |y| <= sqrt(s) * bias**-beta <= 2**span, and s well below overflow.
    log_s = min(2 * (span + beta * log_bias), span)
    if alpha > 0:
        log_alpha = math.log2(alpha)
        if log_alpha + math.log2(params.size) - log_bias > -fmt.emin - 8:
            return None  # underflowed squares could matter next to bias
        d_max = min(span, span / beta) - 1  # d**-beta stays normal
        if log_bias >= d_max:
            return None
        log_s = min(log_s, d_max - log_alpha)  # alpha * s <= 2**d_max
    log_s = math.floor(log_s)
    return None if log_s < -40 else 2.0**log_s


#: Elements of one plane chunk at most (see :func:`chunk_rows`).
GUARD_CHUNK = 8192
#: Elements of one guard block at most, its halo channels included: the block is read
#: once for the guard and once more, from the L2 cache, for the outputs.
GUARD_BLOCK = 1 << 17
#: Channels of one guard block at most.
GUARD_CHANNELS = 32
#: Guard blocks (parallel tasks) a tensor should at least be cut into, where its channel
#: count allows: fewer, larger blocks read fewer halo channels, more balance threads.
GUARD_TASKS = 8


def _static(extents) -> list[int] | None:
    values = []
    for extent in extents:
        if isinstance(extent, tirx.IntImm):
            extent = int(extent.value)
        if not isinstance(extent, int):
            return None
        values.append(extent)
    return values


def chunk_rows(trailing) -> int | None:
    """Rows of the first dimension after the LRN axis that one plane chunk holds.

    Parameters
    ----------
    trailing : sequence of int or PrimExpr
        The dimensions after the LRN axis (e.g. ``(H, W)`` in NCHW).

    Returns
    -------
    int or None
        The largest divisor ``k`` of ``trailing[0]`` with ``k * prod(trailing[1:])`` at
        most :data:`GUARD_CHUNK` (at least 1), or the whole ``trailing[0]`` when the plane
        fits or has no divisor that gives chunks of a useful length; None when a
        dimension is symbolic (the chunk is then the whole plane).
    """
    extents = _static(trailing)
    if extents is None:
        return None
    first, rest = extents[0], math.prod(extents[1:])
    if first * rest <= GUARD_CHUNK:
        return max(first, 1)
    k = max(
        d for d in range(1, first + 1) if first % d == 0 and (d * rest <= GUARD_CHUNK or d == 1)
    )
    # Chunks much shorter than the limit would make the per-chunk loop overhead costly (a
    # 1-D plane of prime length): the plane stays whole then.
    return k if k * rest >= GUARD_CHUNK // 16 else first


#: Largest plane chunk (elements) the CPU schedule computes in plane chunks.
#: chunk_rows keeps chunks at 8K elements where the plane allows; a plane that cannot be
#: cut (a long prime row) stays whole up to this size (256 KB of float32, within a 1 MB L2
#: cache).
PLANE_MAX = 65536


def plane_chunk(shape, axis: int) -> int | None:
    """Elements of one plane chunk (:func:`chunk_rows` rows of the dimensions after the
    LRN axis) where the CPU schedule computes ``shape`` chunk by chunk.

    Parameters
    ----------
    shape : sequence of int or PrimExpr
        The input shape.
    axis : int
        The LRN axis, non-negative.

    Returns
    -------
    int or None
        The chunk's elements, if the LRN axis and the dimensions after it are static, the
        axis is not the last one, the plane is not empty and the chunk is at most
        :data:`PLANE_MAX` elements; None otherwise.
    """
    if axis >= len(shape) - 1 or _static([shape[axis]]) is None:
        return None
    trailing = _static(shape[axis + 1 :])
    if trailing is None or 0 in trailing:
        return None
    chunk = chunk_rows(trailing) * math.prod(trailing[1:])
    return chunk if chunk <= PLANE_MAX else None


def guard_block(shape, axis: int, size: int) -> tuple[int, int] | None:
    """Channels and rows of one guard block of the guarded form.

    A guard block is a run of channels (along the LRN axis) times a chunk of rows of the
    plane after it (:func:`chunk_rows`); one flag decides the form of all its outputs.
    The CPU schedule makes one parallel task of each block: the guard reads the block
    (and the ``size - 1`` halo channels its windows reach) once, the outputs read it
    again from cache.

    Parameters
    ----------
    shape : sequence of int or PrimExpr
        The input shape.
    axis : int
        The LRN axis, not the last one.
    size : int
        The window length.

    Returns
    -------
    (int, int) or None
        ``(channels, rows)``, each dividing its extent: the largest divisor of the
        channel count of at most :data:`GUARD_CHANNELS` whose block with halo stays
        within :data:`GUARD_BLOCK` elements and that leaves :data:`GUARD_TASKS` blocks
        (if any does; all channels when a smaller block would be mostly halo); None when
        a dimension is symbolic (one block per leading index).
    """
    rows = chunk_rows(shape[axis + 1 :])
    extents = _static(shape[: axis + 2])
    if rows is None or extents is None:
        return None
    lead, count = math.prod(extents[:axis]), extents[axis]
    chunks = max(extents[axis + 1], 1) // rows
    chunk = rows * math.prod(_static(shape[axis + 2 :]))
    fits = [
        d
        for d in range(1, min(count, GUARD_CHANNELS) + 1)
        if count % d == 0 and (d == 1 or (d + size - 1) * chunk <= GUARD_BLOCK)
    ]
    balanced = [d for d in fits if lead * chunks * (count // d) >= GUARD_TASKS]
    channels = max(balanced or fits, default=1)
    if channels < size - 1 and count * chunk <= GUARD_BLOCK:
        channels = count  # a smaller block would be mostly halo
    return max(channels, 1), rows


def _input_limit(params: LRNParams, fmt: _Format) -> float:
    """Largest input magnitude up to which every window sum stays within
    :func:`_sum_bound`: ``size * limit**2 <= bound``, exactly (float64 holds these
    products of float32 numbers)."""
    bound, size = _sum_bound(params, fmt), params.size
    limit = float(np.sqrt(np.float32(bound / size)))
    while size * limit * limit > bound:
        limit = float(np.nextafter(np.float32(limit), np.float32(0)))
    return limit


def _range_guard(shape, params: LRNParams, fmt: _Format, x, limit: float):
    """``in_range(idx)``: whether no input of the guard block of ``idx`` exceeds
    ``limit`` in magnitude, from the block ``lrn_range``.

    The block holds the largest input magnitude of each guard block (see
    :func:`guard_block`), halo channels included, as integer bits, so NaN and Inf are
    out of range. When the LRN axis is the last one (channels-last) a guard block is a
    row along it; when a dimension is symbolic, everything behind one leading index.
    """
    limit_bits = fmt.i(int(np.array(limit, dtype=fmt.float).view(fmt.int)))
    axis, ndim = params.axis, len(shape)
    if axis == ndim - 1:  # channels-last: one flag per row along the LRN axis
        r_row = te.reduce_axis((0, shape[axis]), name="r_range")
        lead = list(shape[:axis]) or [1]

        def row_range(*g):
            idx = [*g[:axis], r_row]
            return te.max(fmt.magnitude_bits(x(*idx)), axis=r_row)

        ranges = te.compute(lead, row_range, name="lrn_range")
        return lambda idx: ranges(*(idx[:axis] or [0])) <= limit_bits

    block = guard_block(shape, axis, params.size)
    count, first = shape[axis], shape[axis + 1]
    r_rest = [te.reduce_axis((0, shape[d]), name=f"r_range{d}") for d in range(axis + 2, ndim)]
    if block is None:  # symbolic: one flag per leading index
        r_c = te.reduce_axis((0, count), name="r_range_c")
        r_rows = te.reduce_axis((0, first), name="r_range_rows")

        def whole_range(*g):
            idx = [*g[:axis], r_c, r_rows, *r_rest]
            return te.max(fmt.magnitude_bits(x(*idx)), axis=[r_c, r_rows, *r_rest])

        ranges = te.compute([*shape[:axis], 1, 1], whole_range, name="lrn_range")
        return lambda idx: ranges(*idx[:axis], 0, 0) <= limit_bits

    channels, rows = block
    halo = 0 if channels == int(count) else params.size - 1
    # Constants of the shape's index type (int64 when Relax legalizes).
    dtype = str(first.ty) if hasattr(first, "ty") else "int32"
    r_c = te.reduce_axis((tirx.const(0, dtype), tirx.const(channels + halo, dtype)), "r_range_c")
    r_rows = te.reduce_axis((tirx.const(0, dtype), tirx.const(rows, dtype)), "r_range_rows")

    def block_range(*g):
        c = g[axis] * channels + r_c
        if halo:  # the channels the block's windows reach, clamped (still in a window)
            c = tirx.max(tirx.min(c - params.lo, count - 1), 0)
        idx = [*g[:axis], c, g[axis + 1] * rows + r_rows, *r_rest]
        return te.max(fmt.magnitude_bits(x(*idx)), axis=[r_c, r_rows, *r_rest])

    blocks = [int(count) // channels, int(first) // rows]
    ranges = te.compute([*shape[:axis], *blocks], block_range, name="lrn_range")

    def in_range(idx):
        return ranges(*idx[:axis], idx[axis] // channels, idx[axis + 1] // rows) <= limit_bits

    return in_range


def _plain(xi, sumsq, params: LRNParams, fmt: _Format, estimate: bool = False):
    """``x_i * (bias + alpha * sumsq) ** -beta`` as written (the in-range fast path).

    With ``estimate`` (float32 only), the quarter powers come from the refined
    reciprocal square root ``r = d**-0.5`` (:func:`tvm_lrn.intrin.refined_rsqrt`) and at
    most one correctly rounded root of it: ``d**-0.75 = r * sqrt(r)``.
    """
    d = fmt.f(params.bias)
    if params.alpha > 0:
        d = d + fmt.f(params.alpha) * sumsq
    quarters = _QUARTER_BETAS.get(params.beta)
    if quarters is None:
        return xi * tirx.pow(d, fmt.f(-params.beta))
    if quarters == 4:
        return xi / d
    if estimate:
        r = intrin.refined_rsqrt(d)
        if quarters == 2:
            return xi * r
        root = tirx.sqrt(r)  # d**-0.25
        return xi * root if quarters == 1 else xi * (r * root)
    if quarters == 2:
        return xi / tirx.sqrt(d)
    root4 = tirx.sqrt(tirx.sqrt(d))
    return xi / root4 if quarters == 1 else xi / (tirx.sqrt(d) * root4)


def _finish(xi, wmax, sumsq, k, params: LRNParams, fmt: _Format):
    """``x_i * (bias + alpha * 2**(-2k) * sumsq) ** -beta`` with exact exponent handling."""
    alpha, beta, bias = params.alpha, params.beta, params.bias
    big = 1 << 30  # an exponent that loses every max(): "this term is absent"

    # bias + alpha * s = 2**G * D, 1 <= D < 4.
    if alpha > 0:
        m_alpha, e_alpha = _split(alpha, fmt)
        a = fmt.f(m_alpha) * sumsq  # alpha*s = a * 2**(e_alpha - 2k), a >= 2**-2p
        e_a = fmt.exponent(a) + fmt.i(e_alpha) - fmt.i(2) * k
    else:
        a, e_a = fmt.f(0.0), fmt.i(-big)
    if bias > 0:
        m_bias, e_bias = _split(bias, fmt)
    else:
        m_bias, e_bias = 0.0, -big
    g = tirx.max(e_a, fmt.i(e_bias))
    term_a = a * fmt.pow2(
        fmt.clamp(fmt.i(e_alpha if alpha > 0 else 0) - fmt.i(2) * k - g, fmt.emin, fmt.emax)
    )
    term_b = fmt.f(m_bias) * fmt.pow2(fmt.clamp(fmt.i(e_bias) - g, fmt.emin, 0))
    d = term_a + term_b

    # x_i = m_x * 2**e_x; a subnormal x_i is first scaled up by 2**p (exact).
    subnormal = tirx.abs(xi) < fmt.f(2.0**fmt.emin)
    xn = tirx.Select(subnormal, xi * fmt.f(2.0**fmt.p), xi)
    e_x = fmt.exponent(xn) - tirx.Select(subnormal, fmt.i(fmt.p), fmt.i(0))

    # (2**G * D)**-beta = w * 2**n_w, and y = m_x * w * 2**(e_x + n_w), rounded once.
    w, n_w = _power(d, g, beta, fmt)
    v = fmt.mantissa(xn) * w
    y = fmt.ldexp(fmt.mantissa(v), e_x + n_w + fmt.exponent(v))

    # Special values, in increasing priority (see the module docstring).
    y = tirx.Select(xi == fmt.f(0.0), xi, y)
    y = tirx.Select(fmt.isinf(wmax), _inf_rule(xi, y, params, fmt), y)
    return tirx.Select(fmt.isnan(sumsq), fmt.f(math.nan), y)


#: beta = k/4 for these k: the power is taken with square roots and a division.
_QUARTER_BETAS = {0.25: 1, 0.5: 2, 0.75: 3, 1.0: 4}


def _power(d, g, beta: float, fmt: _Format):
    """``(2**g * d)**-beta`` as ``(w, n)`` with ``w * 2**n`` equal to it, ``w`` moderate.

    ``g`` is an integer exponent of any size and ``1 <= d < 4``. The quarter powers
    (beta = 0.25, 0.5, 0.75, 1: AlexNet, GoogLeNet, TensorFlow's default) use square roots
    and a division, which vectorize on CPUs; other betas call pow and exp2.
    """
    quarters = _QUARTER_BETAS.get(beta)
    if quarters is not None:
        # 2**g * d = 2**(4q) * u with u = 2**(g mod 4) * d in [1, 32): then
        # u**(-k/4) needs only correctly rounded square roots and one division.
        q = g >> fmt.i(2)
        u = d * fmt.pow2(g & fmt.i(3))
        one = fmt.f(1.0)
        if quarters == 4:
            w = one / u
        elif quarters == 2:
            w = one / tirx.sqrt(u)
        else:
            root2 = tirx.sqrt(u)
            root4 = tirx.sqrt(root2)
            w = one / root4 if quarters == 1 else one / (root2 * root4)
        return w, fmt.i(-quarters) * q

    # 2**(-beta*g) = 2**(n_beta + frac): -head*g is exact, so its integer part is too.
    head, tail = _split_beta(beta, fmt)
    g_float = g.astype(fmt.float)
    head_g = fmt.f(-head) * g_float
    n_beta = tirx.floor(head_g)
    frac = (head_g - n_beta) - fmt.f(tail) * g_float
    # libm pow and exp2: accurate, scalar calls on CPUs. w stays normal for beta up to
    # several hundred (float32 is only used for beta <= BETA_FLOAT32_MAX).
    if beta <= 250:
        return tirx.pow(d, fmt.f(-beta)) * tirx.exp2(frac), n_beta.astype(fmt.int)
    z = frac - fmt.f(beta) * tirx.log2(d)
    n_z = tirx.floor(z)
    return tirx.exp2(z - n_z), (n_beta + n_z).astype(fmt.int)


def _inf_rule(xi, finite_y, params: LRNParams, fmt: _Format):
    """Output where the window holds +-Inf (and no NaN)."""
    x_inf = fmt.isinf(xi)
    if params.alpha == 0:  # the window does not enter the formula
        return tirx.Select(x_inf, xi, finite_y)
    signed_zero = fmt.signed_zero(xi)
    if params.beta < 0.5:
        at_inf = xi
    elif params.beta > 0.5:
        at_inf = signed_zero
    else:
        at_inf = fmt.f(math.nan)
    return tirx.Select(x_inf, at_inf, signed_zero)


def _unscaled_lrn(data, params, fmt, x, windowed, estimate: bool):
    """The fast path alone, without range guard or scaling: for benchmarks only."""

    def output(*idx):
        sumsq = _window_sumsq(idx, windowed, params.size, fmt)
        return _plain(x(*idx), sumsq, params, fmt, estimate).astype(data.dtype)

    return te.compute(data.shape, output, name="lrn", tag="lrn")
