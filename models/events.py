"""Performance events: the 388-class vocabulary every model of the instrument speaks.

The layout follows Performance RNN (Oore et al. 2018): 128 NOTE_ON, 128 NOTE_OFF,
100 TIME_SHIFT (10 ms .. 1 s in 10 ms steps) and 32 VELOCITY bins. The codec is a
range table with a pure, symmetric `encode`/`decode`; MIDI conversion goes through
`Note`s, the codec's normalized view of a performance (pedal applied, re-struck
pitches ending the previous note).

Times are quantized to absolute 10 ms steps (floor), and shifts are differences of
absolute steps, so rounding never accumulates into drift over a piece.
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import Iterable, NamedTuple

import mido

CODEC_VERSION = "perf388-v1"
STEPS_PER_SECOND = 100  # one TIME_SHIFT step is 10 ms
MAX_SHIFT_STEPS = 100  # the longest single shift: 1 s
VELOCITY_BINS = 32
DRUM_CHANNEL = 9  # MIDI channel 10, counted from zero
MIDI_TICKS_PER_BEAT = 1000  # with 120 bpm, one tick is exactly 0.5 ms
MIDI_TEMPO = 500_000  # microseconds per beat (120 bpm)


class EventType(enum.IntEnum):
    """The four kinds of performance event, in vocabulary order."""

    NOTE_ON = 0
    NOTE_OFF = 1
    TIME_SHIFT = 2
    VELOCITY = 3


@dataclass(frozen=True, slots=True)
class Event:
    """One performance event; `value` is a pitch, a number of 10 ms steps, or a velocity bin."""

    type: EventType
    value: int

    def __post_init__(self) -> None:
        low, high = _RANGES[EventType(self.type)]
        if not (isinstance(self.value, int) and low <= self.value <= high):
            raise ValueError(f"{EventType(self.type).name} value must be in {low}..{high}, got {self.value!r}")

    def __repr__(self) -> str:
        return f"{EventType(self.type).name}({self.value})"


# (type, min value, max value): the whole vocabulary, in index order.
_RANGES: dict[EventType, tuple[int, int]] = {
    EventType.NOTE_ON: (0, 127),
    EventType.NOTE_OFF: (0, 127),
    EventType.TIME_SHIFT: (1, MAX_SHIFT_STEPS),
    EventType.VELOCITY: (1, VELOCITY_BINS),
}


class EventCodec:
    """Maps events to class indices 0..387 and back, by a table of value ranges."""

    def __init__(self) -> None:
        self._offsets: dict[EventType, int] = {}
        offset = 0
        for event_type, (low, high) in _RANGES.items():
            self._offsets[event_type] = offset
            offset += high - low + 1
        self.size = offset

    def encode(self, event: Event) -> int:
        """The class index of `event`."""
        low, _ = _RANGES[event.type]
        return self._offsets[event.type] + event.value - low

    def decode(self, index: int) -> Event:
        """The event whose class index is `index`."""
        if not 0 <= index < self.size:
            raise ValueError(f"event index must be in 0..{self.size - 1}, got {index!r}")
        for event_type, (low, high) in reversed(_RANGES.items()):
            offset = self._offsets[event_type]
            if index >= offset:
                return Event(event_type, low + index - offset)
        raise AssertionError("unreachable")

    def offset(self, event_type: EventType) -> int:
        """The first index of `event_type`'s range (handy for vectorized masks)."""
        return self._offsets[event_type]


CODEC = EventCodec()
NOTE_ON_OFFSET = CODEC.offset(EventType.NOTE_ON)
NOTE_OFF_OFFSET = CODEC.offset(EventType.NOTE_OFF)
TIME_SHIFT_OFFSET = CODEC.offset(EventType.TIME_SHIFT)
VELOCITY_OFFSET = CODEC.offset(EventType.VELOCITY)


def velocity_to_bin(velocity: int) -> int:
    """The velocity bin (1..32) of a MIDI velocity (1..127); four velocities per bin."""
    if not 1 <= velocity <= 127:
        raise ValueError(f"velocity must be in 1..127, got {velocity!r}")
    return (velocity - 1) // 4 + 1


def bin_to_velocity(velocity_bin: int) -> int:
    """A MIDI velocity inside `velocity_bin` (its upper middle)."""
    if not 1 <= velocity_bin <= VELOCITY_BINS:
        raise ValueError(f"velocity bin must be in 1..{VELOCITY_BINS}, got {velocity_bin!r}")
    return min(127, 4 * velocity_bin - 1)


