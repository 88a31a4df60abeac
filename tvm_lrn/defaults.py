"""Default schedules for the kernels of a model that neither a rule nor a record covers.

Without them a compiled model runs TVM's unscheduled loops: serial and scalar, which
for a whole network such as AlexNet is 45x slower than PyTorch. :func:`default_schedules`
is the CPU counterpart of the ``ApplyDefaultSchedule`` step that TVM's GPU backends
already run: :class:`ParallelVectorize` first, for what DLight's two CPU rules schedule
badly or not at all (convolution, pooling, matmul against a constant, elementwise
kernels), then those two rules.

:class:`ParallelVectorize` is the classic direct schedule of a reduction with spatial
outputs: a register tile of ``rows x lanes`` outputs whose lanes run along the innermost
spatial loop and whose rows run along a spatial loop the vector operand does not depend
on (for a convolution the output channel, so that one input vector feeds several
filters: in a grouped convolution, filters of one group), or else along the same loop
(a batch-1 dense layer: then the tile spans up to 4096 outputs, so that each reduction
step reads a whole weight row in one sequential pass); the reduction loops inside the
tile, the accumulators in a local buffer, the epilogue (bias, ReLU) fused into the
write-back, and the loops outside the tile fused and parallel.
Spatial-only kernels are fused, vectorized and parallel.
"""

from __future__ import annotations

import math
import re

import tvm
from tvm import tirx
from tvm.s_tir import Schedule, ScheduleError
from tvm.s_tir import dlight as dl
from tvm.target import Target

__all__ = ["ParallelVectorize", "default_rules", "default_schedules"]

# Rows of the register tile: with 16-lane vectors, 8 rows keep 8 accumulators (of the
# 32 AVX-512 registers) in flight, enough to hide the FMA latency.
_MAX_ROWS = 8
# Outputs in a tile that has no row axis of its own. A shorter tile made a batch-1 dense
# layer read 4 KiB of each weight row per step, one page apart, which the hardware
# prefetcher does not follow across.
_STREAM = 4096


