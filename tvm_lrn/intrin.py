"""A hardware reciprocal square root estimate as a TIR intrinsic (``tvm_lrn.rsqrt_estimate``).

The float32 fast path needs ``d**-0.75`` (AlexNet, GoogLeNet) or ``d**-0.5`` per
output. Correctly rounded, that is two square roots and a division, and on x86 those
occupy the divider for about ten cycles per 16-lane vector each: most of the fast
path's time. AVX-512's ``VRSQRT14PS`` estimates ``1/sqrt(d)`` to a relative error
below ``2**-14`` in a few cycles, and one Newton step (:func:`refined_rsqrt`) brings
that to about one ulp, with a multiply-add or two.

On NVIDIA GPUs, the correctly rounded root and division are instruction sequences
around the special function unit's approximations; ``rsqrtf`` (``rsqrt.approx.f32``,
within 2 ulp) is one instruction of it, so the same refinement saves most of them.

TVM 0.27 offers no such estimate (``tirx.rsqrt`` is the exact ``1/sqrt``; LLVM uses its
estimates only under module-wide fast-math flags, which would also reach the float64
fallback). So the estimate is an op of its own: vectorizable, and lowered for LLVM to
the AVX-512 intrinsic of the vector's width (16, 8 or 4 lanes of float32), for CUDA to
``rsqrtf``, and to the exact ``1 / sqrt(x)`` for every other width (scalar tails) and
every other target. The LLVM lowering cannot see the target's features, so the compute
emits the op only for targets that have them (:func:`has_rsqrt_estimate`), and
tvm_lrn's scheduling entry points (``schedule_primfunc``, ``schedule_lrn`` and the
``ScheduleLRN`` pass) refuse a function with the op for any other target
(:func:`check_target`): LLVM would abort the process on the AVX-512 intrinsic.
"""

from __future__ import annotations

import tvm
from tvm import tirx

__all__ = [
    "OP_NAME",
    "check_target",
    "has_rsqrt_estimate",
    "refined_rsqrt",
    "rsqrt_estimate",
    "uses_rsqrt_estimate",
]

OP_NAME = "tvm_lrn.rsqrt_estimate"

#: The AVX-512 estimate of each vector width (the 128- and 256-bit ones need AVX512VL).
_X86_RSQRT14 = {
    16: ("llvm.x86.avx512.rsqrt14.ps.512", "int16"),
    8: ("llvm.x86.avx512.rsqrt14.ps.256", "int8"),
    4: ("llvm.x86.avx512.rsqrt14.ps.128", "int8"),
}

#: CPU features the LLVM lowering relies on.
_FEATURES = ("avx512f", "avx512vl")


def has_rsqrt_estimate(target) -> bool:
    """Whether code for ``target`` may use :func:`rsqrt_estimate` at full speed.

    Parameters
    ----------
    target : tvm.target.Target or None
        The compilation target, if known.

    Returns
    -------
    bool
        True for CUDA targets and for LLVM targets whose CPU has AVX-512 (F and VL), per
        the target's ``mtriple``, ``mcpu`` and ``mattr``; False otherwise (and without a
        target).
    """
    if target is not None and target.kind.name == "cuda":
        return True
    if target is None or target.kind.name != "llvm":
        return False
    from tvm.target import codegen

    return bool(codegen.target_has_features(list(_FEATURES), target))


def uses_rsqrt_estimate(func: tirx.PrimFunc) -> bool:
    """Whether ``func`` calls :func:`rsqrt_estimate`."""
    # TVM 0.27 has no Python visitor for TIR expressions; the serialized IR names every
    # op it uses once.
    return f'"{OP_NAME}"' in tvm.ir.save_json(func)


def check_target(func: tirx.PrimFunc, target) -> None:
    """Raise ``ValueError`` if ``func`` uses the estimate and ``target`` lacks it.

    Parameters
    ----------
    func : tvm.tirx.PrimFunc
        A function about to be scheduled or built for ``target``.
    target : tvm.target.Target
        The compilation target.
    """
    if not has_rsqrt_estimate(target) and uses_rsqrt_estimate(func):
        raise ValueError(
            f"this LRN function was built for a CUDA GPU or a CPU with AVX-512 (it uses "
            f"{OP_NAME}), but the target {target} has no such estimate (for CPUs: no "
            f"AVX-512F/VL): build it again under this target"
        )


def rsqrt_estimate(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """``1/sqrt(x)`` for a normal float32 ``x > 0``, to a relative error below ``2**-14``.

    Exact (``1 / sqrt(x)``) wherever the lowering has no estimate. Only for code built
    for targets where :func:`has_rsqrt_estimate` holds.
    """
    return tirx.call_intrin("float32", OP_NAME, x)


def refined_rsqrt(x: tirx.PrimExpr) -> tirx.PrimExpr:
    """``1/sqrt(x)`` for a normal float32 ``x > 0``: the estimate and one Newton step.

    From ``r0`` with relative error ``e <= 2**-14``, ``r0 + r0 * (1 - x * r0**2) / 2``
    has error about ``1.5 * e**2 <= 2**-27`` before rounding: about one ulp after it.
    """
    half = tirx.const(0.5, "float32")
    r0 = rsqrt_estimate(x)
    return r0 + r0 * (half - half * (x * r0) * r0)


def _splat(value: float, dtype) -> tirx.PrimExpr:
    scalar = tirx.const(value, "float32")
    return scalar if dtype.lanes == 1 else tirx.Broadcast(scalar, dtype.lanes)


def _lower_exact(call: tirx.Call) -> tirx.PrimExpr:
    (x,) = call.args
    return _splat(1.0, call.ty.dtype) / tirx.sqrt(x)


def _lower_llvm(call: tirx.Call) -> tirx.PrimExpr:
    dtype = call.ty.dtype
    known = _X86_RSQRT14.get(dtype.lanes) if dtype.lanes > 1 else None
    if known is None:
        return _lower_exact(call)
    name, mask_dtype = known
    # Every lane written (all-ones mask), so the pass-through operand is never read.
    return tirx.call_llvm_pure_intrin(
        str(dtype), name, call.args[0], _splat(0.0, dtype), tirx.const(-1, mask_dtype)
    )


def _lower_cuda(call: tirx.Call) -> tirx.PrimExpr:
    if call.ty.dtype.lanes != 1:
        return _lower_exact(call)
    return tirx.call_pure_extern("float32", "rsqrtf", call.args[0])


def _register() -> None:
    # Once per process: TVM refuses a second registration at the same level (a reload).
    if OP_NAME in tvm.ir.Op.list_op_names():
        return
    tvm.ir.register_op_attr(OP_NAME, "TCallEffectKind", tirx.CallEffectKind.Pure.value)
    # Elementwise: the vectorizer widens it, and the lowering picks the vector's intrinsic.
    tvm.ir.register_op_attr(OP_NAME, "TVectorizable", True)
    tvm.ir.register_op_attr(OP_NAME, "TScriptPrinterName", OP_NAME)  # T.tvm_lrn.rsqrt_estimate
    tirx.register_intrin_lowering(OP_NAME, "llvm", f=_lower_llvm, level=10)
    tirx.register_intrin_lowering(OP_NAME, "cuda", f=_lower_cuda, level=10)
    tirx.register_intrin_lowering(OP_NAME, "default", f=_lower_exact, level=10)


_register()
