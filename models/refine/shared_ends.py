"""Shared ends: notes released together are given back one end after the Duration Net restores them.

Music lets many notes go at once: a chord released, a pedal lift (the corpus applies the sustain
pedal, so every note under it ends at the lift), a bar line in sequenced music. In the classical
test pieces 44 % of notes end exactly where another note ends. A stretch of 80-120 % scatters
those ends, each by its own note's factor, and the Duration Net restores each duration on its own,
so each keeps an error that grows with its length: a 2-s note is off by tens of ms, a 0.1-s note
by a few. Where restored ends lie close together, this puts them back on one end, the mean of the
members' ends weighted by 1 / duration^2, so the short notes, whose ends are known best, place it.

A note joins the running group of ends when its restored end is within ``tolerance`` x (the
shorter of its own duration and the group's shortest) + ``slack_s`` of the group's end: each end
is uncertain in proportion to its note's length, and the group's end is as sure as its shortest
member. A note takes the group's end only if that end lies within its own stretch window (its
stretched duration divided by 1.2 .. 0.8 from its restored start), so no note is made longer or
shorter than any stretch could explain. ``tolerance`` and ``slack_s`` were chosen on the
validation pieces (classical, easymusicnotes, and classical's sequenced files; both stretch kinds):
REFINE_MODEL_CARD.md has the figures.
"""
from __future__ import annotations

import numpy as np

SNAP_TOLERANCE = 0.2   # share of the shorter note's duration within which two restored ends are taken as one
SNAP_SLACK_S = 0.01    # plus this many seconds (very short notes: timing jitter of the corpus itself)
WINDOW_SLACK_S = 0.005  # a note's stretch window, widened by this much at both ends


def snap_shared_ends(starts: np.ndarray, ends: np.ndarray, stretched_durations: np.ndarray,
                     stretch_range: tuple[float, float] = (0.8, 1.2), tolerance: float = SNAP_TOLERANCE,
                     slack_s: float = SNAP_SLACK_S) -> np.ndarray:
    """Ends (N,) with each group of nearby restored ends moved to the group's precision-weighted end.

    starts, ends (N,): the restored notes; stretched_durations (N,): their durations before
    restoring, which bound where a note's real end can be.
    """
    starts, ends = np.asarray(starts, dtype=np.float64), np.asarray(ends, dtype=np.float64)
    out = ends.copy()
    if len(ends) < 2:
        return out
    durations = np.maximum(ends - starts, 1e-3)
    weights = 1.0 / (durations ** 2 + 1e-4)  # an end's error grows with its note's length
    low, high = stretch_range
    earliest = np.maximum(starts + stretched_durations / high - WINDOW_SLACK_S, starts + 1e-3)  # (N,)
    latest = starts + stretched_durations / low + WINDOW_SLACK_S  # (N,)
    for members, end in _groups_of_ends(ends, durations, weights, tolerance, slack_s):
        if len(members) > 1:
            fits = (earliest[members] <= end) & (end <= latest[members])
            out[members[fits]] = end
    return out


def _groups_of_ends(ends: np.ndarray, durations: np.ndarray, weights: np.ndarray, tolerance: float,
                    slack_s: float) -> list[tuple[np.ndarray, float]]:
    """(member indices, weighted mean end) of each group of ends, scanning the ends in time order."""
    groups: list[tuple[np.ndarray, float]] = []
    order = np.argsort(ends, kind="stable")
    members = [int(order[0])]
    end, weight, shortest = float(ends[order[0]]), float(weights[order[0]]), float(durations[order[0]])
    for i in order[1:].tolist():
        if abs(ends[i] - end) <= tolerance * min(durations[i], shortest) + slack_s:
            members.append(i)
            end = (end * weight + ends[i] * weights[i]) / (weight + weights[i])
            weight += weights[i]
            shortest = min(shortest, durations[i])
        else:
            groups.append((np.array(members), end))
            members, end, weight, shortest = [i], float(ends[i]), float(weights[i]), float(durations[i])
    groups.append((np.array(members), end))
    return groups
