"""The Refine nets behind the voices: live velocities (play/render --refine) and `instrument refine`."""

from __future__ import annotations

import mido
import numpy as np
import pytest

from instrument.cli import main
from instrument.refiners import open_refiners
from instrument.scheduler import TimedMessage
from models.events import midi_to_notes
from models.refine.velocity import predict_velocities


def note_on(t: float, pitch: int) -> TimedMessage:
    return TimedMessage(t, mido.Message("note_on", note=pitch, velocity=80))


def test_live_velocities_are_the_nets_own_one_note_at_a_time():
    refiner = open_refiners(["velocity"])[0]
    pitches = [60 + (i * 5) % 17 for i in range(80)]
    live = []
    for i, pitch in enumerate(pitches):
        item = note_on(i * 0.1, pitch)
        refiner.apply([item])
        live.append(item.message.velocity)
    table = np.array([(p, 80, i * 0.1, i * 0.1 + 0.23) for i, p in enumerate(pitches)], dtype=float)
    offline = predict_velocities(table, refiner.model, refiner.spread)
    assert live[40:] == list(offline[40:])  # past the 32-note window, the same as the whole-piece net
    assert len(set(live)) > 5


def test_a_rollback_forgets_the_dropped_notes_and_replays_the_same_velocities():
    refiner = open_refiners(["velocity"])[0]
    for i in range(20):
        refiner.apply([note_on(i * 0.1, 60 + i % 7)])
    again = [note_on(2.0 + i * 0.1, 67 - i) for i in range(5)]
    refiner.apply(again)
    first = [m.message.velocity for m in again]
    refiner.rollback(1.95)
    again = [note_on(2.0 + i * 0.1, 67 - i) for i in range(5)]
    refiner.apply(again)
    assert [m.message.velocity for m in again] == first


def test_duration_cannot_run_live_and_says_where_it_runs():
    with pytest.raises(ValueError, match="instrument refine --duration"):
        open_refiners(["duration"])


def test_render_with_the_velocity_net_gives_the_dcrnn_dynamics(tmp_path):
    from importlib import resources

    take = str(resources.files("instrument").joinpath("takes", "demo.jsonl"))
    out = tmp_path / "dcrnn.mid"
    assert main(["render", "--controls", take, "--out", str(out), "--model", "dcrnn", "--duration", "60",
                 "--refine", "velocity"]) == 0
    velocities = [n.velocity for n in midi_to_notes(out)]
    assert np.std(velocities) >= 10 and len(set(velocities)) >= 20


def test_refine_command_rewrites_velocities_and_timing(tmp_path, capsys):
    source = tmp_path / "in.mid"
    track = mido.MidiTrack()
    for i in range(40):
        track.append(mido.Message("note_on", note=60 + (i * 7) % 12, velocity=64, time=0 if i == 0 else 120))
        track.append(mido.Message("note_off", note=60 + (i * 7) % 12, velocity=0, time=100))
    mido.MidiFile(tracks=[track]).save(source)
    out = tmp_path / "out.mid"
    assert main(["refine", str(source), "--out", str(out), "--velocity", "--duration"]) == 0
    notes = midi_to_notes(out)
    assert len(notes) == 40 and len({n.velocity for n in notes}) > 3
    assert main(["refine", str(source), "--out", str(out)]) == 2
    assert "--velocity, --duration or both" in capsys.readouterr().err
    assert main(["refine", str(tmp_path / "missing.mid"), "--out", str(out), "--velocity"]) == 2
