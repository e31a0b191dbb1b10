"""Duration Net: restore notes' timing after random 80-120 % stretches, so generated music sits on its beat.

Following the original Deep Symphony study (../shared/ORIGINAL_STUDY.md): take real pieces,
stretch their inter-onset intervals (between onset groups, so chords stay chords) and their
notes' durations by random factors in [0.8, 1.2], and learn to predict each factor's log
from context. Dividing by the predicted factors restores the timing. Two kinds of stretch:

- ``"note"`` (the study's): every interval and every duration gets its own independent
  factor. Expressive playing deviates from its grid about as much, so context cannot tell
  much of it apart.
- ``"phrase"``: the errors a generator makes: a tempo factor held over a segment of 4-32
  onset groups (a drifting phrase), and, with its own segments, a legato factor that makes
  every note of a segment too long or too short by the same amount.

The cues are relative: an interval against its neighbours' median and against the whole
piece's (its tempo and the phase of its note values), a note's end against the nearest
onsets and the other notes' ends (pedal lifts end many notes at once), the local legato
against the piece's, and (feature set "grid") the phases of intervals and durations against the
piece's beat, which a stretch moves off the whole note values of sequenced music. A bidirectional
GRU reads them in onset order, so it needs the notes around a note on both sides: offline, or
over the engine's lookahead live.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn

from models.refine.notes import END, PITCH, START, as_table, from_table, group_stats, onset_groups
from models.refine.shared_ends import snap_shared_ends

FEATURE_SETS = {"local": 11, "piece": 19, "grid": 29}  # columns of duration_features: "local" (the first net's), "piece" adds
# piece-relative cues, "grid" adds the phases of intervals and durations against the piece's beat (each set extends the one before)
NUM_FEATURES = FEATURE_SETS["local"]
STRETCH_RANGE = (0.8, 1.2)  # the study's stretch factors
STRETCH_KINDS = ("note", "phrase")  # independent factor per interval/duration, or one per segment of onset groups
PHRASE_GROUPS = (4, 32)  # a phrase factor holds over this many onset groups (inclusive)
LOCAL_GROUPS = 8  # groups either side in the local median interval
MIN_IOI_S = 0.02  # intervals shorter than this are inside a chord: not stretched, not scored


def stretch(table: np.ndarray, rng: np.random.Generator, low: float = STRETCH_RANGE[0], high: float = STRETCH_RANGE[1],
            kind: str = "note") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(stretched table, log interval factor per note, log duration factor per note).

    Each interval from an onset group to the next is multiplied by a factor (the notes of a
    group keep their offsets from its first note), each duration by another. "note": every
    interval and every duration its own factor; "phrase": one interval factor per segment of
    4-32 groups, and one duration factor per segment of other 4-32 groups. A note's interval
    factor is that of the interval after its group (0 for the last group).
    """
    if kind not in STRETCH_KINDS:
        raise ValueError(f"stretch kind must be one of {', '.join(STRETCH_KINDS)}, got {kind!r}")
    groups = onset_groups(table[:, START])
    onset = group_stats(table, groups)["onset"]  # (G,)
    ioi = np.diff(onset)  # (G-1,)
    log_low, log_high = np.log(low), np.log(high)
    if kind == "note":  # draw order kept from the first net: a seed gives the same stretch as before
        log_f = rng.uniform(log_low, log_high, size=len(ioi))
        log_g = rng.uniform(log_low, log_high, size=len(table))
    else:
        log_f = _phrase_factors(len(ioi), rng, log_low, log_high)
        log_g = _phrase_factors(len(onset), rng, log_low, log_high)[groups]  # a legato factor per segment of groups
    f = np.exp(log_f)
    f[ioi < MIN_IOI_S] = 1.0
    g = np.exp(log_g)
    new_onset = onset[0] + np.concatenate([[0.0], np.cumsum(ioi * f)])  # (G,)
    out = table.copy()
    out[:, START] = new_onset[groups] + (table[:, START] - onset[groups])
    out[:, END] = out[:, START] + (table[:, END] - table[:, START]) * g
    log_f_note = np.concatenate([np.log(f), [0.0]])[groups]
    return out, log_f_note, np.log(g)


