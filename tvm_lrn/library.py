"""Compiled models as shared libraries: :func:`export_model` (what
:meth:`tvm_lrn.model.Model.export_library` runs) and :func:`load_module`, which loads one
back.

An exported library gets a JSON file next to it (:data:`METADATA_SUFFIX`) with the
target, the schedule sources and the signatures, so a loaded model runs on the device it
was built for, checks its calls, and still says where its LRN schedules came from.

A library for another CPU than this one (a target whose ``mtriple`` names another
architecture) is linked by that triple's C++ cross compiler (:func:`compiler_for`), so
that a board loads it: ``aarch64-linux-gnu-g++`` for ``aarch64-linux-gnu``.
"""

from __future__ import annotations

import json
import os
import shutil

import tvm
from tvm.target import Target

from .errors import first_line
from .model import Model
from .target import cpu_triple, foreign_arch, require_native

__all__ = [
    "METADATA_SUFFIX",
    "compiler_for",
    "export_model",
    "load_module",
    "read_metadata",
    "metadata_target",
]

#: Suffix of the JSON file written next to an exported library (target, schedule sources).
METADATA_SUFFIX = ".tvm_lrn.json"


def compiler_for(target: Target | None, cc: str | None = None) -> str | None:
    """The C++ compiler that links a library for ``target``: None for this machine's
    default, else ``cc`` or the cross compiler of the target's ``mtriple``.

    Parameters
    ----------
    target : tvm.target.Target or None
    cc : str, optional
        The compiler (a program on PATH or a path); by default ``<triple>-g++`` for the
        target's ``mtriple`` (with its vendor field dropped if that one is not installed,
        so ``aarch64-unknown-linux-gnu`` finds ``aarch64-linux-gnu-g++``).

    Raises
    ------
    FileNotFoundError
        When no such compiler is installed, naming the ones looked for.
    """
    if cc is not None:
        if shutil.which(cc) is None:
            raise FileNotFoundError(f"the compiler {cc!r} is not installed (not on PATH)")
        return cc
    if foreign_arch(target) is None:
        return None
    parts = cpu_triple(target).split("-")
    names = ["-".join(parts)] + (["-".join(parts[:1] + parts[2:])] if len(parts) == 4 else [])
    if parts[0].startswith("arm") and parts[0] != "arm":  # armv7l-...: Debian's arm-...
        names.append("-".join(["arm", *parts[1:]]))
    for name in names:
        if shutil.which(name + "-g++"):
            return name + "-g++"
    raise FileNotFoundError(
        f"no C++ cross compiler for {'-'.join(parts)}: looked for "
        f"{', '.join(n + '-g++' for n in names)} (Debian/Ubuntu: apt-get install "
        f"g++-{names[-1]}); or give one, e.g. cc='{names[-1]}-g++'"
    )


def export_model(model: Model, path, cc: str | None = None, source=None, **kwargs) -> None:
    """Write ``model`` as a shared library at ``path``, and its metadata next to it; see
    :meth:`tvm_lrn.model.Model.export_library` (``source``: the model file it was
    compiled from, which ``tvm-lrn run`` checks against)."""
    path = os.fspath(path)
    if "fcompile" not in kwargs:
        cc = compiler_for(model.target, cc)
        if cc is not None:
            kwargs["fcompile"] = tvm.support.cc.cross_compiler(cc)
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise IsADirectoryError(f"export_library: {path} is a folder; name a file in it")
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"export_library: the folder {folder} does not exist")
    try:
        model.executable.export_library(path, **kwargs)
    except Exception as err:  # noqa: BLE001 (the compiler's or linker's failure)
        raise RuntimeError(f"export_library to {path} failed: {first_line(err)}") from None
    meta = {
        "target": None if model.target is None else _target_json(model.target),
        "device_type": int(model.device.dlpack_device_type()),
        "schedule_sources": model.schedule_sources,
        "element_aligned": model.element_aligned,
        "signatures": model.signatures,
        "lone_kernels": model.lone_kernels,
    }
    if source is not None:
        meta["source"] = os.fspath(source)
    with open(path + METADATA_SUFFIX, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1, sort_keys=True)


def _target_json(target: Target) -> dict:
    return json.loads(str(target))  # a Target prints as its JSON config (host included)


def read_metadata(path: str) -> dict:
    """The metadata written next to the library ``path`` by :meth:`Model.export_library`
    (target, schedule sources, signatures), or {} where there is none.

    Raises
    ------
    ValueError
        For a file there that is not such metadata, naming it.
    """
    meta_path = path + METADATA_SUFFIX
    if not os.path.exists(meta_path):
        return {}
    try:
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{meta_path}: not tvm_lrn metadata ({first_line(err)}); export the model again, "
            "or delete the file to load the library without it"
        ) from None
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path}: not tvm_lrn metadata (a JSON object is expected)")
    return meta


def metadata_target(meta: dict) -> Target | None:
    """The target recorded in a library's metadata (:func:`read_metadata`), if any."""
    try:
        return Target(meta["target"]) if meta.get("target") else None
    except (ValueError, TypeError, RuntimeError):
        return None


def load_module(path, device=None) -> Model:
    """Load a library written by :meth:`Model.export_library`.

    Parameters
    ----------
    path : str or os.PathLike
        The shared library.
    device : tvm.runtime.Device, optional
        Where to run; by default the device of the target it was built for (from the
        metadata file next to it, else from the kinds of its device modules).

    Returns
    -------
    Model
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise IsADirectoryError(f"load_module: {path} is a folder, not a library")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_module: no file {path}")
    meta = read_metadata(path)
    target = metadata_target(meta)
    require_native(target, f"{path}")
    try:
        lib = tvm.runtime.load_module(path)
    except Exception as err:  # noqa: BLE001 (the loader's error types come from C++)
        raise ValueError(
            f"load_module: {path} is not a library TVM can load ({first_line(err)}); "
            "export one with Model.export_library"
        ) from None
    if device is None and meta.get("device_type") is not None:
        device = tvm.device(int(meta["device_type"]), 0)
    return Model(
        lib,
        target=target,
        device=device,
        schedule_sources=meta.get("schedule_sources", {}),
        element_aligned=meta.get("element_aligned", False),
        signatures=meta.get("signatures"),
        lone_kernels=meta.get("lone_kernels"),
    )
