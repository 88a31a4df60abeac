"""Destination-passing variants of a model's functions, so that ``compiled(x, out=y)``
writes the result straight into the caller's ``y``.

A Relax function allocates its result on every call: the caller gets fresh memory,
which for a memory-bound model is a second output's worth of cache and, on first
touch, page faults. :func:`destination_variants` gives every public function
``f`` whose result is one tensor computed by one kernel a twin ``f__out`` taking one
more parameter, the destination, into which that kernel writes in place
(``R.call_tir_inplace``). A function whose result comes otherwise (a tuple, a view of
an input) gets no twin; :class:`tvm_lrn.model.Model` then copies into ``out``.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import relax

__all__ = ["OUT_SUFFIX", "destination_name", "destination_variants"]

#: The twin of function ``f`` is ``f + OUT_SUFFIX``; it takes ``f``'s parameters, then
#: the destination.
OUT_SUFFIX = "__out"

_CALL_TIR = tvm.ir.Op.get("relax.call_tir")


def destination_name(name: str) -> str:
    """The name of the destination-passing twin of function ``name``."""
    return name + OUT_SUFFIX


def _returned_binding(func: relax.Function):
    """``(block index, binding index)`` of the binding that computes ``func``'s result
    by one ``call_tir`` of one tensor, or None."""
    seq = func.body
    if not isinstance(seq, relax.SeqExpr) or not isinstance(seq.body, relax.Var):
        return None
    wanted = seq.body
    for b in reversed(range(len(seq.blocks))):
        bindings = seq.blocks[b].bindings
        for i in reversed(range(len(bindings))):
            binding = bindings[i]
            if not binding.var.same_as(wanted) or not isinstance(binding, relax.VarBinding):
                continue
            value = binding.value
            if isinstance(value, relax.Var):  # ``gv = lv``: follow the alias
                wanted = value
                continue
            if (
                isinstance(value, relax.Call)
                and value.op.same_as(_CALL_TIR)
                and isinstance(binding.var.ty, relax.TensorType)
                # the destination has the function's result type: the kernel's must be it
                # (not so where only the rank is declared and the kernel knows the shape)
                and tvm_ffi.structural_equal(value.ty_args[0], func.ret_ty)
            ):
                return b, i
            return None
    return None


def _inplace_call(call: relax.Call, out: relax.Var) -> relax.Call:
    """``call`` (a ``call_tir`` of one tensor) writing into ``out`` instead."""
    gvar, args = call.args[0], list(call.args[1].fields)
    inplace = relax.op.call_tir_inplace(gvar, relax.Tuple([*args, out]), len(args), out.ty)
    if len(call.args) > 2:  # the kernel's symbolic sizes, passed as they were
        inplace = relax.Call(
            inplace.op, [*inplace.args, call.args[2]], inplace.attrs, inplace.ty_args
        )
    return inplace


def _destination_variant(name: str, func: relax.Function):
    found = _returned_binding(func)
    if found is None:
        return None
    b, i = found
    seq = func.body
    out = relax.Var("out", func.ret_ty)
    block = seq.blocks[b]
    binding = block.bindings[i]
    bindings = list(block.bindings)
    bindings[i] = relax.VarBinding(binding.var, _inplace_call(binding.value, out))
    kind = relax.DataflowBlock if isinstance(block, relax.DataflowBlock) else relax.BindingBlock
    blocks = list(seq.blocks)
    blocks[b] = kind(bindings)
    variant = relax.Function(
        [*func.params, out], relax.SeqExpr(blocks, seq.body), func.ret_ty, func.is_pure
    )
    variant = relax.BlockBuilder().normalize(variant)  # types the new call
    return variant.with_attrs(dict(func.attrs)).with_attr("global_symbol", destination_name(name))


def _lone_kernel(func: relax.Function) -> str | None:
    """The name of the kernel when ``func`` is nothing but one ``call_tir`` of its own
    parameters, in their order: then ``f__out(*args, out)`` is ``kernel(*args, out)``."""
    seq = func.body
    if len(seq.blocks) != 1 or len(seq.blocks[0].bindings) != 1:
        return None
    call = seq.blocks[0].bindings[0].value
    if len(call.args) > 2:  # symbolic sizes passed besides the tensors
        return None
    args = list(call.args[1].fields)
    if len(args) != len(func.params) or not all(
        a.same_as(p) for a, p in zip(args, func.params, strict=True)
    ):
        return None
    return call.args[0].name_hint


def destination_variants(lone_kernels: dict | None = None) -> tvm.transform.Pass:
    """A module pass that adds ``f__out`` (module docstring) for every public Relax
    function ``f`` that has none and whose result one kernel computes; run it after
    fusion, before ``CallTIRRewrite``.

    Parameters
    ----------
    lone_kernels : dict, optional
        Filled with ``{f: kernel name}`` of the functions that are one kernel call of
        their parameters, whose ``out=`` calls can call the kernel itself, past the VM.

    Returns
    -------
    tvm.transform.Pass
    """

    @tvm.transform.module_pass(opt_level=0, name="tvm_lrn.AddDestinationVariants")
    def _pass(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        names = {gv.name_hint for gv in mod.functions}
        for gv, func in list(mod.functions.items()):
            if not isinstance(func, relax.Function) or func.attrs is None:
                continue
            name = func.attrs.get("global_symbol")
            if name is None or str(name).endswith(OUT_SUFFIX):
                continue
            if destination_name(str(name)) in names:
                continue
            variant = _destination_variant(str(name), func)
            if variant is None:
                continue
            mod[destination_name(gv.name_hint)] = variant
            kernel = _lone_kernel(func)
            if kernel is not None and lone_kernels is not None:
                lone_kernels[str(name)] = kernel
        return mod

    return _pass
