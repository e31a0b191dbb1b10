"""CC out and recorded tempo/key changes (instrument/control_out.py), and the .mid's tempo meta events."""

from __future__ import annotations

import mido
import pytest

from instrument.control_out import CC_MAX_HZ, ControlOutputs, key_signature
from instrument.controls import Controls
from instrument.midi_file import FileSink


class Recorder:
    """A sink that records meta events (as the FileSink does)."""

    def __init__(self) -> None:
        self.metas: list[tuple[float, mido.MetaMessage]] = []

    def meta(self, message, t: float) -> None:
        self.metas.append((t, message))


def test_cc_out_only_on_change_and_at_most_100_hz_with_the_last_value_always_sent():
    out = ControlOutputs([74], channel=2, sinks=[])
    assert [(m.channel, m.control, m.value) for m in out.cc(Controls(cc74=10.2), 0.0)] == [(2, 74, 10)]
    assert out.cc(Controls(cc74=10.4), 0.5) == []  # rounds to the value already sent
    assert [m.value for m in out.cc(Controls(cc74=11.0), 1.0)] == [11]
    assert out.cc(Controls(cc74=12.0), 1.004) == []  # too soon after the last: held back ...
    assert out.flush_cc(1.006) == []
    assert [m.value for m in out.flush_cc(1.0 + 1.0 / CC_MAX_HZ)] == [12]  # ... and sent once the interval passed
    assert out.flush_cc(2.0) == [] and out.cc(Controls(), 3.0) == []  # nothing new, nothing sent
    sent = [m.value for i in range(1000) for m in out.cc(Controls(cc74=float(i % 128)), 4.0 + i * 0.001)]
    assert len(sent) <= 1.0 * CC_MAX_HZ + 1  # a 1-kHz sweep leaves at 100 Hz at most


def test_tempo_and_key_changes_are_recorded_and_logged_throttled_with_the_last_kept():
    recorder, events = Recorder(), []
    out = ControlOutputs([], 0, [recorder, object()], on_event=lambda kind, **f: events.append((kind, f)))
    out.tempo(90.0, 1.0, "mapping")
    out.tempo(91.0, 1.02, "mapping")  # within 0.1 s: held
    out.tempo(93.0, 1.05, "mapping")
    out.key("G:major", 1.05, "midi_in")
    out.key("G:major", 1.5, "midi_in")  # the same key: nothing
    out.flush(1.2)
    assert [(t, m.type, getattr(m, "tempo", None) or m.key) for t, m in recorder.metas] == [
        (1.0, "set_tempo", mido.bpm2tempo(90.0)), (1.05, "key_signature", "G"), (1.2, "set_tempo", mido.bpm2tempo(93.0))]
    assert events == [("tempo", {"t": 1.0, "source": "mapping", "bpm": 90.0}),
                      ("key", {"t": 1.05, "source": "midi_in", "key": "G:major"}),
                      ("tempo", {"t": 1.2, "source": "mapping", "bpm": 93.0})]


@pytest.mark.parametrize("name, signature", [("C:major", "C"), ("A:minor", "Am"), ("F#:minor", "F#m"),
                                             ("Gb:major", "Gb"), ("Bb", "Bb"), ("Ebm", "Ebm")])
def test_key_signatures(name, signature):
    assert key_signature(name).key == signature


def test_a_tempo_change_in_the_mid_keeps_every_message_at_its_real_time(tmp_path):
    path = tmp_path / "tempo.mid"
    sink = FileSink(path, tempo_bpm=120.0)
    sink.send(mido.Message("note_on", note=60, velocity=90), 0.5)
    sink.meta(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(75.0)), 1.25)
    sink.meta(key_signature("E:minor"), 1.25)
    sink.send(mido.Message("note_off", note=60), 2.0)
    sink.send(mido.Message("note_on", note=62, velocity=90), 3.1)
    sink.close()
    t, seen = 0.0, []
    for message in mido.MidiFile(path):
        t += message.time
        seen.append((round(t, 4), message.type))
    assert (1.25, "set_tempo") in seen and (1.25, "key_signature") in seen
    assert [(t, kind) for t, kind in seen if kind in ("note_on", "note_off")] == [(0.5, "note_on"), (2.0, "note_off"),
                                                                                  (3.1, "note_on")]
