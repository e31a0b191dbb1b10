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
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from controllers.frame import ControlFrame
from instrument.controls import Controls
from instrument.errors import UsageError

# Frame axes in [0, 1]: the hand's x, y and size, each EMG channel, and two EMG summaries: `emg` (the mean
# of the 8 envelopes: how hard the forearm works) and `emg_balance` (channels 0-3 against 4-7, 0.5 = even).
SCALAR_AXES = ("x", "y", "size") + tuple(f"emg{i}" for i in range(8)) + ("emg", "emg_balance")
_AXIS_KEYS = {"axis", "range", "curve", "dead_zone", "invert", "neutral"}
# What each target's range may span: (low, high, low inclusive?, units). A value outside would
# crash or silence the voice mid-song (a NaN probability, a density of 5000 notes/s), so it is
# refused at load. Targets not listed get only the sanity bound.
TARGET_LIMITS: dict[str, tuple[float, float, bool, str]] = {
    "register": (0.0, 127.0, True, "MIDI pitch"),
    "density": (0.0, 50.0, False, "note-ons per second"),
    "noise_slots": (-10.0, 10.0, True, "noise units"),
    "velocity": (1.0, 127.0, True, "MIDI velocity"),
    "transpose": (-48.0, 48.0, True, "semitones"),
    "temperature": (0.0, 5.0, False, "sampling temperature"),
    "flip_rate": (0.0, 16.0, True, "code bits per step"),
    "jump": (0.0, 1.0, True, "trigger level"),
    "theme_capture": (0.0, 1.0, True, "trigger level"),
    "reset_p": (0.0, 1.0, True, "probability"),
}
SCALAR_TARGETS = tuple(name for name in TARGET_LIMITS if name != "noise_slots")  # sections that map one axis
SANITY_BOUND = 1e6  # any other mapped number: |v| <= this, so (hi - lo) * u never overflows
MAX_GLIDE_S = 60.0


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

    scalars: dict[str, AxisMap] = field(default_factory=dict)  # target name -> its axis map
    noise: AxisMap | None = None  # applied to each EMG channel
    noise_slots: tuple[int, ...] = ()  # EMG channel i -> slot noise_slots[i]
    poses: dict[str, str] | None = None  # None: pose does not drive theme
    lost: LostPolicy = field(default_factory=LostPolicy)
    source: str = "<default>"

    def __post_init__(self) -> None:
        self.reset()

    @property
    def register(self) -> AxisMap | None:
        """The register target's axis map, if mapped."""
        return self.scalars.get("register")

    @property
    def density(self) -> AxisMap | None:
        """The density target's axis map, if mapped."""
        return self.scalars.get("density")

    def targets(self) -> frozenset[str]:
        """The control names this mapping can set."""
        names = set(self.scalars)
        if self.noise is not None:
            names.add("noise_slots")
        if self.poses is not None:
            names.add("theme")
        return frozenset(names)

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
    def packaged(cls, name: str) -> "Mapping":
        """A mapping shipped with the voices (`instrument/voices/mappings/NAME`)."""
        text = resources.files("instrument.voices").joinpath("mappings", name).read_text(encoding="utf-8")
        return cls.from_text(text, name)

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
        sections = ("lost", *SCALAR_TARGETS, "noise_slots", "theme")
        unknown = set(data) - set(sections)
        if unknown:
            raise ValueError(f"unknown section [{sorted(unknown)[0]}] (accepted: {', '.join(sections)})")
        lost = _table(data.get("lost", {}), "lost", {"mode", "glide_s"})
        mode = lost.get("mode", "glide")
        if mode not in ("hold", "glide"):
            raise ValueError(f"[lost] mode must be 'hold' or 'glide', got {mode!r}")
        glide_s = _number(lost.get("glide_s", 2.0), "[lost] glide_s")
        if not 0.0 < glide_s <= MAX_GLIDE_S:
            raise ValueError(f"[lost] glide_s must be > 0 and <= {MAX_GLIDE_S:g} s, got {glide_s:g}")
        mapping = cls(lost=LostPolicy(mode=mode, glide_s=glide_s), source=source)
        for name in SCALAR_TARGETS:
            if name in data:
                mapping.scalars[name] = _axis_map(data[name], name)
        if "noise_slots" in data:
            table = dict(_table(data["noise_slots"], "noise_slots", _AXIS_KEYS | {"slots"}))
            slots = table.pop("slots", list(range(8)))
            if table.get("axis", "emg") != "emg":
                raise ValueError("[noise_slots] axis must be 'emg'")
            table["axis"] = "emg0"  # each channel in turn; validated as a scalar axis
            mapping.noise = _axis_map(table, "noise_slots")
            if not (isinstance(slots, list) and 0 < len(slots) <= 8 and all(isinstance(s, int) and 0 <= s < 64 for s in slots)):
                raise ValueError("[noise_slots] slots must list up to 8 slot numbers in 0..63")
            mapping.noise_slots = tuple(slots)
        if "theme" in data:
            theme = _table(data["theme"], "theme", {"axis", "poses"})
            if theme.get("axis", "pose") != "pose":
                raise ValueError("[theme] axis must be 'pose'")
            poses = theme.get("poses", {})
            if not (isinstance(poses, dict) and all(isinstance(v, str) for v in poses.values())):
                raise ValueError(f"[theme] poses must be a table of pose = \"theme\" names, got {poses!r:.60}")
            mapping.poses = dict(poses)
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
        scalars = {name: self._scalar(axis_map, frame) for name, axis_map in self.scalars.items()}
        controls = Controls(present=True, noise_slots=noise, theme=theme, **scalars)
        self._last = controls
        return controls

    @staticmethod
    def _scalar(axis_map: AxisMap | None, frame: ControlFrame) -> float | None:
        if axis_map is None:
            return None
        axis = axis_map.axis
        if axis.startswith("emg"):
            emg = frame.emg
            if emg is None:
                return None
            if axis == "emg":
                value = sum(emg) / len(emg)
            elif axis == "emg_balance":
                half = len(emg) // 2
                value = 0.5 + 0.5 * (sum(emg[:half]) - sum(emg[half:])) / max(half, 1)
            else:
                value = emg[int(axis[3:])]
        else:
            value = getattr(frame, axis_map.axis)
        return None if value is None else axis_map(value)

    def _while_lost(self, t: float) -> Controls:
        if self._last is None:
            return Controls(present=False)
        if self._lost_since is None:
            self._lost_since = t
        if self.lost.mode == "hold":
            return self._last.replace(present=False)
        a = min(1.0, max(0.0, (t - self._lost_since) / self.lost.glide_s))
        last = self._last
        glided = {name: v + (m.rest - v) * a for name, m in self.scalars.items() if (v := last.get(name)) is not None}
        noise = None if last.noise_slots is None else tuple(v + (self.noise.rest - v) * a for v in last.noise_slots)
        return last.replace(present=False, noise_slots=noise, **glided)