def _phrase_factors(count: int, rng: np.random.Generator, log_low: float, log_high: float) -> np.ndarray:
    """(count,) log factors, constant over segments of PHRASE_GROUPS[0]..[1] items, uniform in [log_low, log_high]."""
    lengths = rng.integers(PHRASE_GROUPS[0], PHRASE_GROUPS[1] + 1, size=count // PHRASE_GROUPS[0] + 1)
    values = rng.uniform(log_low, log_high, size=len(lengths))
    return np.repeat(values, lengths)[:count]


def interval_mask(table: np.ndarray) -> np.ndarray:
    """(N,) True where the interval after a note's group is a real one (>= MIN_IOI_S): the scored ones."""
    groups = onset_groups(table[:, START])
    onset = group_stats(table, groups)["onset"]
    return np.concatenate([np.diff(onset) >= MIN_IOI_S, [False]])[groups]


def intervals_and_durations(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(interval after each note's group (N,), 0 after the last; duration (N,)) of a sorted table."""
    groups = onset_groups(table[:, START])
    onset = group_stats(table, groups)["onset"]
    return np.concatenate([np.diff(onset), [0.0]])[groups], table[:, END] - table[:, START]


def duration_features(table: np.ndarray, feature_set: str = "local") -> np.ndarray:
    """Per-note features (N, FEATURE_SETS[feature_set]) float32 of a sorted note table; they use the notes on both sides."""
    if feature_set not in FEATURE_SETS:
        raise ValueError(f"feature set must be one of {', '.join(FEATURE_SETS)}, got {feature_set!r}")
    n = len(table)
    if n == 0:
        return np.zeros((0, FEATURE_SETS[feature_set]), dtype=np.float32)
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
    if feature_set in ("piece", "grid"):
        columns += _piece_columns(after, duration, groups)
    if feature_set == "grid":
        columns += _grid_columns(after, duration, groups)
    return np.stack([np.asarray(c, dtype=np.float64) for c in columns], axis=1).astype(np.float32)


def _piece_columns(after: np.ndarray, duration: np.ndarray, groups: np.ndarray) -> list[np.ndarray]:
    """8 per-note columns against the whole piece: a phrase's tempo and legato are told from the piece's own.

    after (G,) interval after each group (a stand-in for the last), duration (N,). A phrase
    stretched by f has its intervals f times the piece's typical ones, and its note values
    (powers of two of a beat) shifted off their usual phase log2(interval / beat). All 8 are
    unchanged when the whole piece is played faster or slower: that is not a stretch to undo.
    """
    real = np.where(after >= MIN_IOI_S, after, np.nan)  # (G,)
    real[-1] = np.nan  # the last group's "interval" is a stand-in
    with np.errstate(all="ignore"), _quiet_nanmedian():
        beat = float(np.nanmedian(real)) if np.isfinite(real).any() else 0.25
    near, wide = _local_median(real, LOCAL_GROUPS), _local_median(real, 4 * LOCAL_GROUPS)  # (G,) a phrase-long neighbourhood
    after = np.concatenate([after[:-1], near[-1:]])  # the last group: its neighbours' typical interval
    log_duration = np.log(duration)
    legato = np.bincount(groups, weights=log_duration - np.log(after[groups])) / np.bincount(groups)  # (G,) mean per group
    group_duration = np.bincount(groups, weights=log_duration) / np.bincount(groups)  # (G,)
    phase = 2 * np.pi * np.log2(after / beat)
    return [
        np.log(after / beat)[groups],
        np.log(near / beat)[groups],
        np.log(wide / beat)[groups],
        np.sin(phase)[groups],
        np.cos(phase)[groups],
        (_local_mean(legato, LOCAL_GROUPS) - np.median(legato))[groups],  # the neighbourhood's legato against the piece's
        (_local_mean(group_duration, LOCAL_GROUPS) - np.median(group_duration))[groups],
        log_duration - np.median(log_duration),
    ]


def _grid_columns(after: np.ndarray, duration: np.ndarray, groups: np.ndarray) -> list[np.ndarray]:
    """10 per-note columns: the phases of the interval and the duration against the piece's beat, and how sharp they are.

    after (G,) interval after each group, duration (N,). Sequenced music has intervals and
    durations at whole note values (powers of two of a beat, dotted, triplets): its phase
    log2(value / beat) sits at a few points, and a stretch moves it off them. The beat is the
    median interval nudged by the circular mean of the intervals' phases (a stretch symmetric in
    log cancels out over the piece). Two harmonics each (an octave and half an octave: dotted
    values sit near 0.5 of it); the resultant lengths (0 for played music, near 1 for sequenced)
    tell the net how much to trust them. Unchanged when the whole piece is played faster or slower.
    """
    real = np.where(after >= MIN_IOI_S, after, np.nan)  # (G,)
    real[-1] = np.nan
    finite = real[np.isfinite(real)]
    beat = float(np.median(finite)) if len(finite) else 0.25
    ioi_sharp = 0.0
    if len(finite):
        circle = np.exp(2j * np.pi * np.log2(finite / beat)).mean()  # the intervals' phases on the octave circle
        beat *= 2.0 ** (np.angle(circle) / (2 * np.pi))
        ioi_sharp = float(np.abs(circle))
    near = _local_median(real, LOCAL_GROUPS)
    after = np.concatenate([after[:-1], near[-1:]])  # the last group: its neighbours' typical interval
    x_ioi = np.log2(after / beat)[groups]  # (N,)
    x_dur = np.log2(duration / beat)  # (N,)
    dur_sharp = float(np.abs(np.exp(2j * np.pi * x_dur).mean()))
    columns = []
    for x in (x_ioi, x_dur):
        columns += [np.sin(2 * np.pi * x), np.cos(2 * np.pi * x), np.sin(4 * np.pi * x), np.cos(4 * np.pi * x)]
    return columns + [np.full(len(duration), ioi_sharp), np.full(len(duration), dur_sharp)]


def _local_mean(values: np.ndarray, half: int) -> np.ndarray:
    """Mean of values[i-half .. i+half] (fewer at the ends), (G,)."""
    total = np.concatenate([[0.0], np.cumsum(values)])
    index = np.arange(len(values))
    lo, hi = np.maximum(index - half, 0), np.minimum(index + half + 1, len(values))
    return (total[hi] - total[lo]) / (hi - lo)


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
    features: str = "local"           # duration_features set: "local" (11), "piece" (19) or "grid" (29)
    stretch: str = "note"             # what it was trained to undo: "note", "phrase" or "both" (half the copies each)

    def __post_init__(self) -> None:
        for name in ("num_features", "hidden_size", "mlp_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.features not in FEATURE_SETS:
            raise ValueError(f"features must be one of {', '.join(FEATURE_SETS)}, got {self.features!r}")
        if self.num_features != FEATURE_SETS[self.features]:
            raise ValueError(f"num_features must be {FEATURE_SETS[self.features]} for features {self.features!r}, got {self.num_features}")
        if self.stretch not in (*STRETCH_KINDS, "both"):
            raise ValueError(f"stretch must be one of {', '.join(STRETCH_KINDS)}, both; got {self.stretch!r}")

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
def restore_timing(table: np.ndarray, model: DurationNet, shared_ends: bool = True) -> np.ndarray:
    """A sorted note table with each group interval and duration divided by the predicted factors.

    With `shared_ends`, notes whose restored ends lie close together then end together
    (models/refine/shared_ends.py): the net restores each duration alone."""
    if len(table) < 2:
        return table.copy()
    log_factors, _ = model.eval()(torch.from_numpy(duration_features(table, model.config.features)).unsqueeze(0))
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
    if shared_ends:
        out[:, END] = snap_shared_ends(out[:, START], out[:, END], table[:, END] - table[:, START], STRETCH_RANGE)
    return out


def refine_durations(notes: Sequence[Sequence[float]], model: DurationNet, shared_ends: bool = True
                     ) -> list[tuple[int, int, float, float]]:
    """The same notes (pitch, velocity, start_s, end_s), in the same order, with onsets and durations restored by the net."""
    table, order = as_table(notes)
    return from_table(restore_timing(table, model, shared_ends), order)
