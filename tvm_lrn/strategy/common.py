"""What the CPU and GPU rules share: recognising the LRN PrimFunc and its blocks."""

from __future__ import annotations

from dataclasses import dataclass

from tvm import s_tir, tirx
from tvm.s_tir import dlight as dl

__all__ = [
    "LRNBlocks",
    "LRNScheduleRule",
    "has_lrn_blocks",
    "lrn_blocks",
    "split_loops",
    "walk",
    "OUTPUT",
    "REDUCTIONS",
    "GUARDS",
]

#: Name of the elementwise output block of :func:`tvm_lrn.compute.lrn`.
OUTPUT = "lrn"
#: The window reductions, in the order they are produced (the sum reads the max).
REDUCTIONS = ("lrn_window_max", "lrn_window_sumsq")
#: The range guard of the guarded form: the largest input magnitude per guard block.
GUARDS = ("lrn_range",)


def has_lrn_blocks(func) -> bool:
    """Whether ``func`` has exactly the blocks of :func:`tvm_lrn.compute.lrn`.

    The rules recognise LRN by its blocks, not by the ``tvm_lrn.*`` attributes of a
    legalized kernel (:func:`tvm_lrn.op.is_lrn_primfunc`), so that they also schedule a
    PrimFunc built from the compute by hand.

    Parameters
    ----------
    func : object
        Anything; only a :class:`tvm.tirx.PrimFunc` can qualify.

    Returns
    -------
    bool
        True when its blocks are ``lrn`` plus some of ``lrn_window_max``,
        ``lrn_window_sumsq`` and ``lrn_range``, and nothing else.
    """
    if not isinstance(func, tirx.PrimFunc):
        return False
    names = _block_names(func)
    return OUTPUT in names and names <= {OUTPUT, *REDUCTIONS, *GUARDS}


def walk(stmt, visit) -> None:
    """Call ``visit`` on ``stmt`` and every statement below it, parents first.

    TVM 0.27 has no Python ``post_order_visit`` for TIR (``tvm.tirx.stmt_functor`` is
    gone), so this follows the statement fields the schedulable TIR uses: sequences,
    block realizes, blocks (body and init), loops, branches and other ``body`` holders.

    Parameters
    ----------
    stmt : tvm.tirx.Stmt
        Root of the walk, e.g. ``func.body``.
    visit : callable
        Called with each statement.
    """
    stack = [stmt]
    while stack:
        node = stack.pop()
        if node is None:
            continue
        visit(node)
        if isinstance(node, tirx.SeqStmt):
            stack.extend(reversed(list(node.seq)))
        elif isinstance(node, s_tir.SBlockRealize):
            stack.append(node.block)
        elif isinstance(node, s_tir.SBlock):
            stack.append(node.body)
            stack.append(node.init)
        elif isinstance(node, tirx.IfThenElse):
            stack.append(node.else_case)
            stack.append(node.then_case)
        else:
            body = getattr(node, "body", None)
            if isinstance(body, tirx.Stmt):
                stack.append(body)


def _block_names(func: tirx.PrimFunc) -> set[str]:
    names = set()

    def visit(node):
        if isinstance(node, s_tir.SBlock) and node.name_hint != "root":
            names.add(node.name_hint)

    walk(func.body, visit)
    return names


@dataclass
class LRNBlocks:
    """Handles on the blocks of an LRN schedule.

    Attributes
    ----------
    output : s_tir.SBlockRV
        The elementwise output block.
    reductions : list of s_tir.SBlockRV
        The window reductions present, producers first (none when ``beta == 0`` and in
        the guarded and checked forms, which sum each window in the output's loop).
    compute_dtype : str
        The dtype the window sums are computed in (float32 or float64).
    guards : list of s_tir.SBlockRV
        The range guard (``lrn_range``) when present: the largest input magnitude per
        guard block, which decides between the fast path and the float64 fallback.
    """

    output: object
    reductions: list
    compute_dtype: str
    guards: list


def lrn_blocks(sch: s_tir.Schedule) -> LRNBlocks | None:
    """The LRN blocks of ``sch``, or None when its PrimFunc has any other structure.

    Parameters
    ----------
    sch : s_tir.Schedule
        A fresh schedule of one PrimFunc.

    Returns
    -------
    LRNBlocks or None
    """
    try:
        children = sch.get_child_blocks(sch.get_sblock("root"))
    except (s_tir.ScheduleError, ValueError, RuntimeError):
        return None
    by_name = {sch.get(b).name_hint: b for b in children}
    if OUTPUT not in by_name or set(by_name) - {OUTPUT, *REDUCTIONS, *GUARDS}:
        return None
    # The output must be the last block and the only one writing a function output.
    if sch.get(children[-1]).name_hint != OUTPUT:
        return None
    reductions = [by_name[n] for n in REDUCTIONS if n in by_name]
    for block in reductions:
        if len(sch.get_loops(block)) != len(sch.get_loops(by_name[OUTPUT])) + 1:
            return None
    out_block = sch.get(by_name[OUTPUT])
    if reductions:
        dtype = str(sch.get(reductions[-1]).writes[0].source.dtype)
    else:  # window sums inline: float32 for every input narrower than float64
        wide = str(out_block.writes[0].source.dtype) == "float64"
        dtype = "float64" if wide else "float32"
    guards = [by_name[n] for n in GUARDS if n in by_name]
    return LRNBlocks(by_name[OUTPUT], reductions, dtype, guards)


def split_loops(sch: s_tir.Schedule, block) -> tuple[list, list]:
    """The loops of a block at the root, as ``(spatial, reduction)`` lists.

    Parameters
    ----------
    sch : s_tir.Schedule
        The schedule.
    block : s_tir.SBlockRV
        A block whose loops are still one per block variable, spatial ones first (as
        ``te.create_prim_func`` makes them).

    Returns
    -------
    (list of LoopRV, list of LoopRV)
    """
    loops = sch.get_loops(block)
    n_spatial = sum(iv.iter_type == tirx.IterVar.DataPar for iv in sch.get(block).iter_vars)
    return list(loops[:n_spatial]), list(loops[n_spatial:])


class LRNScheduleRule(dl.ScheduleRule):
    """DLight rule base: applies to LRN PrimFuncs on the targets a subclass accepts.

    Subclasses define ``is_target_available(target)`` and ``schedule(sch, blocks, func,
    target)``; ``apply`` returns None wherever the rule does not apply.
    """

    def schedule(self, sch: s_tir.Schedule, blocks: LRNBlocks, func, target):
        """Schedule the LRN blocks in ``sch`` in place (subclasses implement this)."""
        raise NotImplementedError

    def apply(self, func: tirx.PrimFunc, target, tunable: bool = False):
        """Schedule ``func`` for ``target``.

        Parameters
        ----------
        func : tvm.tirx.PrimFunc
            The PrimFunc to schedule.
        target : tvm.target.Target
            The compilation target.
        tunable : bool
            Unused: the rules have no tunable knobs.

        Returns
        -------
        s_tir.Schedule or None
            None for a PrimFunc that is not LRN or a target the rule does not serve.
        """
        if not self.is_target_available(target) or not has_lrn_blocks(func):
            return None
        sch = s_tir.Schedule(func)
        blocks = lrn_blocks(sch)
        if blocks is None:
            return None
        self.schedule(sch, blocks, func, target)
        return sch
