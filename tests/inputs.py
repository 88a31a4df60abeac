"""Input generators shared by the accuracy tests."""

from __future__ import annotations

import math

import numpy as np
from accuracy import format_info, np_dtype


def log_uniform(rng, shape, dtype: str, lo: float | None = None, hi: float | None = None):
    """Signed values whose log2 magnitude is uniform, by default over the whole dtype range
    (smallest subnormal to the largest finite value)."""
    nmant, tiny, big = format_info(dtype)
    lo = math.log2(tiny) - nmant if lo is None else lo
    hi = math.log2(big) if hi is None else hi
    e = rng.uniform(lo, hi, shape)
    values = np.exp2(e) * rng.choice([-1.0, 1.0], shape)
    return np.clip(values, -big, big).astype(np_dtype(dtype))


def extremes(rng, shape, dtype: str, axis: int = 1):
    """log-uniform values with whole slices set to the largest and smallest magnitudes,
    so that windows mix both ends of the range."""
    nmant, tiny, big = format_info(dtype)
    x = log_uniform(rng, shape, dtype)
    x = np.moveaxis(x, axis, 0)
    c = x.shape[0]
    x[0] = np_dtype(dtype).type(big)
    if c > 2:
        x[2] = np_dtype(dtype).type(-tiny * 2.0**-nmant)  # smallest subnormal
    if c > 3:
        x[3] = np_dtype(dtype).type(-big)
    return np.ascontiguousarray(np.moveaxis(x, 0, axis))
