"""The per-target schedule rules: correctness against the exact reference, loop structure,
generated code (x86 asm, aarch64 object, CUDA PTX/cubin), rule selection. No GPU needed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import tvm
import tvm_ffi
from tvm import s_tir, te, tirx
from tvm.s_tir import dlight as dl
from tvm.target import Target

from tvm_lrn import compute, op, reference
from tvm_lrn.lower import TIR_PIPELINE, cuda_math, lower_plane_tasks
from tvm_lrn.spec import canonicalize
from tvm_lrn.strategy import CPULRN, GPULRN, cpu_planes, has_lrn_blocks, schedule_primfunc
from tvm_lrn.strategy.common import walk
from tvm_lrn.strategy.cpu import choose_tile, vector_bits

sys.path.insert(0, os.path.dirname(__file__))
from accuracy import check_against_exact, np_dtype  # noqa: E402

SKX = Target({"kind": "llvm", "mcpu": "skylake-avx512", "mtriple": "x86_64-linux-gnu"})
HSW = Target({"kind": "llvm", "mcpu": "haswell", "mtriple": "x86_64-linux-gnu"})
A64 = Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "neoverse-n1"})
HOST = Target.from_device("cpu")


def make(shape, dtype, params, static, form=None):
    """``form=None``: the form a CPU target gets (and a build without one): the checked
    form for static planes after the LRN axis, else the guarded form."""
    dims = shape if static else [None] * len(shape)
    return op.lrn_primfunc(dims, dtype, params, form=form)


def block_names(func):
    names = []
    walk(func.body, lambda n: names.append(n.name_hint) if isinstance(n, s_tir.SBlock) else None)
    return names


def vectorized_blocks(func):
    """Names of the blocks with a vectorized loop above them."""
    found = set()

    def descend(stmt, vectorized):
        if isinstance(stmt, tirx.For) and stmt.kind == tirx.ForKind.VECTORIZED:
            vectorized = True
        if isinstance(stmt, s_tir.SBlock) and vectorized:
            found.add(stmt.name_hint)
        for child in _children(stmt):
            descend(child, vectorized)

    descend(func.body, False)
    return found


def loop_kinds(func):
    """Kinds of the loops of a PrimFunc, or of a statement."""
    kinds = []
    body = func.body if isinstance(func, tirx.PrimFunc) else func
    walk(body, lambda n: kinds.append(n.kind) if isinstance(n, tirx.For) else None)
    return kinds


def build(func, target, pipeline=TIR_PIPELINE):
    """Compile a scheduled PrimFunc as tvm_lrn builds its kernels."""
    return tvm.compile(func, target=target, tir_pipeline=pipeline)


def lowered(func, target):
    """The CPU schedule of ``func`` with its task rewrite (LowerPlaneTasks) applied."""
    return lower_plane_tasks(schedule_primfunc(func, target))


def run_cpu(func, x, target=HOST, pipeline=TIR_PIPELINE):
    ex = build(func, target, pipeline)
    out = tvm.runtime.empty(x.shape, str(x.dtype), tvm.cpu())
    ex(tvm.runtime.tensor(x), out)
    return ex, out.numpy()


# ---------------------------------------------------------------------------- CPU


# (shape, axis, dtype, static shape?, size): odd and prime trailing extents (tails),
# channels-last, rank 1..5, every dtype.
CPU_CASES = [
    ((2, 16, 7, 37), 1, "float32", True, 5),
    ((2, 16, 7, 37), 1, "float32", False, 5),
    ((3, 5, 19), -1, "float32", False, 4),
    ((3, 6, 19), -1, "float16", True, 3),
    ((101,), 0, "float64", False, 5),
    ((64,), 0, "bfloat16", True, 7),
    ((4, 67), 0, "float32", True, 2),
    ((2, 3, 4, 5, 6), 2, "float16", False, 5),
]


@pytest.mark.parametrize("form", compute.FORMS)
@pytest.mark.parametrize("shape,axis,dtype,static,size", CPU_CASES)
def test_cpu_rule_matches_exact_reference(shape, axis, dtype, static, size, form):
    params = canonicalize(size, alpha=1e-2, beta=0.75, bias=1.0, axis=axis, ndim=len(shape))
    func = schedule_primfunc(make(shape, dtype, params, static, form), HOST)
    assert bool(func.attrs["tirx.is_scheduled"])
    rng = np.random.default_rng(len(shape) * 31 + size)
    # magnitudes over several decades so that the window max and the scaling matter
    x = rng.standard_normal(shape) * np.exp2(rng.integers(-8, 9, shape))
    x = x.astype(np_dtype(dtype))
    _, out = run_cpu(func, x)
    worst = check_against_exact(out, reference.lrn_exact(x, params), dtype)
    assert worst >= 0.0


def test_cpu_rule_extreme_float32():
    """Window with the largest and the smallest magnitudes, bias 0: scaling must hold."""
    params = canonicalize(5, alpha=1.0, beta=0.75, bias=0.0, axis=1, ndim=2)
    rng = np.random.default_rng(7)
    x = np.exp2(rng.uniform(-149, 127, (3, 40))) * rng.choice([-1.0, 1.0], (3, 40))
    x = x.astype(np.float32)
    x[0, :3] = [3.0e38, 1.0e-45, -2.0e-38]
    func = schedule_primfunc(make(x.shape, "float32", params, False), HOST)
    _, out = run_cpu(func, x)
    check_against_exact(out, reference.lrn_exact(x, params), "float32")


@pytest.mark.parametrize("form", ["guarded", "scaled"])
@pytest.mark.parametrize("axis", [1, -1])
@pytest.mark.parametrize("static", [True, False])
def test_cpu_loops_parallel_and_vectorized(axis, static, form):
    params = canonicalize(5, axis=axis, ndim=4)
    func = schedule_primfunc(make((2, 8, 6, 32), "float32", params, static, form), SKX)
    kinds = loop_kinds(func)
    assert tirx.ForKind.PARALLEL in kinds
    # the output and every window reduction vectorized (the output may be split in a
    # vector main part and a tail, so match by block name prefix)
    vectorized = vectorized_blocks(func)
    # the guarded form sums each window in the output's own loop
    names = ("lrn",) if form == "guarded" else ("lrn", "lrn_window_sumsq", "lrn_window_max")
    for name in names:
        assert any(v == name or v.startswith(name + "_") for v in vectorized), (name, vectorized)
    blocks = []
    walk(func.body, lambda n: blocks.append(n) if isinstance(n, s_tir.SBlock) else None)
    root = [b for b in blocks if b.name_hint == "root"][0]
    if static and axis == 1 or form == "scaled":
        # no full-size intermediate: every block sits under one parallel loop
        assert isinstance(root.body, tirx.For) and root.body.kind == tirx.ForKind.PARALLEL
    else:
        # the guard of a row or a symbolic plane comes first: guard and output are two
        # parallel loops at the root
        assert isinstance(root.body, tirx.SeqStmt) and len(root.body.seq) == 2
        assert all(s.kind == tirx.ForKind.PARALLEL for s in root.body.seq)


def enclosing_loops(func):
    """For each block name: the (kind, extent) of the loops around it, outermost first."""
    found = {}

    def descend(stmt, loops):
        if isinstance(stmt, tirx.For):
            loops = loops + [(stmt.kind, int(stmt.extent))]
        if isinstance(stmt, s_tir.SBlock):
            found.setdefault(stmt.name_hint, loops)
        for child in _children(stmt):
            descend(child, loops)

    descend(func.body, [])
    return found


@pytest.mark.parametrize("form", ["guarded", "checked"])
def test_cpu_plane_schedule_chunks_large_planes(form):
    """224x224 planes: one parallel task per block (channels x a chunk of rows). The
    guarded form's guard comes first, then the outputs, so the block is read again from
    cache; the checked form has no guard."""
    params = canonicalize(5, ndim=4)
    func = schedule_primfunc(make((2, 16, 224, 224), "float32", params, True, form), SKX)
    channels, rows = compute.guard_block((2, 16, 224, 224), 1, 5)
    assert rows == 32 and 16 % channels == 0
    assert (channels + 4) * rows * 224 <= compute.GUARD_BLOCK
    tasks = 2 * (16 // channels) * (224 // rows)
    loops = enclosing_loops(func)
    if form == "guarded":
        # the guard reads the block's channels and halo, each a plain loop over its chunk
        guard = loops["lrn_range_update"]
        assert guard[0] == (tirx.ForKind.PARALLEL, tasks)
        assert guard[-2:] == [
            (tirx.ForKind.SERIAL, channels + 4),
            (tirx.ForKind.SERIAL, rows * 224),
        ]
    else:
        assert not any(name.startswith("lrn_range") for name in loops)
    # each vector step computes a run of channels, unrolled
    run = cpu_planes.channel_run(channels)
    assert run == min(channels, cpu_planes.PLANE_RUN)
    assert loops["lrn"] == [
        (tirx.ForKind.PARALLEL, tasks),
        (tirx.ForKind.SERIAL, channels // run),
        (tirx.ForKind.SERIAL, rows * 224 // 16),
        (tirx.ForKind.UNROLLED, run),
        (tirx.ForKind.VECTORIZED, 16),
    ]
    # int64 shapes as Relax legalizes them: it compiles, and one block takes the fallback
    x = np.random.default_rng(5).standard_normal((2, 4, 224, 224)).astype(np.float32)
    x[1, 2, 100, 7] = 1e30
    _, out = run_cpu(schedule_primfunc(make(x.shape, "float32", params, True, form), HOST), x)
    check_against_exact(out, reference.lrn_exact(x, params), "float32")


def prefetches(func):
    """``(buffer name, rw)`` of each software prefetch in ``func``, in program order."""
    found = []

    def visit(node):
        call = node.value if isinstance(node, tirx.Evaluate) else None
        if isinstance(call, tvm.ir.expr.Call) and call.op.name == "tirx.prefetch":
            load = call.args[0].args[0]  # address_of(buffer[...])
            found.append((load.source.name, int(call.args[1])))

    walk(func.body, visit)
    return found


# (shape, dtype, input prefetched): the next guard block is prefetched where it is small
# (27x27 planes: 32 + 4 channels are 105 KB), not where it would evict the block in use.
PREFETCH_CASES = [
    ((16, 256, 27, 27), "float32", True),
    ((16, 96, 55, 55), "float32", False),
    ((16, 96, 55, 55), "float16", False),
    ((2, 16, 224, 224), "float32", False),
    ((1, 64, 9, 11), "float32", True),
]


@pytest.mark.parametrize("form", ["guarded", "checked"])
@pytest.mark.parametrize("shape, dtype, ahead", PREFETCH_CASES)
def test_cpu_plane_schedule_prefetches(shape, dtype, ahead, form):
    """Each vector step of the output prefetches the next channel's output row (for
    writing) and, for small blocks, the next block's input; the x86 code has them. The
    guarded form's fallback prefetches too, the checked form's redo of a task does not
    (its fast pass has just read the task)."""
    params = canonicalize(5, ndim=4)
    func = lowered(make(shape, dtype, params, True, form), SKX)
    steps = []  # the output's vector loops

    def visit(node):
        if isinstance(node, tirx.For) and node.kind == tirx.ForKind.VECTORIZED:
            block = node.body.block if isinstance(node.body, s_tir.SBlockRealize) else None
            if block is not None and block.writes[0].source.name == "lrn":
                steps.append(node)

    walk(func.body, visit)
    # the main vector loop and a tail step where the plane has one, in the fast path and
    # in the fallback or redo (see test_cpu_guard_branch_once_per_task and
    # test_cpu_checked_form_speculates)
    assert len(steps) in (2, 4)
    step = [("x", 0)] if ahead else []
    prefetching = len(steps) if form == "guarded" else len(steps) // 2
    assert prefetches(func) == (step + [("lrn", 1)]) * prefetching
    asm = build(func, SKX).mod.inspect_source("asm")
    assert ("prefetcht0" in asm) == ahead and "prefetchw" in asm


def _if_then_else_count(stmt):
    count = [0]

    def on_call(call, mutator):
        count[0] += call.op.name == "prim.if_then_else"
        return mutator.default_mutate(call)

    tvm_ffi.structural_mutate(stmt, [(tvm.ir.expr.Call, on_call)])
    return count[0]


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cpu_guard_branch_once_per_task(dtype):
    """The guarded form's choice between fast path and fallback is one branch per task
    (guard block), around all of the task's outputs: per output, it would cut a run of
    outputs into separate branches, which reload their windows. Each branch holds the
    runs of one path only."""
    params = canonicalize(5, ndim=4)
    func = lowered(make((2, 64, 9, 11), dtype, params, True, "guarded"), SKX)
    task = func.body.block.body
    assert task.kind == tirx.ForKind.PARALLEL
    *guard, choice = task.body.seq
    names = []
    for stmt in guard:
        walk(stmt, lambda n: names.append(n.name_hint) if isinstance(n, s_tir.SBlock) else 0)
    assert names and all(name.startswith("lrn_range") for name in names)
    assert isinstance(choice, tirx.IfThenElse)
    assert "lrn_range" in str(choice.condition)
    assert _if_then_else_count(task) == 0  # no per-output choice is left
    kinds_fast = loop_kinds(choice.then_case)
    assert tirx.ForKind.UNROLLED in kinds_fast and tirx.ForKind.VECTORIZED in kinds_fast
    # the fallback computes in float64, the fast path does not
    assert "float64" in choice.else_case.script() and "float64" not in choice.then_case.script()


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_cpu_checked_form_speculates(dtype):
    """The checked form on the plane schedule: each task computes the fast path for all of
    its outputs, with no per-output choice, while it keeps the largest window sum of each
    lane (an unsigned maximum of the bits, in a buffer on the stack: no workspace call
    per task), then redoes the task per output only if one exceeded the bound."""
    params = canonicalize(5, ndim=4)
    func = lowered(make((2, 64, 9, 11), dtype, params, True, "checked"), SKX)
    task = func.body.block.body
    assert task.kind == tirx.ForKind.PARALLEL
    block = task.body.block
    assert block.name_hint == "lrn_speculate"
    (sums,) = block.alloc_buffers
    assert sums.scope() == "global" and str(sums.dtype) == "uint32"
    assert [int(e) for e in sums.shape] == [16]
    init, fast, redo = block.body.seq
    assert loop_kinds(init) == [tirx.ForKind.VECTORIZED]
    assert _if_then_else_count(fast) == 0
    kinds_fast = loop_kinds(fast)
    assert tirx.ForKind.UNROLLED in kinds_fast and tirx.ForKind.VECTORIZED in kinds_fast
    assert "lrn_window_sum_bits" in fast.script() and "float64" not in fast.script()
    assert isinstance(redo, tirx.IfThenElse) and redo.else_case is None
    assert "lrn_window_sum_bits" in str(redo.condition)
    assert _if_then_else_count(redo.then_case) > 0 and "float64" in redo.then_case.script()
    asm = build(func, SKX).mod.inspect_source("asm")
    assert "vpmaxud" in asm and "AllocWorkspace" not in asm


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_cpu_speculation_gives_the_checked_forms_outputs(dtype):
    """Bit for bit the outputs of the checked form with its per-output choice (the same
    schedule built without LowerPlaneTasks), in tasks taken fast and in tasks redone: a
    huge value, Inf and NaNs of both signs in some, a large value inside the fast range in another
    (float32: 1e15, whose square 1e30 is below the bound, 2**103 for these parameters)."""
    shape, params = (2, 64, 9, 11), canonicalize(5, ndim=4)
    x = np.random.default_rng(9).standard_normal(shape).astype(np.float32)
    x[0, 3, 0, 0] = np.inf
    x[0, 40, 8, 10] = np.nan
    x[1, 60, 3, 3] = -np.nan  # sign bit set: its square's bits compare high unsigned only
    x[1, 20, 4, 4] = -np.inf if dtype != "float32" else -3e25
    x[1, 50, 2, 7] = 6e4 if dtype == "float16" else 1e15
    x = x.astype(np_dtype(dtype))
    func = make(shape, dtype, params, True, "checked")
    per_output = schedule_primfunc(func, HOST)
    _, speculative = run_cpu(per_output, x)
    assert _if_then_else_count(per_output.body) > 0  # each output chooses
    _, want = run_cpu(per_output, x, pipeline="default")  # TVM's pipeline alone
    bits = np.uint16 if dtype != "float32" else np.uint32
    np.testing.assert_array_equal(speculative.view(bits), want.view(bits))
    check_against_exact(speculative, reference.lrn_exact(x, params), dtype)


@pytest.mark.parametrize("form", compute.FORMS)
def test_cpu_plane_schedule_out_of_range_inside_a_task(form):
    """One huge value in the middle of a task (not its first output): the guarded form's
    block branch and the checked form's per-output check must both see it."""
    shape, params = (2, 64, 9, 11), canonicalize(5, ndim=4)
    x = np.random.default_rng(8).standard_normal(shape).astype(np.float32)
    x[1, 37, 4, 5] = 1e30
    func = schedule_primfunc(make(shape, "float32", params, True, form), HOST)
    _, out = run_cpu(func, x)
    exact = reference.lrn_exact(x, params)
    check_against_exact(out, exact, "float32")
    assert np.all(out[1, 35:40, 4, 5] != 0) and np.all(exact[1, 35:40, 4, 5] != 0)


