#!/usr/bin/env python3
"""An emulated aarch64 device: a real aarch64 TVM runtime under qemu user-mode emulation.

For tests, and for users without a board. ``setup`` builds a Debian arm64 root folder
with Python and TVM's aarch64 wheels (idempotent: a finished one is kept); ``start``
starts a tracker on 127.0.0.1 (or joins one) and emulated RPC servers under a key, and
waits until they are registered; ``stop`` stops what ``start`` started; ``python`` prints
the emulated Python (a wrapper script) for starting servers by hand.

    python scripts/aarch64_device.py setup
    python scripts/aarch64_device.py start --servers 1     # prints the --rpc address
    tvm-lrn run model.so --rpc 127.0.0.1:9190 --key aarch64
    python scripts/aarch64_device.py stop

Emulated timings say nothing about a board's speed; the results are the board's.
Needs: Linux on x86-64, qemu-user, g++-aarch64-linux-gnu, debootstrap (installed with
apt-get when missing and run as root), and the Debian and PyPI mirrors.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT_ENV = "TVM_LRN_AARCH64_ROOT"
DEFAULT_ROOT = Path.home() / ".cache" / "tvm-lrn" / "aarch64-bookworm"
PACKAGES = {
    "qemu-aarch64": "qemu-user",
    "aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu",
    "debootstrap": "debootstrap",
}
WHEELS = [
    "apache-tvm==0.27.0.post1",
    "apache-tvm-ffi==0.1.14.post1",
    "numpy",
    "ml_dtypes",
    "psutil",
    "cloudpickle",
    "typing_extensions",
]
READY = ".tvm-lrn-ready"  # written last by setup, with what it installed


class DeviceError(RuntimeError):
    """Setup or start cannot go on; the message says why and what to do."""


def _run(argv: list, what: str, **kwargs) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise DeviceError(f"{what} failed ({' '.join(map(str, argv[:3]))} ...): {' | '.join(tail)}")
    return done.stdout


def _tools() -> None:
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        raise DeviceError(
            f"emulation is set up for Linux on x86-64, not {sys.platform} {os.uname().machine}"
        )
    missing = [pkg for tool, pkg in PACKAGES.items() if shutil.which(tool) is None]
    if missing and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        _run(["apt-get", "update", "-qq"], "apt-get update", env=env)
        _run(["apt-get", "install", "-y", "-qq", *missing], "apt-get install", env=env)
        missing = [pkg for tool, pkg in PACKAGES.items() if shutil.which(tool) is None]
    if missing:
        raise DeviceError(
            f"install {' '.join(missing)} first (e.g. sudo apt-get install "
            f"{' '.join(missing)}): emulation needs them"
        )


def _mirror() -> str:
    """The Debian mirror apt uses here (deb.debian.org where none is configured)."""
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*")]:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            words = line.split()
            if words[:1] == ["URIs:"] and words[1].rstrip("/").endswith("/debian"):
                return words[1]
            if words[:1] == ["deb"] and words[-2:-1] != ["security"]:
                url = next((w for w in words[1:] if "://" in w), "")
                if url.rstrip("/").endswith("/debian"):
                    return url
    return "http://deb.debian.org/debian"


def _rootfs(root: Path) -> None:
    """Debian arm64 with python3, unpacked without running anything inside (binfmt_misc
    need not be mounted): debootstrap's first stage, then every downloaded package."""
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    _run(
        [
            "debootstrap",
            "--arch=arm64",
            "--variant=minbase",
            "--foreign",
            "--include=python3",
            "bookworm",
            str(root),
            _mirror(),
        ],
        "debootstrap",
    )
    for deb in sorted((root / "var/cache/apt/archives").glob("*.deb")):
        # --keep-directory-symlink: /lib, /bin and /sbin stay links into /usr (merged /usr)
        tar = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        _run(
            ["tar", "-x", "--keep-directory-symlink", "-C", str(root)],
            f"unpacking {deb.name}",
            stdin=tar.stdout,
        )
        if tar.wait() != 0:
            raise DeviceError(f"dpkg-deb could not read {deb}")


