"""Duration Net: restore notes' timing after random 80-120 % stretches, so generated music sits on its beat.

Following the original Deep Symphony study (../shared/ORIGINAL_STUDY.md): take real pieces,
stretch every inter-onset interval (between onset groups, so chords stay chords) and every
note's duration by independent random factors in [0.8, 1.2], and learn to predict each
factor's log from context. Dividing by the predicted factors restores the timing; applied
to a generator's notes it pulls onsets and offsets towards the regular, aligned timing of
real playing. The cues are all relative: an interval against its neighbours' median, a
note's end against the nearest onsets and the other notes' ends (pedal lifts end many notes
at once). A bidirectional GRU reads them in onset order, so it needs the notes around a
note on both sides: offline, or over the engine's lookahead live.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn

from models.refine.notes import END, PITCH, START, as_table, from_table, group_stats, onset_groups

NUM_FEATURES = 11  # columns of duration_features
STRETCH_RANGE = (0.8, 1.2)  # the study's stretch factors
LOCAL_GROUPS = 8  # groups either side in the local median interval
MIN_IOI_S = 0.02  # intervals shorter than this are inside a chord: not stretched, not scored


def stretch(table: np.ndarray, rng: np.random.Generator, low: float = STRETCH_RANGE[0], high: float = STRETCH_RANGE[1]
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(stretched table, log interval factor per note, log duration factor per note).

    Each interval from an onset group to the next is multiplied by its own factor (the
    notes of a group keep their offsets from its first note); each duration by another.
    A note's interval factor is that of the interval after its group (0 for the last group).
    """
    groups = onset_groups(table[:, START])
    onset = group_stats(table, groups)["onset"]  # (G,)
    ioi = np.diff(onset)  # (G-1,)
    f = np.exp(rng.uniform(np.log(low), np.log(high), size=len(ioi)))
    f[ioi < MIN_IOI_S] = 1.0
    new_onset = onset[0] + np.concatenate([[0.0], np.cumsum(ioi * f)])  # (G,)
    g = np.exp(rng.uniform(np.log(low), np.log(high), size=len(table)))
    out = table.copy()
    out[:, START] = new_onset[groups] + (table[:, START] - onset[groups])
    out[:, END] = out[:, START] + (table[:, END] - table[:, START]) * g
    log_f = np.concatenate([np.log(f), [0.0]])[groups]
    return out, log_f, np.log(g)


def interval_mask(table: np.ndarray) -> np.ndarray:
    """(N,) True where the interval after a note's group is a real one (>= MIN_IOI_S): the scored ones."""
    groups = onset_groups(table[:, START])
    onset = group_stats(table, groups)["onset"]
    return np.concatenate([np.diff(onset) >= MIN_IOI_S, [False]])[groups]


def duration_features(table: np.ndarray) -> np.ndarray:
    """Per-note features (N, NUM_FEATURES) float32 of a sorted note table; they use the notes on both sides."""
    n = len(table)
    if n == 0:
        return np.zeros((0, NUM_FEATURES), dtype=np.float32)
    pitch, start, end = table[:, PITCH], table[:, START], table[:, END]
    groups = onset_groups(start)
    stats = group_stats(table, groups)
    onset = stats["onset"]  # (G,)
    ioi = np.diff(onset)  # (G-1,)
    after = np.concatenate([ioi, [1.0]])  # (G,) interval after each group (1 s after the last)
    before = np.concatenate([[1.0], ioi])  # (G,) interval before each group
    local = _local_median(np.where(after >= MIN_IOI_S, after, np.nan), LOCAL_GROUPS)  # (G,) neighbours' typical interval
    duration = np.maximum(end - start, 1e-3)
    # Distance from a note's end to the nearest other note's end, and to the nearest onset group.
    sorted_end = np.sort(end)
    k = np.searchsorted(sorted_end, end)
    left = np.where(k > 0, end - sorted_end[np.maximum(k - 1, 0)], np.inf)
    right_index = np.minimum(k + 1, n - 1)  # k is this note's own end (or an equal one)
    right = np.where(k + 1 < n, sorted_end[right_index] - end, np.inf)
    to_end = np.minimum(left, right)
    m = np.searchsorted(onset, end)
    to_onset = np.minimum(np.abs(end - onset[np.clip(m - 1, 0, len(onset) - 1)]), np.abs(onset[np.clip(m, 0, len(onset) - 1)] - end))
    columns = [
        (pitch - 64.0) / 24.0,
        np.log(after[groups] + 0.01),
        np.log(before[groups] + 0.01),
        np.log((after / local)[groups]),  # this interval against its neighbours' median
        np.log(duration + 0.01),
        np.log(duration / after[groups]),  # legato ~0, staccato < 0, held > 0
        np.log(np.minimum(to_end, 1.0) + 0.005),
        np.log(np.minimum(to_onset, 1.0) + 0.005),
        np.log(stats["size"].astype(np.float64)),
        (after < MIN_IOI_S)[groups],
        np.log(local[groups]),
    ]
    return np.stack([np.asarray(c, dtype=np.float64) for c in columns], axis=1).astype(np.float32)


