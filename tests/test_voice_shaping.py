"""Velocity, transpose and temperature for every voice (instrument/voice_shaping.py), with the real engine."""

from __future__ import annotations

import pytest

from controllers.frame import ControlFrame
from instrument.clock import FakeClock
from instrument.controls import Controls
from instrument.engine import Engine, EngineConfig
from instrument.mapping import Mapping
from instrument.midi_out import ListSink
from instrument.voice_shaping import ShapedVoice, scaled_velocity, shape_voice
from models.events import Event, EventType
from tests.scripted_voice import ScriptedVoice


class Hand:
    """A controller whose x and y change at given session times."""

    def __init__(self, clock, script: list[tuple[float, float, float]]) -> None:  # (session time, x, y)
        self.clock, self.script, self.t0 = clock, script, clock.now()

    def latest(self) -> ControlFrame:
        now = self.clock.now() - self.t0
        t, x, y = max((s for s in self.script if s[0] <= now), key=lambda s: s[0])
        return ControlFrame(t=self.t0 + t, present=True, x=x, y=y, size=0.3)

    def stats(self) -> dict:
        return {}


def play(mapping_text: str, script, duration: float, voice=None):
    clock = FakeClock(100.0)
    sink = ListSink()
    voice = voice or ScriptedVoice([(60, 80), (64, 40)], on=20, gap=5)
    engine = Engine(shape_voice(voice), Hand(clock, script), Mapping.from_text(mapping_text, "t.toml"), [sink], clock,
                    EngineConfig(threaded=False))
    engine.run(duration=duration)
    return [(round(t, 6), m) for t, m in sink.sent]


def note_ons(sent, start=0.0, end=1e9):
    return [(m.note, m.velocity) for t, m in sent if m.type == "note_on" and m.velocity > 0 and start <= t < end]


def test_velocity_scales_the_voices_own_dynamics_for_a_voice_that_knows_nothing_of_it():
    sent = play('[velocity]\naxis = "x"\nrange = [40, 120]\n', [(0.0, 0.0, 0.5), (2.0, 1.0, 0.5)], 4.0)
    soft, loud = note_ons(sent, 0.0, 2.0), note_ons(sent, 2.1, 4.0)
    # the voice alternates 80 and 40; x = 0 asks for 40/80 of that, x = 1 for 120/80 (within a 4-wide velocity bin)
    assert {v for p, v in soft} == {19, 39} and {v for p, v in loud} == {59, 119}


def test_transpose_moves_every_note_and_a_change_never_leaves_one_hanging():
    sent = play('[transpose]\naxis = "y"\nrange = [0, 12]\n', [(0.0, 0.5, 0.0), (1.13, 0.5, 1.0)], 3.0)
    assert {p for p, _ in note_ons(sent, 0.0, 1.1)} == {60, 64} and {p for p, _ in note_ons(sent, 1.3)} == {72, 76}
    sounding: dict[int, int] = {}
    for _, m in sent:  # every note-on ends with a note-off of its own pitch, across the change
        if m.type == "note_on" and m.velocity > 0:
            sounding[m.note] = sounding.get(m.note, 0) + 1
        elif m.type in ("note_off", "note_on"):
            assert sounding.get(m.note, 0) > 0, f"note-off for {m.note}, which does not sound"
            sounding[m.note] -= 1
    assert not any(sounding.values())


def test_a_voice_that_transposes_itself_is_left_alone_and_temperature_reaches_the_voice():
    voice = ScriptedVoice([(60, 80)], on=20, gap=5)
    voice.listens = frozenset({"transpose"})
    shaped = ShapedVoice(voice)
    shaped.set_controls(Controls(transpose=7.0, temperature=0.6))
    events = [e for _ in range(5) for e in shaped.next_events()]
    assert Event(EventType.NOTE_ON, 60) in events and voice.temperature == 0.6
    assert "transpose" in shaped.listens and "velocity" in shaped.listens
    assert shape_voice(shaped) is shaped and shaped.name == "script"


def test_a_rollback_restores_which_pitch_each_sounding_note_was_moved_to():
    shaped = ShapedVoice(ScriptedVoice([(60, 80)], on=20, gap=5))
    shaped.set_controls(Controls(transpose=5.0))
    before = [e for _ in range(2) for e in shaped.next_events()]  # VELOCITY, NOTE_ON 65
    snap = shaped.snapshot()
    shaped.set_controls(Controls(transpose=-3.0))
    after = [e for _ in range(3) for e in shaped.next_events()]  # TIME_SHIFT, NOTE_OFF 65, TIME_SHIFT
    assert Event(EventType.NOTE_ON, 65) in before and Event(EventType.NOTE_OFF, 65) in after
    shaped.restore(snap)
    again = [e for _ in range(3) for e in shaped.next_events()]
    assert Event(EventType.NOTE_OFF, 65) in again  # the restored state still knows 60 sounds as 65


@pytest.mark.parametrize("own, control, played", [(80, None, 80), (80, 80.0, 80), (100, 40.0, 50), (100, 127.0, 127),
                                                  (3, 1.0, 1)])
def test_scaled_velocity(own, control, played):
    assert scaled_velocity(own, control) == played
