"""The performer: events on absolute deadlines, note hygiene, max note length, panic."""

import pytest

from instrument.performer import Performer
from models.events import Event, EventType

ON, OFF, SHIFT, VEL = EventType.NOTE_ON, EventType.NOTE_OFF, EventType.TIME_SHIFT, EventType.VELOCITY


def play(performer, events):
    out = []
    for kind, value in events:
        out += performer.perform(Event(kind, value))
    return [(round(m.deadline, 9), m.message.type, m.message.note, m.message.velocity) for m in out]


def test_events_become_messages_at_the_cursor():
    p = Performer(channel=2)
    got = play(p, [(VEL, 20), (ON, 60), (SHIFT, 50), (OFF, 60), (SHIFT, 25), (ON, 62)])
    assert got == [(0.0, "note_on", 60, 79), (0.5, "note_off", 60, 0), (0.75, "note_on", 62, 79)]
    assert p.cursor == pytest.approx(0.75)


def test_tempo_scales_time_shifts():
    p = Performer(tempo=240.0)
    play(p, [(SHIFT, 100)])
    assert p.cursor == pytest.approx(0.5)


def test_orphan_note_off_is_dropped_and_restrike_ends_the_note_first():
    p = Performer()
    assert play(p, [(OFF, 40)]) == []
    got = play(p, [(ON, 60), (SHIFT, 10), (ON, 60)])
    assert [g[1] for g in got] == ["note_on", "note_off", "note_on"]


def test_notes_never_exceed_max_length():
    p = Performer(max_note_s=1.0)
    got = play(p, [(ON, 60), (SHIFT, 100), (SHIFT, 100), (OFF, 60)])
    assert got == [(0.0, "note_on", 60, 80), (1.0, "note_off", 60, 0)]


def test_no_drift_over_a_long_performance():
    p = Performer()
    got = play(p, [(ON, 60), (SHIFT, 7), (OFF, 60), (SHIFT, 3)] * 6000)  # 600 s of 10 ms steps
    assert got[-1][0] == pytest.approx(599.97, abs=1e-6)


def test_restore_keeps_the_elapsed_rest_but_places_nothing_before_the_playhead():
    p = Performer()
    play(p, [(ON, 60), (SHIFT, 50)])
    snap = p.snapshot()
    play(p, [(OFF, 60), (SHIFT, 50)])
    p.restore(snap, not_before=0.8)
    p.begin_epoch(1, 0.8)
    assert p.cursor == 0.5 and p.open_notes == {60: 0.0} and p.horizon == 0.8
    late, = p.perform(Event(OFF, 60))  # would be at 0.5: placed at the playhead
    assert late.deadline == 0.8 and late.epoch == 1 and late.music_wait == 0.0
    p.perform(Event(SHIFT, 50))
    on, = p.perform(Event(ON, 62))  # 0.5 + 0.5: the rhythm is kept, 0.2 s after the gesture
    assert on.deadline == pytest.approx(1.0) and on.music_wait == pytest.approx(0.2)


def test_a_grid_performer_keeps_its_grid_after_a_rollback():
    p = Performer(grid=True)
    snap = p.snapshot()  # a bar starting at 0
    p.resume(snap, playhead=0.3, sounding={}, planned_end={})
    got = play(p, [(ON, 60), (SHIFT, 25), (ON, 62), (SHIFT, 25), (ON, 64)])
    assert got == [(0.5, "note_on", 64, 80)]  # onsets at 0 and 0.25 are past: skipped, not squashed


def test_resume_starts_the_new_future_at_the_playhead_and_carries_sounding_notes_to_their_planned_end():
    p = Performer()
    play(p, [(ON, 60), (SHIFT, 10)])
    snap = p.snapshot()  # cursor 0.1
    p.resume(snap, playhead=0.8, sounding={60: 0.0, 67: 0.5}, planned_end={60: 1.0}, margin=0.002)
    assert p.cursor == pytest.approx(0.802) and p.open_notes == {60: 0.0, 67: 0.5}
    got = play(p, [(SHIFT, 50), (ON, 67)])
    # 60 ends at the end the dropped future planned; 67 is ended before it is struck again
    assert got == [(1.0, "note_off", 60, 0), (1.302, "note_off", 67, 0), (1.302, "note_on", 67, 80)]


def test_a_carried_note_the_new_future_ends_earlier_is_ended_once():
    p = Performer()
    p.resume(p.snapshot(), playhead=0.5, sounding={60: 0.2}, planned_end={60: 2.0})
    got = play(p, [(SHIFT, 10), (OFF, 60), (SHIFT, 100), (SHIFT, 100), (SHIFT, 100)])
    assert got == [(0.6, "note_off", 60, 0)]


def test_a_note_ended_as_it_starts_is_held_to_the_shortest_audible_length():
    p = Performer()
    got = play(p, [(ON, 60), (OFF, 60), (SHIFT, 1), (SHIFT, 5), (ON, 62), (SHIFT, 1), (OFF, 62), (SHIFT, 5)])
    assert got == [(0.0, "note_on", 60, 80), (0.03, "note_off", 60, 0),  # 0 s -> 30 ms
                   (0.06, "note_on", 62, 80), (0.09, "note_off", 62, 0)]  # 10 ms -> 30 ms


def test_a_pitch_struck_again_as_it_starts_is_one_note():
    p = Performer()
    got = play(p, [(ON, 60), (SHIFT, 1), (ON, 60), (SHIFT, 5), (ON, 60), (SHIFT, 5), (OFF, 60)])
    assert got == [(0.0, "note_on", 60, 80), (0.06, "note_off", 60, 0), (0.06, "note_on", 60, 80),
                   (0.11, "note_off", 60, 0)]  # the strike at 10 ms merged; the one at 60 ms re-strikes


def test_delay_plays_the_rest_later_with_its_rhythm_and_the_sounding_notes_lengths_whole():
    p = Performer(max_note_s=1.0)
    play(p, [(ON, 60), (SHIFT, 50)])  # 60 sounds since 0; the cursor is at 0.5
    p.delay(0.25)  # a stall: the rest plays a quarter second later
    got = play(p, [(SHIFT, 10), (ON, 64), (SHIFT, 10), (OFF, 64), (SHIFT, 100)])
    # the rhythm after the stall is the one the model made, from 0.75; note 60 keeps its 1-s cap from where
    # the music resumed (0.25 + 1.0), not cut at its old 1.0 while the stall ate a quarter of it
    assert got == [(0.85, "note_on", 64, 80), (0.95, "note_off", 64, 0), (1.25, "note_off", 60, 0)]
