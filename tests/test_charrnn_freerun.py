"""Free-running statistics of `instrument eval charrnn` (models/charrnn/freerun.py), on a tiny model and hand-built pieces."""

import numpy as np
import pytest
import torch

from models.charrnn.model import CharRNN, CharRNNConfig
from models.conditioning import DEFAULT_SPEC
from models.data import Corpus, Piece
from models.events import TIME_SHIFT_OFFSET, VELOCITY_OFFSET, encode_all, notes_to_events, Note


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread, as the live voice steps: batch-1 steps on a busy 2-core machine crawl with two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny():
    torch.manual_seed(0)
    return CharRNN(CharRNNConfig(embed_dim=8, hidden_size=16, num_layers=2, cell="lstm", cond_dim=14, dropout=0.0)).eval()


def scale_piece(seconds=40.0, step=0.25, held_last=False):
    """A C-major scale, up and down, over and over (models.data layout: pitch, start, end, velocity)."""
    pattern = [60, 62, 64, 65, 67, 69, 71, 72, 71, 69, 67, 65, 64, 62]
    rows = [(pattern[i % len(pattern)], i * step, i * step + 0.2, 64) for i in range(int(seconds / step))]
    if held_last:
        rows.append((48, 0.0, 5.0, 64))  # one long bass note: past the 4-s cap
    return np.array(rows, dtype=np.float64)


def piece(name, split, notes):
    events = np.asarray(encode_all(notes_to_events([Note(int(p), s, e, int(v)) for p, s, e, v in notes])), dtype=np.int16)
    return Piece(None, name, split, events, notes)


def seconds_of(events):
    shifts = events[(events >= TIME_SHIFT_OFFSET) & (events < VELOCITY_OFFSET)] - TIME_SHIFT_OFFSET + 1
    return shifts.sum() / 100.0


def test_free_run_is_seeded_and_as_long_as_asked():
    from models.charrnn.freerun import free_run

    model = tiny()
    a = free_run(model, DEFAULT_SPEC, [0, 1], seconds=5.0)
    b = free_run(model, DEFAULT_SPEC, [0, 1], seconds=5.0)
    assert len(a) == 2 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0][:50], a[1][:50])  # each seed its own sample
    for events in a:
        assert seconds_of(events) >= 5.0 and seconds_of(events[:-1]) < 5.0  # stops at the first shift past the end


def test_real_excerpts_and_their_statistics():
    from models.charrnn.freerun import excerpts, stats

    notes = scale_piece(seconds=130.0)
    cuts = excerpts(notes, 60.0)
    assert len(cuts) == 2  # the last 10 s are shorter than half an excerpt
    assert cuts[1][0, 2] == pytest.approx(0.0) and cuts[1][:, 3].max() <= 60.0
    figures = stats(cuts[0], 60.0)
    assert figures["key_clarity"] > 0.7 > figures["key_clarity_shuffled"] - 0.3
    assert figures["pattern_repeat_8"] > 0.8  # the scale repeats every 14 notes
    assert figures["pattern_repeat_8_moving"] == figures["pattern_repeat_8"]  # never one pitch 8 times
    stuck = stats(np.array([(60, 64, i * 0.25, i * 0.25 + 0.2) for i in range(40)]), 10.0)
    assert stuck["pattern_repeat_8"] > 0.9 and stuck["pattern_repeat_8_moving"] == 0.0  # one key hammered: no motif
    assert stuck["unison_frac"] == 1.0 and figures["unison_frac"] == 0.0
    assert figures["capped_frac"] == 0.0 and figures["notes_per_s"] == pytest.approx(4.0)


def test_evaluate_reports_free_running_figures_beside_the_real_ones(monkeypatch):
    from models.charrnn import eval as charrnn_eval
    from models.charrnn.eval import configure_charrnn, evaluate
    from models.charrnn.freerun import freerun_lines

    corpus = Corpus([piece("a.mid", "test", scale_piece(held_last=True)), piece("b.mid", "train", scale_piece(seconds=20.0))])
    report = evaluate(tiny(), DEFAULT_SPEC, corpus, samples=1, length=32, freerun_samples=2, freerun_seconds=10.0)
    assert report["freerun_samples"] == 2 and report["freerun_seconds"] == 10.0 and report["real_excerpts"] == 4
    for side in ("freerun", "real"):
        assert -1.0 <= report[f"{side}_key_clarity_shuffled"] <= 1.0
        assert 0.0 < report[f"{side}_key_clarity"] <= 1.0
        assert 0.0 <= report[f"{side}_pattern_repeat_8"] <= 1.0 and 0.0 <= report[f"{side}_pattern_repeat_8_moving"] <= 1.0
        assert 0.0 <= report[f"{side}_capped_frac"] <= 1.0 and 0.0 <= report[f"{side}_unison_frac"] <= 1.0
        assert report[f"{side}_notes_per_s"] > 0
    assert report["real_key_clarity"] > 0.7 and report["real_pattern_repeat_8"] > 0.5
    assert report["real_capped_frac"] == pytest.approx(1 / 161)  # the one 5-s bass note among 161
    # an untrained model plays no motifs; its random pitches hardly fit a key better than shuffled ones
    assert report["freerun_pattern_repeat_8"] < 0.2
    assert report["freerun_pattern_repeat_8_min"] <= report["freerun_pattern_repeat_8"] <= report["freerun_pattern_repeat_8_max"]
    lines = freerun_lines(report)
    assert lines[0].startswith("free-running, 2 x 10 s") and any("4-s cap" in line for line in lines)
    assert "freerun_key_clarity" not in evaluate(tiny(), DEFAULT_SPEC, corpus, nll_only=True)
    for slow in ("control_fidelity", "in_scale_rates"):  # only the switch is tested here
        monkeypatch.setattr(charrnn_eval, slow, lambda *args: {})
    assert "freerun_key_clarity" not in evaluate(tiny(), DEFAULT_SPEC, corpus, samples=1, length=32, freerun_seconds=0)
    import argparse

    parser = argparse.ArgumentParser()
    configure_charrnn(parser)
    args = parser.parse_args(["--data", "x", "--freerun-seconds", "30", "--freerun-samples", "3"])
    assert args.freerun_seconds == 30.0 and args.freerun_samples == 3
    assert parser.parse_args(["--data", "x"]).freerun_seconds == 60.0


def test_music_stats_re_exports_the_shared_functions():
    from instrument.bench import music_stats
    from models import metrics

    for name in ("key_clarity", "pattern_repetition", "capped_fraction", "melody", "chord_groups", "KEY_PROFILES", "CAP_S"):
        assert getattr(music_stats, name) is getattr(metrics, name)
