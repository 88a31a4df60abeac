"""The CPU kernels' parameters are aligned to one element (so that callers' memory is
borrowed, not copied); GPU kernels keep TVM's 64 bytes. Structural, under named targets."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tvm
import tvm_ffi
from tvm import te

from tvm_lrn.lower import TIR_PIPELINE, AlignParamsToElements, align_params_to_elements

CPU = tvm.target.Target("llvm")
CUDA = tvm.target.Target({"kind": "cuda", "arch": "sm_80"})


def _double(dtype: str, n: int = 256):
    a = te.placeholder((n,), dtype, name="a")
    b = te.compute((n,), lambda i: a[i] * tvm.tirx.const(2, dtype), name="b")
    return te.create_prim_func([a, b])


@pytest.mark.parametrize(("dtype", "bytes_"), [("float32", 4), ("float16", 2), ("float64", 8)])
def test_cpu_parameters_are_aligned_to_one_element(dtype, bytes_):
    func = _double(dtype)
    assert [p.ty.data_alignment for p in func.params] == [64, 64]
    relaxed = align_params_to_elements(func)
    assert [p.ty.data_alignment for p in relaxed.params] == [bytes_, bytes_]
    assert align_params_to_elements(relaxed).same_as(relaxed)  # nothing left to relax


def test_the_pass_leaves_gpu_functions_alone():
    func = _double("float32")
    mod = tvm.IRModule({"main": func.with_attr("target", CUDA)})
    out = AlignParamsToElements()(mod)["main"]
    assert [p.ty.data_alignment for p in out.params] == [64, 64]
    mod = tvm.IRModule({"main": func.with_attr("target", CPU)})
    assert [p.ty.data_alignment for p in AlignParamsToElements()(mod)["main"].params] == [4, 4]


def test_built_cpu_kernel_assumes_no_more_and_runs_on_misaligned_memory():
    kernel = tvm.compile(_double("float32"), target=CPU, tir_pipeline=TIR_PIPELINE)
    assert not re.search(r'"align"\(ptr %\w+, i64 64\)', kernel.mod.inspect_source("ll"))
    raw = np.arange(257, dtype=np.float32)
    x = raw[1:]  # 4 bytes past numpy's alignment (TVM's own pipeline would assume 64)
    assert x.ctypes.data % 64 != 0
    out = np.zeros(256, np.float32)
    kernel(tvm_ffi.from_dlpack(x, require_alignment=4), tvm_ffi.from_dlpack(out))
    np.testing.assert_array_equal(out, 2 * x)
