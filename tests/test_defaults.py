"""The default CPU schedule (tvm_lrn.defaults.ParallelVectorize) on convolution,
pooling and matmul kernels as TVM legalizes them: parallel, vectorized, and equal to
the unscheduled kernel."""

from __future__ import annotations

import re

import numpy as np
import pytest
import tvm
from tvm import te, topi

from tvm_lrn.defaults import ParallelVectorize, default_rules

TARGET = tvm.target.Target({"kind": "llvm", "mcpu": "znver4"})
HOST = tvm.target.Target("llvm")


def _conv_relu(c_in, c_out, side, kernel, stride, pad):
    x = te.placeholder((1, c_in, side, side), "float32", name="x")
    w = te.placeholder((c_out, c_in, kernel, kernel), "float32", name="w")
    b = te.placeholder((1, c_out, 1, 1), "float32", name="b")
    y = topi.nn.relu(topi.add(topi.nn.conv2d_nchw(x, w, stride, pad, 1), b))
    return te.create_prim_func([x, w, b, y])


def _group_conv_relu(c_in, c_out, side, groups):
    x = te.placeholder((1, c_in, side, side), "float32", name="x")
    w = te.placeholder((c_out, c_in // groups, 3, 3), "float32", name="w")
    y = topi.nn.relu(topi.nn.group_conv2d_nchw(x, w, 1, 1, 1, groups))
    return te.create_prim_func([x, w, y])


def _max_pool(c, side):
    x = te.placeholder((1, c, side, side), "float32", name="x")
    y = topi.nn.pool2d(x, (3, 3), (2, 2), (1, 1), (0, 0, 0, 0), "max")
    return te.create_prim_func([x, y])


def _matmul(n, k):
    x = te.placeholder((1, k), "float32", name="x")
    w = te.placeholder((k, n), "float32", name="w")
    r = te.reduce_axis((0, k), name="r")
    y = te.compute((1, n), lambda i, j: te.sum(x[i, r] * w[r, j], axis=r), name="y")
    return te.create_prim_func([x, w, y])


CASES = {
    "conv11s4": lambda: _conv_relu(3, 16, 35, 11, 4, 2),
    "conv5": lambda: _conv_relu(8, 24, 13, 5, 1, 2),
    "conv3_c1": lambda: _conv_relu(1, 3, 7, 3, 1, 1),
    "group_conv": lambda: _group_conv_relu(8, 24, 13, 2),
    "group_conv_3_per_group": lambda: _group_conv_relu(16, 24, 9, 8),
    "maxpool": lambda: _max_pool(12, 27),
    "matmul": lambda: _matmul(96, 40),
}


def _run(func, target, args):
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target)
    tensors = [tvm.runtime.tensor(a) for a in args]
    lib(*tensors)
    return tensors[-1].numpy()


@pytest.mark.parametrize("case", sorted(CASES))
def test_schedule_matches_unscheduled_kernel(case):
    func = CASES[case]()
    sch = ParallelVectorize.apply(func, HOST, False)
    assert sch is not None
    script = sch.mod.script()
    assert "T.parallel" in script and "T.vectorized" in script
    rng = np.random.default_rng(0)
    args = [
        rng.standard_normal([int(s) for s in p.ty.shape]).astype("float32") for p in func.params
    ]
    args[-1] = np.zeros_like(args[-1])
    got = _run(sch.mod["main"], HOST, [a.copy() for a in args])
    want = _run(func, HOST, [a.copy() for a in args])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_structure_under_named_target():
    """16 float32 lanes on znver4 (AVX-512): a conv's tile is 8 channels x the row."""
    sch = ParallelVectorize.apply(_conv_relu(16, 32, 16, 3, 1, 1), TARGET, False)
    script = sch.mod.script()
    assert re.search(r"T\.unroll\((T\.int64\()?8\)?\)", script)
    assert re.search(r"T\.vectorized\((T\.int64\()?16\)?\)", script)
    assert 'scope="local"' in script


def test_grouped_convolution_tiles_filters_of_one_group():
    """The filters of one group read the same input vector, so a grouped convolution's
    tile is 8 output channels of one group (12 per group: 6) x the row, like a plain
    convolution's, not 8 rows of the output."""
    for c_out, rows in ((32, 8), (24, 6)):
        sch = ParallelVectorize.apply(_group_conv_relu(16, c_out, 13, 2), TARGET, False)
        update = sch.get_sblock("group_conv2d_nchw_update")
        extents = [int(sch.get(loop).extent) for loop in sch.get_loops(update)]
        assert extents[-2:] == [rows, 13], (c_out, extents)


def test_lanes_never_exceed_one_native_vector():
    """A 27-wide row runs as 3 vectors of 9 lanes: LLVM splits a 27-lane vector into
    pieces that cost several times more."""
    script = ParallelVectorize.apply(_conv_relu(8, 16, 27, 5, 1, 2), TARGET, False).mod.script()
    lanes = {int(n) for n in re.findall(r"T\.vectorized\((?:T\.int64\()?(\d+)", script)}
    assert lanes and max(lanes) <= 16 and 9 in lanes


def test_matrix_vector_product_streams_weight_rows():
    """Batch-1 dense layer: for each reduction step, one pass along a whole (4096-wide)
    weight row, accumulated in a local buffer, so the weights are read sequentially."""
    sch = ParallelVectorize.apply(_matmul(4096, 64), TARGET, False)
    update = sch.get_sblock("y_update")
    extents = [int(sch.get(loop).extent) for loop in sch.get_loops(update)]
    assert extents[-3:] == [64, 256, 16]
    assert 'scope="local"' in sch.mod.script()


def test_not_for_gpu_or_symbolic_shapes():
    assert ParallelVectorize.apply(_max_pool(4, 9), tvm.target.Target("cuda"), False) is None
    n = te.var("n", "int64")
    x = te.placeholder((n, 8), "float32", name="x")
    r = te.reduce_axis((0, 8), name="r")
    y = te.compute((n,), lambda i: te.sum(x[i, r], axis=r), name="y")
    assert ParallelVectorize.apply(te.create_prim_func([x, y]), HOST, False) is None


def test_rules_per_target():
    assert default_rules(HOST)[0] is ParallelVectorize
    assert ParallelVectorize not in default_rules(tvm.target.Target("cuda"))
