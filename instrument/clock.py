"""Clocks: the engine never calls `time` itself, it is handed one of these.

`SystemClock` is `time.monotonic` (the same clock the controllers stamp frames
with, and the same across processes, so a receiver's timestamps compare with
ours). `FakeClock` only moves when told to, so tests and offline renders are exact
and run as fast as the CPU allows.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Seconds on a monotonic time line, and a way to wait on it."""

    def now(self) -> float:
        """The current time in seconds."""

    def wait(self, event: threading.Event, until: float) -> bool:
        """Wait until time `until` or until `event` is set; True if the event was set."""


class SystemClock:
    """Real time: `time.monotonic`, waits that end early when woken."""

    def __init__(self) -> None:
        self.now = time.monotonic  # bound once: no attribute lookups on the hot path

    def __call__(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, until: float) -> bool:
        """Block until `until` (monotonic seconds) or until `event` is set."""
        timeout = until - time.monotonic()
        if timeout <= 0.0:
            return event.is_set()
        return event.wait(timeout)


class FakeClock:
    """A clock that moves only by `advance()` (or by waiting on it, which jumps ahead)."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        """The current fake time."""
        return self._now

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move time forward by `seconds` (>= 0); returns the new time."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back: advance({seconds})")
        self._now += seconds
        return self._now

    def set(self, t: float) -> float:
        """Move time forward to `t` (never back); returns the new time."""
        self._now = max(self._now, float(t))
        return self._now

    def wait(self, event: threading.Event, until: float) -> bool:
        """Jump to `until` at once unless `event` is already set (single-threaded use)."""
        if event.is_set():
            return True
        # Always move: (t0 + x) - t0 can round below x, and a deadline that never comes due
        # with a clock that never moves would spin forever.
        self.set(max(until, self._now + 1e-6))
        return False


def make_realtime(priority: int) -> bool:
    """Give the calling thread SCHED_FIFO `priority` (Linux); False where not permitted."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))  # 0 = this thread on Linux
        return True
    except (AttributeError, OSError):
        return False
