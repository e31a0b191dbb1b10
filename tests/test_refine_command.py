"""`instrument refine IN.mid --out OUT.mid [--velocity] [--duration]`: the Refine nets on a MIDI file."""

from __future__ import annotations

import numpy as np
import pytest

from instrument.cli import main
from models.events import Note, midi_to_notes, notes_to_midi
from models.refine.duration import stretch
from tests.test_fault_usage import assert_one_line_error
from tests.test_shared_ends import sequenced_piece


def sequenced_notes(bars: int = 8) -> list[Note]:
    """tests/test_shared_ends.py's sequenced piece as notes: on the 16th grid, as a DCRNN render or a sequencer writes."""
    return [Note(pitch=int(p), start=s, end=e, velocity=int(v)) for p, v, s, e in sequenced_piece(bars)]


def timing(notes: list[Note]) -> list[tuple[int, float, float]]:
    return sorted((n.pitch, round(n.start, 4), round(n.end, 4)) for n in notes)


def test_a_file_on_its_beat_grid_keeps_its_timing(tmp_path, capsys):
    """No stretch to undo: the net (trained only on stretched music) would move a sequenced file off its beat."""
    source, out = tmp_path / "grid.mid", tmp_path / "out.mid"
    notes_to_midi(sequenced_notes()).save(source)
    assert main(["refine", str(source), "--duration", "--velocity", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "sequenced on its beat grid (100% of its onsets" in err and "its timing is kept" in err
    assert "velocities refined" in err
    before, after = midi_to_notes(source), midi_to_notes(out)
    assert timing(after) == timing(before)
    assert [n.velocity for n in after] != [n.velocity for n in before]  # the Velocity Net still ran


def durations_by_pitch(notes: list[Note]) -> np.ndarray:
    """Every note's duration, ordered by pitch then start: the same note at the same place before and after refining."""
    return np.array([n.end - n.start for n in sorted(notes, key=lambda n: (n.pitch, n.start))])


def test_a_stretched_file_has_its_timing_restored_towards_the_original(tmp_path, capsys):
    real = sequenced_notes()
    stretched, _, _ = stretch(sequenced_piece(8), np.random.default_rng(0), kind="note")  # off the grid, as a generator's timing drifts
    source, out = tmp_path / "stretched.mid", tmp_path / "out.mid"
    notes_to_midi([Note(pitch=int(p), start=s, end=e, velocity=int(v)) for p, v, s, e in stretched]).save(source)
    assert main(["refine", str(source), "--duration", "--out", str(out)]) == 0
    assert "timing refined" in capsys.readouterr().err
    restored = midi_to_notes(out)
    assert len(restored) == len(real) and all(n.end > n.start for n in restored)
    error = {name: np.abs(durations_by_pitch(notes) - durations_by_pitch(real)).mean()
             for name, notes in (("stretched", midi_to_notes(source)), ("restored", restored))}
    assert error["restored"] < 0.5 * error["stretched"]  # at least halved, as the Duration Net is asked to


@pytest.mark.parametrize("argv, fragments", [
    (["{mid}", "--out", "{out}"], ["--velocity, --duration or both"]),
    (["{mid}", "--velocity", "--spread", "9", "--out", "{out}"], ["--spread", "(0, 4]"]),
    (["{root}/missing.mid", "--velocity", "--out", "{out}"], ["cannot read", "missing.mid"]),
    (["{empty}", "--duration", "--out", "{out}"], ["holds no notes"]),
], ids=["nothing-asked", "spread", "missing", "empty"])
def test_refine_rejects_bad_input_in_one_line(tmp_path, argv, fragments, capsys):
    mid, empty, out = tmp_path / "in.mid", tmp_path / "empty.mid", tmp_path / "out.mid"
    notes_to_midi(sequenced_notes(1)).save(mid)
    notes_to_midi([]).save(empty)
    argv = [a.format(mid=mid, empty=empty, out=out, root=tmp_path) for a in argv]
    assert_one_line_error(main(["refine", *argv]), capsys.readouterr().err, "refine", *fragments)
    assert not out.exists()
