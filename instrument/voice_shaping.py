"""Velocity, transpose and temperature for every voice: a thin layer between any voice and the performer.

No voice has to know these three controls. `ShapedVoice` wraps a voice and, on its events:

- velocity: every note-on's loudness is the voice's own velocity times `velocity / 80` (so 80
  leaves the voice's dynamics as they are, 40 halves them, 127 plays about 1.6 times louder),
  clamped to 1..127; a VELOCITY event goes before a note-on whose loudness changed;
- transpose: every note-on moves by `round(transpose)` semitones (folded by octaves into
  0..127); a note-off ends the pitch its own note-on sounded, whatever the transpose is now,
  so a change never leaves a note hanging. A voice that listens to `transpose` itself (the
  DCRNN) does it its own way and is left alone;
- temperature: sets the voice's sampling temperature before its next step.

The wrapper's own state (the pitch each sounding voice pitch was moved to, the voice's last
velocity) is part of the snapshot, so a rollback restores it with the voice. Everything else
(name, strike, info, ...) is the wrapped voice's.
"""

from __future__ import annotations

from collections.abc import Sequence

from instrument.controls import Controls
from models.events import Event, EventType, bin_to_velocity, velocity_to_bin

SHAPED_CONTROLS = frozenset({"velocity", "transpose", "temperature"})
NEUTRAL_VELOCITY = 80.0  # the velocity control's value that leaves the voice's dynamics unchanged


def shape_voice(voice):
    """`voice` wrapped in a ShapedVoice (a voice already wrapped is returned as it is)."""
    return voice if isinstance(voice, ShapedVoice) else ShapedVoice(voice)


def scaled_velocity(voice_velocity: int, velocity: float | None) -> int:
    """The loudness a note-on is played at: the voice's own, times velocity / 80, in 1..127."""
    if velocity is None:
        return voice_velocity
    return max(1, min(127, round(voice_velocity * velocity / NEUTRAL_VELOCITY)))


def fold_pitch(pitch: int) -> int:
    """A pitch moved by octaves into 0..127."""
    while pitch > 127:
        pitch -= 12
    while pitch < 0:
        pitch += 12
    return pitch


class ShapedVoice:
    """A voice whose events get the velocity and transpose controls, and whose temperature follows its control."""

    def __init__(self, voice) -> None:
        object.__setattr__(self, "voice", voice)
        object.__setattr__(self, "listens", frozenset(getattr(voice, "listens", frozenset())) | SHAPED_CONTROLS)
        object.__setattr__(self, "_own_transpose", "transpose" not in getattr(voice, "listens", frozenset()))
        object.__setattr__(self, "_velocity", None)  # the velocity control (None: the voice's own dynamics)
        object.__setattr__(self, "_transpose", 0)
        object.__setattr__(self, "_voice_bin", None)  # the voice's last VELOCITY bin (None: the performer's default)
        object.__setattr__(self, "_sent_bin", None)  # the last VELOCITY bin handed on
        object.__setattr__(self, "_moved", {})  # voice pitch -> the pitch its sounding note-on was moved to

    # everything not shaped here is the wrapped voice's (strike only where the voice has one)
    def __getattr__(self, name: str):
        if name == "voice" or name.startswith("__"):  # not yet set (copy, pickle): no endless recursion
            raise AttributeError(name)
        return getattr(self.voice, name)

    def __setattr__(self, name: str, value) -> None:
        setattr(self.voice, name, value)  # e.g. the engine's MIDI-in temperature hand-off

    def set_controls(self, controls: Controls) -> None:
        """Steer the voice, and take the shaped controls for the next events."""
        self.voice.set_controls(controls)
        object.__setattr__(self, "_velocity", controls.get("velocity"))
        transpose = controls.get("transpose")
        object.__setattr__(self, "_transpose", 0 if transpose is None or not self._own_transpose else int(round(transpose)))
        temperature = controls.get("temperature")
        if temperature is not None:
            self.voice.temperature = float(temperature)

    def next_events(self) -> Sequence[Event]:
        """The voice's next events, transposed and with the velocity control applied."""
        out: list[Event] = []
        moved = self._moved
        for event in self.voice.next_events():
            kind = event.type
            if kind == EventType.VELOCITY:
                object.__setattr__(self, "_voice_bin", event.value)  # handed on before the next note-on
            elif kind == EventType.NOTE_ON:
                voice_bin = self._voice_bin
                if voice_bin is not None or self._velocity is not None:
                    own = bin_to_velocity(voice_bin) if voice_bin is not None else int(NEUTRAL_VELOCITY)
                    wanted = velocity_to_bin(scaled_velocity(own, self._velocity))
                    if wanted != self._sent_bin:
                        object.__setattr__(self, "_sent_bin", wanted)
                        out.append(Event(EventType.VELOCITY, wanted))
                pitch = fold_pitch(event.value + self._transpose)
                if pitch != event.value or event.value in moved:
                    moved = self._copy_moved(moved)
                    moved[event.value] = pitch
                out.append(event if pitch == event.value else Event(EventType.NOTE_ON, pitch))
            elif kind == EventType.NOTE_OFF:
                pitch = moved.get(event.value, event.value)
                if event.value in moved:
                    moved = self._copy_moved(moved)
                    del moved[event.value]
                out.append(event if pitch == event.value else Event(EventType.NOTE_OFF, pitch))
            else:
                out.append(event)
        return out

    def _copy_moved(self, moved: dict) -> dict:
        """Copy-on-write: a snapshot holds the old dict by reference, so it is never changed in place."""
        if moved is self._moved:
            moved = dict(moved)
            object.__setattr__(self, "_moved", moved)
        return moved

    def snapshot(self) -> tuple:
        """The voice's snapshot with the wrapper's own state (references only)."""
        return (self.voice.snapshot(), self._moved, self._voice_bin, self._sent_bin)

    def restore(self, snapshot: tuple) -> None:
        """Go back to a snapshot, the wrapper's state with the voice's."""
        inner, moved, voice_bin, sent_bin = snapshot
        self.voice.restore(inner)
        object.__setattr__(self, "_moved", moved)
        object.__setattr__(self, "_voice_bin", voice_bin)
        object.__setattr__(self, "_sent_bin", sent_bin)
