"""Per-bar roll statistics, the overlap area, and the copying detector of the DCRNN evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from models.dcrnn.eval import longest_copied_run
from models.roll import HELD, ONSET
from models.roll_metrics import bar_features, overlap_area, summary


def _bar(*notes):
    """notes: (pitch, start, length[, restrike_at])."""
    bar = np.zeros((16, 128), np.uint8)
    for pitch, start, length in notes:
        bar[start, pitch] = ONSET
        bar[start + 1:start + length, pitch] = HELD
    return bar


def test_features_of_a_c_major_triad_and_a_sixteenth():
    bar = _bar((60, 0, 8), (64, 0, 8), (67, 0, 8), (61, 8, 1))  # C E G held, then a short C#
    f = bar_features(bar[None])
    assert f["upc"][0] == 4
    assert f["qualified_note_rate"][0] == pytest.approx(3 / 4)
    assert f["polyphony"][0] == pytest.approx((8 * 3 + 1) / 9)
    assert f["scale_consistency"][0] == pytest.approx(3 / 4)  # C# is outside every scale holding C, E, G
    assert f["pitch_range"][0] == 7
    assert not f["empty"][0]


def test_restruck_notes_count_as_separate_short_notes():
    bar = np.zeros((16, 128), np.uint8)
    bar[0:4, 60] = ONSET  # four sixteenth re-strikes on one key
    f = bar_features(bar[None])
    assert f["qualified_note_rate"][0] == 0.0


def test_empty_bars_are_counted_not_averaged():
    bars = np.stack([_bar((60, 0, 4)), np.zeros((16, 128), np.uint8)])
    s = summary(bars)
    assert s["empty_bar_rate"] == 0.5 and s["upc"] == 1.0


def test_overlap_area_is_high_for_same_distribution_and_low_for_disjoint():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 400), rng.normal(0, 1, 400)
    far = rng.normal(50, 1, 400)
    assert overlap_area(a, b, np.random.default_rng(1)) > 0.85
    assert overlap_area(a, far, np.random.default_rng(1)) < 0.05


def test_longest_copied_run_finds_consecutive_training_bars():
    train = np.concatenate([_bar((60 + i, 0, 4)) for i in range(6)])  # 6 distinct bars
    copied = np.stack([_bar((70, 0, 2)), _bar((62, 0, 4)), _bar((63, 0, 4)), _bar((64, 0, 4)), _bar((60, 0, 4))])
    assert longest_copied_run(copied[None], [train]) == 3  # bars 62, 63, 64 in order; 60 alone is 1
    assert longest_copied_run(np.stack([_bar((90, 0, 2))])[None], [train]) == 0
