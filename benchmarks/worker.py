#!/usr/bin/env python
"""A contender's worker process and the driver's handle on it.

Each contender runs in its own process per thread count (:class:`Worker` starts it with
``TVM_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and
``OPENBLAS_NUM_THREADS`` set; inside it ``torch.set_num_threads`` and ONNX Runtime's
``intra_op_num_threads`` are set). The driver writes one JSON request a line on the
worker's stdin, the worker answers one JSON line on a pipe of its own (the protocol
fd), so that whatever a library prints goes to the worker's log instead:

* ``prepare`` (``input``: an .npy file, ``lrn``: :class:`contender.LRNArgs` fields):
  build the contender for that input (compile, export, session); untimed.
* ``calibrate`` (``reference``, ``min_repeat_s``, ``warmup_s``): run once, compare the
  output with the reference (:func:`cases.max_rel_err`), warm up, and find how many
  calls make one repeat (:func:`tvm_lrn.timing.calibrate`).
* ``time`` (``repeats``, ``number``, ``warmup_s``): warm up, then time ``repeats``
  repeats of ``number`` calls; a contender with a ``paired`` operator times one repeat
  of each alternately, the order swapping every repeat.
* ``release``, ``quit``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import select
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np

from tvm_lrn.errors import first_line
from tvm_lrn.timing import calibrate, measure, seconds_per_call, warm_up

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PROTOCOL_FD_ENV = "TVM_LRN_BENCH_FD"
THREAD_VARIABLES = ("TVM_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

__all__ = ["PROTOCOL_FD_ENV", "Worker", "serve"]


# =========================================================================== worker side


class _Server:
    """The state of a worker process: its contender and the case it prepared."""

    def __init__(self, key: str, threads: int, device: str):
        from contenders import CONTENDERS

        self.contender = CONTENDERS[key]
        self.threads, self.device = threads, device
        self.bench, self.dtype = None, ""

    def thread_counts(self) -> dict:
        """Threads each runtime this worker loaded will use (set where it is not yet)."""
        counts = {}
        if "torch" in sys.modules:
            torch = sys.modules["torch"]
            if torch.get_num_threads() != self.threads:
                torch.set_num_threads(self.threads)
            counts["torch_threads"] = torch.get_num_threads()
        if "tvm" in sys.modules:
            counts["tvm_threads"] = int(sys.modules["tvm"].runtime.num_threads())
        return counts

    def _both(self) -> None:
        """One call, and one of the paired operator if there is one."""
        self.bench.call()
        if self.bench.paired is not None:
            self.bench.paired()

    def release(self, req: dict) -> dict:
        self.bench = None
        gc.collect()
        return {"ok": True}

    def prepare(self, req: dict) -> dict:
        from contender import LRNArgs, Unsupported

        self.bench = None
        x = np.load(req["input"])
        self.dtype = x.dtype.name
        t0 = time.perf_counter()
        try:
            self.bench = self.contender.make(x, LRNArgs(**req["lrn"]), self.threads, self.device)
        except Unsupported as err:
            return {"ok": False, "skip": True, "reason": str(err)}
        return {
            "ok": True,
            "prepare_s": time.perf_counter() - t0,
            "note": self.bench.note,
            "version": self.contender.version(),
            **self.thread_counts(),
        }

    def calibrate(self, req: dict) -> dict:
        from cases import max_rel_err

        bench = self.bench
        try:
            bench.call()
        except NotImplementedError as err:
            self.bench = None
            return {"ok": False, "skip": True, "reason": first_line(err, limit=200)}
        ref = np.load(req["reference"], mmap_mode="r")
        err = max_rel_err(bench.result(), ref, self.dtype)
        if bench.paired is not None:  # it writes the same output
            bench.paired()
            err = max(err, max_rel_err(bench.result(), ref, self.dtype))
        del ref
        warm_up(self._both, calls=2, seconds=req["warmup_s"])
        found = calibrate(bench.call, req["min_repeat_s"])
        return {"ok": True, "max_rel_err": err, "call_s": found.seconds, "number": found.number}

    def time(self, req: dict) -> dict:
        bench, number = self.bench, req["number"]
        warm_up(self._both, calls=2, seconds=req["warmup_s"])
        if bench.paired is None:
            timing = measure(bench.call, repeat=req["repeats"], number=number, warmup=0)
            return {"ok": True, "samples": list(timing.seconds), "paired": []}
        samples, paired = [], []
        for i in range(req["repeats"]):
            # the paired operator's repeat goes before this one's, then after
            turns = [(paired, bench.paired), (samples, bench.call)]
            for out, fn in turns[::-1] if i % 2 else turns:
                out.append(seconds_per_call(fn, number))
        return {"ok": True, "samples": samples, "paired": paired}


def serve(key: str, threads: int, device: str) -> int:
    """Serve one contender: JSON requests on stdin, JSON replies on the protocol fd."""
    proto = os.fdopen(int(os.environ[PROTOCOL_FD_ENV]), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to the log, not into the protocol
    sys.stdout = sys.stderr

    def reply(msg: dict) -> None:
        proto.write(json.dumps(msg) + "\n")

    server = _Server(key, threads, device)
    handlers = {
        "prepare": server.prepare,
        "calibrate": server.calibrate,
        "time": server.time,
        "release": server.release,
    }
    reply({"ready": True, "pid": os.getpid(), "threads": threads})
    for line in sys.stdin:
        req = json.loads(line)
        if req["cmd"] == "quit":
            return 0
        handler = handlers.get(req["cmd"])
        if handler is None:
            reply({"ok": False, "error": f"unknown command {req['cmd']!r}"})
            continue
        try:
            reply(handler(req))
        except Exception as err:  # noqa: BLE001  (report, keep serving)
            traceback.print_exc()
            server.bench = None
            reply({"ok": False, "error": f"{type(err).__name__}: {first_line(err, limit=300)}"})
    return 0


# =========================================================================== driver side


class Worker:
    """A contender's worker process, spoken to over pipes."""

    def __init__(self, key: str, threads: int, device: str, log_dir: Path, timeout: float):
        self.key, self.threads, self.timeout = key, threads, timeout
        self.log_path = log_dir / f"{key}-t{threads}.log"
        env = dict(os.environ)
        env.update(dict.fromkeys(THREAD_VARIABLES, str(threads)))
        env.setdefault("PYTHONWARNINGS", "ignore")
        read_fd, write_fd = os.pipe()
        env[PROTOCOL_FD_ENV] = str(write_fd)
        self._log = open(self.log_path, "a")  # noqa: SIM115  (closed in close())
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), key]
            + ["--threads", str(threads), "--device", device],
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=self._log,
            pass_fds=(write_fd,),
            text=True,
            cwd=str(ROOT),
            env=env,
        )
        os.close(write_fd)
        self._rfd = read_fd
        self._buf = b""
        self.info: dict = {}

    def send(self, **req) -> None:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()

    def recv(self, timeout: float | None = None) -> dict:
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{self.key}: no reply in {timeout or self.timeout:.0f} s")
            ready, _, _ = select.select([self._rfd], [], [], min(left, 1.0))
            if ready:
                data = os.read(self._rfd, 1 << 16)
                if not data:
                    raise RuntimeError(f"{self.key}: worker exited ({self.tail()})")
                self._buf += data
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def request(self, **req) -> dict:
        self.send(**req)
        return self.recv()

    def pause(self) -> None:
        """Stop the process (SIGSTOP) so that it uses no CPU while another is timed."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        """Continue a paused process (SIGCONT)."""
        self._signal(signal.SIGCONT)

    def _signal(self, sig) -> None:
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def tail(self, lines: int = 3) -> str:
        """The last lines of the worker's log, in one line."""
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(text[-lines:])[-400:]

    def close(self) -> None:
        self.resume()
        try:
            if self.proc.poll() is None:
                self.send(cmd="quit")
                self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self.proc.kill()
            self.proc.wait()
        os.close(self._rfd)
        self._log.close()


def _main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="A benchmark worker (started by Worker).")
    parser.add_argument("key")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    return serve(args.key, args.threads, args.device)


if __name__ == "__main__":
    sys.exit(_main())
