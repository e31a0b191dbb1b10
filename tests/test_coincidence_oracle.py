"""The coincidence oracle: a ceiling for the Duration Net, told which notes of the real piece end together or on an onset."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from models.refine.duration import stretch
from models.refine.notes import END, START, group_stats, onset_groups
from tests.required import missing
from tests.test_shared_ends import sequenced_piece


@pytest.fixture
def oracle():
    """The module, which needs SciPy's sparse solver (a test extra; the instrument never needs it)."""
    if importlib.util.find_spec("scipy") is None:
        missing("SciPy is not installed (pip install -e '.[test]')")
    from models.refine import coincidence_oracle

    return coincidence_oracle


def test_ends_that_meet_in_the_real_piece_share_one_moment_and_an_onset_labels_its_own(oracle):
    real = sequenced_piece(bars=2)
    groups = onset_groups(real[:, START])
    onsets = group_stats(real, groups)["onset"]
    moment = oracle.shared_moments(real, groups, onsets)
    count = len(onsets)
    first_chord = np.flatnonzero(np.isclose(real[:, START], 0.0) & np.isclose(real[:, END], 2.0))
    assert len(set(moment[count + first_chord])) == 1  # the chord is let go at once ...
    bar_two = int(np.flatnonzero(np.isclose(onsets, 2.0))[0])
    assert moment[count + first_chord[0]] == bar_two  # ... on the next bar's onset, which labels that moment
    legato = np.flatnonzero(np.isclose(real[:, START], 0.25))[0]  # an eighth ends where the next one starts
    assert moment[count + legato] == int(np.flatnonzero(np.isclose(onsets, 0.5))[0])


def test_told_every_coincidence_a_sequenced_piece_comes_back_far_closer_than_stretched(oracle):
    real = sequenced_piece()
    stretched, _, _ = stretch(real, np.random.default_rng(0), kind="note")
    restored = oracle.solve_with_coincidences(real, stretched)
    error = lambda t: np.abs((t[:, END] - t[:, START]) - (real[:, END] - real[:, START])).mean()  # noqa: E731
    assert error(restored) < 0.5 * error(stretched)
    assert np.all(restored[:, END] > restored[:, START])
    report = oracle.ceiling_report([real], seed=0)
    assert report["timing_error_ms_after"] < report["timing_error_ms_before"] and 0.5 < report["timing_error_reduction"] <= 1.0
