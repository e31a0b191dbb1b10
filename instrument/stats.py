"""Timing statistics the engine keeps without allocating: fixed-size rings of samples."""

from __future__ import annotations

import numpy as np


class Samples:
    """The last `capacity` values of one measurement (seconds), with cheap percentiles."""

    def __init__(self, capacity: int = 65536) -> None:
        self._values = np.zeros(capacity, dtype=np.float64)
        self._capacity = capacity
        self.count = 0  # all values ever added
        self.max = 0.0

    def add(self, value: float) -> None:
        """Record one value (O(1), no allocation)."""
        self._values[self.count % self._capacity] = value
        self.count += 1
        if value > self.max:
            self.max = value

    def values(self) -> np.ndarray:
        """A copy of the values kept."""
        return self._values[: min(self.count, self._capacity)].copy()

    def percentile(self, q: float) -> float | None:
        """The q-th percentile of the values kept, or None when empty."""
        kept = self.values()
        return float(np.percentile(kept, q)) if kept.size else None

    def summary_ms(self, prefix: str) -> dict[str, float | None]:
        """{prefix_p50_ms, prefix_p99_ms, prefix_max_ms} rounded to microseconds."""
        kept = self.values()
        if not kept.size:
            return {f"{prefix}_p50_ms": None, f"{prefix}_p99_ms": None, f"{prefix}_max_ms": None}
        p50, p99 = np.percentile(kept, [50, 99])
        return {f"{prefix}_p50_ms": round(p50 * 1e3, 3), f"{prefix}_p99_ms": round(p99 * 1e3, 3),
                f"{prefix}_max_ms": round(float(kept.max()) * 1e3, 3)}
