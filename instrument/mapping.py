"""Mapping: ControlFrame -> Controls, driven by a declarative TOML file.

The mapping knows both sides: frame axes in [0, 1] (controllers) and musical controls
(register in MIDI pitch, density in note-ons/s, DCRNN noise slots, theme, velocity,
transpose, temperature, key, tempo, MIDI CCs out). Each control names the axis (or the
weighted axes) that drive it, its range, a curve, a centre dead zone and the neutral
value used while the hand is lost. `instrument/default_mapping.toml` holds the defaults,
which reproduce the original instrument; `instrument/mapping_toml.py` reads and checks files.

`map()` is stateful only in how it treats a lost hand: "hold" keeps the last
controls; "glide" moves each one to its neutral over `glide_s`, timed by the frames'
own timestamps (so offline renders glide exactly like live play). A key chosen by an
axis keeps a little hysteresis, so a hand resting on a boundary does not flip keys.
`override()` pins a control (a learned MIDI knob) over whatever the frames say.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from controllers.frame import ControlFrame
from instrument.controls import Controls
from instrument.errors import UsageError

# Frame axes in [0, 1]: the hand's x, y and size, each EMG channel, two EMG summaries: `emg` (the mean
# of the 8 envelopes: how hard the forearm works) and `emg_balance` (channels 0-3 against 4-7, 0.5 = even),
# and the Myo's orientation `roll`, `pitch`, `yaw` (0.5 = level / facing where it started).
SCALAR_AXES = ("x", "y", "size") + tuple(f"emg{i}" for i in range(8)) + ("emg", "emg_balance", "roll", "pitch", "yaw")
# What each target's range may span: (low, high, low inclusive?, units). A value outside would
# crash or silence the voice mid-song (a NaN probability, a density of 5000 notes/s), so it is
# refused at load. Targets not listed get only the sanity bound.
TARGET_LIMITS: dict[str, tuple[float, float, bool, str]] = {
    "register": (0.0, 127.0, True, "MIDI pitch"),
    "density": (0.0, 50.0, False, "note-ons per second"),
    "noise_slots": (-10.0, 10.0, True, "noise units"),
    "velocity": (1.0, 127.0, True, "MIDI velocity, 80 = the voice's own dynamics"),
    "transpose": (-48.0, 48.0, True, "semitones"),
    "temperature": (0.0, 5.0, False, "sampling temperature"),
    "tempo": (20.0, 300.0, True, "bpm"),
    "flip_rate": (0.0, 16.0, True, "code bits per step"),
    "jump": (0.0, 1.0, True, "trigger level"),
    "theme_capture": (0.0, 1.0, True, "trigger level"),
    "reset_p": (0.0, 1.0, True, "probability"),
    "cc": (0.0, 127.0, True, "CC value"),
}
SCALAR_TARGETS = tuple(name for name in TARGET_LIMITS if name not in ("noise_slots", "cc"))  # sections of one value
ENGINE_TARGETS = frozenset({"tempo"})  # played by the engine itself (as are the cc<N> outputs), not by a voice
CC_PREFIX = "cc"  # `[cc.74]` drives the control named "cc74": MIDI CC 74 on the output channel
COMBINES = ("sum", "max")
SANITY_BOUND = 1e6  # any other mapped number: |v| <= this, so (hi - lo) * u never overflows
MAX_GLIDE_S = 60.0
KEY_HYSTERESIS = 0.2  # a chosen key holds until the position is this far (in key widths) past its edge


class MappingError(UsageError):
    """A mapping file that cannot be read or makes no sense (the message names the file)."""


def axis_value(frame: ControlFrame, axis: str) -> float | None:
    """The frame's value on one axis of SCALAR_AXES (None where the device has no such axis)."""
    if axis.startswith("emg"):
        emg = frame.emg
        if emg is None:
            return None
        if axis == "emg":
            return sum(emg) / len(emg)
        if axis == "emg_balance":
            half = len(emg) // 2
            return 0.5 + 0.5 * (sum(emg[:half]) - sum(emg[half:])) / max(half, 1)
        return emg[int(axis[3:])]
    return getattr(frame, axis, None)


