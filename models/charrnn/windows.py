"""Training and validation windows of the Char-RNN: events and the conditions of the music they hold.

Each training window is ``seq_len + 1`` events drawn at random from the train split,
augmented (transpose +-6 semitones, stretch time +-5 %), and labelled with the
condition of every event (models/conditioning.py), computed on the music around it so
that forward windows near the window's end still see what follows.
"""
from __future__ import annotations

import numpy as np
import torch

from models.conditioning import ConditionSpec, event_times, extract_conditions
from models.events import TIME_SHIFT_OFFSET

MAX_TRANSPOSE = 6        # semitones either way
MAX_STRETCH = 0.05       # time stretch factor in [0.95, 1.05]


class WindowSampler:
    """Random training windows: tokens (B, T+1) and conditions (B, T+1, C) of the events they hold."""

    def __init__(self, pieces: list[np.ndarray], seq_len: int, spec: ConditionSpec | None, augment: bool, seed: int,
                 styles: list[str | None] | None = None):
        """`styles`: each piece's style (its folder), for a spec with style columns; None: the spec's default."""
        styles = [None] * len(pieces) if styles is None else list(styles)
        if len(styles) != len(pieces):
            raise ValueError(f"{len(styles)} styles for {len(pieces)} pieces")
        self.styles = [s for e, s in zip(pieces, styles) if len(e) > seq_len + 1]
        self.events = [np.asarray(e, dtype=np.int64) for e in pieces if len(e) > seq_len + 1]
        if not self.events:
            raise ValueError(f"no piece is longer than seq_len + 1 = {seq_len + 1} events")
        self.times = [event_times(e) for e in self.events]
        starts = np.array([len(e) - seq_len - 1 for e in self.events], dtype=np.float64)
        self.weights = starts / starts.sum()  # a piece is drawn in proportion to its windows
        self.seq_len, self.spec, self.augment = seq_len, spec, augment
        self.rng = np.random.default_rng(seed)
        # Forward windows of events near a window's end need this much music after it.
        self.lookahead_s = (max(spec.histogram_window_s, spec.density_window_s, spec.register_window_s) if spec else 0.0) * (1 + MAX_STRETCH) + 0.5

    def sample(self) -> tuple[np.ndarray, np.ndarray | None]:
        """One window: (T+1,) tokens and (T+1, C) conditions (None when unconditioned)."""
        n = self.seq_len + 1
        p = self.rng.choice(len(self.events), p=self.weights)
        events, times = self.events[p], self.times[p]
        start = int(self.rng.integers(0, len(events) - n + 1))
        stop = max(start + n, int(np.searchsorted(times, times[start + n - 1] + self.lookahead_s)))
        # Begin at the first event sharing the window's start time, so notes struck at
        # that instant (e.g. the rest of a chord) count in the first events' conditions.
        begin = int(np.searchsorted(times, times[start], side="left")) if self.spec else start
        chunk = events[begin:stop]
        if self.augment:
            chunk = self._augment(chunk, keep=n + start - begin)
        skip = start - begin if len(chunk) >= n + start - begin else 0
        cond = extract_conditions(chunk, self.spec, style=self.styles[p])[skip:skip + n] if self.spec else None
        return chunk[skip:skip + n], cond

    def _augment(self, chunk: np.ndarray, keep: int) -> np.ndarray:
        from models.data import augment

        pitches = chunk[chunk < TIME_SHIFT_OFFSET] % 128
        low = max(-MAX_TRANSPOSE, -int(pitches.min())) if pitches.size else 0
        high = min(MAX_TRANSPOSE, 127 - int(pitches.max())) if pitches.size else 0
        transpose = int(self.rng.integers(low, high + 1))
        stretch = float(self.rng.uniform(1 - MAX_STRETCH, 1 + MAX_STRETCH))
        out = augment(chunk, transpose=transpose, stretch=stretch)
        return chunk if out is None or len(out) < keep else out

    def batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """tokens (B, T+1) long and cond (B, T+1, C) float32 or None."""
        samples = [self.sample() for _ in range(batch_size)]
        tokens = torch.from_numpy(np.stack([s[0] for s in samples]))
        cond = torch.from_numpy(np.stack([s[1] for s in samples])) if self.spec else None
        return tokens, cond


def validation_windows(pieces: list[np.ndarray], seq_len: int, spec: ConditionSpec | None, max_windows: int,
                       styles: list[str | None] | None = None):
    """Fixed, non-overlapping windows over the held-out pieces: tokens (N, T+1), cond (N, T+1, C) or None."""
    tokens, conds = [], []
    for events, style in zip(pieces, [None] * len(pieces) if styles is None else styles):
        events = np.asarray(events, dtype=np.int64)
        cond = extract_conditions(events, spec, style=style) if spec else None
        for s in range(0, len(events) - seq_len - 1 + 1, seq_len):
            tokens.append(events[s:s + seq_len + 1])
            conds.append(cond[s:s + seq_len + 1] if spec else None)
    if not tokens:
        raise ValueError(f"no held-out piece is longer than {seq_len + 1} events")
    keep = np.unique(np.linspace(0, len(tokens) - 1, min(max_windows, len(tokens))).round().astype(int))
    tok = torch.from_numpy(np.stack([tokens[i] for i in keep]))
    return tok, (torch.from_numpy(np.stack([conds[i] for i in keep])) if spec else None)


def split_inputs(tokens: torch.Tensor, cond: torch.Tensor | None):
    """Teacher forcing: input event i with the condition of event i+1 (the music about to be played) predicts event i+1."""
    return tokens[:, :-1], (cond[:, 1:] if cond is not None else None), tokens[:, 1:]


