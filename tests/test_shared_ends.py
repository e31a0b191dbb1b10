"""Shared ends: notes the Duration Net restores one by one are released together again where their ends meet."""

from __future__ import annotations

import numpy as np
import pytest

from models.checkpoint import load_checkpoint, shipped_checkpoint
from models.refine.duration import DurationNet, restore_timing, stretch
from models.refine.notes import END, START, as_table
from models.refine.shared_ends import snap_shared_ends


def test_notes_released_together_get_one_end_placed_by_the_shortest():
    # Four notes that really end together at 2.0 s; the longer a note, the further the net left its end.
    starts = np.array([0.0, 0.5, 1.0, 1.5])
    ends = np.array([2.08, 1.93, 2.04, 2.004])
    snapped = snap_shared_ends(starts, ends, stretched_durations=ends - starts)
    assert np.all(snapped == snapped[0])  # one release
    assert abs(snapped[0] - 2.0) < 0.01  # the 0.5-s note's end, 4 ms off, weighs most
    assert np.abs(snapped - 2.0).sum() < np.abs(ends - 2.0).sum() / 5


def test_ends_further_apart_than_the_tolerance_stay_where_they_are():
    starts = np.array([0.0, 0.0, 1.0])
    ends = np.array([1.0, 1.3, 1.2])  # 0.3 s notes: within 0.2 x 0.2 + 0.01 = 0.05 s only
    assert np.array_equal(snap_shared_ends(starts, ends, ends - starts), ends)
    assert np.array_equal(snap_shared_ends(starts[:1], ends[:1], ends[:1] - starts[:1]), ends[:1])


def test_a_note_is_never_moved_outside_its_own_stretch_window():
    # The long note was stretched to 0.82 s and restored to 1.0 s: its real end lies in 0.82 / [1.2, 0.8] = [0.68, 1.025].
    # The short note's end at 1.06 pulls the pair's end to ~1.055, which no stretch of the long note explains.
    starts, ends = np.array([0.0, 0.77]), np.array([1.0, 1.06])
    snapped = snap_shared_ends(starts, ends, stretched_durations=np.array([0.82, 0.29]))
    weights = 1.0 / ((ends - starts) ** 2 + 1e-4)
    assert snapped[0] == 1.0
    assert snapped[1] == pytest.approx((weights * ends).sum() / weights.sum(), abs=1e-12)


def sequenced_piece(bars: int = 16) -> np.ndarray:
    """A sorted note table (120 bpm, all on the 16th grid): per 2-s bar a three-note chord held to the bar line under legato
    eighths, the last one ending with it."""
    notes = []
    for bar in range(bars):
        t0 = 2.0 * bar
        chord = (48, 52, 55) if bar % 2 == 0 else (47, 50, 53)  # a stretched chord may outlast its bar: never the same keys next
        notes += [(pitch, 60, t0, t0 + 2.0) for pitch in chord]
        notes += [(72 + (i * 5 + bar) % 7, 80, t0 + 0.25 * i, t0 + 0.25 * (i + 1)) for i in range(8)]
    return as_table(notes)[0]


@pytest.mark.parametrize("kind", ["note", "phrase"])
def test_held_chords_of_a_stretched_sequenced_piece_end_with_the_bar_again(kind):
    model = load_checkpoint(shipped_checkpoint("duration"), DurationNet)[0]
    real = sequenced_piece()
    stretched, _, _ = stretch(real, np.random.default_rng(3), kind=kind)
    errors = {}
    for shared in (False, True):
        restored = restore_timing(stretched, model, shared_ends=shared)
        errors[shared] = np.abs((restored[:, END] - restored[:, START]) - (real[:, END] - real[:, START])).mean()
    before = np.abs((stretched[:, END] - stretched[:, START]) - (real[:, END] - real[:, START])).mean()
    assert errors[True] < errors[False] < before
    held = np.isclose(real[:, END] - real[:, START], 2.0)
    as_one = {}
    for shared in (False, True):
        released = restore_timing(stretched, model, shared_ends=shared)[held, END].reshape(-1, 3)  # (bars, 3 chord notes)
        as_one[shared] = np.mean(np.ptp(released, axis=1) < 1e-9)
    assert as_one[False] == 0.0 and as_one[True] >= 0.5  # more than half the chords let go as one again
