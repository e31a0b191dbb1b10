"""The note ledger: the one record of which notes sound, on which channel, since when.

Every message the engine sends passes `admit()` first, under the engine's lock, so the
ledger is the single choke point where the sounding set changes. It also keeps two
rules whatever the voice or a rollback did:

- a pitch that sounds is ended before it is struck again (a note-off goes first);
- a note-off for a pitch that does not sound is dropped (every note-on has exactly one
  note-off).

Panic (stop, Ctrl-C, a failing model, MIDI-in panic) asks the ledger: explicit
note-offs for what sounds, then CC123 and CC120 once per channel used. The monitor's
piano roll and the rollback (which notes the new future must continue or end) read it.
Pure: no I/O, no clock; times are session seconds handed in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import mido

CC_ALL_SOUND_OFF = 120
CC_ALL_NOTES_OFF = 123


@dataclass(slots=True)
class NoteRecord:
    """One note as sent: end is None while it sounds."""

    channel: int
    pitch: int
    velocity: int
    start: float
    end: float | None = None


class NoteLedger:
    """Sounding notes per (channel, pitch), the channels used, and the recent notes for a monitor."""

    def __init__(self, keep: int = 4096) -> None:
        self._sounding: dict[tuple[int, int], NoteRecord] = {}
        self._channels: set[int] = set()
        self._recent: deque[NoteRecord] = deque(maxlen=keep)  # the monitor's roll; old notes fall off
        self.restrikes = 0  # note-ons for a sounding key that the ledger had to end first
        self.orphan_offs = 0  # note-offs for silent keys that the ledger dropped

    def admit(self, message: mido.Message, t: float) -> list[mido.Message]:
        """The messages to really send for `message` at session time `t`, with the sounding set updated."""
        kind = message.type
        if kind == "note_on" and message.velocity > 0:
            key = (message.channel, message.note)
            out = []
            if key in self._sounding:
                self.restrikes += 1
                self._end(key, t)
                out.append(mido.Message("note_off", channel=message.channel, note=message.note, velocity=0))
            record = NoteRecord(message.channel, message.note, message.velocity, t)
            self._sounding[key] = record
            self._recent.append(record)
            self._channels.add(message.channel)
            out.append(message)
            return out
        if kind == "note_off" or kind == "note_on":  # note_on with velocity 0 is a note-off
            key = (message.channel, message.note)
            if key not in self._sounding:
                self.orphan_offs += 1
                return []
            self._end(key, t)
            return [message]
        if kind == "control_change" and message.control in (CC_ALL_NOTES_OFF, CC_ALL_SOUND_OFF):
            for key in [k for k in self._sounding if k[0] == message.channel]:
                self._end(key, t)
        return [message]

    def _end(self, key: tuple[int, int], t: float) -> None:
        record = self._sounding.pop(key)
        record.end = t

    def sounding(self, channel: int) -> dict[int, float]:
        """Pitch -> start of the notes sounding on `channel` (a copy)."""
        return {pitch: r.start for (ch, pitch), r in self._sounding.items() if ch == channel}

    def __len__(self) -> int:
        return len(self._sounding)

    def older_than(self, t: float, seconds: float) -> int:
        """How many sounding notes started more than `seconds` before `t` (stuck notes, if past the cap)."""
        return sum(1 for r in self._sounding.values() if t - r.start > seconds)

    def panic(self, t: float) -> list[mido.Message]:
        """Silence: a note-off per sounding note, then CC123 and CC120 once per channel used; the ledger is then empty."""
        out = [mido.Message("note_off", channel=ch, note=p, velocity=0) for ch, p in sorted(self._sounding)]
        for key in list(self._sounding):
            self._end(key, t)
        for channel in sorted(self._channels):
            out.append(mido.Message("control_change", channel=channel, control=CC_ALL_NOTES_OFF, value=0))
            out.append(mido.Message("control_change", channel=channel, control=CC_ALL_SOUND_OFF, value=0))
        return out

    def recent(self, since: float) -> tuple[tuple[int, int, float, float | None], ...]:
        """(pitch, velocity, start, end or None) of the notes sounding at or after `since` (for the monitor's roll)."""
        return tuple((r.pitch, r.velocity, r.start, r.end) for r in tuple(self._recent) if r.end is None or r.end >= since)