def test_prefetch_distances():
    """In elements: the next task's block for the input (the next block of channels, or
    the next row chunk of the same channels), none beyond the size limit; the next run's
    output rows, or the next task's after the last run of a task."""
    distances = cpu_planes.prefetch_distances
    # (extents, axis, channels, rows, run, halo, itemsize)
    assert distances([16, 256, 27, 27], 1, 32, 27, 8, 4, 4) == (32 * 729, 8 * 729)
    assert distances([16, 256, 27, 27], 1, 32, 27, 8, 4, 8) == (0, 8 * 729)  # 210 KB
    assert distances([8, 96, 224, 224], 1, 12, 32, 6, 4, 4) == (0, 6 * 224 * 224)
    assert distances([2, 16, 224, 224], 1, 8, 32, 8, 4, 4) == (0, 32 * 224)  # one run
    assert distances([2, 16, 224, 224], 1, 2, 4, 2, 2, 2) == (4 * 224, 4 * 224)
    assert distances([1, 64, 9, 11], 1, 32, 9, 8, 4, 4) == (32 * 99, 8 * 99)
    assert distances([1, 64, 56, 56], 1, 8, 56, 8, 4, 4) == (0, 8 * 3136)  # 150 KB


def test_channel_run():
    """Runs of up to 8 channels (a divisor of the block's), up to 4 where the planes are a
    multiple of 1 KB apart and the tensor streams from memory (more than 16 MB)."""
    run = cpu_planes.channel_run
    assert [run(c) for c in (1, 3, 7, 8, 12, 32, 97)] == [1, 3, 7, 8, 6, 8, 1]
    mib = 1 << 20
    assert run(12, 224 * 224 * 4, 154 * mib) == 4  # 8x96x224x224
    assert run(8, 224 * 224 * 4, 6 * mib) == 8  # 2x16x224x224: in cache
    assert run(32, 112 * 112 * 4, 38 * mib) == 4  # 49 KB planes
    assert run(32, 55 * 55 * 4, 18 * mib) == 8  # 16x96x55x55: planes not aligned
    assert run(12, 224 * 224 * 4, None) == 6  # a symbolic batch: size unknown
    # the schedule reads both off the PrimFunc: float16 planes of 224x224 are 98 KB
    params = canonicalize(5, ndim=4)
    func = schedule_primfunc(make((8, 96, 224, 224), "float16", params, True), SKX)
    assert (tirx.ForKind.UNROLLED, 4) in enclosing_loops(func)["lrn"]


