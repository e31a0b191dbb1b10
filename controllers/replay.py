"""Recorded and scripted controllers: JSONL record/replay and the built-in `demo`.

One JSONL format serves `monitor --json`, `--record`, `replay:` and
`render --controls`: one `ControlFrame.to_json()` object per line, `t` in seconds
from the start, absent axes null or omitted.

Both controllers here are pure functions of the clock: the frame at time t is
`f(t - t0)`. That makes renders reproducible (an offline render with a fake clock
sees exactly the same frames every time) and needs no thread.
"""

from __future__ import annotations

import bisect
import json
import math
import time
from pathlib import Path

from controllers.base import Clock, FrameSource
from controllers.errors import ControllerUnavailable
from controllers.frame import ControlFrame

DEMO_RATE_HZ = 60.0
DEMO_CYCLE_S = 30.0
DEMO_POSES = ("rest", "wave_in", "wave_out")


class FrameRecorder:
    """Appends frames to a JSONL file, one flushed line per frame (nothing lost on a crash)."""

    def __init__(self, path: str | Path, t0: float) -> None:
        self.path = Path(path)
        self.t0 = t0
        try:
            self._file = open(self.path, "w", encoding="utf-8", buffering=1)
        except OSError as err:
            raise ControllerUnavailable(f"cannot record to {self.path}: {err.strerror or err}") from None

    def write(self, frame: ControlFrame) -> None:
        """Append one frame."""
        self._file.write(json.dumps(frame.to_json(self.t0), separators=(",", ":")) + "\n")

    def close(self) -> None:
        """Flush and close the file."""
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def read_jsonl(path: str | Path) -> list[ControlFrame]:
    """All frames of a JSONL recording (t relative to its start), sorted by time."""
    path = Path(path)
    frames = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    frames.append(ControlFrame.from_json(json.loads(line)))
                except (ValueError, KeyError, TypeError, AttributeError) as err:
                    raise ControllerUnavailable(f"{path}:{number}: not a control frame ({err})") from None
    except OSError as err:
        raise ControllerUnavailable(f"cannot read recording {path}: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise ControllerUnavailable(f"cannot read recording {path}: not UTF-8 text") from None
    if not frames:
        raise ControllerUnavailable(f"recording {path} holds no frames")
    frames.sort(key=lambda fr: fr.t)
    return frames


class _ClockedSource(FrameSource):
    """A FrameSource whose frames are computed from the clock; `next_frame` paces them."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self.t0 = clock()
        self._cursor = 0  # index of the next frame next_frame() returns
        for name in ("frames", "finished"):
            self.counters.set(name, 0)

    def _due(self, cursor: int) -> float | None:
        """Clock time of frame number `cursor`, or None past the end (subclasses)."""
        raise NotImplementedError

    def next_frame(self, timeout: float) -> ControlFrame | None:
        """The next frame in time, waiting (in real time) until it is due; None at the end."""
        due = self._due(self._cursor)
        if due is None:
            self.counters.set("finished", 1)
            return None
        deadline = time.monotonic() + timeout
        while self.clock() < due:
            if time.monotonic() >= deadline:
                return None
            time.sleep(min(0.002, max(0.0, due - self.clock())))
        self._cursor += 1
        self.counters.inc("frames")
        return self.frame_at(due)

    def latest(self) -> ControlFrame:
        """The frame at the current clock time."""
        return self.frame_at(self.clock())

    def frame_at(self, now: float) -> ControlFrame:
        """The frame at clock time `now` (subclasses)."""
        raise NotImplementedError


class ReplayController(_ClockedSource):
    """Plays a JSONL recording back with its original timing; holds the last frame at the end."""

    def __init__(self, path: str | Path, *, clock: Clock) -> None:
        self.recorded = read_jsonl(path)
        super().__init__(clock)
        self._times = [fr.t for fr in self.recorded]
        self.duration = self._times[-1]

    def frame_at(self, now: float) -> ControlFrame:
        """The recorded frame in effect at `now`, stamped `t0 + its recorded time`."""
        i = bisect.bisect_right(self._times, now - self.t0 + 1e-9) - 1  # 1 ns: (t0 + t) - t0 may round below t
        if i < 0:
            return ControlFrame(t=now, present=False)
        rec = self.recorded[i]
        return ControlFrame(self.t0 + rec.t, rec.present, rec.x, rec.y, rec.size, rec.emg, rec.pose)

    def _due(self, cursor: int) -> float | None:
        return self.t0 + self._times[cursor] if cursor < len(self._times) else None


def _bump(phase: float) -> float:
    """A smooth 0..1..0 pulse for phase in [0, 1]; 0 outside."""
    return math.sin(math.pi * phase) ** 2 if 0.0 <= phase <= 1.0 else 0.0


def demo_frame(s: float, t: float | None = None) -> ControlFrame:
    """The demo gesture script at `s` seconds from its start (a pure function of `s`).

    A 30 s cycle: the hand sweeps slowly in height (13 s period) and left/right (19 s),
    breathes in size (7 s), and is lost from 24 s to 26.5 s; every 4 s a pair of EMG
    channels bursts for 1.2 s over a resting level; the pose walks rest, wave_in,
    wave_out, 10 s each. `t` stamps the frame (default `s`).
    """
    t = s if t is None else t
    c = s % DEMO_CYCLE_S
    if 24.0 <= c < 26.5:
        return ControlFrame(t=t, present=False)
    burst_index = int(s // 4.0)
    burst = _bump((s - burst_index * 4.0 - 0.5) / 1.2)
    active = (2 * (burst_index % 4), 2 * (burst_index % 4) + 1)
    emg = tuple(0.05 + (0.85 * burst if ch in active else 0.0) for ch in range(8))
    return ControlFrame(
        t=t,
        present=True,
        x=0.5 + 0.4 * math.sin(2 * math.pi * s / 19.0),
        y=0.5 + 0.4 * math.sin(2 * math.pi * s / 13.0 + 1.0),
        size=0.25 + 0.1 * math.sin(2 * math.pi * s / 7.0),
        emg=emg,
        pose=DEMO_POSES[int(s // 10.0) % len(DEMO_POSES)],
    )


class DemoController(_ClockedSource):
    """The built-in gesture script (see `demo_frame`), 60 frames per second, forever."""

    def frame_at(self, now: float) -> ControlFrame:
        """The demo frame at clock time `now`."""
        return demo_frame(round(now - self.t0, 6), now)  # µs grid: the same offset gives the same frame for any t0

    def _due(self, cursor: int) -> float | None:
        return self.t0 + cursor / DEMO_RATE_HZ
