"""Kernels built for a one-core CPU target run on the calling thread (no launch on TVM's
thread pool), with the same results; the PyTorch custom op builds its CPU kernels so
(tvm_lrn.lower.one_core)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import tvm
from tvm import tirx
from tvm.script import tirx as T
from tvm.target import Target

from tvm_lrn import eager, op, reference
from tvm_lrn.frontend import torch_op  # noqa: F401  (registers the op)
from tvm_lrn.lower import TIR_PIPELINE, lower_plane_tasks, on_one_core, serialize_parallel_loops
from tvm_lrn.spec import canonicalize
from tvm_lrn.strategy import schedule_primfunc
from tvm_lrn.strategy.common import walk
from tvm_lrn.target import host_target, host_target_on_one_core, resolve_target

SKX = Target({"kind": "llvm", "mcpu": "skylake-avx512", "mtriple": "x86_64-linux-gnu"})
SKX_ONE_CORE = Target({**SKX.export(), "num-cores": 1})
PARALLEL_LAUNCH = "TVMBackendParallelLaunch"

# (shape, axis, static): the planes schedule (axis 1, static), the row schedule
# (channels-last) and the symbolic kernel
CASES = [((2, 16, 7, 37), 1, True), ((3, 9, 5, 12), -1, True), ((2, 8, 6, 32), 1, False)]


def _loops(func):
    loops = []
    walk(func.body, lambda n: loops.append(n) if isinstance(n, tirx.For) else None)
    return loops


def _kinds(func):
    return [loop.kind for loop in _loops(func)]


def _scheduled(shape, axis, static, target):
    params = canonicalize(5, 1e-2, 0.75, 2.0, axis=axis, ndim=len(shape))
    dims = shape if static else [None] * len(shape)
    return params, schedule_primfunc(op.lrn_primfunc(dims, "float32", params), target)


def test_on_one_core_names_cpu_targets_of_one_core():
    assert on_one_core(SKX_ONE_CORE) and on_one_core(host_target_on_one_core())
    assert not on_one_core(SKX) and not on_one_core(host_target()) and not on_one_core(None)
    assert not on_one_core(Target({"kind": "cuda", "arch": "sm_90"}))


@pytest.mark.parametrize(("shape", "axis", "static"), CASES)
def test_parallel_loops_become_serial_and_the_rest_stays(shape, axis, static):
    _, func = _scheduled(shape, axis, static, SKX)
    func = lower_plane_tasks(func)
    before = _kinds(func)
    assert tirx.ForKind.PARALLEL in before
    after = _kinds(serialize_parallel_loops(func))
    assert tirx.ForKind.PARALLEL not in after
    # only the parallel loops changed: the same loops, vectorized and unrolled ones kept
    assert len(after) == len(before)
    assert after.count(tirx.ForKind.VECTORIZED) == before.count(tirx.ForKind.VECTORIZED)
    assert after.count(tirx.ForKind.SERIAL) == before.count(tirx.ForKind.SERIAL) + before.count(
        tirx.ForKind.PARALLEL
    )


def test_a_stepped_parallel_loop_keeps_its_step():
    @T.prim_func(private=True)
    def every_other(a: T.Buffer((16,), "float32"), b: T.Buffer((16,), "float32")):
        for i in T.parallel(0, 16, step=2):
            b[i] = a[i] * 2.0

    (loop,) = _loops(serialize_parallel_loops(every_other))
    assert loop.kind == tirx.ForKind.SERIAL and int(loop.step) == 2


@pytest.mark.parametrize(("shape", "axis", "static"), CASES)
def test_one_core_kernels_launch_no_threads_and_compute_the_same(shape, axis, static):
    host_one_core = host_target_on_one_core()
    params, func = _scheduled(shape, axis, static, host_target())
    x = (np.random.default_rng(3).standard_normal(shape) * 10).astype(np.float32)
    outputs = {}
    for name, target in (("pool", host_target()), ("one core", host_one_core)):
        ex = tvm.compile(func, target=target, tir_pipeline=TIR_PIPELINE)
        outputs[name] = (PARALLEL_LAUNCH in ex.mod.inspect_source("ll"), ex)
    assert outputs["pool"][0] and not outputs["one core"][0]
    results = []
    for _, ex in outputs.values():
        y = tvm.runtime.empty(shape, "float32", tvm.cpu())
        ex(tvm.runtime.tensor(x), y)
        results.append(y.numpy())
    np.testing.assert_array_equal(results[0], results[1])
    truth = reference.lrn_exact(x.astype(np.float64), params)
    np.testing.assert_allclose(results[1], truth, rtol=1e-5, atol=0)


def test_the_custom_op_builds_its_cpu_kernels_for_one_core(monkeypatch):
    targets = []

    def spy(x, **kwargs):
        targets.append(kwargs["target"])
        return run(x, **kwargs)

    run = eager.run
    monkeypatch.setattr(eager, "run", spy)
    x = torch.randn(2, 8, 5, 5)
    y = torch.ops.tvm_lrn.local_response_norm(x, 5, 1e-3, 0.75, 2.0)
    torch.testing.assert_close(y, F.local_response_norm(x, 5, 1e-3, 0.75, 2.0))
    assert on_one_core(resolve_target(targets[-1]))