@pytest.mark.parametrize("form", ["guarded", "checked"])
@pytest.mark.parametrize("side", ["before", "after"])
def test_guard_blocks_see_their_halo(side, form):
    """A value whose square overflows float32, in the last channel of one block or the
    first of the next: the neighbouring block's windows reach it, so its guard (or its
    speculation's window sums) must see it (else its fast path would give 0 there, not
    the tiny exact value)."""
    shape, params = (1, 64, 9, 11), canonicalize(5, ndim=4)
    channels, _ = compute.guard_block(shape, 1, 5)
    assert 4 <= channels < 64  # blocks with a halo
    x = np.random.default_rng(6).standard_normal(shape).astype(np.float32)
    c = channels - 1 if side == "before" else channels  # the block boundary
    x[0, c, 4, 5] = 1e20
    _, out = run_cpu(schedule_primfunc(make(shape, "float32", params, True, form), HOST), x)
    exact = reference.lrn_exact(x, params)
    check_against_exact(out, exact, "float32")
    neighbours = [c + 1, c + 2] if side == "before" else [c - 1, c - 2]
    assert np.all(out[0, neighbours, 4, 5] != 0) and np.all(exact[0, neighbours, 4, 5] != 0)


def test_guard_block_choice():
    """Blocks divide their extents, fit the cache budget with their halo, and leave
    enough tasks where the channels allow; tiny or prime channel counts stay whole."""
    assert compute.guard_block((1, 96, 55, 55), 1, 5) == (12, 55)  # 8 tasks
    assert compute.guard_block((16, 96, 55, 55), 1, 5) == (32, 55)
    assert compute.guard_block((1, 3, 8, 8), 1, 5) == (3, 8)  # whole: no halo
    assert compute.guard_block((1, 97, 8, 8), 1, 5) == (97, 8)  # prime: whole
    assert compute.guard_block((1, 16, 8), 1, 5) == (16, 8)  # 2 would be mostly halo
    n, c = tirx.Var("n", "int64"), tirx.Var("h", "int64")
    assert compute.guard_block((n, 16, 8, 8), 1, 5) is None
    assert compute.guard_block((1, 16, c, 8), 1, 5) is None


