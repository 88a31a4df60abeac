"""The cases of the CPU suite, and of one case its shape text, its input and exact
reference, and the check of an output."""

from __future__ import annotations

import argparse
import dataclasses
import math

import numpy as np
from contender import LRNArgs

__all__ = [
    "DTYPES",
    "QUICK_SHAPES",
    "SHAPES",
    "Case",
    "case_input",
    "check_status",
    "max_rel_err",
    "parse_shape",
    "shape_str",
    "tolerance",
]

#: The shapes of the full suite: AlexNet (55x55, 27x27) and GoogLeNet v1 (56x56) LRN inputs
#: at batch 1 and 16, and one large batch of 224x224 maps (154 MB in float32).
SHAPES: tuple[tuple[int, ...], ...] = (
    (1, 96, 55, 55),
    (1, 256, 27, 27),
    (1, 64, 56, 56),
    (1, 192, 56, 56),
    (16, 96, 55, 55),
    (16, 256, 27, 27),
    (16, 64, 56, 56),
    (16, 192, 56, 56),
    (8, 96, 224, 224),
)
QUICK_SHAPES = SHAPES[:4]
DTYPES = ("float32", "float16")


@dataclasses.dataclass(frozen=True)
class Case:
    """Where a row of results was measured.

    Attributes
    ----------
    shape : tuple of int
    dtype : str
    target : str
        ``cpu:<mcpu>`` or ``cuda:<device name>``.
    threads : int
        0 on a GPU.
    """

    shape: tuple[int, ...]
    dtype: str
    target: str
    threads: int

    @property
    def nbytes(self) -> int:
        """Bytes of the input (one way; a call moves twice that)."""
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


def shape_str(shape) -> str:
    """``(1, 96, 55, 55)`` -> ``"1x96x55x55"``."""
    return "x".join(str(int(d)) for d in shape)


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1x96x55x55"`` -> ``(1, 96, 55, 55)``."""
    try:
        shape = tuple(int(d) for d in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}, expected e.g. 1x96x55x55") from None
    if len(shape) < 2 or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"bad shape {text!r}: rank >= 2, positive extents")
    return shape


def case_input(shape, dtype: str, lrn: LRNArgs, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, ref)`` of one case: the input and its exact LRN (float64)."""
    from tvm_lrn import reference

    rng = np.random.default_rng(seed)
    # Activations of a typical scale; small enough that no peer overflows in float16.
    x = (rng.standard_normal(shape, dtype=np.float32) * 8.0).astype(dtype)
    ref = np.asarray(reference.lrn_exact(x, lrn.params(len(shape))), dtype=np.float64)
    return x, ref


def tolerance(dtype: str) -> float:
    """Largest relative error accepted from a contender: 32 units of ``dtype``'s epsilon.

    Generous on purpose: peers compute in the input dtype, and the check is meant to
    catch wrong results (another convention, a broken kernel), not to rank accuracy.
    """
    return 32.0 * float(np.finfo(np.dtype(dtype)).eps)


def check_status(op: str, err: float, dtype: str) -> str:
    """``"ok"`` or ``"FAIL"``: a copy (``op == "copy"``, checked against the input) must
    be exact, an LRN within :func:`tolerance` of the reference."""
    limit = 0.0 if op == "copy" else tolerance(dtype)
    return "ok" if err <= limit else "FAIL"


def max_rel_err(y: np.ndarray, ref: np.ndarray, dtype: str, chunk: int = 1 << 22) -> float:
    """``max |y - ref| / max(|ref|, smallest normal of dtype)``; NaN or Inf where ``ref``
    is finite counts as infinite error.

    Parameters
    ----------
    y : numpy.ndarray
        A contender's output.
    ref : numpy.ndarray
        The reference, same shape (may be a memory map; read in chunks).
    dtype : str
        The input dtype, for the denominator's floor.
    chunk : int
        Elements compared at a time.

    Returns
    -------
    float
    """
    if y.shape != ref.shape:
        return math.inf
    tiny = float(np.finfo(np.dtype(dtype)).tiny)
    yf, rf = y.reshape(-1), ref.reshape(-1)
    worst = 0.0
    for start in range(0, yf.size, chunk):
        a = yf[start : start + chunk].astype(np.float64)
        b = np.asarray(rf[start : start + chunk], dtype=np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            err = np.abs(a - b) / np.maximum(np.abs(b), tiny)
        err = np.where(np.isfinite(a) | ~np.isfinite(b), err, np.inf)
        err = np.where(np.isnan(a) & np.isnan(b), 0.0, err)
        if err.size:
            worst = max(worst, float(np.max(err)))
    return worst
