"""The blocking geometry of the CPU schedule and of the guarded form.

A plane chunk (:func:`chunk_rows`, :func:`plane_chunk`) is a run of rows of the
dimensions after the LRN axis; a guard block (:func:`guard_block`) is a run of channels
along the axis times a plane chunk. The CPU schedule makes one parallel task of each,
and the guarded form takes one decision per guard block (see :mod:`tvm_lrn.compute.forms`).
"""

from __future__ import annotations

import math

from tvm import tirx

__all__ = [
    "GUARD_BLOCK",
    "GUARD_CHANNELS",
    "GUARD_CHUNK",
    "GUARD_TASKS",
    "PLANE_MAX",
    "chunk_rows",
    "guard_block",
    "plane_chunk",
    "static_extents",
]

#: Elements of one plane chunk at most (see :func:`chunk_rows`).
GUARD_CHUNK = 8192
#: Elements of one guard block at most, its halo channels included: the block is read
#: once for the guard and once more, from the L2 cache, for the outputs.
GUARD_BLOCK = 1 << 17
#: Channels of one guard block at most.
GUARD_CHANNELS = 32
#: Guard blocks (parallel tasks) a tensor should at least be cut into, where its channel
#: count allows: fewer, larger blocks read fewer halo channels, more balance threads.
GUARD_TASKS = 8


def static_extents(extents) -> list[int] | None:
    """The extents as Python ints, or None when one of them is symbolic.

    Parameters
    ----------
    extents : sequence of int or PrimExpr
        Dimensions, e.g. a slice of a tensor's shape.

    Returns
    -------
    list of int or None
    """
    values = []
    for extent in extents:
        if isinstance(extent, tirx.IntImm):
            extent = int(extent.value)
        if not isinstance(extent, int):
            return None
        values.append(extent)
    return values


def chunk_rows(trailing) -> int | None:
    """Rows of the first dimension after the LRN axis that one plane chunk holds.

    Parameters
    ----------
    trailing : sequence of int or PrimExpr
        The dimensions after the LRN axis (e.g. ``(H, W)`` in NCHW).

    Returns
    -------
    int or None
        The largest divisor ``k`` of ``trailing[0]`` with ``k * prod(trailing[1:])`` at
        most :data:`GUARD_CHUNK` (at least 1), or the whole ``trailing[0]`` when the plane
        fits or has no divisor that gives chunks of a useful length; None when a
        dimension is symbolic (the chunk is then the whole plane).
    """
    extents = static_extents(trailing)
    if extents is None:
        return None
    first, rest = extents[0], math.prod(extents[1:])
    if first * rest <= GUARD_CHUNK:
        return max(first, 1)
    k = max(
        d for d in range(1, first + 1) if first % d == 0 and (d * rest <= GUARD_CHUNK or d == 1)
    )
    # Chunks much shorter than the limit would make the per-chunk loop overhead costly (a
    # 1-D plane of prime length): the plane stays whole then.
    return k if k * rest >= GUARD_CHUNK // 16 else first


#: Largest plane chunk (elements) the CPU schedule computes in plane chunks.
#: chunk_rows keeps chunks at 8K elements where the plane allows; a plane that cannot be
#: cut (a long prime row) stays whole up to this size (256 KB of float32, within a 1 MB L2
#: cache).
PLANE_MAX = 65536


def plane_chunk(shape, axis: int) -> int | None:
    """Elements of one plane chunk (:func:`chunk_rows` rows of the dimensions after the
    LRN axis) where the CPU schedule computes ``shape`` chunk by chunk.

    Parameters
    ----------
    shape : sequence of int or PrimExpr
        The input shape.
    axis : int
        The LRN axis, non-negative.

    Returns
    -------
    int or None
        The chunk's elements, if the LRN axis and the dimensions after it are static, the
        axis is not the last one, the plane is not empty and the chunk is at most
        :data:`PLANE_MAX` elements; None otherwise.
    """
    if axis >= len(shape) - 1 or static_extents([shape[axis]]) is None:
        return None
    trailing = static_extents(shape[axis + 1 :])
    if trailing is None or 0 in trailing:
        return None
    chunk = chunk_rows(trailing) * math.prod(trailing[1:])
    return chunk if chunk <= PLANE_MAX else None


def guard_block(shape, axis: int, size: int) -> tuple[int, int] | None:
    """Channels and rows of one guard block of the guarded form.

    A guard block is a run of channels (along the LRN axis) times a chunk of rows of the
    plane after it (:func:`chunk_rows`); one flag decides the form of all its outputs.
    The CPU schedule makes one parallel task of each block: the guard reads the block
    (and the ``size - 1`` halo channels its windows reach) once, the outputs read it
    again from cache.

    Parameters
    ----------
    shape : sequence of int or PrimExpr
        The input shape.
    axis : int
        The LRN axis, not the last one.
    size : int
        The window length.

    Returns
    -------
    (int, int) or None
        ``(channels, rows)``, each dividing its extent: the largest divisor of the
        channel count of at most :data:`GUARD_CHANNELS` whose block with halo stays
        within :data:`GUARD_BLOCK` elements and that leaves :data:`GUARD_TASKS` blocks
        (if any does; all channels when a smaller block would be mostly halo); None when
        a dimension is symbolic (one block per leading index).
    """
    rows = chunk_rows(shape[axis + 1 :])
    extents = static_extents(shape[: axis + 2])
    if rows is None or extents is None:
        return None
    lead, count = math.prod(extents[:axis]), extents[axis]
    chunks = max(extents[axis + 1], 1) // rows
    chunk = rows * math.prod(static_extents(shape[axis + 2 :]))
    fits = [
        d
        for d in range(1, min(count, GUARD_CHANNELS) + 1)
        if count % d == 0 and (d == 1 or (d + size - 1) * chunk <= GUARD_BLOCK)
    ]
    balanced = [d for d in fits if lead * chunks * (count // d) >= GUARD_TASKS]
    channels = max(balanced or fits, default=1)
    if channels < size - 1 and count * chunk <= GUARD_BLOCK:
        channels = count  # a smaller block would be mostly halo
    return max(channels, 1), rows