def test_choose_tile():
    assert choose_tile(64, 16) == (16, False)
    assert choose_tile(55, 16) == (55, False)  # <55 x float>: 4 zmm, no tail
    assert choose_tile(13, 8) == (13, False)
    assert choose_tile(1, 16) == (1, False)
    assert choose_tile(67, 16) == (16, True)  # prime beyond 4 registers: tail
    assert choose_tile(tirx.Var("n", "int64"), 8) == (8, True)
    assert vector_bits(SKX) == 512 and vector_bits(HSW) == 256 and vector_bits(A64) == 128


def _asm(target, shape=(1, 16, 8, 48), axis=1, dtype="float32", static=True):
    params = canonicalize(5, axis=axis, ndim=len(shape))
    func = schedule_primfunc(make(shape, dtype, params, static), target)
    return build(func, target).mod.inspect_source("asm")


# libm calls the compute itself makes (pow/exp2, until they are replaced by vector
# forms), TVM's error reporting, and memset (LLVM's form of a loop that zeroes the
# window sums); anything else would be a scalarized helper.
ALLOWED_CALLS = {"powf", "exp2f", "pow", "exp2", "memset"}


def _calls(asm):
    names = set(re.findall(r"\bcall[lq]?\s+\*?([A-Za-z_]\w*)", asm))
    return {n for n in names if "tvm" not in n.lower() and not n.startswith("main_compute")}


