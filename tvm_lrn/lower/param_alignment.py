"""CPU kernels that accept their callers' memory: buffer parameters aligned to one element.

TVM declares every buffer parameter 64-byte aligned and tells LLVM so
(``llvm.assume(align 64)``), so LLVM may emit aligned vector loads; its DLPack import
therefore refuses less-aligned memory. But the memory users pass is rarely 64-byte
aligned: numpy's large arrays and ``torch.from_numpy`` tensors are 16-byte aligned, so a
compiled model had to copy every such input into fresh memory, a pass over the input as
long as a one-pass kernel's. On CPUs, where an unaligned vector load of aligned data is as
fast as an aligned one, :class:`AlignParamsToElements` declares the parameters aligned to
one element instead, and callers borrow any element-aligned memory
(:func:`tvm_lrn.interop.borrow`). GPU kernels keep TVM's alignment.
"""

from __future__ import annotations

import tvm
from tvm.tirx import decl_buffer
from tvm.tirx.buffer import is_buffer_var
from tvm.tirx.transform.common import BufferReplacer

__all__ = ["AlignParamsToElements", "align_params_to_elements"]


def _element_bytes(dtype) -> int:
    dtype = tvm.DataType(str(dtype))
    return max(1, dtype.bits * dtype.lanes // 8)


def _element_aligned(param):
    ty = param.ty
    return decl_buffer(
        ty.shape,
        ty.dtype,
        param.name,
        None,
        ty.strides,
        ty.elem_offset,
        param.scope(),
        _element_bytes(ty.dtype),
        ty.offset_factor,
        layout=ty.layout,
    )


def align_params_to_elements(func: tvm.tirx.PrimFunc) -> tvm.tirx.PrimFunc:
    """``func`` with each buffer parameter declared aligned to one element.

    Parameters
    ----------
    func : tvm.tirx.PrimFunc
        Any PrimFunc, before TVM's lowering.

    Returns
    -------
    tvm.tirx.PrimFunc
        ``func`` itself when no parameter claims more than one element's alignment.
    """
    replaced = {
        p: _element_aligned(p)
        for p in func.params
        if is_buffer_var(p) and p.ty.data_alignment > _element_bytes(p.ty.dtype)
    }
    if not replaced:
        return func
    return BufferReplacer(replaced)(func)


def _is_cpu(func) -> bool:
    target = func.attrs.get("target") if func.attrs is not None else None
    if target is None:
        target = tvm.target.Target.current(allow_none=True)
    return target is not None and target.kind.name in ("llvm", "c")


@tvm.tirx.transform.prim_func_pass(opt_level=0, name="tvm_lrn.AlignParamsToElements")
class AlignParamsToElements:
    """:func:`align_params_to_elements` for every PrimFunc built for a CPU target."""

    def transform_function(self, func, _mod, _ctx):
        """Relax the parameters of one PrimFunc when it runs on a CPU."""
        return align_params_to_elements(func) if _is_cpu(func) else func
