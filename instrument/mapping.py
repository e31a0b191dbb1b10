"""Mapping: ControlFrame -> Controls, driven by a declarative TOML file.

The mapping knows both sides: frame axes in [0, 1] (controllers) and musical controls
(register in MIDI pitch, density in note-ons/s, DCRNN noise slots, theme). Each
control names the axis that drives it, its range, a curve, a centre dead zone and
the neutral value used while the hand is lost. `instrument/default_mapping.toml`
holds the defaults, which reproduce the original instrument.

`map()` is stateful only in how it treats a lost hand: "hold" keeps the last
controls; "glide" moves each one to its neutral over `glide_s`, timed by the frames'
own timestamps (so offline renders glide exactly like live play).
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

from controllers.frame import ControlFrame
from instrument.controls import Controls
from instrument.errors import UsageError

SCALAR_AXES = ("x", "y", "size") + tuple(f"emg{i}" for i in range(8))
_AXIS_KEYS = {"axis", "range", "curve", "dead_zone", "invert", "neutral"}


class MappingError(UsageError):
    """A mapping file that cannot be read or makes no sense (the message names the file)."""


@dataclass(frozen=True, slots=True)
class AxisMap:
    """One axis in [0, 1] -> one control in [lo, hi]."""

    axis: str
    lo: float
    hi: float
    curve: str = "linear"  # linear | smooth | exp | power:G
    dead_zone: float = 0.0  # fraction of the axis around 0.5 that maps to 0.5
    invert: bool = False
    neutral: float | None = None  # glide target while the hand is lost (default: mid-range)

    def __post_init__(self) -> None:
        if not 0.0 <= self.dead_zone < 1.0:
            raise ValueError(f"dead_zone must be in [0, 1), got {self.dead_zone}")
        if self.curve == "exp" and (self.lo <= 0 or self.hi <= 0):
            raise ValueError("curve 'exp' needs a positive range")
        if self.curve.startswith("power:"):
            gamma = float(self.curve[6:])
            if not (math.isfinite(gamma) and gamma > 0):
                raise ValueError(f"curve power:G needs G > 0, got {self.curve!r}")
        elif self.curve not in ("linear", "smooth", "exp"):
            raise ValueError(f"unknown curve {self.curve!r} (accepted: linear, smooth, exp, power:G)")

    @property
    def rest(self) -> float:
        """The neutral value (mid-range unless given)."""
        return self.neutral if self.neutral is not None else (self.lo + self.hi) / 2.0

    def __call__(self, u: float) -> float:
        """The control value for axis value `u` in [0, 1]."""
        u = min(1.0, max(0.0, u))
        if self.invert:
            u = 1.0 - u
        half_dead = self.dead_zone / 2.0
        if half_dead:
            off = u - 0.5
            u = 0.5 if abs(off) <= half_dead else 0.5 + math.copysign((abs(off) - half_dead) / (1.0 - self.dead_zone), off)
        if self.curve == "smooth":
            u = u * u * (3.0 - 2.0 * u)
        elif self.curve == "exp":
            return self.lo * (self.hi / self.lo) ** u
        elif self.curve.startswith("power:"):
            u = u ** float(self.curve[6:])
        return self.lo + (self.hi - self.lo) * u


@dataclass(frozen=True, slots=True)
class LostPolicy:
    """What the controls do while the hand is lost."""

    mode: str = "glide"  # hold | glide
    glide_s: float = 2.0


@dataclass
class Mapping:
    """Frames to controls; build with `from_toml(path)` or `default()`."""

    register: AxisMap | None = None
    density: AxisMap | None = None
    noise: AxisMap | None = None  # applied to each EMG channel
    noise_slots: tuple[int, ...] = ()  # EMG channel i -> slot noise_slots[i]
    poses: dict[str, str] | None = None  # None: pose does not drive theme
    lost: LostPolicy = field(default_factory=LostPolicy)
    source: str = "<default>"

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget the last controls (a new performance)."""
        self._last: Controls | None = None
        self._lost_since: float | None = None

    # -- loading -------------------------------------------------------------------
    @classmethod
    def default(cls) -> "Mapping":
        """The shipped default mapping (`instrument/default_mapping.toml`)."""
        text = resources.files("instrument").joinpath("default_mapping.toml").read_text(encoding="utf-8")
        return cls.from_text(text, "default_mapping.toml")

    @classmethod
    def from_toml(cls, path: str | Path) -> "Mapping":
        """Load a mapping file; any problem is a one-line MappingError naming the file."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            raise MappingError(f"cannot read mapping file {path}: {reason}") from None
        return cls.from_text(text, str(path))

    @classmethod
    def from_text(cls, text: str, source: str) -> "Mapping":
        """Parse mapping TOML text (`source` names it in errors)."""
        try:
            return cls._from_dict(tomllib.loads(text), source)
        except tomllib.TOMLDecodeError as err:
            raise MappingError(f"mapping file {source} is not valid TOML: {err}") from None
        except (ValueError, TypeError, KeyError) as err:
            raise MappingError(f"mapping file {source}: {err}") from None

    @classmethod
    def _from_dict(cls, data: dict, source: str) -> "Mapping":
        unknown = set(data) - {"lost", "register", "density", "noise_slots", "theme"}
        if unknown:
            raise ValueError(f"unknown section [{sorted(unknown)[0]}] (accepted: lost, register, density, noise_slots, theme)")
        lost = data.get("lost", {})
        policy = LostPolicy(mode=str(lost.get("mode", "glide")), glide_s=float(lost.get("glide_s", 2.0)))
        if policy.mode not in ("hold", "glide") or not (policy.glide_s > 0 and math.isfinite(policy.glide_s)):
            raise ValueError("[lost] mode must be 'hold' or 'glide' and glide_s > 0")
        mapping = cls(lost=policy, source=source)
        mapping.register = _axis_map(data.get("register"), "register")
        mapping.density = _axis_map(data.get("density"), "density")
        if "noise_slots" in data:
            table = dict(data["noise_slots"])
            slots = table.pop("slots", list(range(8)))
            if table.get("axis", "emg") != "emg":
                raise ValueError("[noise_slots] axis must be 'emg'")
            table["axis"] = "emg0"  # each channel in turn; validated as a scalar axis
            mapping.noise = _axis_map(table, "noise_slots")
            if not (isinstance(slots, list) and 0 < len(slots) <= 8 and all(isinstance(s, int) and 0 <= s < 64 for s in slots)):
                raise ValueError("[noise_slots] slots must list up to 8 slot numbers in 0..63")
            mapping.noise_slots = tuple(slots)
        if "theme" in data:
            theme = data["theme"]
            if theme.get("axis", "pose") != "pose":
                raise ValueError("[theme] axis must be 'pose'")
            mapping.poses = {str(k): str(v) for k, v in theme.get("poses", {}).items()}
        return mapping

    # -- mapping -------------------------------------------------------------------
    def map(self, frame: ControlFrame) -> Controls:
        """The controls for one frame (hold or glide while `frame.present` is False)."""
        if not frame.present:
            return self._while_lost(frame.t)
        self._lost_since = None
        noise = None
        if self.noise is not None and frame.emg is not None:
            values = [self.noise.rest] * (max(self.noise_slots) + 1)
            for channel, slot in enumerate(self.noise_slots):
                values[slot] = self.noise(frame.emg[channel])
            noise = tuple(values)
        theme = None
        if self.poses is not None and frame.pose is not None:
            theme = self.poses.get(frame.pose, frame.pose)
        controls = Controls(
            register=self._scalar(self.register, frame),
            density=self._scalar(self.density, frame),
            noise_slots=noise,
            theme=theme,
            present=True,
        )
        self._last = controls
        return controls

    @staticmethod
    def _scalar(axis_map: AxisMap | None, frame: ControlFrame) -> float | None:
        if axis_map is None:
            return None
        if axis_map.axis.startswith("emg"):
            value = frame.emg[int(axis_map.axis[3:])] if frame.emg is not None else None
        else:
            value = getattr(frame, axis_map.axis)
        return None if value is None else axis_map(value)

    def _while_lost(self, t: float) -> Controls:
        if self._last is None:
            return Controls(present=False)
        if self._lost_since is None:
            self._lost_since = t
        if self.lost.mode == "hold":
            return replace(self._last, present=False)
        a = min(1.0, max(0.0, (t - self._lost_since) / self.lost.glide_s))
        glide = lambda v, m: None if v is None or m is None else v + (m.rest - v) * a  # noqa: E731
        last = self._last
        noise = None if last.noise_slots is None else tuple(v + (self.noise.rest - v) * a for v in last.noise_slots)
        return Controls(
            register=glide(last.register, self.register),
            density=glide(last.density, self.density),
            key_histogram=last.key_histogram,
            noise_slots=noise,
            theme=last.theme,
            present=False,
        )


def _axis_map(table: object, section: str) -> AxisMap | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise ValueError(f"[{section}] must be a table")
    unknown = set(table) - _AXIS_KEYS
    if unknown:
        raise ValueError(f"[{section}] unknown key {sorted(unknown)[0]!r} (accepted: {', '.join(sorted(_AXIS_KEYS))})")
    axis = table.get("axis")
    if axis not in SCALAR_AXES:
        raise ValueError(f"[{section}] axis must be one of {', '.join(SCALAR_AXES)}; got {axis!r}")
    rng = table.get("range")
    if not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in rng)):
        raise ValueError(f"[{section}] range must be two numbers, e.g. [48, 84]")
    neutral = table.get("neutral")
    try:
        return AxisMap(
            axis=axis, lo=float(rng[0]), hi=float(rng[1]), curve=str(table.get("curve", "linear")),
            dead_zone=float(table.get("dead_zone", 0.0)), invert=bool(table.get("invert", False)),
            neutral=None if neutral is None else float(neutral),
        )
    except ValueError as err:
        raise ValueError(f"[{section}] {err}") from None
