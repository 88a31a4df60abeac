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

import tvm
from tvm import relax

from .interop import InputError, input_dtype

__all__ = ["check_call", "signatures"]


def _dim(value):
    if isinstance(value, tvm.tirx.IntImm):
        return int(value.value)
    return str(value)  # a symbolic size, by the name the module gives it


def _param_spec(param):
    ty = param.ty
    if not isinstance(ty, relax.TensorType) or ty.dtype == "":
        return None
    shape = None if ty.shape is None else [_dim(d) for d in ty.shape.values]
    if shape is None and ty.ndim >= 0:
        shape = [f"?{i}" for i in range(ty.ndim)]  # rank known, sizes free
    return {"dtype": str(ty.dtype), "shape": shape}


def signatures(mod: tvm.IRModule) -> dict[str, list]:
    """The signature of every Relax function of ``mod`` (module docstring).

    Parameters
    ----------
    mod : tvm.IRModule
        The module before compilation.

    Returns
    -------
    dict
        ``{function name: signature}``.
    """
    return {
        gv.name_hint: [_param_spec(p) for p in func.params]
        for gv, func in mod.functions.items()
        if isinstance(func, relax.Function)
    }


def _shape_of(x):
    shape = getattr(x, "shape", None)
    return None if shape is None else tuple(int(d) for d in shape)


def _check_tensor(name: str, index: int, spec: dict, x, sizes: dict) -> None:
    where = f"{name}() argument {index}"
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


def check_call(name: str, signature: list | None, args: tuple) -> None:
    """Raise :class:`InputError` unless ``args`` fit ``signature``.

    Parameters
    ----------
    name : str
        The function called (for the message).
    signature : list or None
        Its signature (module docstring); None: unknown, nothing is checked.
    args : tuple
        The arguments of the call: numpy arrays, torch tensors, TVM tensors or others.
    """
    if signature is None:
        return
    if len(args) != len(signature):
        raise InputError(
            f"{name}() takes {len(signature)} argument{'s' * (len(signature) != 1)} "
            f"({_describe(signature)}), got {len(args)}"
        )
    sizes: dict = {}
    for index, (spec, x) in enumerate(zip(signature, args, strict=True)):
        if spec is not None:
            _check_tensor(name, index, spec, x, sizes)


def _describe(signature: list) -> str:
    parts = []
    for spec in signature:
        if spec is None:
            parts.append("a non-tensor value")
        else:
            shape = "any shape" if spec["shape"] is None else _show(spec["shape"])
            parts.append(f"{spec['dtype']} {shape}")
    return ", ".join(parts)
