"""Velocity Net: each note's MIDI velocity from the notes around it, causal so that it can run live.

The original Deep Symphony study's Refine Net learnt velocities from notes, so that
background notes are played softer than the theme (../shared/ORIGINAL_STUDY.md). Here a
one-layer GRU reads the notes in onset order; at each note it sees only that note, the
notes struck with it (its onset group) and the notes before it: pitch, inter-onset
interval, duration, group size, rank from the top of the group, how many notes still
sound, how far it lies below the top voice and from the recent mean pitch, and the recent
note density. It never sees a velocity, so it can replace a generator's flat ones.

Baselines it is measured against (models/refine/eval.py): a constant (the train median)
and ``heuristic_velocities`` (top voice of a chord louder, the other chord notes softer).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn

from models.refine.notes import END, PITCH, START, VELOCITY, as_table, from_table, group_stats, onset_groups

NUM_FEATURES = 12  # columns of velocity_features
RECENT_NOTES = 16  # notes in the recent mean pitch
DENSITY_WINDOW_S = 2.0  # seconds of onsets counted in the density feature
MAX_DURATION_S = 4.0  # the performer's own limit on a note (instrument/performer.py)


def velocity_features(table: np.ndarray) -> np.ndarray:
    """Causal per-note features (N, NUM_FEATURES) float32 of a sorted note table (pitch, velocity, start, end).

    Feature i of note n uses only notes that start no later than n's onset group ends:
    the past, and the notes struck with it. The velocity column is never read.
    """
    n = len(table)
    if n == 0:
        return np.zeros((0, NUM_FEATURES), dtype=np.float32)
    pitch, start, end = table[:, PITCH], table[:, START], table[:, END]
    groups = onset_groups(start)
    stats = group_stats(table, groups)
    onset = stats["onset"]  # (G,) first start of each group
    ioi = np.diff(onset, prepend=onset[0] - 1.0)  # (G,) time since the previous group (1 s before the first)
    size = stats["size"].astype(np.float64)
    rank = stats["rank"].astype(np.float64)
    # Notes sounding when this note's group begins: started before it and not ended yet.
    group_onset = onset[groups]  # (N,)
    started_before = np.searchsorted(start, group_onset - 1e-9, side="left")
    ended_by = np.searchsorted(np.sort(end), group_onset + 1e-9, side="right")
    sounding = np.maximum(started_before - ended_by, 0)
    # Highest pitch sounding at the onset (held notes and this group): where the top voice is.
    top = _top_pitch(pitch, start, end, groups)
    # Mean pitch of the last RECENT_NOTES notes up to this group's last note (causal rolling mean).
    group_last = np.cumsum(stats["group_size"])[groups] - 1  # (N,) index of the group's last note
    cumulative = np.concatenate([[0.0], np.cumsum(pitch)])
    first = np.maximum(group_last + 1 - RECENT_NOTES, 0)
    recent_mean = (cumulative[group_last + 1] - cumulative[first]) / (group_last + 1 - first)
    # Onsets in the last DENSITY_WINDOW_S seconds up to this group (notes per second).
    density = (group_last + 1 - np.searchsorted(start, group_onset - DENSITY_WINDOW_S, side="left")) / DENSITY_WINDOW_S
    duration = np.clip(end - start, 0.0, MAX_DURATION_S)
    columns = [
        (pitch - 64.0) / 24.0,
        np.log(ioi[groups] + 0.01),
        np.log(duration + 0.01),
        np.log(size),
        rank / np.maximum(size - 1, 1),  # 0 top .. 1 bottom
        (rank == 0) & (size > 1),  # top of a chord
        (rank == size - 1) & (size > 1),  # bottom of a chord
        np.log1p(sounding),
        (top - pitch) / 12.0,  # 0 for the top voice
        (pitch - recent_mean) / 12.0,
        np.log1p(density),
        ioi[groups] > 0.5,  # after a rest or a long note
    ]
    return np.stack([np.asarray(c, dtype=np.float64) for c in columns], axis=1).astype(np.float32)


def _top_pitch(pitch: np.ndarray, start: np.ndarray, end: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(N,) the highest pitch among this note's group and the earlier notes still sounding at its onset."""
    top = np.empty(len(pitch))
    sounding: list[tuple[float, float]] = []  # (end, pitch) of earlier notes, pruned as they end
    n, i = len(pitch), 0
    while i < n:
        j = i
        while j < n and groups[j] == groups[i]:
            j += 1
        now = start[i]
        sounding = [(e, p) for e, p in sounding if e > now]
        highest = max([p for _, p in sounding] + pitch[i:j].tolist())
        top[i:j] = highest
        sounding += list(zip(end[i:j].tolist(), pitch[i:j].tolist()))
        i = j
    return top


