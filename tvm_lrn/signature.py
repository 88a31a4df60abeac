"""What the functions of a compiled model take, read from its Relax module and checked
before every call, so that a wrong call gets one :class:`InputError` naming the
expected and the given instead of the VM's check text.

A signature is a list with one entry per parameter: ``{"dtype": ..., "shape": [...]}``
for a tensor (a dimension is an int, or the name of a symbolic size that every tensor
sharing it must agree on, or None where even the rank is free: ``"shape": null``), or
None for a parameter that is not a tensor (not checked). Lists of this form go into an
exported library's metadata as they are.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

from .destination import destination_name
from .interop import InputError, input_dtype

__all__ = ["check_call", "destination_name", "signatures", "static_signatures"]


def _dim(value):
    if isinstance(value, tvm.tirx.IntImm):
        return int(value.value)
    return str(value)  # a symbolic size, by the name the module gives it


def _tensor_spec(ty, tag: str):
    if not isinstance(ty, relax.TensorType) or ty.dtype == "":
        return None
    shape = None if ty.shape is None else [_dim(d) for d in ty.shape.values]
    if shape is None and ty.ndim >= 0:
        shape = [f"?{tag}.{i}" for i in range(ty.ndim)]  # rank known, sizes free (own)
    return {"dtype": str(ty.dtype), "shape": shape}


def signatures(mod: tvm.IRModule) -> dict[str, list]:
    """The signature of every Relax function of ``mod`` (module docstring), and of the
    destination-passing twin of each that returns one tensor (its parameters, then the
    result: :mod:`tvm_lrn.destination`).

    Parameters
    ----------
    mod : tvm.IRModule
        The module before compilation.

    Returns
    -------
    dict
        ``{function name: signature}``.
    """
    out = {}
    for gv, func in mod.functions.items():
        if not isinstance(func, relax.Function):
            continue
        out[gv.name_hint] = [_tensor_spec(p.ty, str(i)) for i, p in enumerate(func.params)]
        result = _tensor_spec(func.ret_ty, "out")
        if result is not None:
            out[destination_name(gv.name_hint)] = [*out[gv.name_hint], result]
    return out


def static_signatures(signatures: dict) -> dict:
    """``{name: ((numpy dtype, shape, dtype name), ...)}`` of the functions of
    ``signatures`` that take only tensors of static shapes and numpy dtypes (what a
    compiled model's fast path matches; the name too, since numpy makes it anew on
    every ``dtype.name``)."""
    out = {}
    for name, signature in signatures.items():
        try:
            out[name] = tuple(
                (np.dtype(spec["dtype"]), tuple(int(d) for d in spec["shape"]), spec["dtype"])
                for spec in signature
            )
        except (TypeError, ValueError, KeyError):
            continue  # a non-tensor, symbolic or non-numpy parameter
    return out


def _shape_of(x):
    shape = getattr(x, "shape", None)
    return None if shape is None else tuple(int(d) for d in shape)


def _check_tensor(where: str, spec: dict, x, sizes: dict) -> None:
    given = input_dtype(x, where)
    shape = _shape_of(x)
    if given != spec["dtype"]:
        raise InputError(f"{where}: expected dtype {spec['dtype']}, got {given}")
    expected = spec["shape"]
    if expected is None or shape is None:
        return
    if len(shape) != len(expected):
        raise InputError(
            f"{where}: expected rank {len(expected)} (shape {_show(expected)}), "
            f"got rank {len(shape)} (shape {list(shape)})"
        )
    for axis, (want, got) in enumerate(zip(expected, shape, strict=True)):
        if isinstance(want, str):
            want = sizes.setdefault(want, got)  # the first tensor fixes a symbolic size
        if want != got:
            raise InputError(
                f"{where}: expected shape {_show(expected, sizes)}, got {list(shape)} "
                f"(dimension {axis} is {got}, not {want})"
            )


def _show(shape, sizes=None) -> str:
    sizes = sizes or {}
    return "[" + ", ".join(str(sizes.get(d, d)) for d in shape) + "]"


def check_call(name: str, signature: list | None, args: tuple, out=None) -> None:
    """Raise :class:`InputError` unless ``args`` fit ``signature``.

    Parameters
    ----------
    name : str
        The function called (for the message).
    signature : list or None
        Its signature (module docstring); None: unknown, nothing is checked.
    args : tuple
        The arguments of the call: numpy arrays, torch tensors, TVM tensors or others.
    out : optional
        The destination of a call that writes into one; ``signature`` is then that of
        the function's destination-passing twin (:mod:`tvm_lrn.destination`).
    """
    if signature is None:
        return
    if out is not None:
        signature, result = signature[:-1], signature[-1]
    if len(args) != len(signature):
        raise InputError(
            f"{name}() takes {len(signature)} argument{'s' * (len(signature) != 1)} "
            f"({_describe(signature)}), got {len(args)}"
        )
    sizes: dict = {}
    for index, (spec, x) in enumerate(zip(signature, args, strict=True)):
        if spec is not None:
            _check_tensor(f"{name}() argument {index}", spec, x, sizes)
    if out is not None and result is not None:
        _check_tensor(f"{name}(): out=", result, out, sizes)


def _describe(signature: list) -> str:
    parts = []
    for spec in signature:
        if spec is None:
            parts.append("a non-tensor value")
        else:
            shape = "any shape" if spec["shape"] is None else _show(spec["shape"])
            parts.append(f"{spec['dtype']} {shape}")
    return ", ".join(parts)