def _native_lanes(target: Target, dtype: str) -> int:
    bits = tvm.runtime.DataType(dtype).bits
    width = tvm.target.codegen.llvm_get_vector_width(target)
    return max(1, (width if width > 0 else 128) // bits)


def _largest_divisor(extent: int, limit: int) -> int:
    return max(d for d in range(1, max(1, min(extent, limit)) + 1) if extent % d == 0)


def _vars_of(region) -> set[str]:
    """Names of the variables a buffer region's indices use."""
    return {v.name for rng in region.region for v in tirx.analysis.undefined_vars(rng.min)}


def _group_of(name: str, regions) -> int | None:
    """How the indices of ``regions`` use the variable ``name``: 0 when not at all,
    ``G`` when only as ``name // G`` (a grouped convolution's input channel is
    ``out_channel // G * in_per_group + rc``: filters of one group share an input),
    None otherwise."""
    groups, uses = [], []

    def visit(node):
        if isinstance(node, tirx.Var) and node.name == name:
            uses.append(node)
        elif (
            isinstance(node, tirx.FloorDiv)
            and isinstance(node.a, tirx.Var)
            and node.a.name == name
            and isinstance(node.b, tirx.IntImm)
        ):
            groups.append(int(node.b))

    for region in regions:
        for rng in region.region:
            _visit_expr(rng.min, visit)
    if len(uses) != len(groups):
        return None
    return math.gcd(*groups) if groups else 0


def _visit_expr(expr, visit) -> None:
    """Call ``visit`` on ``expr`` and its sub-expressions (TVM 0.27 exposes no TIR
    expression visitor to Python)."""
    visit(expr)
    children = [getattr(expr, name, None) for name in ("a", "b", "value", "condition")]
    children += list(getattr(expr, "args", None) or [])
    for child in children:
        if isinstance(child, tirx.Expr):
            _visit_expr(child, visit)


def _static_extents(info) -> list[int] | None:
    extents = [iv.dom for iv in info.iters]
    if not all(isinstance(e, (int, tirx.IntImm)) for e in extents):
        return None
    return [int(e) for e in extents]


def _lanes(extent: int, native: int) -> int:
    """Lanes for a vector loop over ``extent``: all of it when it fits in one native
    vector, else its largest divisor <= ``native`` (a vector wider than the native one
    but not a multiple of it, such as 27 floats, is split by LLVM into pieces that run
    several times slower than one masked native vector each)."""
    return extent if extent <= native else _largest_divisor(extent, native)


def _schedule_spatial(sch: Schedule, block, native: int) -> None:
    """Vectorize a spatial block's innermost loop; fuse and parallelize the rest."""
    loops = sch.get_loops(block)
    if not loops:
        return
    extent = sch.get(loops[-1]).extent
    if not isinstance(extent, tirx.IntImm):
        sch.parallel(sch.fuse(*loops) if len(loops) > 1 else loops[0])
        return
    lanes = _lanes(int(extent), native)
    *outer, inner = [*loops[:-1], *sch.split(loops[-1], [None, lanes])]
    sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
    if lanes > 1:
        sch.vectorize(inner)


def _tile_loops(sch: Schedule, spatial: list, vector_reads, lanes_limit: int):
    """Split the spatial loops ``[(iter, extent), ...]`` of a ``S..SR..R`` block into
    ``(outer, rows, lanes)``: the outer loops (to fuse and parallelize), the row loop and
    the lane loop.
    """
    last, last_extent = spatial[-1]
    lanes = _lanes(last_extent, lanes_limit)
    # Row candidates: loops the vector operand does not change along within a run of
    # ``span`` iterations (the whole extent, or a group of a grouped convolution).
    free = []
    for it, ext in spatial[:-1]:
        group = _group_of(it.var.name, vector_reads)
        if group is None:
            continue
        span = ext if group == 0 else math.gcd(group, ext)
        if span > 1:
            free.append((it, span))
    if free:
        row_iter, row_span = free[-1]
        rows = _largest_divisor(row_span, _MAX_ROWS)
        row_outer, row_loop = sch.split(row_iter.loop_rv, [None, rows])
        lane_outer, lane_loop = sch.split(last.loop_rv, [None, lanes])
        outer = [row_outer if it is row_iter else it.loop_rv for it, _ in spatial[:-1]] + [
            lane_outer
        ]
    else:
        rows = _largest_divisor(last_extent // lanes, _STREAM // lanes)
        lane_outer, row_loop, lane_loop = sch.split(last.loop_rv, [None, rows, lanes])
        outer = [it.loop_rv for it, _ in spatial[:-1]] + [lane_outer]
    return outer, row_loop, lane_loop


def _schedule_reduction(sch: Schedule, info, epilogues, lanes_limit: int) -> None:
    """The register-tiled schedule of one ``S..SR..R`` block and its epilogue blocks."""
    block = info.block_rv
    kinds = info.dom_kind()
    iters = list(zip(info.iters, _static_extents(info), strict=True))
    spatial = [pair for pair, k in zip(iters, kinds, strict=True) if k == "S"]
    reduction = [it.loop_rv for (it, _), k in zip(iters, kinds, strict=True) if k == "R"]
    last_var = spatial[-1][0].var.name
    vector_reads = [r for r in sch.get(block).reads if last_var in _vars_of(r)]
    outer, row_loop, lane_loop = _tile_loops(sch, spatial, vector_reads, lanes_limit)
    sch.reorder(*outer, *reduction, row_loop, lane_loop)
    write_back = sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(write_back, outer[-1])
    for epilogue in epilogues:
        sch.reverse_compute_inline(epilogue.block_rv)
    # Update and outer loops first: once the init is split off, the update block is no
    # longer a reduction block in the schedule's sense, so no loop above it can be
    # vectorized or parallelized.
    sch.vectorize(lane_loop)
    if sch.get(row_loop).extent <= _MAX_ROWS:
        sch.unroll(row_loop)
    sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
    init = sch.decompose_reduction(block, reduction[0])
    for each in (init, write_back):
        loops = sch.get_loops(each)
        sch.vectorize(loops[-1])
        if len(loops) >= 3:  # (the first is the fused parallel loop)
            sch.unroll(loops[-2])


@dl.ScheduleRule.from_callable("ParallelVectorize")
def ParallelVectorize(func: tirx.PrimFunc, target: Target, _tunable: bool) -> Schedule | None:  # noqa: N802 (a DLight rule, named as DLight's are)
    """The register-tiled, vectorized, parallel CPU schedule (see the module docstring).

    Applies to a static-shape PrimFunc on an ``llvm`` target that, once its spatial
    blocks are inlined, is one ``S..SR..R`` reduction block followed by spatial
    epilogue blocks, or spatial blocks only; returns None for anything else.
    """
    if not isinstance(func, tirx.PrimFunc) or target.kind.name != "llvm":
        return None
    sch = Schedule(func)
    infos = dl.normalize_prim_func(sch)
    if not infos or any(_static_extents(i) is None for i in infos):
        return None
    # Padding stays a block of its own: inlined into the reduction it becomes a
    # condition on every load, which scalarizes the vector loop.
    feeds_reduction = [i for i in infos if i.is_injective() and _feeds_reduction(sch, i)]
    remaining = dl.try_inline(sch, [i for i in infos if i not in feeds_reduction])
    reductions = [info for info in remaining if not info.is_injective()]
    if len(reductions) > 1 or (reductions and remaining[0] is not reductions[0]):
        return None
    if reductions and not re.fullmatch("S+R+", reductions[0].dom_kind()):
        return None
    try:
        for info in feeds_reduction + ([] if reductions else remaining):
            _schedule_spatial(sch, info.block_rv, _native_lanes(target, _dtype(sch, info)))
        if reductions:
            lanes = _native_lanes(target, _dtype(sch, reductions[0]))
            _schedule_reduction(sch, reductions[0], remaining[1:], lanes)
    except ScheduleError:
        return None
    return sch


def _dtype(sch: Schedule, info) -> str:
    return str(sch.get(info.block_rv).writes[0].source.dtype)


def _feeds_reduction(sch: Schedule, info) -> bool:
    return any(not _is_spatial(sch, c) for c in sch.get_consumers(info.block_rv))


def _is_spatial(sch: Schedule, block) -> bool:
    return all(iv.iter_type == tirx.IterVar.DataPar for iv in sch.get(block).iter_vars)


def default_rules(target: Target) -> list:
    """DLight rules for an ``llvm`` target, tried in order for each unscheduled PrimFunc;
    empty for other targets (TVM's GPU backends run their own DLight rules)."""
    if target.kind.name == "llvm":
        return [ParallelVectorize, dl.cpu.GEMV(), dl.cpu.Reduction()]
    return []


def default_schedules(target: Target) -> tvm.transform.Pass:
    """``dl.ApplyDefaultSchedule`` with :func:`default_rules`; functions already marked
    ``tirx.is_scheduled`` (LRN kernels, tuned records) are left as they are."""
    return dl.ApplyDefaultSchedule(*default_rules(target))