@dataclass(frozen=True, slots=True)
class AxisMap:
    """One axis (or several, weighted) in [0, 1] -> one control in [lo, hi]."""

    axis: str  # the (first) driving axis
    lo: float
    hi: float
    curve: str = "linear"  # linear | smooth | exp | power:G
    dead_zone: float = 0.0  # fraction of the axis around 0.5 that maps to 0.5
    invert: bool = False
    neutral: float | None = None  # glide target while the hand is lost (default: mid-range)
    sources: tuple[tuple[str, float], ...] = ()  # (axis, weight) when several axes drive it; empty: `axis` alone
    combine: str = "sum"  # sum: the weighted sum (clamped to [0, 1]); max: the largest weighted axis

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
        if self.combine not in COMBINES:
            raise ValueError(f"combine must be one of {', '.join(COMBINES)}, got {self.combine!r}")

    @property
    def axes(self) -> tuple[str, ...]:
        """Every axis that drives this control."""
        return tuple(axis for axis, _ in self.sources) if self.sources else (self.axis,)

    @property
    def label(self) -> str:
        """What drives it, as a person reads it: 'x', or '0.5 x + 0.5 emg', or 'max(x | emg)' (no comma: lists join these)."""
        if not self.sources:
            return self.axis
        if self.combine == "max":
            return "max(" + " | ".join(f"{w:g} {a}" if w != 1.0 else a for a, w in self.sources) + ")"
        return " + ".join(f"{w:g} {a}" if w != 1.0 else a for a, w in self.sources)

    @property
    def rest(self) -> float:
        """The neutral value (mid-range unless given)."""
        return self.neutral if self.neutral is not None else (self.lo + self.hi) / 2.0

    def position(self, frame: ControlFrame) -> float | None:
        """The driving axis value in [0, 1] for a frame (sources combined); None when no source is there."""
        if not self.sources:
            return axis_value(frame, self.axis)
        values = [w * v for axis, w in self.sources if (v := axis_value(frame, axis)) is not None]
        if not values:
            return None
        return max(values) if self.combine == "max" else sum(values)

    def read(self, frame: ControlFrame) -> float | None:
        """The control value for a frame (None when no driving axis is there)."""
        u = self.position(frame)
        return None if u is None else self(u)

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
class KeyMap:
    """An axis choosing among a list of keys (the Char-RNN's and DCRNN's `key_histogram` condition)."""

    position: AxisMap  # -> [0, 1]: where along `keys`
    keys: tuple[str, ...]  # key names, e.g. the circle of fifths
    histograms: tuple[tuple[float, ...], ...]  # the 12 pitch-class weights of each key

    def index(self, frame: ControlFrame, previous: int | None) -> int | None:
        """Which key the frame asks for (None: no driving axis); `previous` holds near its edges."""
        return choose(self.position.read(frame), len(self.keys), previous)


@dataclass(frozen=True, slots=True)
class StyleMap:
    """The Char-RNN's style condition: a fixed style, or an axis choosing among `styles`."""

    position: AxisMap | None  # -> [0, 1]: where along `styles`; None: always the first
    styles: tuple[str, ...]  # style names of the model (its training folders), e.g. ("classical", "jazz")

    def index(self, frame: ControlFrame, previous: int | None) -> int | None:
        """Which style the frame asks for; `previous` holds near its edges."""
        if self.position is None:
            return 0
        return choose(self.position.read(frame), len(self.styles), previous)


def choose(u: float | None, n: int, previous: int | None) -> int | None:
    """Which of `n` choices laid along [0, 1] the position `u` picks (None: `previous`), holding near an edge."""
    if u is None:
        return previous
    where = min(1.0, max(0.0, u)) * n
    if previous is not None and previous - KEY_HYSTERESIS <= where <= previous + 1 + KEY_HYSTERESIS:
        return previous
    return min(n - 1, int(where))


@dataclass(frozen=True, slots=True)
class LostPolicy:
    """What the controls do while the hand is lost."""

    mode: str = "glide"  # hold | glide
    glide_s: float = 2.0


@dataclass(frozen=True)
class ResponsePolicy:
    """How a move is answered: which moves strike a note at once, and which only steer what comes next.

    Sizes are control distances (`instrument/controls.py`): 1 is an octave of register, a doubled
    density or a new key. A move past the engine's rollback threshold regenerates the future under
    the new controls; one at least `strike` large also plays its first note at once (a strike), so
    a jump of the hand is heard in one model step and a slow drift glides.
    """

    strike: float = 0.5  # math.inf: never strike, every move steers


