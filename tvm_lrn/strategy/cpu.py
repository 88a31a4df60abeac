"""CPU (llvm) schedule rule for the LRN PrimFunc.

Plane schedule (static planes after the LRN axis, e.g. H*W in NCHW: every model's
case)::

    parallel for (n, c) fused:                      # one task per plane
      for chunk in chunks of rows (chunk_rows):     # the whole plane when it is small
        for step: for r in window: vector: sum      # window sums of the chunk (cache)
        guard: the largest sum of the chunk         # guarded form only
        for step: vector: output                    # fast path or fallback, per chunk
        (scalar tail of the last step)

Each reduction and the output are one loop over the flattened chunk, cut into vectors
of ``_PLANE_REGISTERS`` registers; the window loop sits between the steps and the
lanes, so each window step is one vector operation. The vector loop is partitioned at
its last full step rather than split with a predicate (TVM scalarizes a predicated
vector loop, and LLVM then fails to vectorize loops that branch between the fast path
and the fallback). This avoids the odd row lengths of NCHW images (55, 27) and keeps
the window sums of a chunk in L1/L2. The scaled form's two reductions are scheduled
the same way.

Row schedule (symbolic planes, channels-last, rank 1)::

    parallel for (d0 .. d_{n-2}) fused:          # one task per row of the contiguous dim
      for t in tiles of d_{n-1}:                 # VL elements per tile
        for r in window: vectorized for VL: max  # the window max of the VL outputs
        for r in window: vectorized for VL: sum  # the scaled sum of squares
        vectorized for VL: output                # reads both from a VL-element buffer

The scaled form's reductions are computed at the tile loop into VL-element buffers.
The guarded form needs all sums of a row or plane before its first output, so its sums
and guard are loops of their own at the root (parallel, vectorized where the last
extent is static). When the LRN axis is the last one (channels-last), the tile runs
along the LRN axis itself: the window loads become unaligned vector loads, with the
zero padding as a lane-wise bit mask.

Tails: a static contiguous extent is tiled by a divisor of it (LLVM splits vectors of
any length into registers, e.g. 55 = 5 x 11 gives ``<11 x float>``), so no tail exists.
A symbolic extent is tiled by one register width and the tile loop gets
``pragma_loop_partition_hint``: TVM's LoopPartition pass then emits a predicate-free
vectorized main loop and a scalar tail. (The hint does not survive ``NarrowDataType``
on static shapes in TVM 0.27, which is why static shapes use divisors instead.)
"""

from __future__ import annotations

import math

from tvm import s_tir, tirx
from tvm.target import Target, codegen

from ..compute import chunk_rows
from .common import LRNScheduleRule, split_loops

__all__ = ["CPULRN", "vector_bits", "choose_tile"]

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
#: Largest chunk (elements) the plane schedule takes. chunk_rows keeps chunks at 8K
#: elements where the plane allows; a plane that cannot be cut (a long prime row) stays
#: whole up to this size (256 KB of float32 sums, within a 1 MB L2 cache).
_PLANE_MAX = 65536


def _static_plane(func: tirx.PrimFunc, loops_extents) -> int | None:
    """Elements of the plane chunk after the LRN axis (see :func:`chunk_rows`) that one
    step of the plane schedule covers, if the plane is static, non-empty and its chunk
    small enough to keep its window sums in cache."""
    axis = func.attrs.get("tvm_lrn.axis")
    if axis is None or int(axis) >= len(loops_extents) - 1:
        return None
    trailing = loops_extents[int(axis) + 1 :]
    rows = chunk_rows(trailing)  # None: a symbolic extent
    if rows is None or any(int(extent.value) == 0 for extent in trailing):
        return None
    chunk = rows * math.prod(int(extent.value) for extent in trailing[1:])
    return chunk if chunk <= _PLANE_MAX else None


def _schedule_guards_at(sch: s_tir.Schedule, blocks, loop) -> None:
    """The range guard under ``loop``, its reduction fused into one plain loop.

    It reads the window sums just computed (from cache); LLVM's loop vectorizer turns
    the integer maximum into vector code.
    """
    for block in blocks.guards:
        sch.compute_at(block, loop, preserve_unit_loops=True)
        loops = sch.get_loops(block)
        depth = next(i for i, lp in enumerate(loops) if sch.get(lp).same_as(sch.get(loop)))
        inner = loops[depth + 1 :]
        if len(inner) > 1:
            sch.fuse(*inner)