def _local_median(values: np.ndarray, half: int) -> np.ndarray:
    """Median of values[i-half .. i+half] ignoring NaN (0.25 s where all are NaN), (G,)."""
    padded = np.concatenate([np.full(half, np.nan), values, np.full(half, np.nan)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)  # (G, 2*half+1)
    with np.errstate(all="ignore"), _quiet_nanmedian():
        median = np.nanmedian(windows, axis=1)
    return np.where(np.isfinite(median), median, 0.25)


class _quiet_nanmedian:
    """Silence numpy's "All-NaN slice" warning: such windows get a default above."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


@dataclass
class DurationNetConfig:
    """Hyperparameters; saved as JSON beside the weights so a checkpoint rebuilds its model."""

    num_features: int = NUM_FEATURES  # duration_features columns
    hidden_size: int = 64             # per direction of the bidirectional GRU
    mlp_size: int = 64                # per-note head

    def __post_init__(self) -> None:
        for name in ("num_features", "hidden_size", "mlp_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


class DurationNet(nn.Module):
    """Per-note features -> bidirectional GRU -> MLP -> (log interval factor, log duration factor) per note."""

    config_class = DurationNetConfig

    def __init__(self, config: DurationNetConfig):
        super().__init__()
        self.config = config
        self.inp = nn.Linear(config.num_features, config.hidden_size)
        self.rnn = nn.GRU(config.hidden_size, config.hidden_size, batch_first=True, bidirectional=True)
        self.head = nn.Sequential(nn.Linear(2 * config.hidden_size + config.num_features, config.mlp_size), nn.GELU(),
                                  nn.Linear(config.mlp_size, 2))

    def num_parameters(self) -> int:
        """Number of weights."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, features: torch.Tensor, targets: torch.Tensor | None = None, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(log factors (B, N, 2), L1 loss or None) from features (B, N, F); targets (B, N, 2), mask (B, N, 2) of scored ones."""
        out, _ = self.rnn(torch.relu(self.inp(features)))  # (B, N, 2H)
        log_factors = 0.2 * torch.tanh(self.head(torch.cat([out, features], dim=-1)))  # |log 1.2| = 0.18: bounded output
        if targets is None:
            return log_factors, None
        weight = torch.ones_like(targets) if mask is None else mask.float()
        return log_factors, ((log_factors - targets).abs() * weight).sum() / weight.sum().clamp(min=1.0)


@torch.no_grad()
def restore_timing(table: np.ndarray, model: DurationNet) -> np.ndarray:
    """A sorted note table with each group interval and duration divided by the predicted factors."""
    if len(table) < 2:
        return table.copy()
    log_factors, _ = model.eval()(torch.from_numpy(duration_features(table)).unsqueeze(0))
    log_f, log_g = log_factors[0, :, 0].double().numpy(), log_factors[0, :, 1].double().numpy()
    groups = onset_groups(table[:, START])
    onset = group_stats(table, groups)["onset"]  # (G,)
    # One factor per interval: the mean of its group's notes' predictions.
    group_log_f = np.bincount(groups, weights=log_f) / np.bincount(groups)
    ioi = np.diff(onset)
    factor = np.where(ioi >= MIN_IOI_S, np.exp(group_log_f[:-1]), 1.0)
    new_onset = onset[0] + np.concatenate([[0.0], np.cumsum(ioi / factor)])
    out = table.copy()
    out[:, START] = new_onset[groups] + (table[:, START] - onset[groups])
    out[:, END] = out[:, START] + (table[:, END] - table[:, START]) / np.exp(log_g)
    return out


def refine_durations(notes: Sequence[Sequence[float]], model: DurationNet) -> list[tuple[int, int, float, float]]:
    """The same notes (pitch, velocity, start_s, end_s), in the same order, with onsets and durations restored by the net."""
    table, order = as_table(notes)
    return from_table(restore_timing(table, model), order)
