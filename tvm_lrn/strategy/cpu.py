"""CPU (llvm) schedule rule for the LRN PrimFunc.

Plane schedule (static planes after the LRN axis, e.g. H*W in NCHW: every model's
case; CPUs get the checked form there, see :func:`tvm_lrn.compute.form_for`)::

    parallel for (n, channel block, row chunk) fused:  # one task per block
      (guarded form: for c in block + halo: for chunk: max |x|, then one branch)
      for run of channels in block:
        (scaled form: window max and sums of the chunk, each a loop like the output's)
        for step:
          for c in run (unrolled):                      # the run shares window loads
            prefetch (next block's input, next run's output)
            vector: fast path                           # checked form: and the
                                                        # lanes' largest window sum
        (scalar tail of the last step)
      checked form: if a window sum failed the check, the task again, each output
      choosing between fast path and float64 fallback by its own sum

The blocks are those of :func:`tvm_lrn.compute.guard_block`. The checked form takes
the fast path for a whole task speculatively and redoes the rare task whose largest
window sum fails the check: no pass over the input precedes the outputs. (The guarded
form reads each block once for its guard and once more, from cache, for the outputs,
then takes one branch per task.) A run of up to :data:`PLANE_RUN` channels per vector
step (the scaled form: one) loads the ``run + size - 1`` window rows once for all of
its outputs. The speculation, the guarded form's branch and the software prefetches
are statements no schedule primitive adds; :func:`_rewrite_task` puts them in through
the schedule state. Each reduction and the output
are one loop over the flattened chunk, cut into vectors of ``_PLANE_REGISTERS``
registers; the window loop sits between the steps and the lanes, so each window step is
one vector operation. The vector loop is partitioned at its last full step rather than
split with a predicate (TVM scalarizes a predicated vector loop, and LLVM then fails to
vectorize loops that branch between the fast path and the fallback). This avoids the
odd row lengths of NCHW images (55, 27).

Row schedule (symbolic planes, channels-last, rank 1)::

    parallel for (d0 .. d_{n-2}) fused:          # one task per row of the contiguous dim
      for t in tiles of d_{n-1}:                 # VL elements per tile
        for r in window: vectorized for VL: max  # the window max of the VL outputs
        for r in window: vectorized for VL: sum  # the scaled sum of squares
        vectorized for VL: output                # reads both from a VL-element buffer

The scaled form's reductions are computed at the tile loop into VL-element buffers.
The guarded form needs the guard of a row or plane before its first output, so its
guard is a loop nest of its own at the root (parallel; its innermost loop runs along
contiguous memory and LLVM vectorizes it). When the LRN axis is the last one
(channels-last), the tile runs along the LRN axis itself: the window loads become
unaligned vector loads, with the zero padding as a lane-wise bit mask.

Tails: a static contiguous extent is tiled by a divisor of it (LLVM splits vectors of
any length into registers, e.g. 55 = 5 x 11 gives ``<11 x float>``), so no tail exists.
A symbolic extent is tiled by one register width and the tile loop gets
``pragma_loop_partition_hint``: TVM's LoopPartition pass then emits a predicate-free
vectorized main loop and a scalar tail. (The hint does not survive ``NarrowDataType``
on static shapes in TVM 0.27, which is why static shapes use divisors instead.)
"""

from __future__ import annotations

import math

import numpy as np
import tvm
import tvm_ffi
from tvm import s_tir, sym, tirx
from tvm.target import Target, codegen

from ..compute import _static, chunk_rows, guard_block, plane_chunk
from .common import GUARDS, OUTPUT, LRNScheduleRule, split_loops, walk

__all__ = [
    "CPULRN",
    "vector_bits",
    "choose_tile",
    "channel_run",
    "rewrite_plane_tasks",
    "PLANE_TASK",
]

# A static extent is tiled by a divisor of at most this many registers: longer vectors
# mostly add register pressure and code size.
_MAX_REGISTERS_PER_TILE = 4


