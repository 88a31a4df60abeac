"""CPU (llvm) schedule rule for the LRN PrimFunc.

Static planes after the LRN axis (every NCHW model) get the plane schedule of
:mod:`tvm_lrn.strategy.cpu_planes`; every other shape the row schedule below.

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

from tvm import s_tir, tirx
from tvm.target import Target, codegen

from .common import LRNScheduleRule, lrn_blocks, split_loops
from .cpu_planes import schedule_planes, static_plane

__all__ = [
    "CPULRN",
    "vector_bits",
    "choose_tile",
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


def _schedule_guard_at_root(sch: s_tir.Schedule, block) -> None:
    """The guard of a row or a symbolic plane at the root: parallel over its flags, the
    reduction loops left nested (the innermost runs along contiguous memory, with no
    division by a symbolic extent) and its init hoisted, so that LLVM vectorizes it."""
    spatial, reduce = split_loops(sch, block)
    if len(spatial) > 1:
        spatial = [sch.fuse(*spatial)]
    sch.parallel(spatial[0])
    sch.decompose_reduction(block, reduce[0])


def _lanes(blocks, target: Target) -> int:
    """Elements of the compute dtype per SIMD register of ``target``."""
    bits = max(32, int(blocks.compute_dtype.replace("bfloat", "").replace("float", "")))
    return max(1, vector_bits(target) // bits)


def _schedule_rows(sch: s_tir.Schedule, blocks, func: tirx.PrimFunc, lanes: int, tile=None):
    """The row schedule (module docstring) in place; returns the tile loop.

    ``tile`` (an int or a sampled ``ExprRV``, for the tunable variants) replaces
    :func:`choose_tile`'s tile; it must divide the static contiguous extent.
    """
    loops = sch.get_loops(blocks.output)
    has_tail = False
    if tile is None:
        tile, has_tail = choose_tile(sch.get(loops[-1]).extent, lanes)
    if not isinstance(tile, int) or tile > 1:
        tile_loop, lane_loop = sch.split(loops[-1], [None, tile])
    else:
        tile_loop, lane_loop = loops[-1], None
    if len(loops) > 1:
        outer = sch.fuse(*loops[:-1]) if len(loops) > 2 else loops[0]
        sch.parallel(outer)
    else:
        sch.parallel(tile_loop)  # rank 1: the tiles are the only parallelism
    # The guard of a whole row or plane comes before its first output: it stays at
    # the root here (the plane schedule reads blocks from cache).
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
    return tile_loop


#: Unroll depths the tunable variants sample for their task or tile loop.
UNROLL_CHOICES = (0, 16, 64)


def _sample_unroll(sch: s_tir.Schedule, loop) -> None:
    unroll = sch.sample_categorical(list(UNROLL_CHOICES), [1 / len(UNROLL_CHOICES)] * 3)
    sch.annotate(loop, "pragma_auto_unroll_max_step", unroll)
    sch.annotate(loop, "pragma_unroll_explicit", 1)


def _plane_variants(func: tirx.PrimFunc, target: Target) -> list:
    """The plane schedule with 1, 2 or 4 registers per vector step, each with a sampled
    unroll depth (separate schedules: the step decides where the vector loop is
    partitioned, which a mutated decision could not follow)."""
    variants = []
    for registers in (1, 2, 4):
        sch = s_tir.Schedule(func)
        blocks = lrn_blocks(sch)
        task = schedule_planes(sch, blocks, func, _lanes(blocks, target), registers)
        _sample_unroll(sch, task)
        variants.append(sch)
    return variants


def _row_variant(func: tirx.PrimFunc, target: Target) -> list:
    """The row schedule with a sampled tile (a divisor of the static contiguous extent,
    up to four registers: no tail) and unroll depth, for the scaled form's tiled
    reductions; none for the guarded form's rows or a symbolic extent (whose
    partitioned tail is the only sound choice)."""
    sch = s_tir.Schedule(func)
    blocks = lrn_blocks(sch)
    extent = sch.get(sch.get_loops(blocks.output)[-1]).extent
    if blocks.guards or not blocks.reductions or not isinstance(extent, tirx.IntImm):
        return []
    lanes = _lanes(blocks, target)
    choices = [d for d in range(2, min(int(extent), 4 * lanes) + 1) if int(extent) % d == 0]
    if not choices:
        return []
    tile = sch.sample_categorical(choices, [1.0 / len(choices)] * len(choices))
    _sample_unroll(sch, _schedule_rows(sch, blocks, func, lanes, tile))
    return [sch]


class CPULRN(LRNScheduleRule):
    """DLight rule: the LRN PrimFunc on an llvm target, parallel and vectorized.

    ``apply`` returns None for a PrimFunc that is not LRN and for non-llvm targets; with
    ``tunable=True`` a list: the rule's schedule, then its tunable variants (sampled
    tiles, registers per step and unroll depths) for MetaSchedule to search.
    """

    def is_target_available(self, target: Target) -> bool:
        """Whether ``target`` is an llvm (CPU) target."""
        return target.kind.name == "llvm"

    def apply(self, func: tirx.PrimFunc, target, tunable: bool = False):
        """The rule's schedule, or with ``tunable`` the list of it and its variants."""
        sch = super().apply(func, target, False)
        if sch is None or not tunable:
            return sch
        out_shape = func.params[-1].ty.shape
        variants = _plane_variants if static_plane(func, out_shape) is not None else _row_variant
        return [sch, *variants(func, target)]

    def schedule(self, sch: s_tir.Schedule, blocks, func: tirx.PrimFunc, target: Target):
        """Schedule the LRN blocks in ``sch`` in place (see the module docstring)."""
        lanes = _lanes(blocks, target)
        loops = sch.get_loops(blocks.output)
        if static_plane(func, [sch.get(loop).extent for loop in loops]) is not None:
            schedule_planes(sch, blocks, func, lanes)
        else:
            _schedule_rows(sch, blocks, func, lanes)
