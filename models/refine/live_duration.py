"""Live Duration Net: a causal net that sets each note's length when its note-off is made.

The Duration Net (duration.py) reads notes on both sides, so it runs offline only. This one
runs live, behind any voice (``play --refine duration``): it sees a note when its note-off is
made, and reads only what is known then: every onset before the note's end (so the notes
struck while it sounds, and whether its end meets a new onset), and the notes that ended
before it. A unidirectional GRU steps over the notes in the order of their ends; a head
predicts the log of the factor its duration was stretched by (trained as the Duration Net:
real pieces' durations stretched by 80-120 %, per note or per phrase), and the refiner
divides the duration by it. Onsets are never moved: live they are already scheduled.

`CausalDurationFeatures` is the one feature code for training and for live use: offline,
`causal_features` feeds it a table's onsets and ends in time order; live, the refiner feeds it
the voice's note-ons and note-offs as they are made. `NumpyGRUStep` runs one note through the
trained weights in NumPy (no torch call on the generation thread: ~0.1 ms a note).
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn

from models.refine.notes import CHORD_TOLERANCE_S, END, PITCH, START

LIVE_FEATURES = 13
GROUP_MEMORY = 64  # onset groups remembered (a note's own group must still be among them)
END_MEMORY = 32  # ended notes remembered (nearest end, median duration)
LEGATO_MEMORY = 16  # ended notes in the running legato
LOCAL_INTERVALS = 8  # group intervals before a note's group in its local median
DEFAULT_INTERVAL_S = 0.25
MIN_NOTE_S = 0.03  # as the performer: a note is never made shorter than this
MAX_LOG_FACTOR = 0.2


class CausalDurationFeatures:
    """Incremental per-note features: `onset(t)` for each note-on in time order, `note_end(...)` when a note ends."""

    def __init__(self) -> None:
        self._groups: deque[list[float]] = deque(maxlen=GROUP_MEMORY)  # [first onset, notes] per onset group
        self._ends: deque[float] = deque(maxlen=END_MEMORY)  # ends of the notes ended, in the order they ended
        self._log_durations: deque[float] = deque(maxlen=END_MEMORY)
        self._legatos: deque[float] = deque(maxlen=LEGATO_MEMORY)

    def onset(self, t: float) -> None:
        """A note starts at `t` (times never go back but by a rollback; an earlier one joins the last group)."""
        groups = self._groups
        if groups and t - groups[-1][0] <= CHORD_TOLERANCE_S:
            groups[-1][1] += 1
        else:
            groups.append([t, 1])

    def note_end(self, pitch: int, start: float, end: float) -> np.ndarray:
        """The features (LIVE_FEATURES,) float32 of a note ending now; then it counts among the ended notes."""
        groups = self._groups
        count = len(groups)
        i = count - 1
        while i >= 0 and groups[i][0] > start + 1e-9:  # the note's onset group: the last one starting by its start
            i -= 1
        duration = max(end - start, 1e-3)
        if i >= 0:
            first, size = groups[i][0], groups[i][1]
            before = first - groups[i - 1][0] if i >= 1 else 1.0
            intervals = [groups[j][0] - groups[j - 1][0] for j in range(max(1, i - LOCAL_INTERVALS + 1), i + 1)]
            local = _median(intervals) if intervals else DEFAULT_INTERVAL_S
            j = i + 1
            following = None
            during = 0
            last_onset = first
            while j < count and groups[j][0] < end:
                if following is None:
                    following = groups[j][0]
                during += 1
                last_onset = groups[j][0]
                j += 1
        else:  # its group is no longer remembered (or was never seen)
            first, size, before, local, following, during, last_onset = start, 1, 1.0, DEFAULT_INTERVAL_S, None, 0, start
        nearest = min((abs(end - e) for e in self._ends), default=1.0)
        log_duration = math.log(duration)
        legato = math.log(duration / local)
        features = np.array([
            (pitch - 64.0) / 24.0,
            math.log(duration + 0.01),
            math.log(before + 0.01),
            math.log(local),
            legato,
            math.log(min(max(end - last_onset, 0.0), 1.0) + 0.005),
            math.log1p(during),
            math.log(duration / max(following - first, 1e-3)) if following is not None else 0.0,
            1.0 if following is not None else 0.0,
            math.log(size),
            math.log(min(nearest, 1.0) + 0.005),
            sum(self._legatos) / len(self._legatos) if self._legatos else 0.0,
            log_duration - (_median(list(self._log_durations)) if self._log_durations else math.log(DEFAULT_INTERVAL_S)),
        ], dtype=np.float32)
        self._ends.append(end)
        self._log_durations.append(log_duration)
        self._legatos.append(legato)
        return features

    def forget_after(self, t: float) -> int:
        """Forget onsets after `t` and the notes that ended after `t` (a rollback's dropped future); returns those ends."""
        while self._groups and self._groups[-1][0] > t:
            self._groups.pop()
        dropped = 0
        while self._ends and self._ends[-1] > t:
            self._ends.pop()
            self._log_durations.pop()
            if self._legatos:
                self._legatos.pop()
            dropped += 1
        return dropped


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return ordered[n // 2] if n % 2 else 0.5 * (ordered[n // 2 - 1] + ordered[n // 2])


def end_order(table: np.ndarray) -> np.ndarray:
    """Indices of a note table's rows in the order their notes end (ties: lower pitch first)."""
    return np.lexsort((table[:, PITCH], table[:, END]))


def causal_features(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(features (N, LIVE_FEATURES) float32 in end order, that order (N,)) of a note table sorted by start.

    Exactly what the live refiner computes: each note sees the onsets before its end and the
    notes that ended before it."""
    n = len(table)
    order = end_order(table)
    features = np.empty((n, LIVE_FEATURES), dtype=np.float32)
    state = CausalDurationFeatures()
    starts = np.sort(table[:, START]).tolist()
    k = 0
    for row, index in enumerate(order.tolist()):
        end = float(table[index, END])
        while k < n and starts[k] < end:
            state.onset(starts[k])
            k += 1
        features[row] = state.note_end(int(table[index, PITCH]), float(table[index, START]), end)
    return features, order


@dataclass
class LiveDurationNetConfig:
    """Hyperparameters; saved as JSON beside the weights so a checkpoint rebuilds its model."""

    num_features: int = LIVE_FEATURES
    hidden_size: int = 64  # unidirectional GRU
    mlp_size: int = 64
    stretch: str = "both"  # what it was trained to undo: "note", "phrase" or "both"

    def __post_init__(self) -> None:
        for name in ("num_features", "hidden_size", "mlp_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_features != LIVE_FEATURES:
            raise ValueError(f"num_features must be {LIVE_FEATURES}, got {self.num_features}")
        if self.stretch not in ("note", "phrase", "both"):
            raise ValueError(f"stretch must be one of note, phrase, both; got {self.stretch!r}")

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


class LiveDurationNet(nn.Module):
    """Causal features (in end order) -> GRU -> MLP -> log duration factor per note, bounded to +-0.2."""

    config_class = LiveDurationNetConfig

    def __init__(self, config: LiveDurationNetConfig):
        super().__init__()
        self.config = config
        self.inp = nn.Linear(config.num_features, config.hidden_size)
        self.rnn = nn.GRU(config.hidden_size, config.hidden_size, batch_first=True)
        self.head = nn.Sequential(nn.Linear(config.hidden_size + config.num_features, config.mlp_size),
                                  nn.GELU(approximate="tanh"), nn.Linear(config.mlp_size, 1))

    def num_parameters(self) -> int:
        """Number of weights."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, features: torch.Tensor, targets: torch.Tensor | None = None, mask: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(log factors (B, N, 1), weighted L1 loss or None) from features (B, N, F); targets and mask (B, N, 1)."""
        out, _ = self.rnn(torch.relu(self.inp(features)))
        log_factors = MAX_LOG_FACTOR * torch.tanh(self.head(torch.cat([out, features], dim=-1)))
        if targets is None:
            return log_factors, None
        weight = torch.ones_like(targets) if mask is None else mask.float()
        return log_factors, ((log_factors - targets).abs() * weight).sum() / weight.sum().clamp(min=1.0)


class NumpyGRUStep:
    """One note through a LiveDurationNet's weights in NumPy: (log factor, new state) from (features, state)."""

    def __init__(self, model: LiveDurationNet) -> None:
        get = lambda t: t.detach().double().numpy().copy()  # noqa: E731
        self.hidden = model.config.hidden_size
        self.w_in, self.b_in = get(model.inp.weight), get(model.inp.bias)
        self.w_ih, self.w_hh = get(model.rnn.weight_ih_l0), get(model.rnn.weight_hh_l0)
        self.b_ih, self.b_hh = get(model.rnn.bias_ih_l0), get(model.rnn.bias_hh_l0)
        self.w_1, self.b_1 = get(model.head[0].weight), get(model.head[0].bias)
        self.w_2, self.b_2 = get(model.head[2].weight), get(model.head[2].bias)

    def initial(self) -> np.ndarray:
        """The GRU state before any note."""
        return np.zeros(self.hidden)

    def __call__(self, features: np.ndarray, state: np.ndarray) -> tuple[float, np.ndarray]:
        x = features.astype(np.float64)
        h = self.hidden
        u = np.maximum(self.w_in @ x + self.b_in, 0.0)
        gi = self.w_ih @ u + self.b_ih
        gh = self.w_hh @ state + self.b_hh
        r = 1.0 / (1.0 + np.exp(-(gi[:h] + gh[:h])))
        z = 1.0 / (1.0 + np.exp(-(gi[h:2 * h] + gh[h:2 * h])))
        n = np.tanh(gi[2 * h:] + r * gh[2 * h:])
        new = (1.0 - z) * n + z * state
        y = self.w_1 @ np.concatenate([new, x]) + self.b_1
        y = 0.5 * y * (1.0 + np.tanh(0.7978845608028654 * (y + 0.044715 * y ** 3)))  # GELU, tanh form
        out = float((self.w_2 @ y + self.b_2)[0])
        return MAX_LOG_FACTOR * math.tanh(out), new


def safe_end(start: float, end: float, log_factor: float, max_note_s: float = 4.0, earliest: float = -math.inf,
             latest: float = math.inf) -> float:
    """The refined end of a note (start, end): its duration divided by exp(log_factor), within the safe bounds.

    Never shorter than MIN_NOTE_S (unless it already was), never before `earliest` (live: now, so nothing is
    made late), never longer than `max_note_s`, never after `latest` (the next onset of the same pitch)."""
    new = start + (end - start) / math.exp(log_factor)
    if new < end:
        low = max(start + MIN_NOTE_S, earliest)
        return end if low >= end else max(new, low)
    high = min(start + max_note_s - 0.01, latest)
    return end if high <= end else min(new, high)


@torch.no_grad()
def restore_durations(table: np.ndarray, model: LiveDurationNet, max_note_s: float = 4.0) -> np.ndarray:
    """A sorted note table with each duration divided by the causal net's factor, as live (onsets kept)."""
    out = table.copy()
    if len(table) == 0:
        return out
    features, order = causal_features(table)
    log_g = model.eval()(torch.from_numpy(features).unsqueeze(0))[0][0, :, 0].double().numpy()
    # the next onset of the same pitch bounds a lengthened note (live: the held note-off goes before it)
    next_same = np.full(len(table), math.inf)
    last: dict[int, float] = {}
    for index in range(len(table) - 1, -1, -1):
        pitch = int(table[index, PITCH])
        next_same[index] = last.get(pitch, math.inf)
        last[pitch] = float(table[index, START])
    for row, index in enumerate(order.tolist()):
        out[index, END] = safe_end(float(table[index, START]), float(table[index, END]), float(log_g[row]), max_note_s,
                                   latest=float(next_same[index]))
    return out
