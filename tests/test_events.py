"""The event codec: pinned layout, MIDI conversion rules, and the original study's bugs."""

import io

import mido
import pytest
from hypothesis import given, strategies as st

from models.events import (
    CODEC,
    Event,
    EventType,
    Note,
    bin_to_velocity,
    events_to_midi,
    events_to_notes,
    midi_to_events,
    midi_to_notes,
    notes_to_events,
    velocity_to_bin,
)

ON, OFF, SHIFT, VEL = EventType.NOTE_ON, EventType.NOTE_OFF, EventType.TIME_SHIFT, EventType.VELOCITY


def midi_file(messages, ticks_per_beat=480, tempo=500_000):
    """A one-track MIDI file from (delta_ticks, message) pairs."""
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo, time=0)])
    for delta, message in messages:
        track.append(message.copy(time=delta))
    midi = mido.MidiFile(ticks_per_beat=ticks_per_beat)
    midi.tracks.append(track)
    return midi


def on(note, velocity=80, channel=0):
    return mido.Message("note_on", note=note, velocity=velocity, channel=channel)


def off(note, channel=0):
    return mido.Message("note_off", note=note, channel=channel)


def pedal(value, channel=0):
    return mido.Message("control_change", control=64, value=value, channel=channel)


def test_codec_size_and_pinned_indices_both_ways():
    pinned = {
        Event(ON, 0): 0, Event(ON, 60): 60, Event(ON, 127): 127,
        Event(OFF, 0): 128, Event(OFF, 72): 200, Event(OFF, 127): 255,
        Event(SHIFT, 1): 256, Event(SHIFT, 50): 305, Event(SHIFT, 100): 355,
        Event(VEL, 1): 356, Event(VEL, 32): 387,
    }
    assert CODEC.size == 388
    for event, index in pinned.items():
        assert CODEC.encode(event) == index
        assert CODEC.decode(index) == event


def test_every_index_round_trips():
    assert [CODEC.encode(CODEC.decode(i)) for i in range(CODEC.size)] == list(range(CODEC.size))


@pytest.mark.parametrize("event_type,value", [(ON, 128), (ON, -1), (SHIFT, 0), (SHIFT, 101), (VEL, 0), (VEL, 33)])
def test_events_reject_out_of_range_values(event_type, value):
    with pytest.raises(ValueError, match=event_type.name):
        Event(event_type, value)


def test_decode_rejects_out_of_vocabulary_index():
    with pytest.raises(ValueError):
        CODEC.decode(388)


def test_velocity_bins_hold_their_velocities():
    for velocity in range(1, 128):
        assert velocity_to_bin(bin_to_velocity(velocity_to_bin(velocity))) == velocity_to_bin(velocity)
    assert velocity_to_bin(1) == 1 and velocity_to_bin(127) == 32


# ---- regressions of the original Deep Symphony codec


def test_shifts_of_one_second_or_more_are_time_shifts_not_note_off_127():
    events = notes_to_events([Note(60, 0.0, 0.5, 80), Note(62, 1.5, 2.0, 80), Note(64, 4.0, 4.5, 80)])
    assert Event(OFF, 127) not in events
    shifts = [e.value for e in events if e.type == SHIFT]
    assert shifts == [50, 100, 50, 100, 100, 50]  # 1.0 s and 2.0 s gaps split into <= 1 s shifts


@given(st.floats(min_value=0.0, max_value=5.0))
def test_rounding_never_turns_a_shift_into_a_velocity(start):
    events = notes_to_events([Note(60, start, start + 0.3, 100)])
    assert all(e.type in (SHIFT, VEL, ON, OFF) for e in events)
    assert sum(e.value for e in events if e.type == SHIFT) == int(start * 100 + 1e-6) + 30
    decoded = events_to_notes(events)
    assert abs(decoded[0].start - start) < 0.01


def test_encoder_and_decoder_agree_on_the_step():
    events = notes_to_events([Note(60, 0.5, 0.8, 80)])
    assert events == [Event(SHIFT, 50), Event(VEL, velocity_to_bin(80)), Event(ON, 60), Event(SHIFT, 30), Event(OFF, 60)]
    (note,) = events_to_notes(events)
    assert (note.start, note.end) == (0.5, 0.8)


def test_stuck_note_timer_runs_in_seconds():
    held = [Event(ON, 60), Event(SHIFT, 100), Event(SHIFT, 100), Event(SHIFT, 100), Event(OFF, 60)]
    assert events_to_notes(held, max_note_s=5.0)[0].end == pytest.approx(3.0)  # not cut early
    stuck = [Event(ON, 60)] + [Event(SHIFT, 100)] * 9 + [Event(OFF, 60)]
    assert events_to_notes(stuck, max_note_s=5.0)[0].end == pytest.approx(5.0)
    assert events_to_notes(stuck)[0].end == pytest.approx(9.0)


# ---- MIDI -> events rules


def test_drums_are_excluded_by_default():
    midi = midi_file([(0, on(36, channel=9)), (0, on(60)), (480, off(36, channel=9)), (0, off(60))])
    assert [n.pitch for n in midi_to_notes(midi)] == [60]
    assert sorted(n.pitch for n in midi_to_notes(midi, include_drums=True)) == [36, 60]


