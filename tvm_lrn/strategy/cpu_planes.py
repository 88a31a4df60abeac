"""The CPU rule's plane schedule: static planes after the LRN axis (H*W in NCHW, every
model's case; CPUs get the checked form there)::

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
are statements no schedule primitive adds: the rule annotates each task loop with
:data:`~tvm_lrn.lower.PLANE_TASK`, and the lowering pass
:class:`~tvm_lrn.lower.LowerPlaneTasks` puts them in. Each reduction and the output
are one loop over the flattened chunk, cut into vectors of ``PLANE_REGISTERS``
registers; the window loop sits between the steps and the lanes, so each window step is
one vector operation. The vector loop is partitioned at its last full step rather than
split with a predicate (TVM scalarizes a predicated vector loop, and LLVM then fails to
vectorize loops that branch between the fast path and the fallback). This avoids the
odd row lengths of NCHW images (55, 27).

The constants below were chosen by measurement; the figures are in
``benchmarks/results/cpu_schedule_constants.md``.
"""

from __future__ import annotations

import math

import tvm
from tvm import s_tir, tirx

from ..compute import chunk_rows, guard_block, plane_chunk, static_extents
from ..lower.annotations import PLANE_TASK

__all__ = [
    "PLANE_RUN",
    "channel_run",
    "prefetch_distances",
    "schedule_planes",
    "static_plane",
]

#: Registers per vector step of the plane schedule.
PLANE_REGISTERS = 1
#: Longest run of channels one vector step of the plane schedule computes (see
#: :func:`channel_run`): a run of 8 loads 12 window vectors for 8 outputs instead of
#: 40, and still fits the 32 vector registers of AVX-512.
PLANE_RUN = 8


def static_plane(func: tirx.PrimFunc, loops_extents) -> int | None:
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
#: then share a few cache sets while the data streams from memory.
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


def schedule_planes(
    sch: s_tir.Schedule, blocks, func: tirx.PrimFunc, lanes: int, registers: int = PLANE_REGISTERS
):
    """The plane schedule (module docstring) by schedule primitives; returns the task
    loop, annotated :data:`~tvm_lrn.lower.PLANE_TASK` with its prefetch distances."""
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
    static = static_extents(extents)  # None: a symbolic leading dimension
    tensor_bytes = None if static is None else math.prod(static) * itemsize
    run = 1 if blocks.reductions else channel_run(channels, plane_bytes, tensor_bytes)
    run_loop = sch.split(c_inner, [None, run])[1] if run > 1 else None
    _vectorize_plane(sch, plane_loop, step, run_loop)
    halo = int(func.attrs.get("tvm_lrn.lo", 0)) + int(func.attrs.get("tvm_lrn.hi", 0))
    distances = prefetch_distances(extents, axis, channels, rows, run, halo, itemsize)
    sch.annotate(task, PLANE_TASK, list(distances))
    return task


#: Largest guard block (bytes, halo included) whose successor the output loop prefetches:
#: the block in use, the next one and the outputs share the L2 cache.
PREFETCH_BLOCK_BYTES = 128 * 1024


def prefetch_distances(
    extents, axis: int, channels: int, rows: int, run: int, halo: int, itemsize: int
) -> tuple[int, int]:
    """``(ahead_in, ahead_out)`` in elements for the plane schedule of a task of
    ``channels`` x ``rows`` in runs of ``run`` channels, whose guard reads ``halo``
    channels more, of ``itemsize`` bytes per element (see :mod:`tvm_lrn.lower.plane_tasks`).

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
