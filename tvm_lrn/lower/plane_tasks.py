"""The CPU plane schedule's task rewrite, as a TIR lowering pass.

The CPU rule (:class:`tvm_lrn.strategy.cpu.CPULRN`) marks each task loop of its plane
schedule with :data:`PLANE_TASK` (a schedule primitive, so every trace of the schedule,
a tuning record included, carries it). :class:`LowerPlaneTasks` then puts in what no
schedule primitive can express, before TVM's own lowering (it runs first in
:data:`tvm_lrn.lower.TIR_PIPELINE`):

- the checked form's task is computed speculatively: the fast path for all of its
  outputs while the largest window sum of each vector lane is kept, then the task again,
  each output choosing by its own sum, only where one failed the check
  (:func:`_speculative`);
- the guarded form's choice between fast path and fallback becomes one branch around
  the task's outputs instead of one per output (per output, a run of outputs would be
  cut into branches that each reload their windows: LLVM does not unswitch loops this
  large);
- software prefetches at the top of each vector step of the output, at the distances
  the annotation holds. One vector step is a few dozen instructions around one new
  input line, so the reorder buffer holds about ten steps and as many outstanding
  misses: too few to stream from DRAM. A prefetch retires at once.

A PrimFunc without the annotation is returned unchanged, so the pass is safe on every
function of a module.
"""

from __future__ import annotations

import numpy as np
import tvm
import tvm_ffi
from tvm import s_tir, sym, tirx

from ..strategy.common import GUARDS, OUTPUT, walk
from .annotations import PLANE_TASK

__all__ = ["LowerPlaneTasks", "lower_plane_tasks"]

#: ``locality`` of the prefetches (``llvm.prefetch``: 3 keeps the line in every cache
#: level, 0 marks it as streaming).
PREFETCH_LOCALITY = 3


def _prefetch(buffer, flat, total, write: bool):
    """``llvm.prefetch`` of element ``min(flat, total - 1)`` of ``buffer`` (row-major).

    The element is addressed through the last index alone: only its flat position
    matters, and the clamp keeps the address inside the buffer (x86 prefetches never
    fault, but LLVM computes the address ``inbounds``).
    """
    index = [tirx.const(0, str(flat.ty.dtype))] * (len(buffer.shape) - 1) + [
        tirx.min(flat, total - 1)
    ]
    address = tirx.address_of(buffer[tuple(index)])
    rw = 1 if write else 0
    return tirx.Evaluate(
        tirx.call_intrin("void", "tirx.prefetch", address, rw, PREFETCH_LOCALITY, 1)
    )


def _is_output_step(node, out) -> bool:
    """Whether ``node`` is a loop whose body is the vector loop of an output block."""
    lanes = getattr(node, "body", None)
    return (
        isinstance(node, tirx.For)
        and isinstance(lanes, tirx.For)
        and lanes.kind == tirx.ForKind.VECTORIZED
        and _is_output_realize(lanes.body, out)
    )


def _is_output_realize(node, out) -> bool:
    """Whether ``node`` realizes a block that writes the output ``out``."""
    return isinstance(node, s_tir.SBlockRealize) and _writes(node.block, out)


def _writes(block, buffer) -> bool:
    """Whether ``block`` writes ``buffer`` (opaque blocks declare no writes)."""
    return any(region.source.same_as(buffer) for region in block.writes)


