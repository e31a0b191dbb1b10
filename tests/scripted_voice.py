"""A stand-in model for tests that must know which notes are played: a fixed cycle of notes."""

from __future__ import annotations

from instrument.controls import Controls
from models.events import Event, EventType, velocity_to_bin


class ScriptedVoice:
    """Plays `notes` ((pitch, velocity) ...) in a loop: each held `on` and followed by `gap` 10 ms steps.

    One event per engine step (VELOCITY, NOTE_ON, TIME_SHIFT, NOTE_OFF, TIME_SHIFT), deaf to the
    controls; its snapshot is the step count, so rollbacks replay it exactly.
    """

    name, device, seconds_per_shift, temperature = "script", "cpu", 0.01, 1.0
    listens: frozenset[str] = frozenset()  # deaf to the controls: gestures never roll it back

    def __init__(self, notes: list[tuple[int, int]], on: int, gap: int) -> None:
        self.notes, self.on, self.gap = notes, on, gap
        self.steps = 0

    def set_controls(self, controls: Controls) -> None:
        pass

    def next_events(self) -> tuple[Event, ...]:
        pitch, velocity = self.notes[(self.steps // 5) % len(self.notes)]
        cycle = [Event(EventType.VELOCITY, velocity_to_bin(velocity)), Event(EventType.NOTE_ON, pitch),
                 Event(EventType.TIME_SHIFT, self.on), Event(EventType.NOTE_OFF, pitch),
                 Event(EventType.TIME_SHIFT, self.gap)]
        event = cycle[self.steps % 5]
        self.steps += 1
        return (event,)

    def snapshot(self) -> int:
        return self.steps

    def restore(self, snap: int) -> None:
        self.steps = snap
