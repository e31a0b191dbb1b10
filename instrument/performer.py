"""Performer: performance events -> MIDI messages on absolute deadlines.

The model speaks in events (NOTE_ON, NOTE_OFF, TIME_SHIFT, VELOCITY; models/events.py).
The performer keeps a time cursor in session seconds and turns each event into zero
or more `TimedMessage`s at that cursor. It keeps the generated stream sane whatever
the model samples: a NOTE_OFF for a note that is not on is dropped, a NOTE_ON for a
note that is already on re-strikes it (note-off first), and no note lasts longer
than `max_note_s`.

After a rollback (`resume`), the notes that really sound at the playhead are handed
in, each with the end the dropped future had planned for it. The new future either
ends such a note itself (its own NOTE_OFF or a re-strike) or the performer ends it at
its planned end: a gesture changes what comes next, never what sounds now.

Two ways to resume, chosen by the voice:
- a streaming voice starts its new future at the playhead (plus a small margin, so
  that no message is made for a moment already past);
- a grid voice (whole bars) regenerates its bar from the bar start and keeps the
  bar's grid: note events before the playhead are skipped, the first onset after it
  falls on the next grid step.
"""

from __future__ import annotations

from dataclasses import dataclass

import mido

from instrument.scheduler import TimedMessage
from models.events import Event, EventType, bin_to_velocity

REFERENCE_TEMPO = 120.0  # bpm at which a voice's time shifts play at their nominal length
MIN_NOTE_S = 0.03  # a note ends no sooner than this after its note-on (a 0-s note is silent on most synths): a
# note-off sooner is moved to it, a re-strike sooner is merged into the sounding note


@dataclass(frozen=True, slots=True)
class PerformerState:
    """What `Performer.snapshot()` keeps: enough to continue from that point."""

    cursor: float
    velocity: int
    open_notes: tuple[tuple[int, float], ...]  # (pitch, start) of notes on in the generated stream


class Performer:
    """Places events on a session time line for one MIDI channel."""

    def __init__(self, channel: int = 0, max_note_s: float = 4.0, velocity: int = 80,
                 tempo: float = REFERENCE_TEMPO, grid: bool = False) -> None:
        if not 0 <= channel <= 15:
            raise ValueError(f"channel must be in range 0..15, got {channel}")
        if not max_note_s > 0:
            raise ValueError(f"max_note_s must be > 0, got {max_note_s}")
        self.channel = channel
        self.max_note_s = float(max_note_s)
        self.cursor = 0.0  # session seconds where the next event happens
        self.velocity = velocity
        self.tempo = float(tempo)
        self.grid = grid  # True: after a resume, skip note events before the playhead (keep the bar grid)
        self.floor = float("-inf")  # no message is placed before this (the playhead at the last resume)
        self.epoch = 0
        self.epoch_start = 0.0  # session time the current control regime began
        self._open: dict[int, float] = {}  # pitch -> start
        self._planned_end: dict[int, float] = {}  # pitch -> end the dropped future had planned (carried notes)

    # -- state ---------------------------------------------------------------------
    def snapshot(self) -> PerformerState:
        """The performer's state now (a small immutable value)."""
        return PerformerState(self.cursor, self.velocity, tuple(self._open.items()))

    def restore(self, state: PerformerState, not_before: float = float("-inf")) -> None:
        """Continue from `state` exactly as it was, placing no message before `not_before`."""
        self.cursor = state.cursor
        self.floor = not_before
        self.velocity = state.velocity
        self._open = dict(state.open_notes)
        self._planned_end = {}

    def resume(self, state: PerformerState, playhead: float, sounding: dict[int, float],
               planned_end: dict[int, float], margin: float = 0.0) -> None:
        """Continue from `state` after a rollback: `sounding` (pitch -> start) really sounds at `playhead`.

        A streaming performer starts the new future at `playhead + margin`; a grid
        performer goes back to the state's cursor (the bar start) and skips what is
        already past. Carried notes end at `planned_end` unless the new future ends them.
        """
        start = playhead + margin
        self.velocity = state.velocity
        self.floor = start
        self.cursor = state.cursor if self.grid else max(state.cursor, start)
        self._open = dict(sounding)
        self._planned_end = {p: t for p, t in planned_end.items() if p in sounding}

    def delay(self, seconds: float) -> None:
        """Play the rest `seconds` later: a stall left the future behind the playhead, and its rhythm stays whole.

        The sounding notes' starts and planned ends move with the cursor, so each keeps the length the
        music gives it, counted from where the music resumes.
        """
        self.cursor += seconds
        self._open = {pitch: start + seconds for pitch, start in self._open.items()}
        self._planned_end = {pitch: end + seconds for pitch, end in self._planned_end.items()}

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
        if self.grid and self.cursor < self.floor:
            return []  # the elapsed part of a regenerated bar: not played late, not played
        pitch = event.value
        out: list[TimedMessage] = []
        if kind == EventType.NOTE_ON:
            if pitch in self._open:
                if self.cursor - self._open[pitch] < MIN_NOTE_S:
                    return out  # struck again as it starts: one note (as the codec merges strikes in one step)
                out.append(self._message("note_off", pitch, 0, self.cursor))
            self._open[pitch] = self.cursor
            self._planned_end.pop(pitch, None)
            out.append(self._message("note_on", pitch, self.velocity, self.cursor))
        elif pitch in self._open:  # NOTE_OFF of a sounding note; others are dropped
            if self.cursor - self._open[pitch] < MIN_NOTE_S:  # a note ended as it starts is not heard: hold it
                self._planned_end[pitch] = self._open[pitch] + MIN_NOTE_S
                return out
            del self._open[pitch]
            self._planned_end.pop(pitch, None)
            out.append(self._message("note_off", pitch, 0, self.cursor))
        return out

    def close_all(self) -> list[TimedMessage]:
        """Note-offs at the cursor for every open note (end of a performance)."""
        out = [self._message("note_off", p, 0, self.cursor) for p in sorted(self._open)]
        self._open.clear()
        self._planned_end.clear()
        return out

    def end_due(self) -> list[TimedMessage]:
        """Note-offs, at the floor, for carried notes whose end has already come (call right after `resume`)."""
        return self._expire(self.floor) if self._open else []

    def _end_of(self, pitch: int, start: float) -> float:
        end = start + self.max_note_s
        planned = self._planned_end.get(pitch)
        return planned if planned is not None and planned < end else end

    def _expire(self, now: float) -> list[TimedMessage]:
        """Note-offs for notes that reached max_note_s (or their carried planned end) by `now`, at their own end times."""
        expired = sorted((end, pitch) for pitch, start in self._open.items() if (end := self._end_of(pitch, start)) <= now)
        for _, pitch in expired:
            del self._open[pitch]
            self._planned_end.pop(pitch, None)
        return [self._message("note_off", pitch, 0, end) for end, pitch in expired]

    def _message(self, kind: str, pitch: int, velocity: int, deadline: float) -> TimedMessage:
        message = mido.Message(kind, channel=self.channel, note=pitch, velocity=velocity)
        if deadline < self.floor:
            deadline = self.floor
        # the music's own wait since the control regime began (subtracted by the latency report)
        wait = deadline - self.epoch_start
        return TimedMessage(deadline, message, self.epoch, wait if wait > 0.0 else 0.0)
