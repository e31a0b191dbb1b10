"""Piano-roll helpers: notes <-> roll on a beat grid, re-strikes, tempo maps, BL2012 loader."""

from __future__ import annotations

from pathlib import Path

import mido
import numpy as np
import pytest

from models.events import Note
from models.roll import (
    HELD,
    OFF,
    ONSET,
    TempoMap,
    events_to_roll,
    frames_to_roll,
    load_bl2012,
    midi_to_roll,
    notes_to_roll,
    pitch_class_histogram,
    roll_to_events,
    roll_to_notes,
    step_seconds,
    transpose,
    upsample,
)

BL2012 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "bl2012"


def test_notes_on_grid_round_trip_exactly():
    step = step_seconds(120)  # 0.125 s per sixteenth
    notes = [Note(60, 0.0, 0.5, 80), Note(64, 0.25, 0.375, 80), Note(67, 1.0, 2.0, 80)]
    roll = notes_to_roll(notes, 120)
    assert roll.shape == (16, 128)
    assert roll[0, 60] == ONSET and (roll[1:4, 60] == HELD).all() and roll[4, 60] == OFF
    assert roll_to_notes(roll, step) == notes


def test_restrike_of_a_held_pitch_is_kept():
    # two quarter notes on the same key, back to back: not one half note
    notes = [Note(62, 0.0, 0.5, 80), Note(62, 0.5, 1.0, 80)]
    roll = notes_to_roll(notes, 120)
    assert list(roll[:8, 62]) == [ONSET, HELD, HELD, HELD, ONSET, HELD, HELD, HELD]
    assert roll_to_notes(roll, step_seconds(120)) == notes


def test_overlapping_same_pitch_ends_the_earlier_note():
    roll = notes_to_roll([Note(60, 0.0, 1.0, 80), Note(60, 0.25, 0.5, 80)], 120)
    back = roll_to_notes(roll, step_seconds(120))
    assert [(n.start, n.end) for n in back] == [(0.0, 0.25), (0.25, 1.0)]


def test_note_off_on_transition_and_held_start_begins_a_note():
    roll = np.zeros((6, 128), np.uint8)
    roll[0:2, 40] = HELD  # a roll cut mid-note: the note still plays from step 0
    roll[3, 41] = ONSET
    notes = roll_to_notes(roll, 0.1, t0=5.0, velocity=99)
    assert notes == [Note(40, 5.0, 5.2, 99), Note(41, 5.3, pytest.approx(5.4), 99)]


def test_roll_to_notes_rejects_bad_shapes():
    with pytest.raises(ValueError):
        roll_to_notes(np.zeros((4, 88), np.uint8), 0.1)
    with pytest.raises(ValueError):
        roll_to_notes(np.zeros((4, 128), np.uint8), 0.0)


def test_events_round_trip_through_the_roll():
    notes = [Note(60, 0.0, 0.25, 80), Note(60, 0.25, 0.5, 80), Note(72, 0.125, 1.0, 80)]
    roll = notes_to_roll(notes, 120)
    events = roll_to_events(roll, 120)
    assert np.array_equal(events_to_roll(events, 120), roll)


def _midi_with_tempo_change(path: Path) -> Path:
    """4 quarter notes at 120 bpm, then 4 at 60 bpm, one track."""
    mid = mido.MidiFile(ticks_per_beat=480)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("set_tempo", tempo=500_000, time=0))
    for i in range(8):
        if i == 4:
            track.append(mido.MetaMessage("set_tempo", tempo=1_000_000, time=0))
        track.append(mido.Message("note_on", note=60 + i, velocity=90, time=0))
        track.append(mido.Message("note_off", note=60 + i, velocity=0, time=480))
    mid.save(path)
    return path


def test_tempo_map_follows_set_tempo(tmp_path):
    tmap = TempoMap.from_midi(mido.MidiFile(_midi_with_tempo_change(tmp_path / "t.mid")))
    assert tmap.to_beats(1.0) == pytest.approx(2.0)  # 120 bpm
    assert tmap.to_beats(2.0 + 1.0) == pytest.approx(5.0)  # after the change: 60 bpm
    assert tmap.to_seconds(tmap.to_beats(2.7)) == pytest.approx(2.7)


def test_midi_to_roll_puts_every_quarter_on_four_steps(tmp_path):
    roll = midi_to_roll(_midi_with_tempo_change(tmp_path / "t.mid"))
    assert roll.shape == (32, 128)  # 8 quarter notes, 4 steps each, whatever the tempo
    for i in range(8):
        assert roll[4 * i, 60 + i] == ONSET
        assert (roll[4 * i + 1:4 * i + 4, 60 + i] == HELD).all()


def test_upsample_keeps_one_onset_per_frame():
    roll = frames_to_roll([[60], [60], [62]])
    up = upsample(roll, 4)
    assert list(up[:, 60]) == [ONSET, HELD, HELD, HELD, HELD, HELD, HELD, HELD, OFF, OFF, OFF, OFF]
    assert list(up[8:, 62]) == [ONSET, HELD, HELD, HELD]


def test_transpose_and_pitch_class_histogram():
    roll = np.zeros((4, 128), np.uint8)
    roll[:, 60] = HELD  # C
    roll[:2, 127] = HELD  # G, pushed off the keyboard by +2
    up = transpose(roll, 2)
    assert up[:, 62].all() and not up[:, 127].any() and up.sum() == 4
    hist = pitch_class_histogram(roll)
    assert hist[0] == pytest.approx(4 / 6) and hist[7] == pytest.approx(2 / 6)
    assert pitch_class_histogram(np.zeros((4, 128), np.uint8)).sum() == 0


def test_frames_to_roll_marks_onsets_where_a_pitch_appears():
    roll = frames_to_roll([[60, 64], [60], [], [60]])
    assert list(roll[:, 60]) == [ONSET, HELD, OFF, ONSET]
    assert list(roll[:, 64]) == [ONSET, OFF, OFF, OFF]


@pytest.mark.parametrize(
    "name, sizes",
    [("jsb_chorales.json", (229, 76, 77)), ("nottingham.json", (694, 173, 170)), ("piano_midi.json", (87, 12, 25))],
)
def test_load_bl2012_real_files(name, sizes):
    data = load_bl2012(BL2012 / name)
    assert tuple(len(data[s]) for s in ("train", "valid", "test")) == sizes
    roll = data["train"][0]
    assert roll.dtype == np.uint8 and roll.shape[1] == 128
    used = np.flatnonzero(np.concatenate(data["test"]).any(axis=0))
    assert used.min() >= 21 and used.max() <= 108
    assert (roll[0][roll[0] != OFF] == ONSET).all()  # the first frame strikes everything it holds


def test_load_bl2012_rejects_other_json(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text('{"train": []}')
    with pytest.raises(ValueError, match="missing splits"):
        load_bl2012(bad)