def heuristic_velocities(table: np.ndarray, single: float, top: float, inner: float) -> np.ndarray:
    """The baseline: `single` for lone notes, `top` for a chord's top voice, `inner` for its other notes (N,)."""
    groups = onset_groups(table[:, START])
    stats = group_stats(table, groups)
    return np.where(stats["size"] == 1, single, np.where(stats["rank"] == 0, top, inner)).astype(np.float64)


@dataclass
class VelocityNetConfig:
    """Hyperparameters; saved as JSON beside the weights so a checkpoint rebuilds its model."""

    num_features: int = NUM_FEATURES  # velocity_features columns
    hidden_size: int = 96             # GRU width: ~0.05 ms per note on one CPU thread
    mlp_size: int = 64                # per-note head

    def __post_init__(self) -> None:
        for name in ("num_features", "hidden_size", "mlp_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


class VelocityNet(nn.Module):
    """Per-note features -> causal GRU -> MLP -> velocity (1..127) per note."""

    config_class = VelocityNetConfig

    def __init__(self, config: VelocityNetConfig):
        super().__init__()
        self.config = config
        self.inp = nn.Linear(config.num_features, config.hidden_size)
        self.rnn = nn.GRU(config.hidden_size, config.hidden_size, batch_first=True)
        self.head = nn.Sequential(nn.Linear(config.hidden_size + config.num_features, config.mlp_size), nn.GELU(),
                                  nn.Linear(config.mlp_size, 1))

    def num_parameters(self) -> int:
        """Number of weights."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, features: torch.Tensor, targets: torch.Tensor | None = None,
                hidden: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(velocities (B, N) in MIDI units, L1 loss in velocity units or None) from features (B, N, F)."""
        out, _ = self.rnn(torch.relu(self.inp(features)), hidden)  # (B, N, H): causal, one step per note
        velocity = 64.0 + 32.0 * self.head(torch.cat([out, features], dim=-1))[..., 0]  # (B, N); scaled so init ~ mezzo
        loss = None if targets is None else (velocity - targets).abs().mean()
        return velocity, loss


@torch.no_grad()
def predict_velocities(table: np.ndarray, model: VelocityNet, spread: float = 1.0) -> np.ndarray:
    """Velocities (N,) as integers 1..127 for a sorted note table.

    The net predicts each note's median velocity, which is flatter than playing (test std 13
    against 18); `spread` scales every prediction's distance from the net's neutral 64 (rank
    order, so Spearman rho, unchanged; 1.0 is the net as trained).
    """
    if len(table) == 0:
        return np.zeros(0, dtype=np.int64)
    features = torch.from_numpy(velocity_features(table)).unsqueeze(0)  # (1, N, F)
    velocity, _ = model.eval()(features)
    velocity = 64.0 + spread * (velocity[0].double().numpy() - 64.0)
    return np.clip(np.rint(velocity), 1, 127).astype(np.int64)


def refine_velocities(notes: Sequence[Sequence[float]], model: VelocityNet, spread: float = 1.0) -> list[tuple[int, int, float, float]]:
    """The same notes (pitch, velocity, start_s, end_s), in the same order, with velocities from the net (see predict_velocities)."""
    table, order = as_table(notes)
    if len(table):
        table[:, VELOCITY] = predict_velocities(table, model, spread)
    return from_table(table, order)
