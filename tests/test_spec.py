"""Conventions map to the canonical window and alpha; invalid parameters are rejected."""

import math

import numpy as np
import pytest

from tvm_lrn import canonicalize
from tvm_lrn.spec import LRNParams, check_dtype


@pytest.mark.parametrize(
    "convention, size, lo, hi, alpha_div",
    [
        ("torch", 5, 2, 2, 5),
        ("torch", 4, 2, 1, 4),
        ("torch", 1, 0, 0, 1),
        ("torch", 2, 1, 0, 2),
        ("onnx", 5, 2, 2, 5),
        ("onnx", 4, 1, 2, 4),
        ("onnx", 2, 0, 1, 2),
        ("onnx", 1, 0, 0, 1),
        ("caffe", 5, 2, 2, 5),
        ("caffe", 3, 1, 1, 3),
        ("tensorflow", 11, 5, 5, 1),
        ("tensorflow", 1, 0, 0, 1),
    ],
)
def test_convention_window_and_alpha(convention, size, lo, hi, alpha_div):
    p = canonicalize(size, alpha=2e-4, beta=0.5, bias=2.0, axis=1, convention=convention)
    assert (p.lo, p.hi, p.size) == (lo, hi, size)
    assert p.alpha == pytest.approx(2e-4 / alpha_div, rel=1e-15)
    assert (p.beta, p.bias) == (0.5, 2.0)


def test_axis_normalized_with_rank():
    assert canonicalize(3, axis=-1, ndim=4).axis == 3
    assert canonicalize(3, axis=0, ndim=1).axis == 0
    assert LRNParams(1, 1, 1e-4, 0.75, 1.0, -2).with_axis(5).axis == 3


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"size": 0}, ValueError, "size must be >= 1"),
        ({"size": -3}, ValueError, "size must be >= 1"),
        ({"size": 2.5}, TypeError, "size must be an integer"),
        ({"size": True}, TypeError, "size must be an integer"),
        ({"size": 5, "alpha": -1e-4}, ValueError, "alpha must be >= 0"),
        ({"size": 5, "beta": -0.75}, ValueError, "beta must be >= 0"),
        ({"size": 5, "bias": -1.0}, ValueError, "bias must be >= 0"),
        ({"size": 5, "alpha": math.inf}, ValueError, "alpha must be finite"),
        ({"size": 5, "beta": math.nan}, ValueError, "beta must be finite"),
        ({"size": 5, "bias": -math.inf}, ValueError, "bias must be finite"),
        ({"size": 5, "alpha": "1e-4"}, TypeError, "alpha must be a real number"),
        ({"size": 5, "alpha": 0.0, "bias": 0.0}, ValueError, "alpha and bias are both 0"),
        ({"size": 5, "alpha": 5e-324, "bias": 0.0}, ValueError, "underflows"),
        ({"size": 4, "convention": "tensorflow"}, ValueError, "size must be odd"),
        ({"size": 4, "convention": "caffe"}, ValueError, "size must be odd"),
        ({"size": 5, "convention": "mxnet"}, ValueError, "convention must be one of"),
        ({"size": 5, "axis": 4, "ndim": 4}, ValueError, "axis 4 is out of range"),
        ({"size": 5, "axis": -5, "ndim": 4}, ValueError, "axis -5 is out of range"),
        ({"size": 5, "axis": 1.0}, TypeError, "axis must be an integer"),
        ({"size": 5, "axis": 0, "ndim": 0}, ValueError, "rank >= 1"),
    ],
)
def test_invalid_parameters_rejected(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        canonicalize(**kwargs)


@pytest.mark.parametrize("dtype", ["int8", "int32", "bool", "uint8", "complex64", "float8_e4m3fn"])
def test_non_float_dtype_rejected(dtype):
    with pytest.raises(TypeError, match="floating-point input"):
        check_dtype(dtype)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_float_dtypes_accepted(dtype):
    assert check_dtype(dtype) == dtype
    assert check_dtype(f"torch.{dtype}") == dtype


def test_numpy_dtype_accepted():
    assert check_dtype(np.dtype("float32")) == "float32"
