"""LRN conventions mapped to one canonical parameter set, and parameter validation.

Every framework writes LRN as ``y_i = x_i * (bias + alpha_eff * s_i) ** -beta`` with
``s_i = sum(x_j ** 2 for j in [i - lo, i + hi], 0 <= j < C)``; they differ only in how
``size`` splits into ``lo``/``hi`` and whether ``alpha`` is divided by ``size``
(see ``docs`` in DESIGN.md). The rest of the package works on :class:`LRNParams`.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

__all__ = [
    "CONVENTIONS",
    "FLOAT_DTYPES",
    "MAX_WINDOW",
    "LRNParams",
    "canonicalize",
    "check_canonical",
    "check_dtype",
]

#: Accepted ``convention=`` values. "caffe" is the odd-size form of Caffe and TVM topi.
CONVENTIONS = ("torch", "onnx", "tensorflow", "caffe")

#: Input dtypes the operator accepts.
FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")

#: The longest window: the op's attributes and TVM's loop bounds are int32.
MAX_WINDOW = 2**31 - 1


@dataclass(frozen=True)
class LRNParams:
    """Canonical LRN parameters.

    Attributes
    ----------
    lo, hi : int
        The window of output ``i`` is ``[i - lo, i + hi]`` along ``axis``, zero padded.
    alpha : float
        The effective alpha, already divided by ``size`` where the convention does so.
    beta, bias : float
        Exponent and additive constant.
    axis : int
        The normalized axis; non-negative once the rank is known.
    """

    lo: int
    hi: int
    alpha: float
    beta: float
    bias: float
    axis: int

    @property
    def size(self) -> int:
        """Window length ``lo + hi + 1``."""
        return self.lo + self.hi + 1

    def with_axis(self, ndim: int) -> LRNParams:
        """Return a copy whose axis is checked against ``ndim`` and made non-negative."""
        return LRNParams(
            self.lo, self.hi, self.alpha, self.beta, self.bias, _normalize_axis(self.axis, ndim)
        )

    def clamped(self, extent: int) -> LRNParams:
        """The same LRN on an axis of ``extent`` elements, its window cut to the axis.

        A window reaching more than ``extent - 1`` elements either way only adds zero
        padding, so the result is the same, while the kernel no longer loops over a
        window of ``size``, whose compile time grows with it.
        """
        reach = max(int(extent) - 1, 0)
        if self.lo <= reach and self.hi <= reach:
            return self
        return LRNParams(
            min(self.lo, reach), min(self.hi, reach), self.alpha, self.beta, self.bias, self.axis
        )

    def as_attrs(self) -> dict:
        """The parameters as a flat dict (PrimFunc attributes, cache keys)."""
        return {
            "lo": self.lo,
            "hi": self.hi,
            "alpha": self.alpha,
            "beta": self.beta,
            "bias": self.bias,
            "axis": self.axis,
        }


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, numbers.Integral):
        raise TypeError(f"size must be an integer, got {size!r} ({type(size).__name__})")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if size > MAX_WINDOW:
        raise ValueError(f"size must be at most 2**31 - 1 = {MAX_WINDOW} (int32), got {size}")
    return int(size)


def _check_nonneg(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def _normalize_axis(axis, ndim: int) -> int:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    if isinstance(ndim, bool) or not isinstance(ndim, numbers.Integral):
        raise TypeError(f"rank must be an integer, got {ndim!r}")
    if ndim < 1:
        raise ValueError(f"LRN needs a tensor of rank >= 1, got rank {ndim}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis {axis} is out of range for a tensor of rank {ndim}")
    return int(axis) % int(ndim)


def check_canonical(lo, hi, alpha, beta, bias, axis) -> LRNParams:
    """Validate already canonical parameters (e.g. read back from an op's attributes).

    Parameters
    ----------
    lo, hi, axis : int
        Window extents (>= 0) and axis.
    alpha, beta, bias : float
        Finite and non-negative; ``alpha`` and ``bias`` may not both be 0.

    Returns
    -------
    LRNParams
    """
    ints = {}
    for name, value in (("lo", lo), ("hi", hi), ("axis", axis)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        ints[name] = int(value)
    for name in ("lo", "hi"):
        if ints[name] < 0:
            raise ValueError(f"{name} must be >= 0, got {ints[name]}")
        if ints[name] >= MAX_WINDOW:
            raise ValueError(f"{name} must be below 2**31 - 1 (int32), got {ints[name]}")
    if abs(ints["axis"]) > MAX_WINDOW:
        raise ValueError(f"axis must fit in int32, got {ints['axis']}")
    alpha, beta, bias = (
        _check_nonneg(n, v) for n, v in (("alpha", alpha), ("beta", beta), ("bias", bias))
    )
    if alpha == 0 and bias == 0:
        raise ValueError("alpha and bias are both 0: the denominator would be 0")
    return LRNParams(ints["lo"], ints["hi"], alpha, beta, bias, ints["axis"])


def check_dtype(dtype) -> str:
    """Return ``dtype`` as a string if LRN accepts it, else raise ``TypeError``.

    Parameters
    ----------
    dtype : str, numpy dtype, torch dtype or tvm DataType
        The element type of the input.
    """
    name = str(dtype).replace("torch.", "")
    if name not in FLOAT_DTYPES:
        raise TypeError(
            f"LRN needs a floating-point input ({', '.join(FLOAT_DTYPES)}), got dtype {name}"
        )
    return name


def canonicalize(
    size, alpha=1e-4, beta=0.75, bias=1.0, axis=1, convention="torch", ndim=None
) -> LRNParams:
    """Validate LRN parameters and map them to :class:`LRNParams`.

    Parameters
    ----------
    size : int
        Window length. Under ``"tensorflow"`` it is ``2 * depth_radius + 1``.
    alpha, beta, bias : float
        Finite and non-negative; ``alpha`` and ``bias`` may not both be 0.
    axis : int
        The normalized axis (negative counts from the end).
    convention : {"torch", "onnx", "tensorflow", "caffe"}
        Whose formula ``size`` and ``alpha`` follow.
    ndim : int, optional
        Rank of the input; when given, ``axis`` is checked and made non-negative.

    Returns
    -------
    LRNParams
    """
    size = _check_size(size)
    alpha = _check_nonneg("alpha", alpha)
    beta = _check_nonneg("beta", beta)
    bias = _check_nonneg("bias", bias)
    if alpha == 0 and bias == 0:
        raise ValueError("alpha and bias are both 0: the denominator would be 0")
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if convention == "torch":
        lo, hi, alpha_eff = size // 2, (size - 1) // 2, alpha / size
    elif convention == "onnx":
        lo = (size - 1) // 2
        lo, hi, alpha_eff = lo, size - 1 - lo, alpha / size
    else:
        if size % 2 == 0:
            raise ValueError(f"size must be odd under convention={convention!r}, got {size}")
        lo = hi = (size - 1) // 2
        alpha_eff = alpha if convention == "tensorflow" else alpha / size
    if alpha_eff == 0 and bias == 0:
        raise ValueError(f"alpha={alpha} divided by size={size} underflows to 0 and bias is 0")
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"axis must be an integer, got {axis!r}")
    params = LRNParams(lo, hi, alpha_eff, beta, bias, int(axis))
    return params if ndim is None else params.with_axis(ndim)
