"""The engine's settings, its error and the read-only view a monitor gets (instrument/engine.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from controllers.frame import ControlFrame
from instrument.controls import Controls


# Python hands the GIL to a waiting thread after this long: the longest a note that is due waits for the
# generation thread to let the sending thread run (Python's default is 5 ms). `bench latency --model seqae`
# (8 events a model call), 2 x 200 gestures each on a loaded 2-core VM: schedule jitter p99 0.63 and 0.77 ms
# at 0.5 ms, 0.46 and 0.54 ms at 0.2 ms, the control -> note latency unchanged.
GIL_SWITCH_INTERVAL_S = 0.0002


class EngineError(RuntimeError):
    """The model (or another engine part) failed during play; the engine stopped cleanly."""


@dataclass
class EngineConfig:
    """Timing and behaviour of the loop."""

    lookahead_s: float = 0.2  # generated future kept ahead of the playhead
    poll_s: float = 0.001  # controller poll period (bounds the control -> note delay)
    rollback_threshold: float = 0.25  # control_distance that triggers a rollback (inf: never)
    min_rollback_s: float = 0.25  # at least this long between two rollbacks (small moves steer instead)
    strike_threshold: float = 0.5  # control_distance at which a rollback also strikes a note at once
    restart_margin_s: float = 0.002  # a regenerated future starts this far after the playhead (no late notes)
    tempo: float = 120.0  # bpm; time shifts are scaled by 120 / tempo
    channel: int = 0  # MIDI channel of the notes (0-based)
    max_note_s: float = 4.0  # no note sounds longer
    threaded: bool = True  # generation on its own thread (False: inline, deterministic)
    record_frame_s: float = 0.01  # at most 100 control frames per second are recorded
    keep_notes_s: float = 10.0  # sent notes kept for the monitor's roll
    realtime: bool = False  # ask for SCHED_FIFO (sender above generator, both below JACK's 10)


@dataclass(frozen=True)
class EngineSnapshot:
    """A read-only view of the engine for a monitor (built on the caller's thread)."""

    t: float  # session seconds now (the playhead)
    horizon: float  # end of the generated future
    frame: ControlFrame | None
    controls: Controls
    notes: tuple[tuple[int, int, float, float | None], ...]  # (pitch, velocity, start, end or None)
    tempo: float
    model: str
    device: str
    midi: str  # MIDI status line
    stats: dict = field(default_factory=dict)
    controller: dict = field(default_factory=dict)