def test_tracks_and_channels_are_merged():
    midi = midi_file([(0, on(60)), (480, off(60))])
    second = mido.MidiTrack([on(64, channel=3).copy(time=240), off(64, channel=3).copy(time=480)])
    midi.tracks.append(second)
    assert [(n.pitch, n.start, n.end) for n in midi_to_notes(midi)] == [(60, 0.0, 0.5), (64, 0.25, 0.75)]


def test_tempo_changes_are_honoured():
    midi = midi_file([(0, on(60)), (480, off(60)), (0, mido.MetaMessage("set_tempo", tempo=1_000_000)),
                      (0, on(62)), (480, off(62))])
    assert [(n.start, n.end) for n in midi_to_notes(midi)] == [(0.0, 0.5), (0.5, 1.5)]


def test_sustain_pedal_extends_note_offs():
    midi = midi_file([(0, pedal(127)), (0, on(60)), (240, off(60)), (480, pedal(0))])
    (note,) = midi_to_notes(midi)
    assert note.end == pytest.approx(0.75)


def test_restruck_pitch_under_pedal_ends_the_previous_note():
    midi = midi_file([(0, pedal(127)), (0, on(60)), (240, off(60)), (240, on(60)), (240, off(60)), (240, pedal(0))])
    notes = midi_to_notes(midi)
    assert [(n.start, n.end) for n in notes] == [(0.0, 0.5), (0.5, 1.0)]


def test_restruck_pitch_without_note_off_ends_the_previous_note():
    midi = midi_file([(0, on(60, 50)), (480, on(60, 90)), (480, off(60))])
    notes = midi_to_notes(midi)
    assert [(n.start, n.end, n.velocity) for n in notes] == [(0.0, 0.5, 50), (0.5, 1.0, 90)]
    events = notes_to_events(notes)
    assert events_to_notes(events)[0].end == 0.5


def test_velocity_event_only_when_the_bin_changes():
    notes = [Note(60, 0.0, 0.1, 80), Note(62, 0.1, 0.2, 78), Note(64, 0.2, 0.3, 20)]
    velocities = [e.value for e in notes_to_events(notes) if e.type == VEL]
    assert velocities == [velocity_to_bin(80), velocity_to_bin(20)]  # 78 and 80 share a bin


# ---- events -> MIDI


def test_every_note_on_gets_a_note_off_and_orphan_offs_are_dropped():
    events = [Event(OFF, 50), Event(ON, 60), Event(SHIFT, 10), Event(ON, 62), Event(SHIFT, 10)]
    midi = events_to_midi(events)
    messages = [m for m in midi.tracks[0] if m.type in ("note_on", "note_off")]
    ons = [m.note for m in messages if m.type == "note_on"]
    offs = [m.note for m in messages if m.type == "note_off"]
    assert sorted(ons) == sorted(offs) == [60, 62]


def test_midi_file_survives_serialization():
    midi = events_to_midi(notes_to_events([Note(60, 0.0, 1.0, 64), Note(67, 0.25, 1.25, 100)]))
    buffer = io.BytesIO()
    midi.save(file=buffer)
    buffer.seek(0)
    assert midi_to_events(mido.MidiFile(file=buffer)) == midi_to_events(midi)


@given(st.lists(st.tuples(st.integers(0, 127), st.integers(0, 3000), st.integers(1, 400), st.integers(1, 127)),
                max_size=40))
def test_notes_round_trip_within_ten_ms(raw):
    notes = [Note(p, s / 97, s / 97 + d / 997, v) for p, s, d, v in raw]
    normalized = midi_to_notes(midi_file_from_notes(notes))
    assert assert_round_trip(normalized) == 0  # onsets >= 10.3 ms apart never share a step


def midi_file_from_notes(notes):
    """Write arbitrary (possibly overlapping) notes as raw MIDI, for the codec to normalize."""
    from models.events import notes_to_midi

    return notes_to_midi(notes)


def assert_round_trip(normalized, path="<notes>"):
    """MIDI -> events -> MIDI keeps each note's pitch, onset/offset within 10 ms and velocity bin.

    The one exception the 10 ms grid forces: a pitch struck twice inside one 10 ms step
    comes back as one note (a flam), which must start with the first strike and cover the
    second. Returns the number of such merges.
    """
    decoded = midi_to_notes(events_to_midi(notes_to_events(normalized)))
    by_pitch = {}
    for note in decoded:
        by_pitch.setdefault(note.pitch, []).append(note)
    merged = 0
    for original in sorted(normalized, key=lambda n: (n.pitch, n.start)):
        candidates = by_pitch.get(original.pitch, [])
        near = [n for n in candidates if abs(n.start - original.start) <= 0.0101]
        assert near, (path, original)
        # A neighbouring strike can also start within tolerance: the codec floors onsets to the
        # 10 ms grid, so the note that encodes this one starts on its floored step.
        step = int(original.start * 100 + 1e-6)
        match = min(near, key=lambda n: (abs(int(n.start * 100 + 1e-6) - step), abs(n.end - original.end)))
        if abs(match.end - original.end) <= 0.0101 and velocity_to_bin(match.velocity) == velocity_to_bin(original.velocity):
            continue
        # a flam: the decoded note began with an earlier strike in the same step and covers this one
        assert int(match.start * 100 + 1e-6) == int(original.start * 100 + 1e-6), (path, original, match)
        assert match.end >= original.end - 0.0101, (path, original, match)
        merged += 1
    assert len(decoded) + merged >= len(normalized), path
    return merged
