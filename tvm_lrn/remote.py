"""Remote devices through TVM's RPC tracker: run, check and time a model on a board.

A device is what TVM's tracker calls a key: every RPC server registered with a tracker
under one key is one such device (a fleet of identical boards, or one). A library
compiled for the device's CPU (:func:`tvm_lrn.compile` with its target, linked by the
triple's cross compiler: :func:`tvm_lrn.library.compiler_for`) is uploaded, loaded
there, run on given or random inputs, timed by the device's own clock, and its outputs
are compared on the host with a reference (float64 torch for a ``.pt2``, or any
function). Tuning measures on the same devices through MetaSchedule's ``RPCRunner``
(:meth:`RemoteDevice.rpc_config`).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
from collections.abc import Callable, Sequence

import numpy as np

from .errors import first_line
from .interop import numpy_dtype
from .reference import relative_error

__all__ = [
    "NO_SERVER",
    "TRACKER_ENV",
    "RemoteDevice",
    "RemoteRun",
    "pt2_reference",
    "random_inputs",
    "run",
]

#: The environment variables that name a device (as MetaSchedule's RPCConfig reads them).
TRACKER_ENV = ("TVM_TRACKER_HOST", "TVM_TRACKER_PORT", "TVM_TRACKER_KEY")

#: How :meth:`RemoteDevice.connect` says that no server is left under the key (also in
#: the error text of measurements, which cross process boundaries as text).
NO_SERVER = "no RPC server is registered"


@dataclasses.dataclass(frozen=True)
class RemoteDevice:
    """The devices registered with the RPC tracker at ``host:port`` under ``key``.

    Attributes
    ----------
    host : str
    port : int
    key : str
    session_timeout : float
        Seconds a session may last before the server ends it (0: no limit).
    """

    host: str
    port: int
    key: str
    session_timeout: float = 0.0

    @classmethod
    def resolve(cls, rpc: str | None = None, key: str | None = None, **kwargs) -> RemoteDevice:
        """A device from ``"HOST:PORT"`` and ``key``, each else from :data:`TRACKER_ENV`.

        Raises
        ------
        ValueError
            When the address or the key is missing or malformed, naming which.
        """
        host, port = os.environ.get(TRACKER_ENV[0]), os.environ.get(TRACKER_ENV[1])
        if rpc:
            host, sep, port = str(rpc).rpartition(":")
            if not sep or not host:
                raise ValueError(f"invalid tracker address {rpc!r} (expected HOST:PORT)")
        key = key or os.environ.get(TRACKER_ENV[2])
        missing = [n for n, v in (("HOST:PORT", host and port), ("key", key)) if not v]
        if missing:
            raise ValueError(
                f"no RPC device: give the tracker's {' and '.join(missing)} (--rpc HOST:PORT "
                f"--key KEY, or the environment variables {', '.join(TRACKER_ENV)})"
            )
        if not str(port).isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"invalid tracker port {port!r} (expected 1-65535)")
        return cls(str(host), int(port), str(key), **kwargs)

    def __str__(self) -> str:
        return f"{self.key!r} at tracker {self.host}:{self.port}"

    def _tracker(self):
        """TVM's tracker session, after a quick check that something listens there
        (``connect_tracker`` itself retries for a minute)."""
        from tvm import rpc

        try:
            with socket.create_connection((self.host, self.port), timeout=5.0):
                pass
        except OSError as err:
            raise ConnectionError(
                f"no RPC tracker at {self.host}:{self.port} ({err.strerror or err}); start "
                "one with python -m tvm.exec.rpc_tracker, or see README 'Deploy to a device'"
            ) from None
        return rpc.connect_tracker(self.host, self.port)

    def servers(self, tracker=None) -> int:
        """How many servers the tracker has under the key now (free or busy).

        Raises
        ------
        ConnectionError
            When nothing answers at the tracker's address.
        """
        summary = (tracker or self._tracker()).summary()
        return sum(1 for s in summary["server_info"] if s.get("key") == f"server:{self.key}")

    def connect(self):
        """An RPC session on one of the devices (the tracker picks a free one, waiting
        for one when all are busy).

        Raises
        ------
        ConnectionError
            When the tracker is unreachable or has no server under the key.
        """
        tracker = self._tracker()
        if self.servers(tracker) == 0:  # the tracker would queue the request for ever
            raise ConnectionError(f"{NO_SERVER} as device {self}: start an RPC server")
        try:
            return tracker.request(self.key, priority=1, session_timeout=self.session_timeout)
        except (RuntimeError, OSError) as err:
            raise ConnectionError(f"no session on device {self}: {first_line(err)}") from None

    @classmethod
    def connect_config(cls, rpc_config):
        """:meth:`connect` for MetaSchedule's ``RPCConfig`` (RPCRunner's
        ``f_create_session``): refused at once when the key has no server left, where
        the tracker would make the runner wait for ever."""
        device = cls(
            rpc_config.tracker_host,
            int(rpc_config.tracker_port),
            rpc_config.tracker_key,
            float(rpc_config.session_timeout_sec or 0),
        )
        return device.connect()

    def rpc_config(self):
        """MetaSchedule's ``RPCConfig`` for measuring on these devices."""
        from tvm.s_tir import meta_schedule as ms

        return ms.runner.RPCConfig(
            tracker_host=self.host,
            tracker_port=self.port,
            tracker_key=self.key,
            session_timeout_sec=int(self.session_timeout or 600),
        )


