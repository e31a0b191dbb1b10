"""A heap of timed MIDI messages: the generated-but-unsent future.

Pure and single-purpose: the engine pushes what the performer produced, takes what
is `due(now)`, and on rollback throws away everything after the playhead with
`drop_after(t)`. Deadlines are absolute session seconds; messages with the same
deadline leave in the order they were pushed (a note-off before the re-strike that
follows it).
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

import mido


@dataclass(slots=True)
class TimedMessage:
    """A MIDI message and the session time (s) it must be sent at.

    `epoch` numbers the control regime the message was generated under (it changes on
    every rollback) and `music_wait` is the silence the model itself generated between
    the start of that epoch and this message; the latency report subtracts it.
    `late` is set when the message was produced after its deadline had passed.
    """

    deadline: float
    message: mido.Message
    epoch: int = 0
    music_wait: float = 0.0
    late: bool = False
    seq: int = field(default=0, compare=False)


class Scheduler:
    """Timed messages ordered by deadline, FIFO among equal deadlines."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimedMessage]] = []
        self._counter = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, item: TimedMessage) -> None:
        """Add one message."""
        item.seq = next(self._counter)
        heapq.heappush(self._heap, (item.deadline, item.seq, item))

    def extend(self, items) -> None:
        """Add several messages."""
        for item in items:
            self.push(item)

    def next_deadline(self) -> float | None:
        """The earliest deadline waiting, or None when empty."""
        return self._heap[0][0] if self._heap else None

    def due(self, now: float) -> list[TimedMessage]:
        """Remove and return every message with deadline <= now, in send order."""
        heap = self._heap
        if not heap or heap[0][0] > now:
            return []
        out = []
        while heap and heap[0][0] <= now:
            out.append(heapq.heappop(heap)[2])
        return out

    def items(self) -> list[TimedMessage]:
        """Every waiting message, in send order (a copy)."""
        return [entry[2] for entry in sorted(self._heap)]

    def horizon(self) -> float | None:
        """The latest deadline waiting, or None when empty."""
        return max(entry[0] for entry in self._heap) if self._heap else None

    def drop_after(self, t: float) -> list[TimedMessage]:
        """Remove and return every message with deadline > t (the unplayed future), in order."""
        keep = [entry for entry in self._heap if entry[0] <= t]
        dropped = sorted(entry for entry in self._heap if entry[0] > t)
        heapq.heapify(keep)
        self._heap = keep
        return [entry[2] for entry in dropped]

    def clear(self) -> list[TimedMessage]:
        """Remove and return everything, in order."""
        return self.drop_after(float("-inf"))