class Note(NamedTuple):
    """A sounding note: MIDI pitch, start and end in seconds, MIDI velocity."""

    pitch: int
    start: float
    end: float
    velocity: int


# ---------------------------------------------------------------- MIDI -> notes


def load_midi(path_or_midifile: str | os.PathLike | mido.MidiFile) -> mido.MidiFile:
    """Open a MIDI file (or pass an opened one through)."""
    if isinstance(path_or_midifile, mido.MidiFile):
        return path_or_midifile
    return mido.MidiFile(os.fspath(path_or_midifile), clip=True)


def midi_to_notes(path_or_midifile: str | os.PathLike | mido.MidiFile, include_drums: bool = False) -> list[Note]:
    """The sounding notes of a MIDI file, all tracks and channels merged, sorted by start.

    Tempo changes are honoured (mido converts ticks to seconds). The sustain pedal
    (CC64 >= 64) holds released keys until the pedal lifts, as in Performance RNN.
    A pitch struck again while it still sounds ends the previous note at the new onset.
    """
    midi = load_midi(path_or_midifile)
    sounding: dict[int, tuple[float, int, int]] = {}  # pitch -> (start, velocity, channel)
    key_down: set[int] = set()
    pedal_down = [False] * 16
    sustained: set[int] = set()  # pitches released while their channel's pedal was down
    notes: list[Note] = []
    now = 0.0

    def end(pitch: int) -> None:
        start, velocity, _ = sounding.pop(pitch)
        sustained.discard(pitch)
        if now > start:  # a note struck twice at one instant sounds once
            notes.append(Note(pitch, start, now, velocity))

    for message in midi:  # merged tracks, delta times in seconds
        now += message.time
        if message.type not in ("note_on", "note_off", "control_change"):
            continue
        if message.channel == DRUM_CHANNEL and not include_drums:
            continue
        if message.type == "control_change":
            if message.control == 64:
                down = message.value >= 64
                if pedal_down[message.channel] and not down:
                    for pitch in [p for p in sustained if sounding[p][2] == message.channel]:
                        end(pitch)
                pedal_down[message.channel] = down
            continue
        pitch = message.note
        if message.type == "note_on" and message.velocity > 0:
            if pitch in sounding:
                end(pitch)  # re-struck: the previous note ends where the new one begins
            sounding[pitch] = (now, message.velocity, message.channel)
            key_down.add(pitch)
        else:
            key_down.discard(pitch)
            if pitch not in sounding or sounding[pitch][2] != message.channel:
                continue  # orphan note-off
            if pedal_down[message.channel]:
                sustained.add(pitch)
            else:
                end(pitch)
    for pitch in list(sounding):
        end(pitch)
    notes.sort(key=lambda n: (n.start, n.pitch))
    return notes


# ---------------------------------------------------------------- notes <-> events


def quantize_notes(notes: Iterable[Note]) -> list[tuple[int, int, int, int]]:
    """Notes as (pitch, start_step, end_step, velocity) on the 10 ms grid.

    Times are floored, so every onset and offset moves by less than 10 ms, and a note
    lasts at least one step. Two strikes of one pitch inside the same 10 ms step cannot
    both exist on the grid: the later one merges into the earlier (a flam, not two notes).
    """
    by_pitch: dict[int, list[Note]] = {}
    for note in notes:
        by_pitch.setdefault(note.pitch, []).append(note)
    quantized = []
    for pitch, pitch_notes in by_pitch.items():
        previous: list[int] | None = None  # [pitch, start, end, velocity] of the last note on this pitch
        for note in sorted(pitch_notes, key=lambda n: n.start):
            start = int(note.start * STEPS_PER_SECOND + 1e-6)
            end = max(int(note.end * STEPS_PER_SECOND + 1e-6), start + 1)
            if previous is not None and start < previous[2]:
                previous[2] = max(previous[2], end)  # same step as the previous strike: merge
                continue
            previous = [pitch, start, end, note.velocity]
            quantized.append(previous)
    return [tuple(q) for q in quantized]


