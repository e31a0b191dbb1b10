"""MIDI clock out (24 ppqn, start/stop), tempo following from 0xF8, and MIDI-in CC actions."""

from __future__ import annotations

import time

import pytest

from instrument.midi_clock import PPQN, FollowClock, MidiClockOut, tempo_from_ticks
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
        time.sleep(0.6)
        assert follow.tempo() is None  # the DAW stopped its clock
    finally:
        follow.close()
        daw.close_port()