def _table(value: object, section: str, keys: set[str]) -> dict:
    """`value` as a TOML table with only `keys` (a list or string where a table belongs is named)."""
    if not isinstance(value, dict):
        raise ValueError(f"[{section}] must be a table, got {type(value).__name__} {value!r:.40}")
    unknown = set(value) - keys
    if unknown:
        raise ValueError(f"[{section}] unknown key {sorted(unknown)[0]!r} (accepted: {', '.join(sorted(keys))})")
    return value


def _number(value: object, key: str) -> float:
    """`value` as a finite float; `key` names it in the error (bools and strings are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key} must be a number, got {value!r:.40}")
    if not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def _check_limits(section: str, key: str, value: float) -> None:
    """Refuse a value outside what its target can play (TARGET_LIMITS) or the sanity bound."""
    lo, hi, lo_inclusive, units = TARGET_LIMITS.get(section, (-SANITY_BOUND, SANITY_BOUND, True, "units"))
    if not ((lo <= value if lo_inclusive else lo < value) and value <= hi):
        bounds = f"{'[' if lo_inclusive else '('}{lo:g}, {hi:g}]"
        raise ValueError(f"[{section}] {key} must lie in {bounds} ({units}), got {value:g}")


def _axis_map(table: object, section: str) -> AxisMap | None:
    if table is None:
        return None
    table = _table(table, section, _AXIS_KEYS)
    axis = table.get("axis")
    if not isinstance(axis, str) or axis not in SCALAR_AXES:
        raise ValueError(f"[{section}] axis must be one of {', '.join(SCALAR_AXES)}; got {axis!r:.40}")
    rng = table.get("range")
    if not (isinstance(rng, list) and len(rng) == 2):
        raise ValueError(f"[{section}] range must be two numbers, e.g. [48, 84]")
    lo, hi = (_number(v, f"[{section}] range") for v in rng)
    for value in (lo, hi):
        _check_limits(section, "range", value)
    neutral = table.get("neutral")
    if neutral is not None:
        neutral = _number(neutral, f"[{section}] neutral")
        if not min(lo, hi) <= neutral <= max(lo, hi):
            raise ValueError(f"[{section}] neutral must lie inside range [{lo:g}, {hi:g}], got {neutral:g}")
    curve, invert = table.get("curve", "linear"), table.get("invert", False)
    if not isinstance(curve, str):
        raise ValueError(f"[{section}] curve must be a string (linear, smooth, exp, power:G), got {curve!r:.40}")
    if not isinstance(invert, bool):
        raise ValueError(f"[{section}] invert must be true or false, got {invert!r:.40}")
    try:
        return AxisMap(
            axis=axis, lo=lo, hi=hi, curve=curve,
            dead_zone=_number(table.get("dead_zone", 0.0), f"[{section}] dead_zone"), invert=invert, neutral=neutral,
        )
    except ValueError as err:
        raise ValueError(f"[{section}] {err}") from None
