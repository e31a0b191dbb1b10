"""How far could a Duration Net go? ``python -m models.refine.coincidence_oracle --data DIR [--on-grid]``.

A ceiling, not a restorer: it reads the *real* piece to learn which notes end exactly together
(a chord let go, a pedal lift) and which end exactly on an onset, then restores the stretched
piece by solving for every onset and every end at once. Each such coincidence becomes one shared
unknown, and each stretched interval and duration pulls its value towards a prior centre:
E[1/f] x the stretched value ("coincidences alone"), or the shipped net's restored value ("net +
coincidences"). It is a weighted least-squares fit with weights 1 / value: a stretch's error grows
with the length it stretches. Values are then kept inside their 80-120 % stretch windows. A restorer
that had to find the coincidences itself could do no better than one told them: with the net as
the centre, it bounds what the shipped net plus any use of the coincidences can reach (only a
better musical prior goes further).
A measurement tool: it needs SciPy's sparse solver (``pip install -e ".[analysis]"``), the
instrument does not.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from models.refine.duration import MIN_IOI_S, STRETCH_KINDS, STRETCH_RANGE
from models.refine.notes import END, START, group_stats, onset_groups
from models.report import print_report

SAME_TIME_S = 0.001  # two ends, or an end and an onset, this close in the real piece are one moment
MEAN_INVERSE_FACTOR = (1 / STRETCH_RANGE[0] - 1 / STRETCH_RANGE[1]) / np.log(STRETCH_RANGE[1] / STRETCH_RANGE[0])  # E[1/f]


def shared_moments(real: np.ndarray, groups: np.ndarray, onsets: np.ndarray) -> np.ndarray:
    """(G + N,) one label per onset group and per note end; equal labels are one moment of the real piece."""
    count, n = len(onsets), len(real)
    parent = np.arange(count + n)

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    def join(a: int, b: int) -> None:
        ra, rb = root(a), root(b)
        parent[max(ra, rb)] = min(ra, rb)  # an onset (index < G) stays the label of its moment

    order = np.argsort(real[:, END], kind="stable")
    for previous, note in zip(order[:-1].tolist(), order[1:].tolist()):
        if real[note, END] - real[previous, END] < SAME_TIME_S:
            join(count + note, count + previous)
    nearest = np.clip(np.searchsorted(onsets, real[:, END]), 0, count - 1)
    for note in range(n):
        for j in (nearest[note] - 1, nearest[note]):
            if 0 <= j < count and abs(onsets[j] - real[note, END]) < SAME_TIME_S:
                join(count + note, int(j))
    return np.array([root(i) for i in range(count + n)])


def solve_with_coincidences(real: np.ndarray, stretched: np.ndarray, centre: tuple[np.ndarray, np.ndarray] | None = None
                            ) -> np.ndarray:
    """The stretched table restored by least squares with the real piece's coincidences shared; centre: (intervals, durations)."""
    groups = onset_groups(real[:, START])
    real_onsets, onsets = group_stats(real, groups)["onset"], group_stats(stretched, groups)["onset"]
    count, n = len(onsets), len(real)
    offsets = stretched[:, START] - onsets[groups]  # within a chord: never stretched
    intervals, durations = np.diff(onsets), stretched[:, END] - stretched[:, START]
    want_intervals, want_durations = centre if centre is not None else (MEAN_INVERSE_FACTOR * intervals,
                                                                         MEAN_INVERSE_FACTOR * durations)
    _, column = np.unique(shared_moments(real, groups, onsets=real_onsets), return_inverse=True)  # (G + N,) unknown per moment
    chord = intervals < MIN_IOI_S
    w_interval = np.where(chord, 1e3, 1.0 / np.maximum(intervals, 1e-3))  # a chord's spread is not stretched: held
    w_duration = 1.0 / np.maximum(durations, 1e-3)
    k, notes = np.arange(count - 1), np.arange(n)
    rows = np.concatenate([k, k, count - 1 + notes, count - 1 + notes, [count - 1 + n]])
    cols = np.concatenate([column[k + 1], column[k], column[count + notes], column[groups], [column[0]]])
    vals = np.concatenate([w_interval, -w_interval, w_duration, -w_duration, [1e3]])
    rhs = np.concatenate([w_interval * np.where(chord, intervals, want_intervals),
                          w_duration * (want_durations + offsets), [1e3 * onsets[0]]])
    try:
        import scipy.sparse as sp
        from scipy.sparse.linalg import spsolve
    except ImportError:
        raise SystemExit('coincidence_oracle: needs SciPy (pip install -e ".[analysis]")') from None
    a = sp.csr_matrix((vals, (rows, cols)), shape=(count + n, column.max() + 1))
    solution = spsolve((a.T @ a).tocsc(), a.T @ rhs)
    low, high = STRETCH_RANGE
    new_intervals = np.where(chord, intervals, np.clip(np.diff(solution[column[:count]]), intervals / high, intervals / low))
    new_onsets = onsets[0] + np.concatenate([[0.0], np.cumsum(new_intervals)])
    new_durations = np.clip(solution[column[count:]] - solution[column[groups]] - offsets, durations / high, durations / low)
    out = stretched.copy()
    out[:, START] = new_onsets[groups] + offsets
    out[:, END] = out[:, START] + new_durations
    return out


def ceiling_report(test_tables: list[np.ndarray], model=None, seed: int = 1234, kind: str = "note") -> dict[str, float]:
    """The Duration Net's report (models/refine/eval.py) with the oracle restoring; centred on `model`'s values if given."""
    from models.refine.duration import restore_timing
    from models.refine.eval import duration_report

    def restore(real: np.ndarray, stretched: np.ndarray) -> np.ndarray:
        centre = None
        if model is not None:
            net = restore_timing(stretched, model, shared_ends=False)
            groups = onset_groups(real[:, START])
            centre = (np.diff(group_stats(net, groups)["onset"]), net[:, END] - net[:, START])
        return solve_with_coincidences(real, stretched, centre)

    return duration_report(model, test_tables, seed, kind, restore=restore)


def main(argv: list[str] | None = None) -> int:
    """``python -m models.refine.coincidence_oracle``."""
    parser = argparse.ArgumentParser(prog="coincidence_oracle", description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", type=Path, required=True, metavar="DIR", help="MIDI folders; the test split is scored")
    parser.add_argument("--on-grid", action="store_true", help="only the test files sequenced on their beat grid")
    parser.add_argument("--stretch", choices=["both", *STRETCH_KINDS], default="both")
    parser.add_argument("--seed", type=int, default=1234, help="the stretches' random seed (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    import torch

    from models.checkpoint import load_checkpoint, shipped_checkpoint
    from models.data import Corpus
    from models.refine.duration import DurationNet
    from models.refine.notes import from_piece_array

    torch.set_num_threads(1)
    model = load_checkpoint(shipped_checkpoint("duration"), DurationNet)[0]
    test = [p for p in Corpus.load(args.data, workers=1).split("test")]
    if args.on_grid:
        from models.refine.beat_grid import is_sequenced

        test = [p for p in test if is_sequenced(p.path)]
    tables = [from_piece_array(p.note_array) for p in test]
    report: dict[str, float] = {"test_pieces": len(tables)}
    for kind in STRETCH_KINDS if args.stretch == "both" else (args.stretch,):
        for name, net in (("alone", None), ("with_net", model)):
            for key, value in ceiling_report(tables, net, args.seed, kind).items():
                report[f"{name}_{key}"] = value  # the phrase stretch's keys carry "phrase_" already
    print_report(report, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