def _schedule_at_root(sch: s_tir.Schedule, block, lanes: int) -> None:
    """A window reduction or guard left at the root: parallel rows, vector lanes."""
    spatial, reduce = split_loops(sch, block)
    if len(reduce) > 1:
        sch.fuse(*reduce)
    if len(spatial) > 1:
        sch.parallel(sch.fuse(*spatial[:-1]))
    extent = sch.get(spatial[-1]).extent if len(spatial) > 1 else None
    if not reduce or extent is None:
        return
    tile, has_tail = choose_tile(extent, lanes) if isinstance(extent, tirx.IntImm) else (1, True)
    if tile > 1 and not has_tail:
        _, lane_loop = sch.split(spatial[-1], [None, tile])
        sch.reorder(sch.get_loops(block)[-1], lane_loop)
        sch.vectorize(lane_loop)
    elif len(reduce) == 1:
        # A symbolic row: the window loop outside, so that the innermost loop runs
        # along contiguous memory and LLVM's loop vectorizer takes it.
        sch.reorder(sch.get_loops(block)[-1], spatial[-1])


def _vectorize_plane(sch: s_tir.Schedule, plane_loop, step: int) -> None:
    """Cut ``plane_loop`` into vectors of ``step`` lanes; a shorter tail stays scalar.

    The split's last step is partitioned off: TVM scalarizes a vector loop that carries
    the split's predicate (and LLVM's loop vectorizer then gives up on loops that branch
    between the fast and the fallback path), while in the partitioned main loop the
    predicate is provably true and simplified away. A window loop inside (reduction
    blocks) goes between the steps and the lanes: each window step is one vector op.
    """
    extent = int(sch.get(plane_loop).extent)
    if extent <= step:
        steps, lanes = None, plane_loop
    else:
        steps, lanes = sch.split(plane_loop, [None, step])
    (block,) = sch.get_child_blocks(lanes)
    inner = sch.get_loops(block)[-1]
    if not sch.get(inner).same_as(sch.get(lanes)):  # a window loop below the lanes
        sch.reorder(inner, lanes)
    sch.vectorize(lanes)
    if steps is not None and extent % step:
        sch.loop_partition(steps, [extent // step, None])


def _schedule_planes(
    sch: s_tir.Schedule, blocks, axis: int, lanes: int, registers: int = _PLANE_REGISTERS
):
    """The plane schedule (module docstring); returns the loop the sums sit under."""
    step = registers * lanes
    loops = sch.get_loops(blocks.output)
    outer = sch.fuse(*loops[: axis + 1]) if axis > 0 else loops[0]
    sch.parallel(outer)
    trailing = loops[axis + 1 :]
    first = int(sch.get(trailing[0]).extent)
    rows = chunk_rows([sch.get(loop).extent for loop in trailing])
    at = outer
    if rows < first:  # large planes: chunks of rows, each with its sums in cache
        at, row_loop = sch.split(trailing[0], [None, rows])
        trailing = [row_loop, *trailing[1:]]
    plane_loop = sch.fuse(*trailing) if len(trailing) > 1 else trailing[0]
    _schedule_guards_at(sch, blocks, at)
    for block in reversed(blocks.reductions):
        sch.compute_at(block, at, preserve_unit_loops=True)
    depth = len(sch.get_loops(blocks.output)) - 1  # loops above the plane loop
    for block in blocks.reductions:
        *spatial, _window = sch.get_loops(block)[depth:]
        _vectorize_plane(sch, sch.fuse(*spatial) if len(spatial) > 1 else spatial[0], step)
    _vectorize_plane(sch, plane_loop, step)
    return at


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
        if _static_plane(func, [sch.get(loop).extent for loop in loops]) is not None:
            _schedule_planes(sch, blocks, int(func.attrs["tvm_lrn.axis"]), lanes)
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
        # The guard needs a whole plane of window sums before the first output: both
        # stay at the root here (the plane schedule above keeps them in cache).
        tiled = [] if blocks.guards else blocks.reductions
        if blocks.guards:
            for block in [*blocks.reductions, *blocks.guards]:
                _schedule_at_root(sch, block, lanes)
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
