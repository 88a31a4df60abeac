"""GPU schedule rule for the LRN PrimFunc.

Schedule: each thread computes a run of ``channels`` consecutive outputs along the LRN
axis at one position of the other axes, unrolled: neighbouring windows share all but one
input, so the thread loads ``channels + size - 1`` inputs for ``channels`` outputs (the
CUDA compiler keeps the shared ones in registers) instead of ``size`` per output (one
output per thread took 1.4x to 1.9x as long on an H100: ``benchmarks/README.md``). The
loops other than that run are fused, split by a thread count and bound to
``blockIdx.x``/``threadIdx.x``, so a warp reads and writes consecutive addresses
(coalesced) in every step. When the LRN axis is the last one (channels-last) a thread
computes one output: neighbouring threads then share the window's cache lines instead.

The checked form (what GPU targets legalize to) sums each window in the output's own
code; the window reductions of the scaled form are computed inside the thread into
``local`` (register) scalars. Either way no intermediate tensor exists in global memory.
The guarded form (a PrimFunc made without a target) also schedules, less well: its
guard is a kernel of its own, one thread per guard block.

Numerics: CUDA source compiles with fast math unless the precise callback of
:mod:`tvm_lrn.lower.cuda_math` is installed (the model and ``tvm_lrn.run`` install it).
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.target import Target

from .common import LRNScheduleRule, split_loops

__all__ = ["GPULRN"]

#: Threads per block unless the target allows fewer.
DEFAULT_THREADS = 256
#: Consecutive outputs along the LRN axis that one thread computes.
DEFAULT_CHANNELS = 8


class GPULRN(LRNScheduleRule):
    """DLight rule: the LRN PrimFunc on a GPU target (``"gpu"`` in its keys).

    Covers cuda, rocm, vulkan, metal and opencl alike: the schedule uses only
    ``blockIdx.x``/``threadIdx.x`` and ``local`` scratch. ``apply`` returns None for
    PrimFuncs that are not LRN and for targets without the ``gpu`` key.

    Parameters
    ----------
    threads : int, optional
        Threads per block; by default ``min(256, target.max_num_threads)``.
    channels : int, optional
        Consecutive outputs along the LRN axis per thread (:data:`DEFAULT_CHANNELS`
        by default; 1 gives one output per thread).
    """

    def __init__(self, threads: int | None = None, channels: int | None = None):
        if channels is not None and channels < 1:
            raise ValueError(f"channels must be at least 1, got {channels}")
        self.threads = threads
        self.channels = channels

    def is_target_available(self, target: Target) -> bool:
        """Whether ``target`` is a GPU target."""
        return "gpu" in target.keys

    def thread_count(self, target: Target) -> int:
        """Threads per block for ``target``."""
        limit = int(target.attrs.get("max_num_threads", DEFAULT_THREADS) or DEFAULT_THREADS)
        return max(1, min(self.threads or DEFAULT_THREADS, limit))

    def channel_run(self, func: tirx.PrimFunc, extents) -> int:
        """Outputs along the LRN axis per thread, or 0 for one output per thread.

        One output per thread where the LRN axis is the last one, unknown, or symbolic:
        a run that may cross the axis' end puts each output under a bounds check, and
        the compiler then loads every window anew. A static axis gets the largest run up
        to ``channels`` that divides it; where that is under half of ``channels``, runs
        of ``channels`` with the bounds checks (still fewer loads than one output per
        thread).
        """
        axis = func.attrs.get("tvm_lrn.axis") if func.attrs is not None else None
        if axis is None or int(axis) % len(extents) == len(extents) - 1:
            return 0
        extent = extents[int(axis) % len(extents)]
        if not isinstance(extent, tirx.IntImm):
            return 0
        run = min(self.channels or DEFAULT_CHANNELS, int(extent))
        divisor = max(d for d in range(1, run + 1) if int(extent) % d == 0)
        run = divisor if 2 * divisor > run else run
        return run if run > 1 else 0

    def schedule(self, sch: s_tir.Schedule, blocks, func: tirx.PrimFunc, target: Target):
        """Schedule the LRN blocks in ``sch`` in place (see the module docstring)."""
        threads = self.thread_count(target)
        if blocks.guards:  # a guard covers many outputs: a kernel of its own
            for block in [*blocks.reductions, *blocks.guards]:
                spatial, _ = split_loops(sch, block)
                fused = sch.fuse(*spatial) if len(spatial) > 1 else spatial[0]
                bx, tx = sch.split(fused, [None, threads])
                sch.bind(bx, "blockIdx.x")
                sch.bind(tx, "threadIdx.x")
        loops = sch.get_loops(blocks.output)
        inner = None
        chunk = 0 if blocks.guards else self.channel_run(func, [sch.get(i).extent for i in loops])
        if chunk:
            axis = int(func.attrs["tvm_lrn.axis"]) % len(loops)
            outer, inner = sch.split(loops[axis], [None, chunk])
            loops = [*loops[:axis], outer, *loops[axis + 1 :]]
            sch.reorder(*loops, inner)
        fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
        bx, tx = sch.split(fused, [None, threads])
        sch.bind(bx, "blockIdx.x")
        sch.bind(tx, "threadIdx.x")
        if blocks.guards:
            return
        if inner is not None:
            sch.unroll(inner)
        for block in reversed(blocks.reductions):
            sch.compute_at(block, tx if inner is None else inner, preserve_unit_loops=True)
            # Else codegen refuses: a global buffer cannot be allocated inside a kernel.
            sch.set_scope(block, 0, "local")
