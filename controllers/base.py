"""The Controller protocol and the latest-frame handoff that device threads write into.

A device thread owns its port and only publishes: it parses bytes, builds a
`ControlFrame` and puts it in a `LatestFrame`, a one-slot mailbox. The engine polls
`latest()` and never waits; the monitor and the benchmark wait with `next_frame()`.
No exception escapes a device thread: `ThreadedController` counts and logs it, then
retries after a backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from controllers.frame import ControlFrame

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@runtime_checkable
class Controller(Protocol):
    """What the engine and the CLI need from any controller."""

    def latest(self) -> ControlFrame:
        """The most recent frame; never blocks."""

    def next_frame(self, timeout: float) -> ControlFrame | None:
        """Wait up to `timeout` s for a frame newer than the last one returned; None if none."""

    def stats(self) -> dict[str, int]:
        """Drop/parse counters and state (`connected`, `reconnects`, ...)."""

    def close(self) -> None:
        """Stop the device thread and release the device (idempotent)."""


class LatestFrame:
    """A thread-safe one-slot mailbox: writers replace, readers see the newest frame."""

    def __init__(self, initial: ControlFrame) -> None:
        self._frame = initial
        self._seq = 0
        self._cond = threading.Condition(threading.Lock())
        self._wakes: tuple[threading.Event, ...] = ()  # set on every put: a sleeping reader wakes at once

    def put(self, frame: ControlFrame) -> None:
        """Publish `frame` (called from the device thread; never blocks for long)."""
        with self._cond:
            self._frame = frame
            self._seq += 1
            self._cond.notify_all()
        for wake in self._wakes:
            wake.set()

    def wake_on_put(self, event: threading.Event) -> None:
        """Set `event` whenever a frame is published (the engine's sending loop sleeps on it)."""
        self._wakes += (event,)

    def get(self) -> ControlFrame:
        """The newest frame."""
        return self._frame  # one reference read: atomic under the GIL

    @property
    def seq(self) -> int:
        """How many frames were published so far."""
        return self._seq

    def wait_newer(self, seq: int, timeout: float) -> tuple[int, ControlFrame] | None:
        """Wait until a frame after number `seq` is published; (its seq, frame) or None."""
        with self._cond:
            if self._seq <= seq and not self._cond.wait_for(lambda: self._seq > seq, timeout):
                return None
            return self._seq, self._frame


class Counters:
    """Named integer counters written by one device thread and read by anyone."""

    def __init__(self, *names: str) -> None:
        self._values: dict[str, int] = dict.fromkeys(names, 0)

    def inc(self, name: str, n: int = 1) -> None:
        """Add `n` to counter `name` (created at 0)."""
        self._values[name] = self._values.get(name, 0) + n

    def set(self, name: str, value: int) -> None:
        """Set a state value such as `connected`."""
        self._values[name] = int(value)

    def get(self, name: str) -> int:
        """The current value of counter `name` (0 if never touched)."""
        return self._values.get(name, 0)

    def snapshot(self) -> dict[str, int]:
        """A copy of all counters."""
        return dict(self._values)


class FrameSource:
    """Shared behaviour: `latest`, `next_frame`, `stats` and the context manager."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.frames = LatestFrame(ControlFrame(t=clock(), present=False))
        self.counters = Counters()
        self._seen = 0

    def latest(self) -> ControlFrame:
        """The most recent frame; never blocks."""
        return self.frames.get()

    def wake_on_frame(self, event: threading.Event) -> None:
        """Set `event` on every new frame, so a poller sleeping on it sees a gesture at once, not at its next poll."""
        self.frames.wake_on_put(event)

    def next_frame(self, timeout: float) -> ControlFrame | None:
        """Wait up to `timeout` s for a frame newer than the last one returned here."""
        got = self.frames.wait_newer(self._seen, timeout)
        if got is None:
            return None
        self._seen, frame = got
        return frame

    def stats(self) -> dict[str, int]:
        """Drop/parse counters and state."""
        return self.counters.snapshot()

    def close(self) -> None:
        """Release resources (nothing to release here)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class ThreadedController(FrameSource):
    """A controller whose device is served by one daemon thread running `_serve()`.

    `_serve()` runs until the device fails; it is then called again after a backoff
    (0.1 s doubling to `max_backoff_s`), so a device that comes back is picked up
    within `max_backoff_s` plus the open time. Exceptions are counted as
    `thread_errors` and logged, never raised.
    """

    max_backoff_s = 0.5

    def __init__(self, clock: Clock, name: str) -> None:
        super().__init__(clock)
        self.name = name
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        """Start the device thread."""
        self._thread.start()

    @property
    def stopping(self) -> bool:
        """True once `close()` was called."""
        return self._stop.is_set()

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._serve()
            except Exception as err:  # a device thread must never die: count, log, retry
                self.counters.inc("thread_errors")
                self.last_error = f"{type(err).__name__}: {err}"
                log.warning("%s: %s", self.name, self.last_error, exc_info=log.isEnabledFor(logging.DEBUG))
            if self._stop.is_set():
                break
            if time.monotonic() - started > 2.0:
                backoff = 0.1  # it ran for a while: the next failure is a fresh one
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)

    def _serve(self) -> None:
        """Open the device, run its protocol and stream until it fails (subclasses)."""
        raise NotImplementedError

    def close(self) -> None:
        """Stop the device thread and wait for it to release the device."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=3.0)