def _with_prefetches(loop, data, out, ahead_in: int, ahead_out: int):
    """``loop`` with software prefetches at the top of each vector step of the output:
    the input ``ahead_in`` and the output ``ahead_out`` elements beyond the step's first
    lane (flat row-major positions; 0: none)."""
    shape = list(out.shape)
    index_dtype = str(shape[-1].ty.dtype)
    strides, stride = [], tirx.const(1, index_dtype)
    for extent in reversed(shape):
        strides.insert(0, stride)
        stride = stride * extent

    def on_for(node, mutator):
        if not _is_output_step(node, out):
            return mutator.default_mutate(node)
        lanes = node.body
        # The first lane's element: the block's bindings with the lane variable at its start.
        analyzer = sym.Analyzer()
        analyzer.bind(lanes.loop_var, lanes.min)
        first = [analyzer.simplify(v) for v in lanes.body.iter_values]
        flat = sum(
            (i * st for i, st in zip(first, strides, strict=True)), tirx.const(0, index_dtype)
        )
        prefetches = []
        if ahead_in:
            prefetches.append(_prefetch(data, flat + ahead_in, stride, write=False))
        if ahead_out:
            prefetches.append(_prefetch(out, flat + ahead_out, stride, write=True))
        body = tirx.SeqStmt([*prefetches, lanes])
        return tirx.For(
            node.loop_var,
            node.min,
            node.extent,
            node.kind,
            body,
            node.thread_binding,
            node.annotations,
        )

    return tvm_ffi.structural_mutate(loop, [(tirx.For, on_for)])


_IF_THEN_ELSE = tvm.ir.Op.get("prim.if_then_else")


def _guard_branch(stmt, out, which: int):
    """``stmt`` with the output's choice ``if_then_else(check, fast, fallback)`` (the
    guarded form's or the checked form's) replaced by its fast (``which=1``) or fallback
    (``which=2``) value."""

    def on_store(node, mutator):
        if not node.buffer.same_as(out):
            return mutator.default_mutate(node)

        def on_call(call, inner):
            if call.op.same_as(_IF_THEN_ELSE):
                return call.args[which]
            return inner.default_mutate(call)

        return tvm_ffi.structural_mutate(node, [(tvm.ir.expr.Call, on_call)])

    return tvm_ffi.structural_mutate(stmt, [(tirx.BufferStore, on_store)])


def _task_condition(loop, out):
    """The range guard's condition of the outputs under ``loop``, in terms of the loops
    above it: that of its first output (None if it has none). The plane schedule makes
    each task one guard block, so every output of the task has this same condition."""
    realize = _first_output(loop, out)
    choice = None if realize is None else _output_choice(realize.block)
    if choice is None:
        return None
    at_start = sym.Analyzer()
    walk(loop, lambda n: at_start.bind(n.loop_var, n.min) if isinstance(n, tirx.For) else None)
    bindings = sym.Analyzer()
    for iv, bound in zip(realize.block.iter_vars, realize.iter_values, strict=True):
        bindings.bind(iv.var, at_start.simplify(bound))
    return bindings.simplify(choice.args[0])


def _first_output(stmt, out):
    """The first realize of the output block under ``stmt``, or None."""
    found = []
    walk(stmt, lambda n: found.append(n) if _is_output_realize(n, out) else None)
    return found[0] if found else None


def _output_choice(block):
    """The output block's ``if_then_else(check, fast, fallback)`` call, or None."""
    stores = []
    walk(block.body, lambda n: stores.append(n) if isinstance(n, tirx.BufferStore) else None)
    value = stores[0].value if stores else None
    while isinstance(value, tirx.Cast):  # the output's dtype (float16, bfloat16)
        value = value.value
    if isinstance(value, tvm.ir.expr.Call) and value.op.same_as(_IF_THEN_ELSE):
        return value
    return None


def _checked_bound(outputs, out):
    """The ``bound`` of the checked form's per-output choice ``if_then_else(s <= bound,
    fast, fallback)`` of the outputs under ``outputs``, or None (another form)."""
    realize = _first_output(outputs, out)
    choice = None if realize is None else _output_choice(realize.block)
    check = None if choice is None else choice.args[0]
    if not isinstance(check, tirx.LE) or not isinstance(check.b, tirx.FloatImm):
        return None
    return check.b


