"""EMG processing for the Myo: the mean-absolute-value envelope and a kNN pose classifier.

The Myo streams raw EMG at 200 Hz as int8 per channel (8 channels). Its loudness is
the mean absolute value over a short window (50 ms = 10 samples), scaled by 1/128
into [0, 1]. Calibration (controllers.calibration.EmgCalibration) and the 1€ filter
come after. A pose is recognised by k nearest neighbours among example envelopes
recorded by `instrument calibrate --poses ...`, and a vote filter keeps it from
flickering between poses.
"""

from __future__ import annotations

import struct
from collections import Counter, deque
from collections.abc import Mapping, Sequence

import numpy as np

CHANNELS = 8
SAMPLE_RATE_HZ = 200.0


class EmgEnvelope:
    """Running mean absolute value of the last `window_s` of samples, per channel.

    Plain Python on purpose: 16 values per notification are cheaper as ints than as
    numpy arrays (about 10 us instead of 40 us per notification).
    """

    def __init__(self, window_s: float = 0.05, rate_hz: float = SAMPLE_RATE_HZ) -> None:
        self.size = max(1, round(window_s * rate_hz))
        self.reset()

    def reset(self) -> None:
        """Forget all samples."""
        self._ring = [[0] * CHANNELS for _ in range(self.size)]  # (window, channel) |sample|
        self._sum = [0] * CHANNELS
        self._next = self._count = 0

    def push(self, samples) -> None:
        """Add samples: rows of 8 int8 values, e.g. `decode_emg(value)` of shape (n, 8)."""
        for row in samples:
            old, new = self._ring[self._next], [abs(int(v)) for v in row]
            self._sum = [s + n - o for s, n, o in zip(self._sum, new, old)]
            self._ring[self._next] = new
            self._next = (self._next + 1) % self.size
            self._count = min(self._count + 1, self.size)

    def value(self) -> tuple[float, ...]:
        """The 8 envelopes in [0, 1] (0 before any sample)."""
        if self._count == 0:
            return (0.0,) * CHANNELS
        scale = 1.0 / (self._count * 128.0)
        return tuple(min(1.0, s * scale) for s in self._sum)


def decode_emg(value: bytes) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """A 16-byte Myo EMG notification as 2 samples x 8 channels of int8."""
    ints = struct.unpack("16b", value)
    return ints[:CHANNELS], ints[CHANNELS:]


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