def vector_bits(target: Target) -> int:
    """Width in bits of one SIMD register of an llvm ``target``.

    Parameters
    ----------
    target : tvm.target.Target
        An llvm target; its ``mtriple``/``mcpu``/``mattr`` decide.

    Returns
    -------
    int
        512 with AVX-512F, 256 with AVX/AVX2, 128 otherwise (SSE2, NEON, unknown CPUs).
    """
    triple = str(target.attrs.get("mtriple", ""))
    if triple.startswith(("aarch64", "arm")):
        return 128  # NEON; SVE code would need scalable vectors, not used here
    try:
        if codegen.llvm_cpu_has_features(["avx512f"], target):
            return 512
        if codegen.llvm_cpu_has_features(["avx"], target):
            return 256
    except Exception:  # noqa: BLE001  (an LLVM that does not know the CPU: stay safe)
        pass
    return 128


def choose_tile(extent, lanes: int) -> tuple[int, bool]:
    """Tile length along the contiguous dimension and whether a tail is left over.

    Parameters
    ----------
    extent : int or PrimExpr
        Extent of the innermost loop; a symbolic one is tiled by ``lanes``.
    lanes : int
        Elements of the compute dtype per SIMD register.

    Returns
    -------
    (int, bool)
        ``(tile, has_tail)``. For a static extent the tile is the divisor of it that
        fills registers best (``has_tail`` False); an extent with no useful divisor
        (a large prime) is tiled by ``lanes`` with a tail.
    """
    if not isinstance(extent, int):
        if isinstance(extent, tirx.IntImm):
            extent = int(extent.value)
        else:
            return lanes, True
    if extent % lanes == 0:
        return lanes, False
    best, best_key = 1, (0.0, 0)
    for d in range(2, min(extent, _MAX_REGISTERS_PER_TILE * lanes) + 1):
        if extent % d:
            continue
        registers = -(-d // lanes)
        fill = d / (registers * lanes)
        key = (fill * min(d, lanes), d)  # useful lanes per register, then longer tiles
        if key > best_key:
            best, best_key = d, key
    if best == 1 and extent > _MAX_REGISTERS_PER_TILE * lanes:
        return lanes, True
    return best, False


def _window_along_tiles(func: tirx.PrimFunc, ndim: int) -> bool:
    """Whether the LRN axis is the innermost (tiled) one, i.e. channels-last.

    TVM 0.27's LoopPartition then mis-derives the bounds of the partitioned tile loop
    from the window's zero-padding conditions when the window is longer than the axis
    (the main loop runs past the end and writes out of bounds), so such loops keep the
    predicated tail instead of the partition hint.
    """
    axis = func.attrs.get("tvm_lrn.axis")
    return axis is None or int(axis) % ndim == ndim - 1


#: Registers per vector step of the plane schedule.
_PLANE_REGISTERS = 1
#: Longest run of channels one vector step of the plane schedule computes (see
#: :func:`channel_run`): a run of 8 loads 12 window vectors for 8 outputs instead of
#: 40, and still fits the 32 vector registers of AVX-512.
PLANE_RUN = 8


def _static_plane(func: tirx.PrimFunc, loops_extents) -> int | None:
    """Elements of the plane chunk after the LRN axis (see :func:`chunk_rows`) that one
    step of the plane schedule covers, if the plane and the LRN axis are static, the
    plane non-empty and its chunk small enough to stay in cache (:func:`plane_chunk`)."""
    axis = func.attrs.get("tvm_lrn.axis")
    return None if axis is None else plane_chunk(loops_extents, int(axis))


def _schedule_guards_at(sch: s_tir.Schedule, blocks, loop) -> None:
    """The range guard under ``loop``: a loop over the block's channels around one
    plain loop over its plane chunk (rows fused), which reads contiguous memory, so
    LLVM's loop vectorizer turns the integer maximum into vector code.
    """
    for block in blocks.guards:
        sch.compute_at(block, loop, preserve_unit_loops=True)
        n_reduce = sum(iv.iter_type == tirx.IterVar.CommReduce for iv in sch.get(block).iter_vars)
        reduce = sch.get_loops(block)[-n_reduce:]
        if len(reduce) > 2:
            sch.fuse(*reduce[1:])
        # The init before the loops: inside them, its condition would keep LLVM from
        # vectorizing the maximum.
        sch.decompose_reduction(block, sch.get_loops(block)[-min(n_reduce, 2)])


def _schedule_guard_at_root(sch: s_tir.Schedule, block) -> None:
    """The guard of a row or a symbolic plane at the root: parallel over its flags, the
    reduction loops left nested (the innermost runs along contiguous memory, with no
    division by a symbolic extent) and its init hoisted, so that LLVM vectorizes it."""
    spatial, reduce = split_loops(sch, block)
    if len(spatial) > 1:
        spatial = [sch.fuse(*spatial)]
    sch.parallel(spatial[0])
    sch.decompose_reduction(block, reduce[0])


def _vectorize_plane(sch: s_tir.Schedule, plane_loop, step: int, run_loop=None) -> None:
    """Cut ``plane_loop`` into vectors of ``step`` lanes; a shorter tail stays scalar.

    The split's last step is partitioned off: TVM scalarizes a vector loop that carries
    the split's predicate (and LLVM's loop vectorizer then gives up on loops that branch
    between the fast and the fallback path), while in the partitioned main loop the
    predicate is provably true and simplified away. A window loop inside (reduction
    blocks) goes between the steps and the lanes: each window step is one vector op.
    ``run_loop`` (a loop over a run of channels above the plane) goes there too,
    unrolled: the outputs of one step then share their window loads.
    """
    extent = int(sch.get(plane_loop).extent)
    if extent <= step:
        steps, lanes = None, plane_loop
    else:
        steps, lanes = sch.split(plane_loop, [None, step])
    if run_loop is not None:
        sch.reorder(run_loop, lanes) if steps is None else sch.reorder(steps, run_loop, lanes)
        sch.unroll(run_loop)
    (block,) = sch.get_child_blocks(lanes)
    inner = sch.get_loops(block)[-1]
    if not sch.get(inner).same_as(sch.get(lanes)):  # a window loop below the lanes
        sch.reorder(inner, lanes)
    sch.vectorize(lanes)
    if steps is not None and extent % step:
        sch.loop_partition(steps, [extent // step, None])


def _plane_blocking(sch: s_tir.Schedule, blocks, func: tirx.PrimFunc, extents):
    """``(channels, rows)`` of one task of the plane schedule: the guard block of the
    guarded form (read off the guard's buffer, so that schedule and compute agree), else
    the block :func:`guard_block` would choose."""
    axis = int(func.attrs["tvm_lrn.axis"])
    if blocks.guards:
        count, first = int(extents[axis]), int(extents[axis + 1])
        shape = sch.get(blocks.guards[0]).writes[0].source.shape
        return count // int(shape[axis]), first // int(shape[axis + 1])
    lo, hi = func.attrs.get("tvm_lrn.lo", 0), func.attrs.get("tvm_lrn.hi", 0)
    block = guard_block(extents, axis, int(lo) + int(hi) + 1)
    # None: symbolic leading dimensions (the plane is static here); a task per plane
    return block or (1, chunk_rows(extents[axis + 1 :]))


#: Longest run where the planes lie a multiple of :data:`ALIGNED_PLANE_BYTES` apart and
#: the tensor exceeds :data:`STREAMING_BYTES`: the window and output rows of one step
#: then share a few cache sets while the data streams from memory. Measured on Zen 4
#: (float32, checked form, in one process, runs of 8 (6 for 12 channels) against 4), 1
#: thread: 8x96x224x224 24.9 against 20.1 ms, 16x16x224x224 8.20 against 6.95,
#: 4x32x224x224 3.98 against 3.22, 1x96x224x224 2.40 against 2.04, 4x192x112x112 6.13
#: against 4.64; 2 threads: 8x96x224x224 16.4 against 15.0, 16x16x224x224 5.27 against
#: 4.40. In cache, runs of 8 stay faster (2x16x224x224 0.488 against 0.565 ms,
#: 1x64x64x64 0.076 against 0.100), and planes of other sizes (55x55, 56x56, 27x27) are
#: within 4 % either way.
PLANE_RUN_STREAMING = 4
#: Plane size (bytes) whose multiples put a step's rows into a few cache sets.
ALIGNED_PLANE_BYTES = 1024
#: Tensor size (bytes) above which the plane schedule counts the input as streaming from
#: memory rather than from the last-level cache.
STREAMING_BYTES = 16 << 20


def channel_run(
    channels: int, plane_bytes: int | None = None, tensor_bytes: int | None = None
) -> int:
    """Outputs along the LRN axis that one vector step of the plane schedule computes:
    the largest divisor of the block's ``channels`` up to :data:`PLANE_RUN`, or up to
    :data:`PLANE_RUN_STREAMING` for a tensor of more than :data:`STREAMING_BYTES` whose
    planes are a multiple of :data:`ALIGNED_PLANE_BYTES`.

    Parameters
    ----------
    channels : int
        Channels of one task's block.
    plane_bytes : int, optional
        Bytes of one plane after the LRN axis (the distance between channels).
    tensor_bytes : int, optional
        Bytes of the whole input (None: unknown, a symbolic dimension).

    Returns
    -------
    int
    """
    limit = PLANE_RUN
    if plane_bytes is not None and tensor_bytes is not None:
        if plane_bytes % ALIGNED_PLANE_BYTES == 0 and tensor_bytes > STREAMING_BYTES:
            limit = PLANE_RUN_STREAMING
    return max(d for d in range(1, min(channels, limit) + 1) if channels % d == 0)


def _schedule_planes(
    sch: s_tir.Schedule, blocks, func: tirx.PrimFunc, lanes: int, registers: int = _PLANE_REGISTERS
):
    """The plane schedule (module docstring) by schedule primitives; returns the task
    loop, annotated for :func:`rewrite_plane_tasks` with its prefetch distances."""
    axis = int(func.attrs["tvm_lrn.axis"])
    # LRN's input and output share the dtype
    itemsize = tvm.runtime.DataType(sch.get(blocks.output).writes[0].source.dtype).bits // 8
    step = registers * lanes
    loops = sch.get_loops(blocks.output)
    extents = [sch.get(lp).extent for lp in loops]
    channels, rows = _plane_blocking(sch, blocks, func, extents)
    lead, rest = loops[:axis], loops[axis + 2 :]
    c_outer, c_inner = sch.split(loops[axis], [None, channels])
    r_outer, r_inner = sch.split(loops[axis + 1], [None, rows])
    sch.reorder(*lead, c_outer, r_outer, c_inner, r_inner, *rest)
    task = sch.fuse(*lead, c_outer, r_outer)
    sch.parallel(task)
    plane_loop = sch.fuse(r_inner, *rest) if rest else r_inner
    _schedule_guards_at(sch, blocks, task)
    # The scaled form's window reductions: one plane chunk at a time, from cache.
    for block in reversed(blocks.reductions):
        sch.compute_at(block, c_inner, preserve_unit_loops=True)
    depth = len(sch.get_loops(blocks.output)) - 1  # loops above the plane loop
    for block in blocks.reductions:
        *spatial, _window = sch.get_loops(block)[depth:]
        _vectorize_plane(sch, sch.fuse(*spatial) if len(spatial) > 1 else spatial[0], step)
    # Runs of channels where the output block sums its own windows (the guarded and
    # checked forms, the fast path alone); the scaled form's reductions are computed per
    # channel.
    plane_bytes = math.prod(int(e) for e in extents[axis + 1 :]) * itemsize
    static = _static(extents)  # None: a symbolic leading dimension
    tensor_bytes = None if static is None else math.prod(static) * itemsize
    run = 1 if blocks.reductions else channel_run(channels, plane_bytes, tensor_bytes)
    run_loop = sch.split(c_inner, [None, run])[1] if run > 1 else None
    _vectorize_plane(sch, plane_loop, step, run_loop)
    halo = int(func.attrs.get("tvm_lrn.lo", 0)) + int(func.attrs.get("tvm_lrn.hi", 0))
    distances = _prefetch_distances(extents, axis, channels, rows, run, halo, itemsize)
    sch.annotate(task, PLANE_TASK, list(distances))
    return task


#: Largest guard block (bytes, halo included) whose successor the output loop prefetches:
#: the block in use, the next one and the outputs share a 1 MB L2 cache. Measured on
#: Zen 4 (16x256x27x27, float32, 1 thread): 105 KB blocks ran 29 % faster with it, 450
#: KB blocks (16x96x55x55) 10 % slower.
PREFETCH_BLOCK_BYTES = 128 * 1024

#: ``locality`` of the prefetches (``llvm.prefetch``: 3 keeps the line in every cache
#: level, 0 marks it as streaming).
PREFETCH_LOCALITY = 3


def _prefetch_distances(
    extents, axis: int, channels: int, rows: int, run: int, halo: int, itemsize: int
) -> tuple[int, int]:
    """``(ahead_in, ahead_out)`` in elements for the plane schedule of a task of
    ``channels`` x ``rows`` in runs of ``run`` channels, whose guard reads ``halo``
    channels more, of ``itemsize`` bytes per element (see :func:`_rewrite_task`).

    Both point at the same position of what the thread computes next (TVM gives each
    thread a contiguous range of the parallel loop). The output: the next run's rows in
    the task; after a task's last run, the next task's (the next row chunk of the same
    channels, or the next block of channels). The input: the next task's block, which
    its range guard then reads from the L2 cache instead of DRAM; only for blocks of at
    most :data:`PREFETCH_BLOCK_BYTES` (0 otherwise): a larger one would evict the block
    in use, and the guard's own loop streams it at full speed anyway.
    """
    trailing = [int(e) for e in extents[axis + 1 :]]
    plane = math.prod(trailing)
    chunk = rows * math.prod(trailing[1:])
    next_task = chunk if chunk < plane else channels * plane
    ahead_out = run * plane if channels > run else next_task
    if (channels + halo) * chunk * itemsize > PREFETCH_BLOCK_BYTES:
        return 0, ahead_out
    return next_task, ahead_out


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


def _rewrite_task(sch: s_tir.Schedule, task_loop, guarded: bool, data, out, distances):
    """Changes to the plane schedule's task loop that no schedule primitive makes
    (so the loop is replaced through the schedule state; MetaSchedule's replays of this
    rule's trace lack them).

    *The guard's branch once per task.* Every output of a task lies in one guard block,
    so the choice between the fast path and the fallback is made once, around the
    task's output loops. Left to each output, it would split a run of outputs into one
    branch each, and LLVM would then load every window again (no unswitching of loops
    this large).

    *The checked form speculatively* (:func:`_speculative`): a task computes the fast
    path for all of its outputs and tracks their largest window sum; only where that
    exceeds the check's bound is the task computed again, each output choosing by its
    own sum. The outputs are those of the checked form, with no branch per output and
    no pass over the input before them (the guarded form's guard).

    *Software prefetches* (:func:`_prefetch_distances`): one vector step is a few dozen
    instructions around one new input line, so the reorder buffer holds about ten
    steps, and with them about ten outstanding misses: too few to stream from DRAM. A
    prefetch retires at once.
    """
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
    new_task = tirx.For(
        task_loop.loop_var,
        task_loop.min,
        task_loop.extent,
        task_loop.kind,
        new_body,
        task_loop.thread_binding,
        {k: v for k, v in task_loop.annotations.items() if k != PLANE_TASK},
    )
    sch.state.replace(sch.state.get_sref(task_loop), new_task, {})


#: Annotation of the plane schedule's task loop: ``[ahead_in, ahead_out]``, the prefetch
#: distances (see :func:`rewrite_plane_tasks`). A schedule primitive, so it is part of
#: the trace and MetaSchedule's replays of the schedule carry it.
PLANE_TASK = "tvm_lrn.plane_task"


def rewrite_plane_tasks(sch: s_tir.Schedule) -> None:
    """Finish the plane schedule in ``sch``: what no schedule primitive can do.

    For each loop annotated :data:`PLANE_TASK` (one task of the plane schedule, one
    guard block), in place:

    - the checked form's task is computed speculatively: the fast path for all of its
      outputs, keeping the largest window sum, then the task again with the per-output
      choice only if that sum failed the check (:func:`_speculative`);
    - the guarded form's choice between fast path and fallback becomes one branch
      around the task's outputs instead of one per output (which would cut a run of
      outputs into branches that each reload their windows: LLVM does not unswitch
      loops this large);
    - software prefetches at the top of each vector step (:func:`_prefetch_distances`).

    The changes go through the schedule state, so the trace does not hold them: call
    this after replaying a trace of the plane schedule (as :mod:`tvm_lrn.tune` does for
    its records and candidates). A task already rewritten has lost the annotation.

    Parameters
    ----------
    sch : tvm.s_tir.Schedule
        A schedule of an LRN PrimFunc; without an annotated loop nothing changes.
    """
    func = sch.mod["main"]
    tasks, blocks = [], []

    def visit(node):
        if isinstance(node, tirx.For) and PLANE_TASK in node.annotations:
            tasks.append(node)
        elif isinstance(node, s_tir.SBlock):
            blocks.append(node)

    walk(func.body, visit)
    if not tasks:
        return
    written = [region.source for block in blocks for region in block.writes]
    outputs = [b for b in blocks if any(r.source.name == OUTPUT for r in b.writes)]
    out = next(r.source for r in outputs[0].writes if r.source.name == OUTPUT)
    data = next(
        r.source for b in outputs for r in b.reads if not any(r.source.same_as(w) for w in written)
    )
    guarded = any(b.name_hint.startswith(GUARDS[0]) for b in blocks)
    for task_loop in tasks:
        distances = [int(v) for v in task_loop.annotations[PLANE_TASK]]
        _rewrite_task(sch, task_loop, guarded, data, out, distances)


class CPULRN(LRNScheduleRule):
    """DLight rule: the LRN PrimFunc on an llvm target, parallel and vectorized.

    ``apply`` returns None for a PrimFunc that is not LRN and for non-llvm targets.
    """

    def is_target_available(self, target: Target) -> bool:
        """Whether ``target`` is an llvm (CPU) target."""
        return target.kind.name == "llvm"

    def schedule(self, sch: s_tir.Schedule, blocks, func: tirx.PrimFunc, target: Target):
        """Schedule the LRN blocks in ``sch`` in place (see the module docstring)."""
        bits = max(32, int(blocks.compute_dtype.replace("bfloat", "").replace("float", "")))
        lanes = max(1, vector_bits(target) // bits)
        loops = sch.get_loops(blocks.output)
        extents = [sch.get(loop).extent for loop in loops]
        if _static_plane(func, extents) is not None:
            _schedule_planes(sch, blocks, func, lanes)
            rewrite_plane_tasks(sch)
            return
        extent = sch.get(loops[-1]).extent
        tile, has_tail = choose_tile(extent, lanes)
        if tile > 1:
            tile_loop, lane_loop = sch.split(loops[-1], [None, tile])
        else:
            tile_loop, lane_loop = loops[-1], None
        if len(loops) > 1:
            outer = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
            sch.parallel(outer)
        else:
            sch.parallel(tile_loop)  # rank 1: the tiles are the only parallelism
        # The guard of a whole row or plane comes before its first output: it stays at
        # the root here (the plane schedule above reads blocks from cache).
        for block in blocks.guards:
            _schedule_guard_at_root(sch, block)
        tiled = [] if blocks.guards else blocks.reductions
        # Producers last-to-first: the sum must sit under the loop before the max can.
        for block in reversed(tiled):
            sch.compute_at(block, tile_loop, preserve_unit_loops=True)
        if lane_loop is not None:
            for block in tiled:
                *_, spatial, window = sch.get_loops(block)
                # Window outside, lanes inside: each window step is one vector op.
                sch.reorder(window, spatial)
                sch.vectorize(spatial)
            sch.vectorize(lane_loop)
            if has_tail and not _window_along_tiles(func, len(loops)):
                sch.annotate(tile_loop, "pragma_loop_partition_hint", 1)