def _tracking_sums(stmt, out, sums, lanes: int):
    """``stmt`` with each output's fast value stored, and its window sum's bits folded
    into ``sums`` by an unsigned maximum at the lane of its vector loop (0 outside one).
    Unsigned, so that a NaN with its sign bit set also compares above every bound."""
    bits = f"uint{sums.dtype.bits}"

    def tracked(realize, lane):
        block = realize.block
        check = _output_choice(block).args[0]
        v_lane = tirx.Var("v_lane", lane.ty.dtype if isinstance(lane, tirx.Var) else "int32")
        index = [v_lane]
        acc = tirx.BufferLoad(sums, index)
        update = tirx.BufferStore(sums, tirx.max(acc, tirx.reinterpret(bits, check.a)), index)
        region = tirx.BufferRegion(sums, [tvm.ir.Range.from_min_extent(v_lane, 1)])
        lane_iv = tirx.IterVar(
            tvm.ir.Range.from_min_extent(
                tirx.const(0, v_lane.ty.dtype), tirx.const(lanes, v_lane.ty.dtype)
            ),
            v_lane,
            tirx.IterVar.DataPar,
        )
        new_block = s_tir.SBlock(
            [*block.iter_vars, lane_iv],
            [*block.reads, region],
            [*block.writes, region],
            block.name_hint,
            tirx.SeqStmt([_guard_branch(block.body, out, 1), update]),
            block.init,
            block.alloc_buffers,
            block.match_buffers,
            block.annotations,
        )
        lane_value = lane if isinstance(lane, tirx.Var) else tirx.const(0, v_lane.ty.dtype)
        return s_tir.SBlockRealize([*realize.iter_values, lane_value], realize.predicate, new_block)

    def on_for(node, mutator):
        if node.kind == tirx.ForKind.VECTORIZED and _is_output_realize(node.body, out):
            return tirx.For(
                node.loop_var,
                node.min,
                node.extent,
                node.kind,
                tracked(node.body, node.loop_var),
                node.thread_binding,
                node.annotations,
            )
        return mutator.default_mutate(node)

    def on_realize(node, mutator):
        if _is_output_realize(node, out):
            return tracked(node, None)
        return mutator.default_mutate(node)

    return tvm_ffi.structural_mutate(stmt, [(tirx.For, on_for), (s_tir.SBlockRealize, on_realize)])


def _speculative(outputs, fast_outputs, out, bound):
    """One task of the checked form, speculatively: ``fast_outputs`` (``outputs`` as
    they are scheduled, with prefetches) compute the fast path for every output and keep
    the largest window sum of each vector lane; if one exceeds ``bound``, ``outputs``
    run again, each output choosing by its own sum. The outputs equal the checked
    form's, with no branch per output.

    The lanes' largest sums are compared as unsigned bits: for sums of squares (+0 to
    +Inf) that orders them as numbers, and a NaN of either sign compares above every
    bound. Their buffer (one vector) is in the default (global) scope, which TVM's
    lowering puts on the stack, so LLVM keeps it in a register; a ``local`` one would be
    a workspace allocated and freed by a call for each task.
    """
    lanes = _vector_lanes(outputs)
    sum_dtype = bound.ty.dtype
    bits = tvm.runtime.DataType(sum_dtype).bits
    sums = tirx.decl_buffer((lanes,), f"uint{bits}", name="lrn_window_sum_bits")
    lane = tirx.Var("lane", "int32")
    init = tirx.For(
        lane,
        0,
        lanes,
        tirx.ForKind.VECTORIZED,
        tirx.BufferStore(sums, tirx.const(0, sums.dtype), [lane]),
    )
    fast = _tracking_sums(fast_outputs, out, sums, lanes)
    largest = tirx.BufferLoad(sums, [tirx.const(0, "int32")])
    for i in range(1, lanes):
        largest = tirx.max(largest, tirx.BufferLoad(sums, [tirx.const(i, "int32")]))
    limit = int(np.array(bound.value, dtype=sum_dtype).view(f"uint{bits}"))
    redo = tirx.IfThenElse(largest > tirx.const(limit, sums.dtype), outputs, None)
    block = s_tir.SBlock(
        [], [], [], "lrn_speculate", tirx.SeqStmt([init, fast, redo]), alloc_buffers=[sums]
    )
    return s_tir.SBlockRealize([], True, block)


