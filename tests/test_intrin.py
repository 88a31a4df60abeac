"""The reciprocal square root estimate (tvm_lrn.intrin): targets, lowering, accuracy."""

import importlib
import re

import numpy as np
import pytest
import tvm
from accuracy import check_against_exact
from tvm import s_tir, te

import tvm_lrn
from tvm_lrn import canonicalize, compute, intrin, op, reference
from tvm_lrn.build import schedule_lrn, schedule_lrn_functions
from tvm_lrn.strategy import schedule_primfunc
from tvm_lrn.target import host_target

ZNVER4 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver4"}
HASWELL = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "haswell"}
N = 1 << 16

host_has_it = pytest.mark.skipif(
    not intrin.has_rsqrt_estimate(host_target()), reason="the host CPU has no AVX-512"
)


@pytest.mark.parametrize(
    "target, expected",
    [
        (ZNVER4, True),
        ({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "skylake-avx512"}, True),
        (HASWELL, False),
        ({"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mattr": ["+avx512f"]}, False),
        ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "neoverse-v1"}, False),
        ("cuda", True),  # rsqrtf
        (None, False),
    ],
    ids=["znver4", "skylake-avx512", "haswell", "avx512f-without-vl", "aarch64", "cuda", "none"],
)
def test_has_rsqrt_estimate_per_target(target, expected):
    target = None if target is None else tvm.target.Target(target)
    assert intrin.has_rsqrt_estimate(target) is expected


def _elementwise(fn, lanes: int, n: int = N):
    d = te.placeholder((n,), "float32", name="d")
    y = te.compute((n,), lambda i: fn(d[i]), name="y")
    sch = s_tir.Schedule(te.create_prim_func([d, y]))
    (loop,) = sch.get_loops(sch.get_sblock("y"))
    if lanes > 1:
        _, inner = sch.split(loop, [None, lanes])
        sch.vectorize(inner)
    return sch.mod


def _asm(mod, target) -> str:
    return tvm.compile(mod, target=tvm.target.Target(target)).mod.inspect_source("asm")


@pytest.mark.parametrize("lanes, register", [(16, "zmm"), (8, "ymm"), (4, "xmm")])
def test_estimate_lowers_to_vrsqrt14ps_per_vector_width(lanes, register):
    """Compiled for an AVX-512 CPU (no such CPU needed to compile), each vector width
    gets its own estimate instruction and no square root or division."""
    asm = _asm(_elementwise(intrin.rsqrt_estimate, lanes), ZNVER4)
    assert re.search(rf"vrsqrt14ps\t[^\n]*%{register}", asm)
    assert "sqrtps" not in asm and "divps" not in asm


@pytest.mark.parametrize("lanes", [1, 5])
def test_estimate_is_exact_where_there_is_no_instruction(lanes):
    """Scalar code and odd vector widths get the exact 1/sqrt."""
    asm = _asm(_elementwise(intrin.rsqrt_estimate, lanes, n=N - N % lanes), ZNVER4)
    assert "rsqrt14" not in asm
    assert "sqrt" in asm


def _lrn_primfunc(target):
    with tvm.target.Target(target):
        return op.lrn_primfunc([None] * 4, "float32", canonicalize(5, ndim=4))


def test_the_compute_uses_the_estimate_only_where_the_target_has_it():
    assert intrin.uses_rsqrt_estimate(_lrn_primfunc(ZNVER4))
    assert not intrin.uses_rsqrt_estimate(_lrn_primfunc(HASWELL))
    assert intrin.uses_rsqrt_estimate(_lrn_primfunc("cuda"))
    assert not intrin.uses_rsqrt_estimate(_lrn_primfunc({"kind": "opencl"}))


def test_a_function_with_the_estimate_is_refused_for_other_targets():
    """LLVM aborts the process on an AVX-512 intrinsic for a CPU without it: every entry
    that schedules LRN functions refuses them first, with an error that says why."""
    func = _lrn_primfunc(ZNVER4)
    with pytest.raises(ValueError, match="AVX-512"):
        schedule_primfunc(func, tvm.target.Target(HASWELL))
    with pytest.raises(ValueError, match="AVX-512"):
        schedule_lrn(func, tvm.target.Target(HASWELL))
    prescheduled = tvm.IRModule({"lrn": func.with_attr("tirx.is_scheduled", True)})
    with tvm.target.Target(HASWELL), pytest.raises(ValueError, match="AVX-512"):
        schedule_lrn_functions()(prescheduled)
    assert schedule_primfunc(func, tvm.target.Target(ZNVER4)).attrs["tirx.is_scheduled"]


def _run(mod, d: np.ndarray) -> np.ndarray:
    lib = tvm.compile(mod, target=host_target())
    out = tvm.runtime.empty(d.shape, "float32")
    lib(tvm.runtime.tensor(d), out)
    return out.numpy()


def _normal_float32(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    d = np.exp2(rng.uniform(-125, 127, n)).astype(np.float32)
    d[:4] = [np.finfo(np.float32).smallest_normal, 1.0, 2.0, np.finfo(np.float32).max]
    return d


@host_has_it
@pytest.mark.parametrize("lanes", [16, 8, 4, 1])
def test_estimate_and_refined_rsqrt_accuracy(lanes):
    """The estimate is within 2**-14 (Intel's bound for VRSQRT14PS); one Newton step
    from it is within 1.25 ulp: 1.5 * 2**-28 from the step, half an ulp from the
    rounding of its correction, half an ulp from the final rounding."""
    d = _normal_float32(N)
    exact = 1 / np.sqrt(d.astype(np.float64))
    estimate = _run(_elementwise(intrin.rsqrt_estimate, lanes), d).astype(np.float64)
    assert np.max(np.abs(estimate / exact - 1)) < 2.0**-14
    refined = _run(_elementwise(intrin.refined_rsqrt, lanes), d).astype(np.float64)
    ulp = np.exp2(np.floor(np.log2(exact)) - 23)
    assert np.max(np.abs(refined - exact) / ulp) <= 1.25


@pytest.mark.parametrize("beta", [0.25, 0.5, 0.75, 1.0])
@pytest.mark.parametrize("target", [None, HASWELL], ids=["host", "haswell"])
def test_fast_path_meets_the_contract_with_and_without_estimate(beta, target):
    """The whole fast range of d = bias + alpha*s, where the guarded form takes its fast
    path, against the exact reference: with the estimate (on the host, when it has
    AVX-512) and with correctly rounded roots."""
    if target is HASWELL and not tvm.target.codegen.target_has_features("avx2", host_target()):
        pytest.skip("the host CPU cannot run haswell code")
    p = canonicalize(3, 3.0, beta, 1.0, 1, "torch", ndim=4)
    limit = compute.input_limit(p, compute.number_format("float32"))  # every block in range
    rng = np.random.default_rng(1)
    shape = (3, 16, 9, 11)
    x = np.exp2(rng.uniform(-20, np.log2(limit), shape)) * rng.choice([-1, 1], shape)
    x = x.astype(np.float32)
    assert np.abs(x).max() <= limit
    y = tvm_lrn.run(x, size=3, alpha=3.0, beta=beta, bias=1.0, target=target)
    check_against_exact(y, reference.lrn_exact(x, p), "float32")


def test_reloading_the_module_keeps_one_registration():
    importlib.reload(intrin)
    assert tvm.ir.Op.list_op_names().count(intrin.OP_NAME) == 1
    assert intrin.uses_rsqrt_estimate(_lrn_primfunc(ZNVER4))
