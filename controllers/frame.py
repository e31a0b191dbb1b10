"""ControlFrame: the one value that leaves the controllers package."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


SCALAR_FRAME_AXES = ("x", "y", "size", "roll", "pitch", "yaw")  # the single-number axes, each in [0, 1]


@dataclass(frozen=True, slots=True)
class Unfiltered:
    """The axes of a reading before the 1€ filter (after calibration), for the monitor's raw ticks."""

    x: float | None = None
    y: float | None = None
    size: float | None = None
    emg: tuple[float, ...] | None = None


@dataclass(frozen=True, slots=True)
class ControlFrame:
    """One normalized reading of a performer, stamped with a monotonic time in seconds.

    Camera axes (`x`, `y`, `size`) lie in [0, 1] with y pointing up; `emg` holds 8 values
    in [0, 1]; `pose` is a discrete gesture label; `roll`, `pitch`, `yaw` are an armband's
    orientation in [0, 1] (0.5 level, and for yaw the direction it faced at connect).
    Axes a device does not have are None.
    `present` is False when the hand is lost or the device is gone.
    """

    t: float
    present: bool = True
    x: float | None = None
    y: float | None = None
    size: float | None = None
    emg: tuple[float, ...] | None = None
    pose: str | None = None
    roll: float | None = None
    pitch: float | None = None
    yaw: float | None = None
    # What the filter was given; None where nothing is filtered (mouse, replay, --raw).
    # Not part of the reading's identity, nor of the session JSONL.
    unfiltered: Unfiltered | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        for name in SCALAR_FRAME_AXES:
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"ControlFrame.{name} must be in [0, 1], got {value!r}")
        if self.emg is not None:
            if len(self.emg) != 8:
                raise ValueError(f"ControlFrame.emg must hold 8 values, got {len(self.emg)}")
            if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in self.emg):
                raise ValueError(f"ControlFrame.emg values must be in [0, 1], got {self.emg!r}")

    def to_json(self, t0: float = 0.0) -> dict:
        """The JSONL record: `t` in seconds from `t0`, absent axes as null."""
        return {
            "t": round(self.t - t0, 6),
            "present": self.present,
            "x": self.x,
            "y": self.y,
            "size": self.size,
            "emg": list(self.emg) if self.emg is not None else None,
            "pose": self.pose,
            **{name: value for name in ("roll", "pitch", "yaw") if (value := getattr(self, name)) is not None},
        }

    @classmethod
    def from_json(cls, record: dict, t0: float = 0.0) -> "ControlFrame":
        """Inverse of `to_json`; missing keys mean absent axes."""
        emg = record.get("emg")
        return cls(
            t=float(record["t"]) + t0,
            present=bool(record.get("present", True)),
            x=record.get("x"),
            y=record.get("y"),
            size=record.get("size"),
            emg=tuple(float(v) for v in emg) if emg is not None else None,
            pose=record.get("pose"),
            roll=record.get("roll"),
            pitch=record.get("pitch"),
            yaw=record.get("yaw"),
        )
