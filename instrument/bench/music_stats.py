"""Musical statistics of a note list, and how faithfully played notes follow requested controls.

Pure functions on numpy arrays (no torch, no I/O), used by `instrument bench music` on
renders and on real music alike, so both sides are measured by the same code.

A note list is an (N, 4) float array with columns pitch, velocity, start_s, end_s
(`as_notes` builds one from any iterable of such 4-tuples). Key clarity follows
Krumhansl & Kessler (1982) / Krumhansl-Schmuckler key finding: the correlation of a
duration-weighted pitch-class histogram with the 24 rotated major/minor key profiles.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

# The pure statistics the Char-RNN's evaluation shares live in models/metrics.py (models/ never imports
# instrument/); they are re-exported here so `music_stats.key_clarity` etc. keep working.
from models.metrics import (  # noqa: F401
    CAP_S,
    CHORD_S,
    END,
    KEY_PROFILES,
    KK_MAJOR,
    KK_MINOR,
    PITCH,
    START,
    VELOCITY,
    capped_fraction,
    chord_groups,
    key_clarity,
    melody,
    pattern_repetition,
)


SHORT_S = 0.1  # "notes shorter than 0.1 s"
BAR_S = 2.0  # one 4/4 bar at 120 bpm
POLY_LEVELS = 17  # polyphony histogram: 0..15 sounding notes, 16 = "16 or more"

# Fixed histogram bins, so distributions from different runs (and the cached reference) add up.
TIME_BINS = np.geomspace(0.005, 8.0, 41)  # seconds, log-spaced: IOIs and note lengths
VELOCITY_BINS = np.arange(0, 129, 4)


def as_notes(notes: Iterable[Sequence[float]]) -> np.ndarray:
    """An (N, 4) array (pitch, velocity, start_s, end_s), sorted by start then pitch."""
    array = np.asarray(list(notes) if not isinstance(notes, np.ndarray) else notes, dtype=np.float64)
    array = array.reshape(-1, 4)
    return array[np.lexsort((array[:, PITCH], array[:, START]))]


# ------------------------------------------------------------------ per-note statistics


def onsets_per_second(notes: np.ndarray, duration: float) -> float:
    """Note-ons per second over `duration` seconds."""
    return len(notes) / duration if duration > 0 else 0.0


def short_fraction(notes: np.ndarray, limit: float = SHORT_S) -> float:
    """Fraction of notes shorter than `limit` seconds."""
    return float(np.mean(notes[:, END] - notes[:, START] < limit)) if len(notes) else 0.0


def velocity_stats(notes: np.ndarray) -> tuple[float, int]:
    """(standard deviation, number of distinct values) of the note velocities."""
    if not len(notes):
        return 0.0, 0
    return float(np.std(notes[:, VELOCITY])), int(len(np.unique(notes[:, VELOCITY])))


def repeated_pitch_fraction(notes: np.ndarray) -> float:
    """Fraction of consecutive onsets (by onset, then pitch) that strike the same pitch again."""
    if len(notes) < 2:
        return 0.0
    return float(np.mean(notes[1:, PITCH] == notes[:-1, PITCH]))


def chord_size(notes: np.ndarray) -> float:
    """Mean number of notes per onset group (30 ms)."""
    return len(notes) / (int(chord_groups(notes).max()) + 1) if len(notes) else 0.0


def inter_onset_intervals(notes: np.ndarray) -> np.ndarray:
    """Seconds between consecutive onset groups (a chord counts once)."""
    if not len(notes):
        return np.zeros(0)
    groups = chord_groups(notes)
    firsts = notes[np.r_[True, groups[1:] != groups[:-1]], START]
    return np.diff(firsts)


def identical_bars(notes: np.ndarray, bar_s: float = BAR_S) -> float:
    """Fraction of non-empty bars (after the first) whose (pitch, onset sixteenth) set equals the previous bar's."""
    if not len(notes):
        return 0.0
    sixteenth = np.rint(notes[:, START] / (bar_s / 16.0)).astype(np.int64)  # nearest grid point: tolerates jitter
    bars: dict[int, set[tuple[int, int]]] = {}
    for pitch, s in zip(notes[:, PITCH].astype(np.int64), sixteenth):
        bars.setdefault(int(s // 16), set()).add((int(pitch), int(s % 16)))
    counted = [b for b in bars if b > 0]
    if not counted:
        return 0.0
    return sum(bars[b] == bars.get(b - 1) for b in counted) / len(counted)


# ------------------------------------------------------------------ sounding-time statistics


def sounding_segments(notes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(segment lengths (S,), sounding notes per pitch class (S, 12)) between consecutive note boundaries."""
    if not len(notes):
        return np.zeros(0), np.zeros((0, 12), dtype=np.int64)
    times = np.concatenate([notes[:, START], notes[:, END]])
    bounds, index = np.unique(times, return_inverse=True)
    delta = np.zeros((len(bounds), 12), dtype=np.int64)
    pcs = notes[:, PITCH].astype(np.int64) % 12
    np.add.at(delta, (index[: len(notes)], pcs), 1)
    np.add.at(delta, (index[len(notes):], pcs), -1)
    return np.diff(bounds), np.cumsum(delta, axis=0)[:-1]


def clash_fraction(notes: np.ndarray) -> float:
    """Fraction of sounding time during which two sounding pitch classes lie a semitone apart (m2, M7, m9...)."""
    lengths, counts = sounding_segments(notes)
    present = counts > 0
    sound = present.any(axis=1)
    clash = (present & np.roll(present, -1, axis=1)).any(axis=1)  # pc and pc+1 (B and C wrap around)
    total = float(lengths[sound].sum())
    return float(lengths[clash].sum()) / total if total > 0 else 0.0


def polyphony_histogram(notes: np.ndarray) -> np.ndarray:
    """Seconds spent with 0, 1, ... POLY_LEVELS-1 (or more) notes sounding, over the notes' span."""
    lengths, counts = sounding_segments(notes)
    levels = np.minimum(counts.sum(axis=1), POLY_LEVELS - 1)
    return np.bincount(levels, weights=lengths, minlength=POLY_LEVELS)


def mean_polyphony(notes: np.ndarray) -> float:
    """Mean number of sounding notes, time-weighted over the time when anything sounds."""
    lengths, counts = sounding_segments(notes)
    sounding = counts.sum(axis=1)
    total = float(lengths[sounding > 0].sum())
    return float((lengths * sounding).sum()) / total if total > 0 else 0.0


# ------------------------------------------------------------------ one recording, many recordings


def recording_stats(notes: np.ndarray, duration: float, seed: int = 0) -> dict[str, float]:
    """Every scalar statistic of one recording (a render or a real piece)."""
    v_std, v_distinct = velocity_stats(notes)
    return {
        "onsets_per_s": onsets_per_second(notes, duration),
        "short_frac": short_fraction(notes),
        "capped_frac": capped_fraction(notes),
        "key_clarity": key_clarity(notes),
        "key_clarity_shuffled": key_clarity(notes, shuffle_seed=seed),
        "clash_frac": clash_fraction(notes),
        "identical_bars": identical_bars(notes),
        "velocity_std": v_std,
        "velocity_distinct": float(v_distinct),
        "repeated_pitch": repeated_pitch_fraction(notes),
        "chord_size": chord_size(notes),
        "polyphony": mean_polyphony(notes),
        "pattern_repeat_8": pattern_repetition(notes),
    }


def recording_distributions(notes: np.ndarray) -> dict[str, np.ndarray]:
    """Histograms on fixed bins (they add across recordings): IOI, note length, velocity, polyphony."""
    return {
        "ioi": np.histogram(np.clip(inter_onset_intervals(notes), TIME_BINS[0], TIME_BINS[-1]), TIME_BINS)[0],
        "length": np.histogram(np.clip(notes[:, END] - notes[:, START], TIME_BINS[0], TIME_BINS[-1]), TIME_BINS)[0],
        "velocity": np.histogram(notes[:, VELOCITY], VELOCITY_BINS)[0],
        "polyphony": polyphony_histogram(notes),
    }


def summarize(recordings: Sequence[tuple[np.ndarray, float]], seed: int = 0) -> dict:
    """Scalars averaged over recordings (weighted by duration), pooled quantiles and histograms."""
    if not recordings:
        return {"recordings": 0}
    weights = np.array([duration for _, duration in recordings], dtype=np.float64)
    per = [recording_stats(notes, duration, seed + i) for i, (notes, duration) in enumerate(recordings)]
    summary: dict = {"recordings": len(recordings), "seconds": float(weights.sum()),
                     "notes": int(sum(len(n) for n, _ in recordings))}
    for name in per[0]:
        summary[name] = float(np.average([p[name] for p in per], weights=weights))
    # Velocity variety is a property of the whole output, not of a mean over files.
    pooled = np.concatenate([notes for notes, _ in recordings])
    summary["velocity_std"], distinct = velocity_stats(pooled)
    summary["velocity_distinct"] = float(distinct)
    iois = np.concatenate([inter_onset_intervals(notes) for notes, _ in recordings])
    lengths = pooled[:, END] - pooled[:, START]
    for name, values in (("ioi", iois), ("length", lengths)):
        for q in (10, 50, 90):
            summary[f"{name}_p{q}"] = float(np.percentile(values, q)) if len(values) else 0.0
    hists = [recording_distributions(notes) for notes, _ in recordings]
    summary["hist"] = {name: np.sum([h[name] for h in hists], axis=0).tolist() for name in hists[0]}
    return summary


# ------------------------------------------------------------------ control fidelity


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None if either side is constant or too short."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 3:
        return None
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    denom = np.sqrt((ra * ra).sum() * (rb * rb).sum())
    return float((ra * rb).sum() / denom) if denom > 0 else None


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(len(x), dtype=np.float64)
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return (sums / counts)[inverse]  # tied values share their mean rank


def sample_held(times: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """A step-held series (value holds until the next time) sampled at `grid` (NaN before the first)."""
    i = np.searchsorted(times, grid + 1e-9, side="right") - 1
    out = np.where(i >= 0, np.asarray(values, dtype=np.float64)[np.clip(i, 0, None)], np.nan)
    return out


def played_series(notes: np.ndarray, kind: str, starts: np.ndarray, width: float) -> np.ndarray:
    """Played register (mean onset pitch; NaN without onsets) or density (onsets/s) in [start, start+width)."""
    onsets = notes[:, START]
    lo = np.searchsorted(onsets, starts, side="left")
    hi = np.searchsorted(onsets, starts + width, side="left")
    counts = (hi - lo).astype(np.float64)
    if kind == "density":
        return counts / width
    cumulative = np.r_[0.0, np.cumsum(notes[:, PITCH])]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, (cumulative[hi] - cumulative[lo]) / counts, np.nan)


def fidelity_rho(req_t: np.ndarray, req_v: np.ndarray, notes: np.ndarray, kind: str, duration: float,
                 bin_s: float = 1.0, lags: Sequence[float] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)) -> float | None:
    """Spearman rho between requested and played values in `bin_s` bins, best over the played series' lags."""
    starts = np.arange(0.0, duration - bin_s - max(lags) + 1e-9, bin_s)
    fine = np.arange(0.0, bin_s, 0.05)  # the requested value is averaged over its bin
    requested = np.nanmean(sample_held(req_t, req_v, (starts[:, None] + fine[None, :]).ravel()).reshape(len(starts), -1),
                           axis=1) if len(starts) else np.zeros(0)
    best = None
    for lag in lags:
        played = played_series(notes, kind, starts + lag, bin_s)
        ok = np.isfinite(played) & np.isfinite(requested)
        rho = spearman(requested[ok], played[ok])
        if rho is not None and (best is None or rho > best):
            best = rho
    return best


def find_steps(req_t: np.ndarray, req_v: np.ndarray, threshold: float, settle_s: float = 0.5,
               grid_s: float = 0.05) -> list[tuple[float, float, float]]:
    """(onset time, value before, value after) of each change larger than `threshold` that happens within `settle_s`."""
    grid = np.arange(req_t[0], req_t[-1], grid_s)
    values = sample_held(req_t, req_v, grid)
    k = int(round(settle_s / grid_s))
    steps, i = [], 0
    while i + k < len(grid):
        change = values[i + k] - values[i]
        if abs(change) > threshold:
            moved = np.nonzero(np.abs(values[i:i + k + 1] - values[i]) > 0.1 * abs(change))[0]
            j = i + int(moved[0])  # the step starts where the value first moves
            after = values[min(j + k, len(grid) - 1)]
            steps.append((float(grid[j]), float(values[i]), float(after)))
            i = j + k
        else:
            i += 1
    return steps


def response_times(req_t: np.ndarray, req_v: np.ndarray, notes: np.ndarray, kind: str, threshold: float,
                   duration: float, smooth_s: float = 1.0, grid_s: float = 0.05) -> list[float]:
    """Per step: seconds until the played value (centred `smooth_s` mean) is halfway to the new target.

    The centred window makes an instant switch read as 0 s. A value never reached before
    the next step (or the end) is inf; a step whose played value already lay at or past
    its new target is NaN (nothing to time).
    """
    steps = find_steps(req_t, req_v, threshold)
    onsets = [t for t, _, _ in steps] + [duration - smooth_s / 2.0]  # windows past the end would read as silence
    grid = np.arange(0.0, duration, grid_s)
    played = played_series(notes, kind, grid - smooth_s / 2.0, smooth_s)
    out = []
    for (t, before, after), until in zip(steps, onsets[1:]):
        i0 = int(np.searchsorted(grid, t))
        before_end = int(np.searchsorted(grid, t - smooth_s / 2.0, side="right"))
        past = played[:before_end][np.isfinite(played[:before_end])]
        if not len(past):
            continue
        start = past[-1]  # the played value over the last window that ends at the step
        halfway = start + 0.5 * (after - start)
        direction = np.sign(after - before)
        if (after - start) * direction <= 0:
            out.append(float("nan"))  # already at or past the new target: the step asks for no move to time
            continue
        window = played[i0:int(np.searchsorted(grid, until))]
        reached = np.nonzero(np.isfinite(window) & ((window - halfway) * direction >= 0))[0]
        out.append(float(reached[0]) * grid_s if len(reached) else float("inf"))
    return out


def median_response(times: Sequence[float]) -> float | None:
    """Median response time over the timed steps (NaN ignored); None if none, or if most were never answered."""
    timed = [t for t in times if not np.isnan(t)]
    if not timed:
        return None
    median = float(np.median(timed))
    return median if np.isfinite(median) else None