@dataclasses.dataclass
class RemoteRun:
    """What :func:`run` measured.

    Attributes
    ----------
    device : str
        Which device (key and tracker).
    outputs : list of numpy.ndarray
        The model's outputs as the device computed them.
    seconds : float
        Median time per call, by the device's clock.
    errors : list of float or None
        Each output's relative error (largest absolute difference over the largest
        absolute value) against the reference; None without one.
    """

    device: str
    outputs: list
    seconds: float
    errors: list | None = None


def random_inputs(signature: list, scale: float = 1.0, seed: int = 0) -> list[np.ndarray]:
    """Normal random inputs for a model's signature (``Model.signatures["main"]``),
    times ``scale``; symbolic sizes are 1."""
    rng = np.random.default_rng(seed)
    out = []
    for index, spec in enumerate(signature):
        if spec is None or spec["shape"] is None:
            raise ValueError(f"input {index} has no known shape: give the inputs")
        shape = [d if isinstance(d, int) else 1 for d in spec["shape"]]
        out.append((rng.standard_normal(shape) * scale).astype(numpy_dtype(spec["dtype"])))
    return out


def pt2_reference(path) -> Callable:
    """``f(*inputs) -> [outputs]``: the ``torch.export`` program at ``path`` in float64
    (weights and inputs), on the host CPU."""
    import torch

    from .frontend.torch import load_exported_program

    module = load_exported_program(os.fspath(path)).module().to(torch.float64)

    def reference(*inputs):
        with torch.no_grad():
            out = module(*(torch.from_numpy(np.asarray(x, dtype=np.float64)) for x in inputs))
        return [t.numpy() for t in (out if isinstance(out, list | tuple) else [out])]

    return reference


def run(  # the call users make; every argument but the first has a default
    model,
    inputs: Sequence | None = None,
    device: RemoteDevice | None = None,
    *,
    reference: Callable | None = None,
    number: int = 10,
    repeat: int = 3,
    cc: str | None = None,
) -> RemoteRun:
    """Run a compiled model on a remote device, time it there and check its outputs.

    Parameters
    ----------
    model : tvm_lrn.model.Model or str or os.PathLike
        A compiled model (exported here for the device, linked by ``cc`` or the
        target's cross compiler) or a library written by ``export_library``.
    inputs : sequence of numpy.ndarray, optional
        The inputs of ``main``; normal random ones of its signature by default.
    device : RemoteDevice, optional
        By default from :data:`TRACKER_ENV`.
    reference : callable, optional
        ``reference(*inputs)`` -> an array or a sequence of arrays (e.g.
        :func:`pt2_reference`), computed on the host.
    number, repeat : int
        Calls per timing, and timings (the median is reported).
    cc : str, optional
        The compiler that links an in-memory ``model``.

    Returns
    -------
    RemoteRun
    """
    from .library import metadata_target, read_metadata
    from .signature import check_call

    device = device or RemoteDevice.resolve()
    with tempfile.TemporaryDirectory(prefix="tvm-lrn-remote-") as tmp:
        path = _library(model, tmp, cc)
        meta = read_metadata(path)
        signature = meta.get("signatures", {}).get("main")
        if inputs is None:
            inputs = random_inputs(signature or [None])
        inputs = [np.ascontiguousarray(x) for x in inputs]
        check_call("main", signature, tuple(inputs))
        target = metadata_target(meta)
        outputs, seconds = _run_there(
            device, path, inputs, int(meta.get("device_type", 1)), (number, repeat)
        )
    errors = None
    if reference is not None:
        truth = reference(*inputs)
        truth = [truth] if isinstance(truth, np.ndarray) else list(truth)
        if len(truth) != len(outputs):
            raise ValueError(f"the reference gave {len(truth)} outputs, the model {len(outputs)}")
        errors = [relative_error(y, t) for y, t in zip(outputs, truth, strict=True)]
    name = f"{device} ({target.kind.name} {target.attrs.get('mtriple', '')})" if target else device
    return RemoteRun(str(name), outputs, seconds, errors)


def _library(model, folder: str, cc: str | None) -> str:
    if isinstance(model, str | os.PathLike):
        path = os.fspath(model)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no library {path}")
        return path
    path = os.path.join(folder, "model.so")
    model.export_library(path, cc=cc)
    return path


def _run_there(device: RemoteDevice, path: str, inputs: list, device_type: int, timing) -> tuple:
    """Upload, load, run and time on one device; ``(outputs, median seconds)``."""
    import tvm
    from tvm import relax

    session = device.connect()
    step = "upload"
    try:
        session.upload(path)
        step = "load"
        lib = session.load_module(os.path.basename(path))
        dev = session.device(device_type, 0)
        vm = relax.VirtualMachine(lib, dev)
        step = "run"
        args = [tvm.runtime.tensor(x, device=dev) for x in inputs]
        outputs = [t.numpy() for t in _tensors(vm["main"](*args))]
        step = "timing"
        timer = vm.time_evaluator("main", dev, number=timing[0], repeat=timing[1])
        seconds = float(timer(*args).median)
    except Exception as err:  # noqa: BLE001 (RPC errors arrive as several TVM types)
        raise RuntimeError(
            f"device {device} failed in the {step} of {os.path.basename(path)}: {first_line(err)}"
        ) from None
    return outputs, seconds


def _tensors(value) -> list:
    import tvm

    if isinstance(value, tvm.runtime.Tensor):
        return [value]
    return [t for item in value for t in _tensors(item)]
