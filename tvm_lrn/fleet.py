"""A local fleet: TVM's RPC tracker and servers on 127.0.0.1, as child processes.

What a lab of boards is to a user (``python -m tvm.exec.rpc_tracker`` on one host,
``python -m tvm.exec.rpc_server --tracker ... --key ...`` on each board), this starts on
one machine: a tracker, then servers under keys, each with the Python that it is given
(the host's own, or an emulated one such as ``scripts/aarch64-device`` sets up). They are
TVM's own programs, so whatever works with a fleet of these works with a real one. Used
by ``scripts/aarch64-device`` and by the tests.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

__all__ = ["LocalFleet", "free_port", "stop_pids"]

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


class LocalFleet:
    """A tracker on 127.0.0.1 and the RPC servers registered with it.

    Parameters
    ----------
    log_dir : str or os.PathLike, optional
        Where each process's output goes (``tracker.log``, ``<key>-<n>.log``); a new
        temporary folder by default.
    port : int, optional
        The tracker's port; a free one by default.
    tracker : str, optional
        ``HOST:PORT`` of a tracker that runs already: servers are added to it, and none
        is started.

    Examples
    --------
    >>> with LocalFleet() as fleet:  # doctest: +SKIP
    ...     fleet.add_servers("x86", 2)
    ...     device = fleet.device("x86")  # a tvm_lrn.remote.RemoteDevice
    """

    def __init__(self, log_dir=None, port: int | None = None, tracker: str | None = None):
        self.log_dir = Path(log_dir or tempfile.mkdtemp(prefix="tvm-lrn-fleet-"))
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.processes: list[tuple[str, subprocess.Popen]] = []
        if tracker:
            host, _, tracker_port = tracker.rpartition(":")
            self.host, self.port = host, int(tracker_port)
            if not _listening(self.host, self.port):
                raise ConnectionError(f"no RPC tracker listens at {tracker}")
            return
        self.host = LOOPBACK
        self.port = port or free_port()
        if _listening(self.host, self.port):
            raise OSError(
                f"{self.host}:{self.port} is taken (a tracker running already? join that one "
                "instead, or choose another port)"
            )
        self._start("tracker", [sys.executable, "-m", "tvm.exec.rpc_tracker"], self.port)
        self._wait(lambda: _listening(self.host, self.port), "the tracker", 30.0)

    @property
    def pids(self) -> list[int]:
        """The process ids of what this fleet started (for :func:`stop_pids`)."""
        return [proc.pid for _, proc in self.processes if proc.poll() is None]

    @property
    def address(self) -> str:
        """``HOST:PORT`` of the tracker."""
        return f"{self.host}:{self.port}"

    def add_servers(self, key: str, count: int = 1, python=None, timeout: float = 120.0):
        """Start ``count`` RPC servers under ``key`` and wait until the tracker has them.

        Parameters
        ----------
        key : str
            The device key they register under.
        count : int
            How many.
        python : str or list of str, optional
            The Python (a program, or a command line) that runs them; this one's by default.
        timeout : float
            Seconds to wait for all of them to register (an emulated Python imports TVM in
            about 12 s).
        """
        command = [python] if isinstance(python, str) else list(python or [sys.executable])
        before = self.device(key).servers()
        for _ in range(count):
            name = f"{key}-{sum(1 for n, _ in self.processes if n.startswith(key + '-'))}"
            argv = [*command, "-m", "tvm.exec.rpc_server", "--tracker", self.address]
            self._start(name, [*argv, "--key", key], free_port())
        self._wait(
            lambda: self.device(key).servers() >= before + count,
            f"{count} server(s) under key {key!r}",
            timeout,
        )

    def device(self, key: str, **kwargs):
        """A :class:`tvm_lrn.remote.RemoteDevice` for ``key`` on this tracker."""
        from .remote import RemoteDevice

        return RemoteDevice(self.host, self.port, key, **kwargs)

    def stop_server(self, key: str) -> None:
        """Kill the newest server under ``key`` (as a board that loses power)."""
        for name, proc in reversed(self.processes):
            if name.startswith(key + "-") and proc.poll() is None:
                _kill(proc)
                return
        raise ValueError(f"no running server under key {key!r}")

    def stop(self) -> None:
        """Stop every server, then the tracker."""
        for _, proc in reversed(self.processes):
            _kill(proc)
        self.processes.clear()

    def __enter__(self) -> LocalFleet:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _start(self, name: str, argv: list, port: int) -> None:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 (the child keeps it)
        argv = [*argv, "--host", self.host, "--port", str(port), "--port-end", str(port + 1)]
        # A session of its own: stopping kills the forked workers with their server.
        proc = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        self.processes.append((name, proc))

    def _wait(self, ready, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, proc in self.processes:
                if proc.poll() is not None:
                    self.stop()
                    raise RuntimeError(
                        f"{name} exited with status {proc.returncode} before {what} came "
                        f"up: {_tail(self.log_dir / f'{name}.log')}"
                    )
            if ready():
                return
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"{what} did not come up in {timeout:.0f} s (logs in {self.log_dir})")


def _listening(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        stop_pids([proc.pid])
        proc.wait()  # reap it


def stop_pids(pids: list[int]) -> None:
    """Stop processes that a :class:`LocalFleet` started in another process (by
    :attr:`LocalFleet.pids`), each with what it forked; gone ones are skipped."""
    for pid in reversed(pids):
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.1)
            if not _alive(pid):
                break


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (its parent has not reaped it) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


def _tail(path: Path, lines: int = 3) -> str:
    """The first exception line of a log (the cause; later ones are often teardown
    noise), else its last lines."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    errors = [t for t in text if re.match(r"[A-Za-z_.]*(Error|Exception)\b.*: ", t)]
    return errors[0] if errors else (" | ".join(text[-lines:]) or "(empty log)")