# channels-last (-1): the window reductions stay scalar (lane-dependent zero-padding
# guard), but the output block is vectorized since the NaN/Inf tests became bit tests.
@pytest.mark.parametrize("axis", [1, -1])
def test_x86_avx512_asm_is_vectorized(axis):
    asm = _asm(SKX, axis=axis)
    # packed single-precision arithmetic on zmm registers (window sums, scaling, selects)
    assert len(re.findall(r"\bv(?:mul|add|max|fmadd\w*)ps\s[^\n]*zmm", asm)) >= 4
    assert _calls(asm) <= ALLOWED_CALLS, _calls(asm)


def test_x86_avx2_asm_uses_ymm_only():
    asm = _asm(HSW, shape=(2, 8, 5, 24), static=False)
    assert len(re.findall(r"\bv(?:mul|add|max)ps\s[^\n]*ymm", asm)) >= 4
    assert "zmm" not in asm
    assert _calls(asm) <= ALLOWED_CALLS, _calls(asm)


def test_aarch64_object_file(tmp_path):
    params = canonicalize(5, axis=1, ndim=4)
    func = schedule_primfunc(make((1, 16, 8, 32), "float32", params, False), A64)
    ex = build(func, A64)
    asm = ex.mod.inspect_source("asm")
    assert re.search(r"\bfmul\s+v\d+\.4s", asm), "no NEON vector multiply"
    path = tmp_path / "lrn_aarch64.o"
    ex.mod.write_to_file(str(path))
    head = path.read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64


# ---------------------------------------------------------------------------- GPU

CUDA80 = Target({"kind": "cuda", "arch": "sm_80"})
CUDA90 = Target({"kind": "cuda", "arch": "sm_90"})


def _check_all_loops_bound(func):
    """Every loop is a thread binding or nested inside blockIdx.x and threadIdx.x."""
    bad = []

    def descend(stmt, bound):
        if isinstance(stmt, tirx.For):
            if stmt.kind == tirx.ForKind.THREAD_BINDING:
                bound = bound | {stmt.thread_binding.thread_tag}
            elif not {"blockIdx.x", "threadIdx.x"} <= bound:
                bad.append(stmt.loop_var.name)
        for child in _children(stmt):
            descend(child, bound)

    descend(func.body, frozenset())
    assert not bad, f"loops outside the thread bindings: {bad}"


def _children(stmt):
    if isinstance(stmt, tirx.SeqStmt):
        return list(stmt.seq)
    if isinstance(stmt, s_tir.SBlockRealize):
        return [stmt.block]
    if isinstance(stmt, s_tir.SBlock):
        return [stmt.body] + ([stmt.init] if stmt.init is not None else [])
    if isinstance(stmt, tirx.IfThenElse):
        return [stmt.then_case] + ([stmt.else_case] if stmt.else_case is not None else [])
    body = getattr(stmt, "body", None)
    return [body] if isinstance(body, tirx.Stmt) else []


def gpu_func(shape, dtype, params, static, form=None, target=CUDA80):
    """The LRN PrimFunc as a GPU target gets it: built under the target (the checked
    form and the CUDA estimate by default), scheduled by the strategy."""
    with target:
        func = make(shape, dtype, params, static, form)
    return schedule_primfunc(func, target)


@pytest.mark.parametrize("form", ["checked", "scaled"])
@pytest.mark.parametrize("axis", [1, -1])
@pytest.mark.parametrize("static", [True, False])
def test_gpu_rule_binds_every_loop(axis, static, form):
    params = canonicalize(5, axis=axis, ndim=4)
    func = gpu_func((2, 8, 6, 33), "float16", params, static, form)
    kinds = loop_kinds(func)
    assert kinds.count(tirx.ForKind.THREAD_BINDING) == 2
    # a static channel axis: each thread computes a run of outputs along it, unrolled
    assert (tirx.ForKind.UNROLLED in kinds) == (static and axis == 1)
    _check_all_loops_bound(func)
    scopes = []
    walk(
        func.body,
        lambda n: (
            scopes.extend(b.scope() for b in n.alloc_buffers)
            if isinstance(n, s_tir.SBlock)
            else None
        ),
    )
    # the checked form sums each window in the output's code; the scaled form's two
    # window reductions are registers of the thread
    assert scopes == ([] if form == "checked" else ["local", "local"])
    ex = build(func, CUDA80)
    assert len(ex.mod.imports) == 1 and ex.mod.imports[0].kind == "cuda"  # G5: a kernel
    src = ex.mod.imports[0].inspect_source()
    assert "__launch_bounds__(256)" in src


