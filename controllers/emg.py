"""EMG processing for the Myo: the mean-absolute-value envelope and a kNN pose classifier.

The Myo streams raw EMG at 200 Hz as int8 per channel (8 channels). Its loudness is
the mean absolute value over a short window (50 ms = 10 samples), scaled by 1/128
into [0, 1]. Calibration (controllers.calibration.EmgCalibration) and the 1€ filter
come after. A pose is recognised by k nearest neighbours among example envelopes
recorded by `instrument calibrate --poses ...`, and a vote filter keeps it from
flickering between poses.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping, Sequence

import numpy as np

CHANNELS = 8
SAMPLE_RATE_HZ = 200.0


class EmgEnvelope:
    """Running mean absolute value of the last `window_s` of samples, per channel."""

    def __init__(self, window_s: float = 0.05, rate_hz: float = SAMPLE_RATE_HZ) -> None:
        self.size = max(1, round(window_s * rate_hz))
        self._ring = np.zeros((self.size, CHANNELS), dtype=np.float64)  # (window, channel) |sample|
        self._sum = np.zeros(CHANNELS, dtype=np.float64)
        self._next = 0
        self._count = 0

    def reset(self) -> None:
        """Forget all samples."""
        self._ring[:] = 0.0
        self._sum[:] = 0.0
        self._next = self._count = 0

    def push(self, samples: np.ndarray) -> None:
        """Add samples of shape (n, 8), int8 values."""
        for row in np.abs(samples.astype(np.float64)):
            self._sum += row - self._ring[self._next]
            self._ring[self._next] = row
            self._next = (self._next + 1) % self.size
            self._count = min(self._count + 1, self.size)

    def value(self) -> tuple[float, ...]:
        """The 8 envelopes in [0, 1] (0 before any sample)."""
        if self._count == 0:
            return (0.0,) * CHANNELS
        env = np.clip(self._sum / (self._count * 128.0), 0.0, 1.0)
        return tuple(float(v) for v in env)


def decode_emg(value: bytes) -> np.ndarray:
    """A 16-byte Myo EMG notification as 2 samples x 8 channels of int8, shape (2, 8)."""
    return np.frombuffer(value, dtype=np.int8).reshape(2, CHANNELS)


class PoseClassifier:
    """kNN over example envelopes, then a vote filter over the last `votes` predictions.

    The reported pose changes only when a strict majority of the recent predictions
    agree on a new label, so a single noisy window cannot switch themes.
    """

    def __init__(self, examples: Mapping[str, Sequence[Sequence[float]]], k: int = 5, votes: int = 7) -> None:
        rows, labels = [], []
        for label, samples in examples.items():
            for s in samples:
                rows.append(list(s))
                labels.append(label)
        if not rows:
            raise ValueError("a pose classifier needs at least one example envelope")
        self._x = np.asarray(rows, dtype=np.float64)  # (examples, 8)
        self._labels = labels
        self.k = max(1, min(k, len(rows)))
        self._recent: deque[str] = deque(maxlen=votes)
        self.pose: str | None = None

    def classify(self, envelope: Sequence[float]) -> str:
        """The majority label of the k nearest examples (no vote filter)."""
        d = np.sum((self._x - np.asarray(envelope, dtype=np.float64)) ** 2, axis=1)
        nearest = np.argsort(d, kind="stable")[: self.k]
        return Counter(self._labels[i] for i in nearest).most_common(1)[0][0]

    def __call__(self, envelope: Sequence[float]) -> str | None:
        """The vote-filtered pose after seeing one more envelope."""
        self._recent.append(self.classify(envelope))
        label, count = Counter(self._recent).most_common(1)[0]
        if count * 2 > self._recent.maxlen:
            self.pose = label
        return self.pose

    def reset(self) -> None:
        """Forget recent votes (after the armband reconnects)."""
        self._recent.clear()
        self.pose = None
