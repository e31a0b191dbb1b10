"""The 1€ filter (Casiez, Roussel & Vogel, CHI 2012), per axis, with real timestamps.

A low-pass filter whose cutoff rises with speed: slow movements are smoothed hard
(little jitter), fast ones pass with little lag. Timestamps come from the frames, so
irregular frame intervals (USB bursts, dropped packets) are handled exactly.

Defaults are tuned for axes normalized to [0, 1]: `min_cutoff` 1 Hz, `d_cutoff` 1 Hz,
and `beta` 4.0, so a hand crossing the whole frame in one second (speed 1/s) opens
the cutoff to about 5 Hz.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from controllers.frame import ControlFrame, Unfiltered


@dataclass(frozen=True, slots=True)
class OneEuroConfig:
    """Parameters of one 1€ filter."""

    min_cutoff: float = 1.0  # Hz: cutoff at rest; lower = less jitter, more lag
    beta: float = 4.0  # s: how fast the cutoff grows with speed (per unit/s)
    d_cutoff: float = 1.0  # Hz: cutoff of the speed estimate


def _alpha(cutoff_hz: float, dt: float) -> float:
    """Smoothing factor of an exponential filter with this cutoff and step."""
    tau = 1.0 / (2.0 * math.pi * cutoff_hz)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One scalar signal; `__call__(value, t)` returns the filtered value."""

    def __init__(self, config: OneEuroConfig = OneEuroConfig()) -> None:
        self.config = config
        self.reset()

    def reset(self) -> None:
        """Forget the history (e.g. when the hand was lost): the next value passes as is."""
        self._x: float | None = None
        self._dx = 0.0
        self._t = 0.0

    def __call__(self, value: float, t: float) -> float:
        """Filter `value` sampled at time `t` (seconds, monotonic)."""
        if self._x is None or not math.isfinite(self._x):
            self._x, self._dx, self._t = value, 0.0, t
            return value
        dt = t - self._t
        if dt <= 0.0:
            return self._x  # same or older timestamp: nothing new to integrate
        cfg = self.config
        dx = (value - self._x) / dt
        self._dx += _alpha(cfg.d_cutoff, dt) * (dx - self._dx)
        cutoff = cfg.min_cutoff + cfg.beta * abs(self._dx)
        self._x += _alpha(cutoff, dt) * (value - self._x)
        self._t = t
        return self._x


class FilterBank:
    """A 1€ filter per named axis or channel; values stay clipped to [0, 1]."""

    def __init__(self, size: int, config: OneEuroConfig = OneEuroConfig()) -> None:
        self.filters = [OneEuroFilter(config) for _ in range(size)]

    def reset(self) -> None:
        """Reset every filter."""
        for f in self.filters:
            f.reset()

    def __call__(self, values: tuple[float, ...], t: float) -> tuple[float, ...]:
        """Filter one sample of every channel at time `t`."""
        return tuple(min(1.0, max(0.0, f(v, t))) for f, v in zip(self.filters, values))


CAMERA_FILTER = OneEuroConfig(min_cutoff=1.0, beta=4.0, d_cutoff=1.0)
EMG_FILTER = OneEuroConfig(min_cutoff=1.0, beta=2.0, d_cutoff=1.0)


class CameraConditioner:
    """Reach-box calibration then 1€ filtering of the camera axes x, y and size.

    With `raw=True` values pass untouched (what `instrument monitor --raw` shows).
    """

    def __init__(self, reach=None, raw: bool = False, config: OneEuroConfig = CAMERA_FILTER) -> None:
        self.reach = reach  # a calibration.ReachBox or None
        self.raw = raw
        self._xy = FilterBank(2, config)
        self._size = OneEuroFilter(config)

    def reset(self) -> None:
        """Forget the history (call when the hand is lost)."""
        self._xy.reset()
        self._size.reset()

    def __call__(self, x: float, y: float, size: float | None, t: float) -> tuple[float, float, float | None]:
        """Calibrated and filtered (x, y, size) at time `t`."""
        frame = self.frame(x, y, size, t)
        return frame.x, frame.y, frame.size

    def frame(self, x: float, y: float, size: float | None, t: float) -> ControlFrame:
        """The present-hand frame at time `t`, carrying the calibrated values the filter was given."""
        if self.raw:
            return ControlFrame(t=t, present=True, x=x, y=y, size=size)
        if self.reach is not None:
            x, y = self.reach.apply(x, y)
        before = Unfiltered(x=x, y=y, size=size)
        fx, fy = self._xy((x, y), t)
        fsize = min(1.0, max(0.0, self._size(size, t))) if size is not None else None
        return ControlFrame(t=t, present=True, x=fx, y=fy, size=fsize, unfiltered=before)