def _vector_lanes(stmt) -> int:
    """The longest vector loop under ``stmt`` (1 if none)."""
    extents = [1]
    walk(
        stmt,
        lambda n: (
            extents.append(int(n.extent))
            if isinstance(n, tirx.For) and n.kind == tirx.ForKind.VECTORIZED
            else None
        ),
    )
    return max(extents)


def _rewrite_task(task_loop, guarded: bool, data, out):
    """The task loop ``task_loop`` with its rewrite (the module docstring) and without
    the :data:`PLANE_TASK` annotation.

    Every output of a task lies in one guard block, so the guarded form's choice is made
    once around the task's output loops; the checked form's task is speculative
    (:func:`_speculative`). Both get the prefetches (:func:`_with_prefetches`).
    """
    distances = [int(v) for v in task_loop.annotations[PLANE_TASK]]
    body = task_loop.body
    head, outputs = (
        (list(body.seq[:-1]), body.seq[-1]) if isinstance(body, tirx.SeqStmt) else ([], body)
    )
    if guarded:
        condition = _task_condition(outputs, out)
        if condition is not None:
            fast, fallback = (_guard_branch(outputs, out, which) for which in (1, 2))
            outputs = tirx.IfThenElse(condition, fast, fallback)
        outputs = _with_prefetches(outputs, data, out, *distances)
    else:
        bound = _checked_bound(outputs, out)
        fast = _with_prefetches(outputs, data, out, *distances)
        outputs = fast if bound is None else _speculative(outputs, fast, out, bound)
    new_body = tirx.SeqStmt([*head, outputs]) if head else outputs
    return tirx.For(
        task_loop.loop_var,
        task_loop.min,
        task_loop.extent,
        task_loop.kind,
        new_body,
        task_loop.thread_binding,
        {k: v for k, v in task_loop.annotations.items() if k != PLANE_TASK},
    )


def _io_buffers(blocks):
    """``(data, out)``: the LRN output buffer, and the input that its blocks read and no
    block writes."""
    written = [region.source for block in blocks for region in block.writes]
    outputs = [b for b in blocks if any(r.source.name == OUTPUT for r in b.writes)]
    out = next(r.source for r in outputs[0].writes if r.source.name == OUTPUT)
    data = next(
        r.source for b in outputs for r in b.reads if not any(r.source.same_as(w) for w in written)
    )
    return data, out


def lower_plane_tasks(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """``func`` with every loop annotated :data:`PLANE_TASK` rewritten (module docstring).

    Parameters
    ----------
    func : tvm.tirx.PrimFunc
        A scheduled PrimFunc, before TVM's lowering (its blocks still in place).

    Returns
    -------
    tvm.tirx.PrimFunc
        ``func`` itself when it has no annotated loop.
    """
    annotated, blocks = [], []

    def visit(node):
        if isinstance(node, tirx.For) and PLANE_TASK in node.annotations:
            annotated.append(node)
        elif isinstance(node, s_tir.SBlock):
            blocks.append(node)

    walk(func.body, visit)
    if not annotated:
        return func
    data, out = _io_buffers(blocks)
    guarded = any(b.name_hint.startswith(GUARDS[0]) for b in blocks)

    def on_for(node, mutator):
        if PLANE_TASK in node.annotations:
            return _rewrite_task(node, guarded, data, out)
        return mutator.default_mutate(node)

    return func.with_body(tvm_ffi.structural_mutate(func.body, [(tirx.For, on_for)]))


@tvm.tirx.transform.prim_func_pass(opt_level=0, name="tvm_lrn.LowerPlaneTasks")
class LowerPlaneTasks:
    """The TIR pass of :func:`lower_plane_tasks`, for every PrimFunc of a module."""

    def transform_function(self, func, _mod, _ctx):
        """Rewrite one PrimFunc (see :func:`lower_plane_tasks`)."""
        return lower_plane_tasks(func)