@pytest.mark.parametrize(
    "shape, axis, static, channels, run",
    [
        ((2, 96, 5, 5), 1, True, None, 8),
        ((2, 90, 5, 5), 1, True, None, 6),  # the largest divisor up to 8
        ((2, 97, 5, 5), 1, True, None, 8),  # no divisor over 4: runs of 8, bounds-checked
        ((2, 3, 5, 5), 1, True, None, 3),  # the axis is shorter than a run
        ((2, 1, 5, 5), 1, True, None, 0),  # C = 1
        ((2, 96, 5, 5), 1, False, None, 0),  # symbolic axis
        ((2, 5, 5, 96), 3, True, None, 0),  # channels-last
        ((2, 96, 5, 5), 1, True, 16, 16),
        ((2, 96, 5, 5), 1, True, 1, 0),
    ],
)
def test_gpu_channel_run(shape, axis, static, channels, run):
    params = canonicalize(5, axis=axis, ndim=len(shape))
    func = make(shape, "float32", params, static, "checked")
    sch = s_tir.Schedule(func)
    loops = sch.get_loops(sch.get_sblock("lrn"))
    assert GPULRN(channels=channels).channel_run(func, [sch.get(i).extent for i in loops]) == run


def test_gpu_rule_rejects_a_bad_channel_run():
    with pytest.raises(ValueError, match="channels must be at least 1"):
        GPULRN(channels=0)


@pytest.mark.parametrize("static", [True, False])
def test_gpu_rule_schedules_the_guarded_form_too(static):
    """A PrimFunc of the guarded form (a CPU's for symbolic planes) still compiles for
    CUDA: its guard and output are separate kernels with every loop bound to threads."""
    params = canonicalize(5, axis=1, ndim=4)
    func = schedule_primfunc(make((2, 8, 6, 33), "float32", params, static, "guarded"), CUDA80)
    assert "lrn_range" in block_names(func)
    _check_all_loops_bound(func)
    ex = build(func, CUDA80)
    src = ex.mod.imports[0].inspect_source()
    assert len(set(re.findall(r"__global__ void __launch_bounds__\(256\) (\w+)\(", src))) == 2


def test_gpu_thread_count_follows_target():
    small = Target({"kind": "cuda", "arch": "sm_80", "max_num_threads": 128})
    assert GPULRN().thread_count(small) == 128
    assert GPULRN().thread_count(CUDA80) == 256
    assert GPULRN(threads=512).thread_count(CUDA80) == 512


@pytest.mark.parametrize("kind", ["opencl", "metal"])
def test_gpu_rule_other_source_backends(kind):
    """Their devices need not have float64 (Metal has none): the scaled form."""
    params = canonicalize(5, axis=1, ndim=3)
    func = gpu_func((2, 8, 10), "float32", params, False, target=Target(kind))
    assert "lrn_window_sumsq" in block_names(func)
    ex = build(func, Target(kind))
    assert [m.kind for m in ex.mod.imports] == [kind]


needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc not on PATH")


# The accurate powf of CUDA's math library uses one internal rcp.approx.ftz on a value
# it keeps in the normal range; every other .ftz comes from --use_fast_math.
def _ftz_instructions(ptx):
    ops = re.findall(r"(?<![\w.])([a-z][a-z0-9]*(?:\.[a-z0-9]+)*\.ftz(?:\.[a-z0-9]+)*)", ptx)
    return [op for op in ops if not op.startswith("rcp.approx.ftz")]


@needs_nvcc
@pytest.mark.parametrize("target", [CUDA80, CUDA90], ids=["sm_80", "sm_90"])
def test_cuda_source_compiles_precisely(target):
    params = canonicalize(5, axis=1, ndim=4)
    func = gpu_func((2, 8, 6, 33), "float32", params, False, target=target)
    src = build(func, target).mod.imports[0].inspect_source()
    with target:
        ptx = cuda_math.precise_cuda_compile(src, "ptx", compiler="nvcc").decode()
        cubin = cuda_math.precise_cuda_compile(src, "cubin", compiler="nvcc")
        fast = bytes(tvm.support.nvcc.compile_cuda(src, "ptx", compiler="nvcc")).decode()
    assert ".entry" in ptx and cubin[:4] == b"\x7fELF"
    assert not _ftz_instructions(ptx), sorted(set(_ftz_instructions(ptx)))
    assert "ex2.approx.ftz" not in ptx and "lg2.approx.ftz" not in ptx
    # the fast path's estimate (refined by a Newton step), not flushing subnormals
    assert "rsqrt.approx.f32" in ptx
    # the control: TVM's default flags do flush
    assert len(_ftz_instructions(fast)) > 10


def _float64_bits(value: float) -> str:
    return str(int(np.array(value, dtype=np.float64).view(np.int64)))


