"""MIDI clock out (24 ppqn, start/stop), tempo following from 0xF8, and MIDI-in CC actions."""

from __future__ import annotations

import time

import pytest

from instrument.midi_clock import MAX_BPM, MIN_BPM, PPQN, FollowClock, MidiClockOut, TempoFollower, tempo_from_ticks
from instrument.midi_in import scale


def test_internal_clock_sends_start_then_24_clocks_per_beat_without_drift():
    clock = MidiClockOut(tempo=100.0)
    first = clock.due(0.0)
    assert [m.type for m in first] == ["start", "clock"]
    ticks = 1 + sum(len(clock.due(k * 0.001)) for k in range(1, 60_001))  # 60 s polled every ms
    assert ticks == 100 * PPQN + 1  # 100 beats in a minute, plus the clock at 60.0 itself
    assert clock.next_at == pytest.approx(60.0 + 60.0 / (100 * PPQN), abs=1e-9)
    assert [m.type for m in clock.stop()] == ["stop"]


def test_tempo_change_takes_effect_from_the_next_clock():
    clock = MidiClockOut(tempo=120.0)
    clock.due(1.0)
    clock.set_tempo(60.0)
    before = clock.next_at
    clock.due(before)
    assert clock.next_at - before == pytest.approx(60.0 / (60.0 * PPQN))


def test_tempo_from_clock_intervals_ignores_one_late_tick():
    period = 60.0 / (90.0 * PPQN)
    times = [k * period for k in range(25)]
    times[10] += 0.004  # one clock delayed by the OS
    assert tempo_from_ticks(times) == pytest.approx(90.0, rel=0.01)
    assert tempo_from_ticks([0.0, 0.1]) is None


def test_midi_in_cc_values_scale_to_actions():
    assert scale("temperature", 0) == pytest.approx(0.2) and scale("temperature", 127) == pytest.approx(2.0)
    assert scale("tempo", 127) == pytest.approx(180.0)
    assert scale("panic", 127) == 1.0 and scale("panic", 10) == 0.0


@pytest.mark.jack
def test_follow_clock_reads_a_daws_tempo_over_jack(jack_server):
    import rtmidi

    daw = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="ds-daw")
    daw.open_virtual_port("clock out")
    follow = FollowClock("ds-daw", api="jack")
    try:
        period = 60.0 / (100.0 * PPQN)
        start = time.monotonic()
        for k in range(40):
            while time.monotonic() < start + k * period:
                time.sleep(0.0005)
            daw.send_message([0xF8])
        time.sleep(0.05)
        assert follow.tempo() == pytest.approx(100.0, rel=0.03)
        time.sleep(1.1)
        assert follow.tempo() is None  # the DAW stopped its clock
    finally:
        follow.close()
        daw.close_port()


# -- issue 19, item 6: a followed clock is clamped, smoothed, and lets go when it stops --------
def feed(follower: TempoFollower, bpm: float, beats: float, start: float = 0.0, jitter=None) -> float:
    """Ticks of a steady `bpm` clock for `beats` beats from `start`; returns the time after the last."""
    period = 60.0 / (bpm * PPQN)
    t = start
    for k in range(int(beats * PPQN)):
        t = start + k * period
        follower.tick(t + (jitter(k) if jitter else 0.0), arrival=t)
    return t


@pytest.mark.parametrize("clock_bpm, expected", [(5000.0, MAX_BPM), (5.5, MIN_BPM), (123.0, 123.0)])
def test_a_followed_tempo_is_clamped_to_the_tempo_range(clock_bpm, expected):
    follower = TempoFollower()
    t = feed(follower, clock_bpm, beats=4)
    assert follower.tempo(t) == pytest.approx(expected, rel=1e-3)


def test_a_followed_tempo_is_smoothed_over_the_ticks():
    follower = TempoFollower()
    jitter = lambda k: 0.0027 * ((k * 7919) % 3 - 1)  # noqa: E731  ticks rounded to a JACK period, either way
    t = feed(follower, 120.0, beats=4, jitter=jitter)
    assert follower.tempo(t) == pytest.approx(120.0, rel=0.01)
    period = 60.0 / (160.0 * PPQN)
    seen = []
    for k in range(1, 4 * PPQN):
        follower.tick(t + k * period, arrival=t + k * period)
        seen.append(follower.tempo(t + k * period))
    assert 120.0 < seen[0] < 125.0  # one tick at the new tempo moves it a little
    assert all(b >= a - 1e-9 for a, b in zip(seen, seen[1:]))  # then steadily, never past the target
    assert seen[-1] == pytest.approx(160.0, rel=0.01)  # and it arrives within a few beats


def test_the_tempo_lets_go_when_the_clock_stops_or_falls_silent():
    follower = TempoFollower()
    t = feed(follower, 100.0, beats=2)
    assert follower.tempo(t + 0.9) == pytest.approx(100.0, rel=1e-3)
    assert follower.tempo(t + 1.1) is None  # a second without a tick
    t = feed(follower, 140.0, beats=2, start=t + 5.0)  # back after a pause: no drag from the old window
    assert follower.tempo(t) == pytest.approx(140.0, rel=1e-3)
    follower.reset()  # MIDI stop
    assert follower.tempo(t) is None


@pytest.mark.jack
def test_follow_clock_clamps_a_runaway_clock_and_announces_start_and_stop_over_jack(jack_server):
    import rtmidi

    daw = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="ds-fastdaw")
    daw.open_virtual_port("clock out")
    events = []
    follow = FollowClock("ds-fastdaw", api="jack", on_event=lambda kind, **fields: events.append((kind, fields)))
    try:
        period = 60.0 / (5000.0 * PPQN)
        start = time.monotonic()
        for k in range(200):
            while time.monotonic() < start + k * period:
                pass
            daw.send_message([0xF8])
        time.sleep(0.05)
        assert follow.tempo() == pytest.approx(MAX_BPM)
        daw.send_message([0xFC])  # the DAW's stop button
        time.sleep(0.05)
        assert follow.tempo() is None
        kinds = [kind for kind, _ in events]
        assert kinds == ["clock_followed", "clock_clamped", "clock_stopped"], events
        assert events[1][1]["clock_bpm"] > MAX_BPM
    finally:
        follow.close()
        daw.close_port()


# -- issue 19, item 9: a hostile midi_in.json is one line naming the file, never a traceback ---
@pytest.mark.parametrize("text", ['{"temperature": 1e400}', '{"tempo": 500}', '{"panic": true}', '{"tempo": "22"}',
                                  '[21, 22]', '{"tempo": ', '\xff\xfe'])
def test_a_broken_learned_cc_file_is_a_usage_error_naming_it(tmp_path, text):
    from instrument.errors import UsageError
    from instrument.midi_in import load_ccs

    path = tmp_path / "midi_in.json"
    path.write_text(text, encoding="latin-1")
    with pytest.raises(UsageError) as err:
        load_ccs(path)
    assert "midi_in.json" in str(err.value) and "\n" not in str(err.value)


def test_a_missing_or_partial_cc_file_falls_back_to_the_defaults(tmp_path):
    from instrument.midi_in import DEFAULT_CCS, load_ccs

    assert load_ccs(tmp_path / "none.json") == DEFAULT_CCS
    (tmp_path / "partial.json").write_text('{"tempo": 30, "comment": "mine"}')
    assert load_ccs(tmp_path / "partial.json") == {"tempo": 30}
