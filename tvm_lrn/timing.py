"""How the project times a call: untimed warm-up calls, then repeats of a batch of calls.

One repeat times ``number`` calls in a row and records the seconds per call; a
:class:`Timing` keeps every repeat and reports their median and minimum. The CPU
benchmarks (``benchmarks/``), the GPU benchmark, ``scripts/gpu_check.py`` and
``tvm-lrn bench`` all time through :func:`measure` (and :func:`calibrate`, which picks
``number``); only the clock differs: the wall clock (:class:`WallClock`, optionally
synchronizing a device around each repeat) or CUDA events (:func:`cuda_event_clock`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import statistics
import time
from collections.abc import Callable
from typing import Protocol

__all__ = [
    "Calibration",
    "Clock",
    "Timing",
    "WallClock",
    "calibrate",
    "cuda_event_clock",
    "device_clock",
    "measure",
    "seconds_per_call",
    "warm_up",
]


class Clock(Protocol):
    """Times a stretch of work: ``stop(start())`` is the seconds it took."""

    def start(self) -> object:
        """Mark the start; returns what :meth:`stop` needs."""

    def stop(self, started: object) -> float:
        """Seconds since ``started``, once the work queued since then has finished."""


@dataclasses.dataclass(frozen=True)
class WallClock:
    """``time.perf_counter``, with ``sync`` (e.g. a device synchronization) called at
    the start and the stop where the work is asynchronous."""

    sync: Callable[[], object] | None = None

    def start(self) -> float:
        if self.sync is not None:
            self.sync()
        return time.perf_counter()

    def stop(self, started: float) -> float:
        if self.sync is not None:
            self.sync()
        return time.perf_counter() - started


class _CudaEventClock:
    """CUDA events recorded on the current stream around the work (torch's events)."""

    def __init__(self, torch):
        self._event = torch.cuda.Event

    def start(self):
        begin = self._event(enable_timing=True)
        begin.record()
        return begin

    def stop(self, started) -> float:
        end = self._event(enable_timing=True)
        end.record()
        end.synchronize()
        return started.elapsed_time(end) * 1e-3


def cuda_event_clock() -> Clock:
    """A clock of CUDA events on the current stream (needs a CUDA build of torch).

    TVM and torch both launch on the default stream, so the events time the kernels
    alone, without the host's launch and synchronization latency.
    """
    import torch

    return _CudaEventClock(torch)


def device_clock(device: str) -> Clock:
    """The clock for work on ``device``: CUDA events on ``"cuda"``, else the wall clock."""
    return cuda_event_clock() if device == "cuda" else WallClock()


@dataclasses.dataclass(frozen=True)
class Timing:
    """What :func:`measure` found.

    Attributes
    ----------
    seconds : tuple of float
        Seconds per call, one entry per repeat, in the order they were taken.
    number : int
        Calls per repeat.
    """

    seconds: tuple[float, ...]
    number: int

    @property
    def median(self) -> float:
        """The median seconds per call over the repeats."""
        return statistics.median(self.seconds)

    @property
    def min(self) -> float:
        """The least seconds per call over the repeats."""
        return min(self.seconds)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """What :func:`calibrate` found: ``number`` calls make a repeat of at least the
    asked length, one call takes about ``seconds``."""

    number: int
    seconds: float


def warm_up(fn: Callable[[], object], *, calls: int = 1, seconds: float = 0.0) -> None:
    """Call ``fn`` untimed: at least ``calls`` times, and until ``seconds`` have passed.

    Threads that slept (a worker that waited, a runtime's idle pool) take milliseconds
    to wake: the first calls after an idle spell are slow (``benchmarks/README.md``,
    Method).
    """
    end = time.perf_counter() + seconds
    for done in itertools.count():
        if done >= calls and time.perf_counter() >= end:
            return
        fn()


def seconds_per_call(fn: Callable[[], object], number: int, clock: Clock | None = None) -> float:
    """Seconds per call of ``number`` calls of ``fn`` in a row (one repeat)."""
    clock = clock or WallClock()
    started = clock.start()
    for _ in range(number):
        fn()
    return clock.stop(started) / number


def calibrate(
    fn: Callable[[], object], min_seconds: float, clock: Clock | None = None
) -> Calibration:
    """How many calls of ``fn`` make a repeat of at least ``min_seconds``.

    One call is timed; where that is shorter than ``min_seconds``, a batch of the calls
    it suggests is timed again (a less noisy estimate) and decides.
    """
    seconds = seconds_per_call(fn, 1, clock)
    number = max(1, math.ceil(min_seconds / max(seconds, 1e-9)))
    if number > 1:
        seconds = seconds_per_call(fn, number, clock)
        number = max(1, math.ceil(min_seconds / max(seconds, 1e-9)))
    return Calibration(number, seconds)


def measure(
    fn: Callable[[], object],
    *,
    repeat: int,
    number: int = 1,
    warmup: int = 1,
    warmup_seconds: float = 0.0,
    clock: Clock | None = None,
) -> Timing:
    """Time ``fn``: untimed warm-up calls, then ``repeat`` repeats of ``number`` calls.

    Parameters
    ----------
    fn : callable
        Runs the operation once (may return before an asynchronous device finishes:
        the clock waits for it).
    repeat : int
        Timed repeats.
    number : int
        Calls per repeat (see :func:`calibrate`).
    warmup : int
        Untimed calls before the first repeat, at least.
    warmup_seconds : float
        Untimed calls for at least this long (see :func:`warm_up`).
    clock : Clock, optional
        :class:`WallClock` by default; :func:`cuda_event_clock` on a GPU.

    Returns
    -------
    Timing
        Seconds per call of each repeat; ``median`` and ``min`` of them.
    """
    warm_up(fn, calls=warmup, seconds=warmup_seconds)
    seconds = tuple(seconds_per_call(fn, number, clock) for _ in range(repeat))
    return Timing(seconds, number)
