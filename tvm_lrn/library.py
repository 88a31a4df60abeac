"""Compiled models as shared libraries: :func:`export_model` (what
:meth:`tvm_lrn.model.Model.export_library` runs) and :func:`load_module`, which loads one
back.

An exported library gets a JSON file next to it (:data:`METADATA_SUFFIX`) with the
target, the schedule sources and the signatures, so a loaded model runs on the device it
was built for, checks its calls, and still says where its LRN schedules came from.
"""

from __future__ import annotations

import json
import os

import tvm
from tvm.target import Target

from .errors import first_line
from .model import Model

__all__ = ["METADATA_SUFFIX", "export_model", "load_module"]

#: Suffix of the JSON file written next to an exported library (target, schedule sources).
METADATA_SUFFIX = ".tvm_lrn.json"


def export_model(model: Model, path, **kwargs) -> None:
    """Write ``model`` as a shared library at ``path``, and its metadata next to it; see
    :meth:`tvm_lrn.model.Model.export_library`."""
    path = os.fspath(path)
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
    with open(path + METADATA_SUFFIX, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1, sort_keys=True)


def _target_json(target: Target) -> dict:
    return json.loads(str(target))  # a Target prints as its JSON config (host included)


def _read_metadata(path: str) -> dict:
    """The metadata written next to ``path`` by :meth:`Model.export_library`, or {}."""
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
    meta = _read_metadata(path)
    try:
        lib = tvm.runtime.load_module(path)
    except Exception as err:  # noqa: BLE001 (the loader's error types come from C++)
        raise ValueError(
            f"load_module: {path} is not a library TVM can load ({first_line(err)}); "
            "export one with Model.export_library"
        ) from None
    target = None
    if meta.get("target"):
        try:
            target = Target(meta["target"])
        except (ValueError, TypeError, RuntimeError):
            target = None
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