def notes_to_events(notes: Iterable[Note]) -> list[Event]:
    """Encode notes as performance events (offs before ons at the same step)."""
    timeline = []  # (step, order, pitch, velocity): order 0 = off, 1 = on
    for pitch, start, end, velocity in quantize_notes(notes):
        timeline.append((start, 1, pitch, velocity))
        timeline.append((end, 0, pitch, 0))
    timeline.sort()
    events: list[Event] = []
    current_step = 0
    current_bin = None
    for step, order, pitch, velocity in timeline:
        gap = step - current_step
        while gap > 0:  # shifts over 1 s become several TIME_SHIFTs
            shift = min(gap, MAX_SHIFT_STEPS)
            events.append(Event(EventType.TIME_SHIFT, shift))
            gap -= shift
        current_step = step
        if order == 0:
            events.append(Event(EventType.NOTE_OFF, pitch))
            continue
        velocity_bin = velocity_to_bin(velocity)
        if velocity_bin != current_bin:  # a VELOCITY event only when the bin changes
            events.append(Event(EventType.VELOCITY, velocity_bin))
            current_bin = velocity_bin
        events.append(Event(EventType.NOTE_ON, pitch))
    return events


def events_to_notes(events: Iterable[Event], max_note_s: float | None = None) -> list[Note]:
    """Decode events to notes: every NOTE_ON gets an end, orphan NOTE_OFFs are dropped.

    `max_note_s` (5 s in Performance RNN) ends notes that the generator never released.
    """
    max_steps = None if max_note_s is None else int(round(max_note_s * STEPS_PER_SECOND))
    step = 0
    velocity = 64
    sounding: dict[int, tuple[int, int]] = {}  # pitch -> (start step, velocity)
    notes: list[Note] = []

    def close(pitch: int, end_step: int) -> None:
        start, note_velocity = sounding.pop(pitch)
        if max_steps is not None:
            end_step = min(end_step, start + max_steps)
        if end_step > start:
            notes.append(Note(pitch, start / STEPS_PER_SECOND, end_step / STEPS_PER_SECOND, note_velocity))

    for event in events:
        if event.type == EventType.TIME_SHIFT:
            step += event.value
        elif event.type == EventType.VELOCITY:
            velocity = bin_to_velocity(event.value)
        elif event.type == EventType.NOTE_ON:
            if event.value in sounding:
                close(event.value, step)
            sounding[event.value] = (step, velocity)
        elif event.value in sounding:  # NOTE_OFF of a sounding pitch
            close(event.value, step)
    for pitch in list(sounding):
        close(pitch, step)
    notes.sort(key=lambda n: (n.start, n.pitch))
    return notes


# ---------------------------------------------------------------- events <-> MIDI


def midi_to_events(path_or_midifile: str | os.PathLike | mido.MidiFile, include_drums: bool = False) -> list[Event]:
    """Encode a MIDI file as performance events."""
    return notes_to_events(midi_to_notes(path_or_midifile, include_drums=include_drums))


def notes_to_midi(notes: Iterable[Note], program: int = 0, channel: int = 0) -> mido.MidiFile:
    """A one-track MIDI file (120 bpm, 0.5 ms ticks) playing `notes`."""
    timeline = []  # (tick, order, message): offs sort before ons at the same tick
    for note in notes:
        on_tick = int(round(note.start * 2 * MIDI_TICKS_PER_BEAT))
        off_tick = max(on_tick + 1, int(round(note.end * 2 * MIDI_TICKS_PER_BEAT)))
        timeline.append((on_tick, 1, note.pitch, mido.Message("note_on", note=note.pitch, velocity=note.velocity, channel=channel)))
        timeline.append((off_tick, 0, note.pitch, mido.Message("note_off", note=note.pitch, velocity=0, channel=channel)))
    timeline.sort(key=lambda item: item[:3])
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=MIDI_TEMPO, time=0))
    track.append(mido.Message("program_change", program=program, channel=channel, time=0))
    previous = 0
    for tick, _, _, message in timeline:
        track.append(message.copy(time=tick - previous))
        previous = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    midi = mido.MidiFile(ticks_per_beat=MIDI_TICKS_PER_BEAT)
    midi.tracks.append(track)
    return midi


def events_to_midi(events: Iterable[Event], max_note_s: float | None = None) -> mido.MidiFile:
    """Decode events to a MIDI file; see `events_to_notes` for `max_note_s`."""
    return notes_to_midi(events_to_notes(events, max_note_s=max_note_s))


def encode_all(events: Iterable[Event]) -> list[int]:
    """Class indices of `events`."""
    return [CODEC.encode(e) for e in events]


def decode_all(indices: Iterable[int]) -> list[Event]:
    """Events of class `indices`."""
    return [CODEC.decode(int(i)) for i in indices]
