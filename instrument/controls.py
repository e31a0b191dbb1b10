"""Controls: what the mapping hands to a voice, in musical units, one name per knob.

A `Controls` is an immutable set of named values. Each voice declares the names it
listens to (`VoiceInfo.listens`); the mapping fills the names its file targets; the
engine compares two Controls only on the listened names (`control_distance`), so a
knob a voice ignores never rolls it back. A new voice with a new knob needs no change
here: an unknown scalar is compared on a unit scale (axes in [0, 1]).

The shipped knobs:
    register:      mean MIDI pitch of the notes to play (e.g. 48..84).
    density:       note-ons per second (e.g. 1..12).
    key_histogram: 12 pitch-class weights summing to 1 (C first), the soft key condition.
    noise_slots:   values for the DCRNN noise slots 0..N-1, in the prior's range.
    theme:         a stored theme name chosen by pose.
    velocity:      loudness 1..127 (a multiplier of the voice's own dynamics, centred on 80).
    transpose:     semitones added to every note.
    temperature:   the voice's sampling temperature.
    key:           the key name the `key_histogram` was made from (for the .mid's key signature).
    tempo:         bpm (the engine plays it; voices do not listen to it).
    cc<N>:         a MIDI CC value 0..127 the engine sends out on CC N (for DAW automation).
    present:       False while the hand is lost (the mapping has applied hold/glide already).

velocity, transpose and temperature reach every voice through instrument/voice_shaping.py;
a voice that handles one itself (the DCRNN's transpose) lists it in `listens`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from types import MappingProxyType
from typing import Any

Distance = Callable[[Any, Any], float]


class Controls:
    """Named control values (None-valued names are left out: "the voice's default")."""

    __slots__ = ("_values", "present")

    def __init__(self, present: bool = True, **values: Any) -> None:
        object.__setattr__(self, "_values", MappingProxyType({k: v for k, v in values.items() if v is not None}))
        object.__setattr__(self, "present", bool(present))

    def get(self, name: str, default: Any = None) -> Any:
        """The value of `name`, or `default` when the mapping does not set it."""
        return self._values.get(name, default)

    def __getattr__(self, name: str) -> Any:
        # Attribute reads of a knob (controls.register) are the same as get(name): None when unset.
        if name.startswith("_"):
            raise AttributeError(name)
        return self._values.get(name)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Controls are immutable; use replace()")

    def names(self) -> frozenset[str]:
        """The knobs this value sets."""
        return frozenset(self._values)

    def items(self) -> Iterable[tuple[str, Any]]:
        """(name, value) pairs."""
        return self._values.items()

    def replace(self, present: bool | None = None, **changes: Any) -> "Controls":
        """A copy with some knobs (or `present`) changed; a None value removes the knob."""
        merged = {**self._values, **changes}
        return Controls(self.present if present is None else present, **merged)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Controls) and self.present == other.present and dict(self._values) == dict(other._values)

    def __hash__(self) -> int:
        return hash((self.present, tuple(sorted((k, _hashable(v)) for k, v in self._values.items()))))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in sorted(self._values.items()))
        return f"Controls({inner}{', ' if inner else ''}present={self.present})"


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


# -- how different two values of one knob sound: 1.0 is "clearly a new musical request" --------------
def _scalar(scale: float) -> Distance:
    return lambda x, y: abs(x - y) / scale


def _ratio(x: float, y: float) -> float:
    return abs(math.log2(max(x, 1e-3) / max(y, 1e-3)))


def _histogram(x, y) -> float:
    return 0.5 * sum(abs(p - q) for p, q in zip(x, y))


def _vector(scale: float) -> Distance:
    return lambda x, y: max((abs(p - q) for p, q in zip(x, y)), default=0.0) / scale


def _label(x, y) -> float:
    return 0.0 if x == y else 1.0


DISTANCES: dict[str, Distance] = {
    "register": _scalar(12.0),  # an octave
    "density": _ratio,  # a doubled density
    "key_histogram": _histogram,  # a new key
    "noise_slots": _vector(2.0),  # the whole EMG range
    "theme": _label,
    "velocity": _scalar(64.0),
    "transpose": _scalar(12.0),
    "temperature": _scalar(1.0),
}


def register_distance(name: str, distance: Distance) -> None:
    """Say how a new knob's values compare (default: |a - b| on a unit scale)."""
    DISTANCES[name] = distance


def control_distance(a: Controls, b: Controls, listens: Iterable[str] | None = None) -> float:
    """How different two controls sound on the knobs in `listens` (all knobs when None): the largest term."""
    names = set(a.names() | b.names()) if listens is None else listens
    worst = 0.0
    for name in names:
        x, y = a.get(name), b.get(name)
        if x is None or y is None:
            term = 0.0 if x is y else 1.0
        elif isinstance(x, str) or isinstance(y, str):
            term = _label(x, y)
        else:
            term = DISTANCES.get(name, _scalar(1.0))(x, y)
        if term > worst:
            worst = term
    return worst