@pytest.mark.parametrize("dtype, form", [("float64", None), ("float32", "checked")])
def test_cuda_float64_constants_are_exact(dtype, form):
    """TVM's CUDA codegen prints float64 constants in fixed notation with 15 decimals, so
    1e-30 became 0 (a GPU contract run failed float64 with bias 0 and subnormal inputs:
    the subnormal threshold 2**-1022 was 0). The compute writes every non-integral
    float64 constant as its bits: every float64 literal left in the source is integral."""
    params = canonicalize(5, alpha=1e-30, beta=0.75, bias=1e-20, axis=1, ndim=4)
    func = gpu_func((2, 8, 6, 33), dtype, params, True, form)
    src = build(func, CUDA80).mod.imports[0].inspect_source()
    kernel = re.sub(r"/\*.*?\*/", "", src[src.index("__global__") :])  # float32 hex: comments
    literals = re.findall(r"(?<![\w.])\d+\.\d+(?:e[-+]?\d+)?(?![\w.])", kernel)
    assert literals and all(float(v).is_integer() for v in literals), sorted(set(literals))
    # the subnormal threshold of the float64 compute; alpha in the float64 fallback
    tiny = 2.0**-1022 if dtype == "float64" else params.alpha
    assert f"(int64_t){_float64_bits(tiny)}" in kernel


@needs_nvcc
@pytest.mark.parametrize("channels", [1, 8])
def test_cuda_runs_load_each_input_once(channels):
    """A thread's run of outputs along the channel axis loads each input of its windows
    once (the compiler keeps them in registers), not ``size`` times; only the float64
    fallback may load an output's own input again."""
    params = canonicalize(5, axis=1, ndim=4)
    with CUDA90:
        func = make((2, 16, 6, 33), "float32", params, True, "checked")
    func = GPULRN(channels=channels).apply(func, CUDA90, False).mod["main"]
    src = build(func, CUDA90).mod.imports[0].inspect_source()
    with CUDA90:
        ptx = cuda_math.precise_cuda_compile(src, "ptx", compiler="nvcc").decode()
    window_inputs = channels + params.size - 1
    loads = len(re.findall(r"\bld\.global", ptx))
    assert window_inputs <= loads <= window_inputs + channels
    assert len(re.findall(r"\bst\.global", ptx)) == channels


@needs_nvcc
def test_precise_cuda_math_replaces_and_restores_the_callback():
    import tvm.support.nvcc  # noqa: F401  (registers the default callback)

    name = "tvm_callback_cuda_compile"
    before = tvm_ffi.get_global_func(name)
    with cuda_math.precise_cuda_math():
        inside = tvm_ffi.get_global_func(name)
        assert not inside.same_as(before)
        with cuda_math.precise_cuda_math():  # nesting keeps it installed
            pass
        assert tvm_ffi.get_global_func(name).same_as(inside)
        src = 'extern "C" __global__ void k(float* a) { a[threadIdx.x] *= 0.5f; }'
        with CUDA80:
            fatbin = inside(src)
        assert len(bytes(fatbin)) > 0
    assert tvm_ffi.get_global_func(name).same_as(before)


# ---------------------------------------------------------------------------- selection


def _not_lrn():
    a = te.placeholder((16,), "float32", name="a")
    return te.create_prim_func([a, te.compute((16,), lambda i: a[i] * 2.0, name="b")])


def test_rules_ignore_other_primfuncs_and_targets():
    other = _not_lrn()
    assert not has_lrn_blocks(other) and not op.is_lrn_primfunc(other)
    assert CPULRN().apply(other, HOST, False) is None
    assert GPULRN().apply(other, CUDA80, False) is None
    assert schedule_primfunc(other, HOST).same_as(other)
    lrn = op.lrn_primfunc([None] * 2, "float32", canonicalize(3, ndim=2))
    assert has_lrn_blocks(lrn) and op.is_lrn_primfunc(lrn)
    assert CPULRN().apply(lrn, CUDA80, False) is None
    assert GPULRN().apply(lrn, HOST, False) is None
    c_target = Target("c")  # neither llvm nor a GPU: nothing applies
    assert schedule_primfunc(lrn, c_target).same_as(lrn)
    # LRN detected by its blocks alone (attrs stripped), and beta == 0 (no reductions)
    bare = (
        lrn.without_attr("tvm_lrn.axis")
        .without_attr("tvm_lrn.lo")
        .without_attr("tvm_lrn.hi")
        .without_attr("tvm_lrn.alpha")
        .without_attr("tvm_lrn.beta")
        .without_attr("tvm_lrn.bias")
    )
    assert not op.is_lrn_primfunc(bare) and has_lrn_blocks(bare)
    assert CPULRN().apply(bare, HOST, False) is not None
    identity = op.lrn_primfunc([None] * 3, "float32", canonicalize(3, beta=0.0, ndim=3))
    assert GPULRN().apply(identity, CUDA80, False) is not None


def test_user_rule_is_honored():
    lrn = op.lrn_primfunc([None] * 2, "float32", canonicalize(3, ndim=2))
    seen = []

    def my_rule(func, target):
        seen.append(target.kind.name)
        sch = s_tir.Schedule(func)
        sch.annotate(sch.get_loops(sch.get_sblock("lrn"))[0], "my_rule", 1)
        return sch

    out = schedule_primfunc(lrn, HOST, rule=my_rule)
    assert seen == ["llvm"] and "my_rule" in out.script()
    assert bool(out.attrs["tirx.is_scheduled"])

    @dl.ScheduleRule.from_callable("Nothing")
    def nothing(func, target, tunable):
        return None

    assert schedule_primfunc(lrn, HOST, rule=nothing).same_as(lrn)
    with pytest.raises(TypeError, match="rule"):
        schedule_primfunc(lrn, HOST, rule=42)


