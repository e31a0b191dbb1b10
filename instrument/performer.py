"""Performer: performance events -> MIDI messages on absolute deadlines.

The model speaks in events (NOTE_ON, NOTE_OFF, TIME_SHIFT, VELOCITY; models/events.py).
The performer keeps a time cursor in session seconds and turns each event into zero
or more `TimedMessage`s at that cursor. It also keeps the music sane whatever the
model samples: a NOTE_OFF for a note that is not on is dropped, a NOTE_ON for a
note that is already on re-strikes it (note-off first), and no note lasts longer
than `max_note_s`.

Also here, because everything that silences notes belongs together:
`HeldNotes` (what has really been sent and is still sounding) and `panic_messages`
(explicit note-offs, then CC123 all-notes-off and CC120 all-sound-off).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import mido

from instrument.scheduler import TimedMessage
from models.events import Event, EventType, bin_to_velocity

REFERENCE_TEMPO = 120.0  # bpm at which a voice's time shifts play at their nominal length
CC_ALL_SOUND_OFF = 120
CC_ALL_NOTES_OFF = 123


@dataclass(frozen=True, slots=True)
class PerformerState:
    """What `Performer.snapshot()` keeps: enough to continue from that point."""

    cursor: float
    velocity: int
    open_notes: tuple[tuple[int, float], ...]  # (pitch, start) of notes on in the generated stream


class Performer:
    """Places events on a session time line for one MIDI channel."""

    def __init__(self, channel: int = 0, max_note_s: float = 4.0, velocity: int = 80,
                 tempo: float = REFERENCE_TEMPO) -> None:
        if not 0 <= channel <= 15:
            raise ValueError(f"channel must be in range 0..15, got {channel}")
        if not max_note_s > 0:
            raise ValueError(f"max_note_s must be > 0, got {max_note_s}")
        self.channel = channel
        self.max_note_s = float(max_note_s)
        self.cursor = 0.0  # session seconds where the next event happens
        self.velocity = velocity
        self.tempo = float(tempo)
        self.floor = float("-inf")  # no message is placed before this (the playhead at the last restore)
        self.skip_late_onsets = False  # True: onsets before the floor are dropped (keep a bar grid) not delayed
        self.epoch = 0
        self.epoch_start = 0.0  # session time the current control regime began
        self._open: dict[int, float] = {}  # pitch -> start

    # -- state ---------------------------------------------------------------------
    def snapshot(self) -> PerformerState:
        """The performer's state now (a small immutable value)."""
        return PerformerState(self.cursor, self.velocity, tuple(self._open.items()))

    def restore(self, state: PerformerState, not_before: float = float("-inf")) -> None:
        """Continue from `state`, placing no message before `not_before` (the playhead).

        The cursor itself goes back to the state's time, so a rest that was under way
        when the rollback came keeps the part already elapsed: the rhythm survives it.
        """
        self.cursor = state.cursor
        self.floor = not_before
        self.velocity = state.velocity
        self._open = dict(state.open_notes)

    @property
    def horizon(self) -> float:
        """The end of the generated music: the cursor, or the floor if that is later."""
        return self.cursor if self.cursor > self.floor else self.floor

    def begin_epoch(self, epoch: int, start: float) -> None:
        """Start a new control regime at session time `start`; later messages carry `epoch`."""
        self.epoch = epoch
        self.epoch_start = start

    @property
    def open_notes(self) -> dict[int, float]:
        """Pitch -> start of the notes on in the generated stream (a copy)."""
        return dict(self._open)

    # -- events -> messages ----------------------------------------------------------
    def perform(self, event: Event, seconds_per_shift: float = 0.01) -> list[TimedMessage]:
        """The messages for one event; TIME_SHIFT moves the cursor by value * seconds_per_shift (tempo-scaled)."""
        kind = event.type
        if kind == EventType.TIME_SHIFT:
            self.cursor += event.value * seconds_per_shift * (REFERENCE_TEMPO / self.tempo)
            return self._expire(self.cursor) if self._open else []
        if kind == EventType.VELOCITY:
            self.velocity = bin_to_velocity(event.value)
            return []
        pitch = event.value
        out: list[TimedMessage] = []
        if kind == EventType.NOTE_ON:
            if self.skip_late_onsets and self.cursor < self.floor:
                return []  # the elapsed part of a regenerated bar: not played late, not played
            if pitch in self._open:
                out.append(self._message("note_off", pitch, 0, self.cursor))
            self._open[pitch] = self.cursor
            out.append(self._message("note_on", pitch, self.velocity, self.cursor))
        elif pitch in self._open:  # NOTE_OFF of a sounding note; others are dropped
            del self._open[pitch]
            out.append(self._message("note_off", pitch, 0, self.cursor))
        return out

    def close_all(self) -> list[TimedMessage]:
        """Note-offs at the cursor for every open note (end of a performance)."""
        out = [self._message("note_off", p, 0, self.cursor) for p in sorted(self._open)]
        self._open.clear()
        return out

    def _expire(self, now: float) -> list[TimedMessage]:
        """Note-offs for notes that have reached max_note_s by `now`, at their own end times."""
        limit = self.max_note_s
        expired = sorted((start + limit, pitch) for pitch, start in self._open.items() if start + limit <= now)
        for _, pitch in expired:
            del self._open[pitch]
        return [self._message("note_off", pitch, 0, end) for end, pitch in expired]

    def _message(self, kind: str, pitch: int, velocity: int, deadline: float) -> TimedMessage:
        message = mido.Message(kind, channel=self.channel, note=pitch, velocity=velocity)
        if deadline < self.floor:
            deadline = self.floor
        # the music's own wait since the control regime began (subtracted by the latency report)
        wait = deadline - self.epoch_start
        return TimedMessage(deadline, message, self.epoch, wait if wait > 0.0 else 0.0)


class HeldNotes:
    """The notes really sent and still sounding, per (channel, pitch), and the channels used."""

    def __init__(self) -> None:
        self.sounding: set[tuple[int, int]] = set()
        self.channels: set[int] = set()

    def update(self, message: mido.Message) -> None:
        """Account for one sent message."""
        kind = message.type
        if kind == "note_on" and message.velocity > 0:
            self.sounding.add((message.channel, message.note))
            self.channels.add(message.channel)
        elif kind == "note_off" or kind == "note_on":
            self.sounding.discard((message.channel, message.note))

    def panic(self) -> list[mido.Message]:
        """The messages that silence everything sent so far; the tracker is then empty."""
        out = panic_messages(self.sounding, self.channels)
        self.sounding.clear()
        return out


def panic_messages(sounding: Iterable[tuple[int, int]], channels: Iterable[int]) -> list[mido.Message]:
    """Explicit note-offs for `sounding` (channel, pitch), then CC123 and CC120 on every channel used."""
    out = [mido.Message("note_off", channel=ch, note=p, velocity=0) for ch, p in sorted(sounding)]
    for ch in sorted(set(channels) | {ch for ch, _ in sounding}):
        out.append(mido.Message("control_change", channel=ch, control=CC_ALL_NOTES_OFF, value=0))
        out.append(mido.Message("control_change", channel=ch, control=CC_ALL_SOUND_OFF, value=0))
    return out