@dataclass
class Mapping:
    """Frames to controls; build with `from_toml(path)` or `default()`."""

    scalars: dict[str, AxisMap] = field(default_factory=dict)  # target name (or cc<N>) -> its axis map
    noise: AxisMap | None = None  # applied to each EMG channel
    noise_slots: tuple[int, ...] = ()  # EMG channel i -> slot noise_slots[i]
    poses: dict[str, str] | None = None  # None: pose does not drive theme
    key: KeyMap | None = None  # None: no axis chooses the key
    style: StyleMap | None = None  # None: the voice plays its default style
    lost: LostPolicy = field(default_factory=LostPolicy)
    response: ResponsePolicy = field(default_factory=ResponsePolicy)
    source: str = "<default>"

    def __post_init__(self) -> None:
        self.overrides: dict[str, Any] = {}  # pinned controls (learned MIDI knobs), applied over every frame
        self.reset()

    @property
    def register(self) -> AxisMap | None:
        """The register target's axis map, if mapped."""
        return self.scalars.get("register")

    @property
    def density(self) -> AxisMap | None:
        """The density target's axis map, if mapped."""
        return self.scalars.get("density")

    @property
    def cc_out(self) -> dict[int, AxisMap]:
        """CC number -> its axis map, for the `[cc.N]` sections."""
        return {int(name[len(CC_PREFIX):]): m for name, m in self.scalars.items() if name.startswith(CC_PREFIX)}

    def targets(self) -> frozenset[str]:
        """The control names this mapping can set."""
        names = set(self.scalars)
        if self.noise is not None:
            names.add("noise_slots")
        if self.poses is not None:
            names.add("theme")
        if self.key is not None:
            names |= {"key", "key_histogram"}
        if self.style is not None:
            names.add("style")
        return frozenset(names)

    def sources(self) -> dict[str, str]:
        """Target -> what drives it, as a person reads it (the start line and the session log)."""
        out = {name: axis_map.label for name, axis_map in self.scalars.items()}
        if self.noise is not None:
            out["noise_slots"] = "emg"
        if self.poses is not None:
            out["theme"] = "pose"
        if self.key is not None:
            out["key_histogram"] = self.key.position.label
        if self.style is not None:
            out["style"] = self.style.position.label if self.style.position else self.style.styles[0]
        return out

    def reset(self) -> None:
        """Forget the last controls (a new performance)."""
        self._last: Controls | None = None
        self._lost_since: float | None = None
        self._key_index: int | None = None
        self._style_index: int | None = None

    def override(self, name: str, value: Any) -> None:
        """Pin control `name` to `value` from now on, whatever the frames say (None: unpin).

        A key is pinned by name ('G:major'): its `key_histogram` (what the voices listen to) comes with it.
        """
        pins = {name: value}
        if name == "key":
            from models.keys import key_histogram

            pins["key_histogram"] = None if value is None else key_histogram(value)
        for pinned, pin in pins.items():
            if pin is None:
                self.overrides.pop(pinned, None)
            else:
                self.overrides[pinned] = pin

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
        from instrument.mapping_toml import parse_mapping

        return parse_mapping(cls, text, source)

    # -- mapping -------------------------------------------------------------------
    def map(self, frame: ControlFrame) -> Controls:
        """The controls for one frame (hold or glide while `frame.present` is False), overrides applied."""
        controls = self._map(frame)
        return controls.replace(**self.overrides) if self.overrides else controls

    def _map(self, frame: ControlFrame) -> Controls:
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
        scalars = {name: axis_map.read(frame) for name, axis_map in self.scalars.items()}
        if self.key is not None:
            self._key_index = index = self.key.index(frame, self._key_index)
            if index is not None:
                scalars.update(key=self.key.keys[index], key_histogram=self.key.histograms[index])
        if self.style is not None:
            self._style_index = index = self.style.index(frame, self._style_index)
            if index is not None:
                scalars["style"] = self.style.styles[index]
        controls = Controls(present=True, noise_slots=noise, theme=theme, **scalars)
        self._last = controls
        return controls

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
        return last.replace(present=False, noise_slots=noise, **glided)  # a key, like a theme, holds