def test_rules_work_in_dlight_apply_default_schedule():
    lrn = op.lrn_primfunc((1, 8, 4, 4), "float32", canonicalize(3, ndim=4))
    mod = tvm.IRModule({"main": lrn})
    with HOST:
        mod = dl.ApplyDefaultSchedule(CPULRN())(mod)
    assert bool(mod["main"].attrs["tirx.is_scheduled"])
    x = np.random.default_rng(1).standard_normal((1, 8, 4, 4)).astype("float32")
    _, out = run_cpu(mod, x)
    check_against_exact(out, reference.lrn_exact(x, canonicalize(3, ndim=4)), "float32")


def test_already_scheduled_is_left_alone():
    lrn = op.lrn_primfunc([None] * 2, "float32", canonicalize(3, ndim=2)).with_attr(
        "tirx.is_scheduled", True
    )
    assert schedule_primfunc(lrn, HOST).same_as(lrn)


@pytest.mark.parametrize(
    "shape, size",
    [((1,), 8), ((2,), 7), ((3,), 11), ((2, 1), 5), ((2, 2), 9), ((2, 5, 1), 8), ((3, 4), 3)],
)
def test_channels_last_symbolic_kernel_stays_in_bounds(shape, size):
    """A window longer than the last (tiled) axis once made the tile loop run past the end.

    The output is a view into a larger buffer filled with a sentinel: every element
    outside the view must be untouched, and the view must hold the reference."""
    x = torch.randn(shape, dtype=torch.float32) * 4
    pad, n = 64, x.numel()
    buf = torch.full((n + 2 * pad,), 7.0)
    out = buf[pad : pad + n].view(shape)
    params = canonicalize(size, 1e-2, 0.75, 1.0, axis=-1, ndim=len(shape))
    func = schedule_primfunc(op.lrn_primfunc([None] * len(shape), "float32", params), HOST)
    build(func, HOST)(tvm.runtime.from_dlpack(x), tvm.runtime.from_dlpack(out))
    assert (buf[:pad] == 7).all() and (buf[pad + n :] == 7).all()
    np.testing.assert_allclose(
        out.numpy(), reference.lrn(x.numpy(), size, 1e-2, 0.75, 1.0, -1), rtol=1e-6
    )


@needs_nvcc
def test_eager_cuda_model_installs_the_precise_callback():
    """tvm_lrn.run's model for CUDA: its kernels will be JIT-compiled on the GPU without
    fast math (the callback is installed before the VM loads them)."""
    import tvm.support.nvcc  # noqa: F401  (registers the default callback)

    from tvm_lrn import eager

    name = "tvm_callback_cuda_compile"
    default = tvm_ffi.get_global_func(name)
    params = canonicalize(5, ndim=4)
    model = eager.model((2, 8, 4, 4), "float32", params, str(CUDA80), op.form_for(CUDA80))
    assert model.device.dlpack_device_type() == tvm.cuda().dlpack_device_type()
    try:
        try:
            model.vm  # noqa: B018  (loading needs a GPU; the callback comes first)
        except Exception:  # noqa: BLE001, S110  (no GPU here: loading fails after it)
            pass
        assert not tvm_ffi.get_global_func(name).same_as(default)
    finally:
        cuda_math.set_precise_cuda_math(False)
    assert tvm_ffi.get_global_func(name).same_as(default)


_GUARD_PAGE_SCRIPT = r"""
import ctypes, mmap, sys
import numpy as np, torch, tvm
from tvm_lrn import canonicalize, compute, op
from tvm_lrn.strategy import schedule_primfunc

libc = ctypes.CDLL(None)
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
PAGE = mmap.PAGESIZE


def fenced(shape):
    # float32 array filling whole pages, with an inaccessible page on each side
    nbytes = int(np.prod(shape)) * 4
    assert nbytes % PAGE == 0
    buf = mmap.mmap(-1, nbytes + 2 * PAGE)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    for at in (addr, addr + PAGE + nbytes):
        assert libc.mprotect(at, PAGE, 0) == 0  # PROT_NONE
    arr = np.frombuffer(buf, np.float32, int(np.prod(shape)), PAGE).reshape(shape)
    return buf, arr


host = tvm.target.Target.from_device("cpu")
for shape, axis in [((2, 8, 16, 16), 1), ((2, 16, 16, 8), 3)]:
    for form in ("guarded", "checked", "scaled"):
        for static in (True, False):
            params = canonicalize(5, axis=axis, ndim=4)
            dims = shape if static else [None] * 4
            func = schedule_primfunc(op.lrn_primfunc(dims, "float32", params, form=form), host)
            kernel = tvm.compile(func, target=host, tir_pipeline="tvm_lrn")
            _keep_x, x_np = fenced(shape)
            _keep_y, y_np = fenced(shape)
            x_np[...] = np.random.default_rng(0).standard_normal(shape)
            kernel(tvm.runtime.from_dlpack(torch.from_numpy(x_np)),
                   tvm.runtime.from_dlpack(torch.from_numpy(y_np)))
            assert np.isfinite(y_np).all()
print("in bounds")
"""


def test_window_loads_stay_in_bounds_at_the_padding(tmp_path):
    """Input and output sit between inaccessible pages: a window load (or store) past
    either end of the tensor kills the child process. TVM's simplifier once dropped the
    clamp of the window index inside a select, and the padding planes were read from
    before the buffer (a crash only where that memory happened to be unmapped)."""
    script = tmp_path / "fenced.py"
    script.write_text(_GUARD_PAGE_SCRIPT)
    env = {**os.environ, "TVM_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=600
    )
    assert done.returncode == 0 and "in bounds" in done.stdout, done.stderr[-2000:]