def _wheels(root: Path) -> None:
    site = root / "usr/local/lib/python3.11/dist-packages"
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--platform",
            "manylinux_2_28_aarch64",
            "--only-binary=:all:",
            "--python-version",
            "3.11",
            "--implementation",
            "cp",
            "--upgrade",
            "--target",
            str(site),
            *WHEELS,
        ],
        "installing TVM's aarch64 wheels",
    )


def python_wrapper(root: Path) -> Path:
    """The emulated Python as a program: TVM's server re-runs ``sys.executable`` for its
    workers, so that must be this script (``-0`` makes it argv[0]), not the ELF."""
    wrapper = root.parent / f"{root.name}-python3"
    body = f'#!/bin/sh\nexec qemu-aarch64 -L "{root}" -0 "$0" "{root}/usr/bin/python3" "$@"\n'
    if not wrapper.exists() or wrapper.read_text() != body:
        wrapper.write_text(body)
        wrapper.chmod(0o755)
    return wrapper


def setup(root: Path) -> Path:
    """Make ``root`` an aarch64 Python with TVM (kept when done before); its wrapper."""
    _tools()
    ready = root / READY
    if not (ready.exists() and json.loads(ready.read_text()).get("wheels") == WHEELS):
        start = time.monotonic()
        if not (root / "usr/bin/python3").exists():
            _rootfs(root)
        _wheels(root)
        wrapper = python_wrapper(root)
        probe = "import tvm, numpy, platform; print(platform.machine(), tvm.__version__)"
        seen = _run([str(wrapper), "-c", probe], "importing TVM under emulation").split()
        if seen[:1] != ["aarch64"]:
            raise DeviceError(f"the emulated Python reports {seen}, not aarch64")
        ready.write_text(json.dumps({"wheels": WHEELS, "seconds": time.monotonic() - start}))
    return python_wrapper(root)


def _start(args) -> int:
    from tvm_lrn.fleet import LocalFleet

    wrapper = setup(args.root)
    fleet = LocalFleet(args.state.parent / "logs", port=args.port, tracker=args.tracker)
    try:
        fleet.add_servers(args.key, args.servers, python=str(wrapper), timeout=args.timeout)
    except BaseException:
        fleet.stop()
        raise
    state = _state(args.state)
    state.setdefault("pids", []).extend(fleet.pids)
    state["tracker"] = fleet.address
    args.state.write_text(json.dumps(state))
    print(
        f"{args.servers} emulated aarch64 server(s) under key {args.key!r}: "
        f"--rpc {fleet.address} --key {args.key}"
    )
    return 0


def _state(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _stop(args) -> int:
    from tvm_lrn.fleet import stop_pids

    state = _state(args.state)
    stop_pids(state.get("pids", []))
    args.state.unlink(missing_ok=True)
    print(f"stopped {len(state.get('pids', []))} process(es)" if state else "nothing to stop")
    return 0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("command", choices=("setup", "start", "stop", "python"))
    root = os.environ.get(ROOT_ENV) or DEFAULT_ROOT
    p.add_argument("--root", type=Path, default=Path(root), help=f"rootfs (${ROOT_ENV})")
    p.add_argument("--state", type=Path, default=None, help="what start started (for stop)")
    p.add_argument("--servers", type=int, default=1, help="emulated servers to start")
    p.add_argument("--key", default="aarch64", help="their device key (default aarch64)")
    p.add_argument("--port", type=int, default=9190, help="the new tracker's port")
    p.add_argument("--tracker", help="HOST:PORT of a running tracker to join instead")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds to register")
    return p


def main(argv=None) -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's tvm_lrn
    args = _parser().parse_args(argv)
    args.root = args.root.expanduser().resolve()
    args.state = (args.state or args.root.parent / f"{args.root.name}.state.json").resolve()
    try:
        if args.command == "setup":
            print(f"emulated aarch64 Python: {setup(args.root)}")
            return 0
        if args.command == "python":
            print(python_wrapper(args.root))
            return 0
        return _start(args) if args.command == "start" else _stop(args)
    except (DeviceError, OSError, TimeoutError, RuntimeError) as err:
        print(f"aarch64-device: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
