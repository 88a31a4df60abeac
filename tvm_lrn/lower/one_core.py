"""Kernels for a one-core target run on their caller's thread: :class:`SerializeOnOneCore`.

A ``parallel`` loop becomes a launch on TVM's thread pool, whatever the target says of
its cores. Where a kernel shares the CPU with another runtime's threads (the custom op
in a torch.compile graph, between inductor's OpenMP regions), waking TVM's workers costs
more than the parallelism gains: a worker that lands on a core where an OpenMP thread is
still spinning waits for the scheduler, and TVM's own workers spin in turn after the
kernel (ZFNet at 2 threads: 27 ms through the op against 21 ms under inductor alone). A
target with ``num-cores`` 1 asks for kernels without that launch, and this pass turns
their parallel loops into serial ones (a parallel loop has no order between iterations,
so the result is the same).
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import tirx

__all__ = ["SerializeOnOneCore", "on_one_core", "serialize_parallel_loops"]


def on_one_core(target: tvm.target.Target | None) -> bool:
    """Whether ``target`` is a CPU target that says it has one core.

    Parameters
    ----------
    target : tvm.target.Target or None

    Returns
    -------
    bool
        True for an llvm target whose ``num-cores`` is 1 (so a user's ``num-cores=1``
        target, and a tuning target on a host with one physical core, also get serial
        kernels).
    """
    return (
        target is not None
        and target.kind.name == "llvm"
        and int(target.attrs.get("num-cores", 0) or 0) == 1
    )


def serialize_parallel_loops(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """``func`` with each ``parallel`` loop made ``serial``.

    Parameters
    ----------
    func : tvm.tirx.PrimFunc
        A scheduled PrimFunc.

    Returns
    -------
    tvm.tirx.PrimFunc
        ``func`` itself when it has no parallel loop.
    """

    def on_for(node, mutator):
        node = mutator.default_mutate(node)
        if node.kind != tirx.ForKind.PARALLEL:
            return node
        return tirx.For(
            node.loop_var,
            node.min,
            node.extent,
            tirx.ForKind.SERIAL,
            node.body,
            node.thread_binding,
            node.annotations,
            step=node.step,
            span=node.span,
        )

    body = tvm_ffi.structural_mutate(func.body, [(tirx.For, on_for)])  # unchanged: the same
    return func if body.same_as(func.body) else func.with_body(body)


@tvm.tirx.transform.prim_func_pass(opt_level=0, name="tvm_lrn.SerializeOnOneCore")
class SerializeOnOneCore:
    """:func:`serialize_parallel_loops` on each PrimFunc built for a one-core target
    (its ``target`` attribute, else the current target)."""

    def transform_function(self, func, _mod, _ctx):
        """Serialize one PrimFunc where its target has one core."""
        target = func.attrs.get("target") if func.attrs else None
        if target is None:
            target = tvm.target.Target.current(allow_none=True)
        return serialize_parallel_loops(func) if on_one_core(target) else func
