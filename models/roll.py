"""Piano rolls on a beat grid: notes <-> roll, events <-> roll, and the BL2012 loader.

A roll is a ``uint8`` array of shape ``(T, 128)``, one row per grid step (default 4 steps
per beat, i.e. sixteenth notes), one column per MIDI pitch:

    OFF = 0     the key is up
    HELD = 1    the key is down, continuing a note struck earlier
    ONSET = 2   the key is struck at this step (a new note starts)

Keeping ONSET separate from HELD is what lets a re-struck pitch survive the round trip:
two adjacent quarter notes on the same key are ``2 1 1 1 2 1 1 1``, not one half note.
A note ends on the step where its column returns to OFF or a new ONSET starts.

Time in seconds maps to beats through the MIDI file's tempo map (``set_tempo`` events),
so a grid step is always a sixteenth of the written music, whatever its tempo.
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np

from models.events import Event, Note, events_to_notes, midi_to_notes, notes_to_events

OFF, HELD, ONSET = 0, 1, 2
N_PITCHES = 128
DEFAULT_STEPS_PER_BEAT = 4
DEFAULT_VELOCITY = 80
BL2012_SPLITS = ("train", "valid", "test")


# ----------------------------------------------------------------------------- tempo


@dataclass(frozen=True)
class TempoMap:
    """Piecewise-constant tempo: seconds <-> beats (quarter notes) for one MIDI file."""

    seconds: tuple[float, ...]  # start time of each tempo segment, seconds (first is 0.0)
    beats: tuple[float, ...]  # start of each segment, in beats
    sec_per_beat: tuple[float, ...]  # tempo of each segment

    @classmethod
    def constant(cls, bpm: float) -> TempoMap:
        """A single tempo of ``bpm`` quarter notes per minute."""
        if bpm <= 0:
            raise ValueError(f"bpm must be > 0, got {bpm}")
        return cls((0.0,), (0.0,), (60.0 / bpm,))

    @classmethod
    def from_midi(cls, midi: mido.MidiFile) -> TempoMap:
        """Read every ``set_tempo`` of a file (all tracks merged); 120 bpm until the first."""
        changes: list[tuple[int, int]] = []  # (absolute tick, microseconds per beat)
        for track in midi.tracks:
            tick = 0
            for msg in track:
                tick += msg.time
                if msg.type == "set_tempo":
                    changes.append((tick, msg.tempo))
        changes.sort(key=lambda c: c[0])
        tpb = midi.ticks_per_beat
        seconds, beats, spb = [0.0], [0.0], [0.5]
        for tick, tempo in changes:
            beat = tick / tpb
            if beat <= beats[-1] + 1e-12:  # tempo change at the same position: replace
                spb[-1] = tempo / 1e6
                continue
            seconds.append(seconds[-1] + (beat - beats[-1]) * spb[-1])
            beats.append(beat)
            spb.append(tempo / 1e6)
        return cls(tuple(seconds), tuple(beats), tuple(spb))

    def to_beats(self, t: float) -> float:
        """Seconds -> beats."""
        i = max(0, bisect.bisect_right(self.seconds, t) - 1)
        return self.beats[i] + (t - self.seconds[i]) / self.sec_per_beat[i]

    def to_seconds(self, beat: float) -> float:
        """Beats -> seconds."""
        i = max(0, bisect.bisect_right(self.beats, beat) - 1)
        return self.seconds[i] + (beat - self.beats[i]) * self.sec_per_beat[i]


# ----------------------------------------------------------------------------- notes <-> roll


def notes_to_roll(
    notes: list[Note],
    tempo: TempoMap | float,
    steps_per_beat: int = DEFAULT_STEPS_PER_BEAT,
    n_steps: int | None = None,
) -> np.ndarray:
    """Quantize notes (seconds) to a (T, 128) uint8 roll; ``tempo`` is a TempoMap or bpm.

    Onsets and ends snap to the nearest grid step; every note lasts at least one step.
    A note struck while the same pitch still sounds ends the earlier one (re-strike).
    """
    tmap = tempo if isinstance(tempo, TempoMap) else TempoMap.constant(float(tempo))
    spans = []
    for n in notes:
        start = int(round(tmap.to_beats(n.start) * steps_per_beat))
        end = int(round(tmap.to_beats(n.end) * steps_per_beat))
        spans.append((start, max(end, start + 1), n.pitch))
    total = max((e for _, e, _ in spans), default=0) if n_steps is None else n_steps
    roll = np.zeros((total, N_PITCHES), dtype=np.uint8)
    # Paint long notes first in onset order; an onset always wins over a held step.
    for start, end, pitch in sorted(spans):
        if start >= total:
            continue
        seg = roll[start:min(end, total), pitch]
        seg[seg == OFF] = HELD
        roll[start, pitch] = ONSET
    return roll


def roll_to_notes(
    roll: np.ndarray,
    step_s: float,
    t0: float = 0.0,
    velocity: int = DEFAULT_VELOCITY,
) -> list[Note]:
    """Read notes back from a roll: a note-off on every transition, re-strikes kept.

    A HELD step with no sounding note before it (e.g. a roll cut mid-note) starts a note.
    Notes still sounding at the last step end at the roll's end. Sorted by (start, pitch).
    """
    roll = np.asarray(roll)
    if roll.ndim != 2 or roll.shape[1] != N_PITCHES:
        raise ValueError(f"roll must have shape (T, {N_PITCHES}), got {roll.shape}")
    if step_s <= 0:
        raise ValueError(f"step_s must be > 0, got {step_s}")
    n_steps = roll.shape[0]
    notes: list[Note] = []
    for pitch in np.flatnonzero(roll.any(axis=0)):
        col = roll[:, pitch]
        start = None
        for t in range(n_steps + 1):
            v = col[t] if t < n_steps else OFF
            if start is not None and (v == OFF or v == ONSET):
                notes.append(Note(int(pitch), t0 + start * step_s, t0 + t * step_s, velocity))
                start = None
            if v != OFF and start is None:
                start = t
    notes.sort(key=lambda n: (n.start, n.pitch))
    return notes


def events_to_roll(
    events: list[Event], bpm: float, steps_per_beat: int = DEFAULT_STEPS_PER_BEAT
) -> np.ndarray:
    """Performance events -> roll at a constant tempo (events carry no tempo of their own)."""
    return notes_to_roll(events_to_notes(events), bpm, steps_per_beat)


def roll_to_events(
    roll: np.ndarray,
    bpm: float,
    steps_per_beat: int = DEFAULT_STEPS_PER_BEAT,
    velocity: int = DEFAULT_VELOCITY,
) -> list[Event]:
    """Roll -> performance events at ``bpm``."""
    return notes_to_events(roll_to_notes(roll, step_seconds(bpm, steps_per_beat), velocity=velocity))


def midi_to_roll(path: str | Path | mido.MidiFile, steps_per_beat: int = DEFAULT_STEPS_PER_BEAT) -> np.ndarray:
    """A MIDI file -> roll on its own beat grid (tempo map read from the file)."""
    midi = path if isinstance(path, mido.MidiFile) else mido.MidiFile(str(path))
    return notes_to_roll(midi_to_notes(midi), TempoMap.from_midi(midi), steps_per_beat)


def grid_fit(midi: mido.MidiFile, steps_per_beat: int = DEFAULT_STEPS_PER_BEAT, tol: float = 0.1) -> float:
    """Fraction of note onsets (in ticks) within ``tol`` steps of the grid: ~1 for sequenced files,
    ~0.2 for free human performances whose tempo map says nothing about the music."""
    grid = midi.ticks_per_beat / steps_per_beat
    hits = total = 0
    for track in midi.tracks:
        tick = 0
        for msg in track:
            tick += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                total += 1
                frac = tick / grid
                hits += abs(frac - round(frac)) < tol
    return hits / total if total else 0.0


def step_seconds(bpm: float, steps_per_beat: int = DEFAULT_STEPS_PER_BEAT) -> float:
    """Length of one grid step in seconds."""
    return 60.0 / bpm / steps_per_beat


# ----------------------------------------------------------------------------- roll utilities


def sounding(roll: np.ndarray) -> np.ndarray:
    """Boolean (T, 128): the key is down (HELD or ONSET)."""
    return np.asarray(roll) != OFF


def upsample(roll: np.ndarray, factor: int) -> np.ndarray:
    """Repeat each frame ``factor`` times; only the first copy of an ONSET stays an onset."""
    out = np.repeat(np.asarray(roll, dtype=np.uint8), factor, axis=0)
    later = np.ones(out.shape[0], dtype=bool)
    later[::factor] = False
    out[later[:, None] & (out == ONSET)] = HELD
    return out


def transpose(roll: np.ndarray, semitones: int) -> np.ndarray:
    """Shift every note by ``semitones``; notes pushed off the 0..127 keyboard are dropped."""
    out = np.zeros_like(roll)
    if semitones >= 0:
        out[:, semitones:] = roll[:, : N_PITCHES - semitones]
    else:
        out[:, :semitones] = roll[:, -semitones:]
    return out


def pitch_class_histogram(roll: np.ndarray) -> np.ndarray:
    """12 floats summing to 1 (C first): sounding steps per pitch class; zeros for silence."""
    per_pitch = sounding(roll).sum(axis=0).astype(np.float64)  # (128,)
    hist = np.zeros(12)
    np.add.at(hist, np.arange(N_PITCHES) % 12, per_pitch)
    total = hist.sum()
    return (hist / total if total > 0 else hist).astype(np.float32)


# ----------------------------------------------------------------------------- BL2012


def frames_to_roll(frames: list[list[int]]) -> np.ndarray:
    """BL2012 frames (lists of sounding pitches) -> roll. The format cannot tell a held note
    from a re-strike, so a pitch is an ONSET when absent from the previous frame, else HELD."""
    steps = np.repeat(np.arange(len(frames)), [len(f) for f in frames])
    pitches = np.fromiter((p for f in frames for p in f), dtype=np.int64, count=len(steps))
    on = np.zeros((len(frames), N_PITCHES), dtype=bool)
    on[steps, pitches] = True
    was_on = np.zeros_like(on)
    was_on[1:] = on[:-1]
    roll = on.astype(np.uint8)  # HELD
    roll[on & ~was_on] = ONSET
    return roll


def load_bl2012(path: str | Path) -> dict[str, list[np.ndarray]]:
    """Load a Boulanger-Lewandowski 2012 JSON file -> {"train"|"valid"|"test": [roll, ...]}."""
    path = Path(path)
    with path.open() as f:
        data = json.load(f)
    missing = [s for s in BL2012_SPLITS if s not in data]
    if missing:
        raise ValueError(f"{path}: not a BL2012 file, missing splits {missing}")
    return {split: [frames_to_roll(piece) for piece in data[split]] for split in BL2012_SPLITS}
