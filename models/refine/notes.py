"""Note tables shared by the Refine nets: (pitch, velocity, start_s, end_s) rows, onset groups, windows.

The refiners work on notes, not events: a note is ``(pitch, velocity, start_s, end_s)``
(the order the instrument's refine calls use; ``Piece.note_array`` stores pitch, start,
end, velocity and ``from_piece_array`` reorders it). Notes struck within
``CHORD_TOLERANCE_S`` of the first note of a group form one onset group (a chord, or one
note); groups are what "the notes sounding with it" and inter-onset intervals refer to.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CHORD_TOLERANCE_S = 0.03  # rolled chords in the corpus spread over ~10-30 ms
PITCH, VELOCITY, START, END = range(4)  # columns of a note table


def as_table(notes: Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """(table (N, 4) float64 sorted by start then pitch, order (N,) such that table[i] is notes[order[i]])."""
    table = np.asarray(notes, dtype=np.float64).reshape(-1, 4)
    order = np.lexsort((table[:, PITCH], table[:, START]))
    return table[order], order


def from_table(table: np.ndarray, order: np.ndarray) -> list[tuple[int, int, float, float]]:
    """Notes in their original order from a sorted table and the order `as_table` gave."""
    out: list[tuple[int, int, float, float]] = [None] * len(order)  # type: ignore[list-item]
    for row, index in zip(table, order):
        out[int(index)] = (int(row[PITCH]), int(row[VELOCITY]), float(row[START]), float(row[END]))
    return out


def from_piece_array(note_array: np.ndarray) -> np.ndarray:
    """A Piece's (pitch, start, end, velocity) array as a sorted note table (pitch, velocity, start, end)."""
    array = np.asarray(note_array, dtype=np.float64).reshape(-1, 4)
    table = array[:, [0, 3, 1, 2]]
    return table[np.lexsort((table[:, PITCH], table[:, START]))]


def onset_groups(starts: np.ndarray, tolerance: float = CHORD_TOLERANCE_S) -> np.ndarray:
    """Group index (N,) of each sorted start: a new group begins more than `tolerance` after the group's first note."""
    groups = np.zeros(len(starts), dtype=np.int64)
    group, first = 0, None
    for i, start in enumerate(starts.tolist()):  # sequential by nature: a group's first note anchors it
        if first is None or start - first > tolerance:
            if first is not None:
                group += 1
            first = start
        groups[i] = group
    return groups


def group_stats(table: np.ndarray, groups: np.ndarray) -> dict[str, np.ndarray]:
    """Per-note size of its group, rank from the top pitch (0 = highest) and the group onset (first start)."""
    count = int(groups[-1]) + 1 if len(groups) else 0
    size = np.bincount(groups, minlength=count)  # (G,)
    onset = np.full(count, np.inf)
    np.minimum.at(onset, groups, table[:, START])
    # rank from the top: sort by (group, -pitch), then position inside the group
    order = np.lexsort((-table[:, PITCH], groups))
    first_index = np.concatenate([[0], np.cumsum(size)[:-1]])  # (G,) index in `order` where each group begins
    rank = np.empty(len(table), dtype=np.int64)
    rank[order] = np.arange(len(table)) - first_index[groups[order]]
    return {"size": size[groups], "rank": rank, "onset": onset, "group_size": size}


def random_windows(lengths: np.ndarray, window: int, count: int, rng: np.random.Generator,
                   weights: np.ndarray | None = None) -> list[tuple[int, int]]:
    """`count` (piece index, start) pairs for windows of `window` notes, pieces drawn by their number of windows (times `weights`)."""
    usable = np.maximum(np.asarray(lengths) - window + 1, 0).astype(np.float64)
    if weights is not None:
        usable = usable * np.asarray(weights, dtype=np.float64)
    if usable.sum() == 0:
        raise ValueError(f"no piece has {window} notes")
    pieces = rng.choice(len(lengths), size=count, p=usable / usable.sum())
    return [(int(p), int(rng.integers(0, int(usable[p])))) for p in pieces]
