"""Recorded and scripted controllers: JSONL record/replay and the built-in `demo`.

One JSONL format serves `monitor --json`, `--record`, `replay:` and
`render --controls`: one `ControlFrame.to_json()` object per line, `t` in seconds
from the start, absent axes null or omitted.

Both controllers here are pure functions of the clock: the frame at time t is
`f(t - t0)`. That makes renders reproducible (an offline render with a fake clock
sees exactly the same frames every time) and needs no thread.

A take may come from anywhere, so every frame is checked at load (`check_record`): a pose
that is a list would end play mid-song, a frame at t = 1e12 would make `render` run for
ever, and a FIFO would hang the start. Each is one line naming the file and line.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import json
import math
import os
import stat
import time
from pathlib import Path

from controllers.base import Clock, FrameSource
from controllers.errors import ControllerUnavailable
from controllers.frame import ControlFrame

DEMO_RATE_HZ = 60.0
DEMO_CYCLE_S = 30.0
DEMO_POSES = ("rest", "wave_in", "wave_out")
MAX_TAKE_S = 24 * 3600.0  # no frame later than a day: render runs for the take's length
MIN_TAKE_S = -60.0  # frames read just before the session's t0 are stamped slightly negative
MAX_BACKSTEP_S = 1.0  # frames may be written a little out of order; further back is not a recording
MAX_TAKE_BYTES = 256 * 2**20  # ~6 h of 60 fps frames with EMG; read whole into memory
MAX_POSE_LEN = 64


class FrameRecorder:
    """Appends frames to a JSONL file, one whole line per frame, each written at once (nothing lost on a crash).

    A write that fails (a full disk) is cut back to the last whole line, so the file always reads
    back as a take, and the OSError is raised to the caller.
    """

    def __init__(self, path: str | Path, t0: float) -> None:
        self.path = Path(path)
        self.t0 = t0
        self._size = 0  # bytes of whole lines written
        try:
            self._file = open(self.path, "wb", buffering=0)
        except OSError as err:
            raise ControllerUnavailable(f"cannot record to {self.path}: {err.strerror or err}") from None

    def write(self, frame: ControlFrame) -> None:
        """Append one frame (OSError when it cannot: the file then ends with the previous frame)."""
        line = (json.dumps(frame.to_json(self.t0), separators=(",", ":")) + "\n").encode("utf-8")
        view = memoryview(line)
        try:
            while view:
                written = self._file.write(view)
                if not written:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
                view = view[written:]
        except OSError as err:
            with contextlib.suppress(OSError):
                os.ftruncate(self._file.fileno(), self._size)
            err.filename = err.filename or str(self.path)
            raise
        self._size += len(line)

    def close(self) -> None:
        """Close the file (idempotent)."""
        self._file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_record(record: object) -> None:
    """Raise ValueError naming the first field of a JSONL record that a control frame cannot hold."""
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object per line, got {type(record).__name__}")
    t = record.get("t")
    if not (_is_number(t) and MIN_TAKE_S <= t <= MAX_TAKE_S):
        raise ValueError(f"t must be a finite number of seconds in [{MIN_TAKE_S:g}, {MAX_TAKE_S:g}], got {t!r:.40}")
    if not isinstance(record.get("present", True), bool):
        raise ValueError(f"present must be true or false, got {record['present']!r:.40}")
    for axis in ("x", "y", "size"):
        value = record.get(axis)
        if value is not None and not _is_number(value):
            raise ValueError(f"{axis} must be a finite number or null, got {value!r:.40}")
    emg = record.get("emg")
    if emg is not None and not (isinstance(emg, list) and len(emg) == 8 and all(_is_number(v) for v in emg)):
        raise ValueError(f"emg must be a list of 8 finite numbers or null, got {emg!r:.60}")
    pose = record.get("pose")
    if pose is not None and not (isinstance(pose, str) and len(pose) <= MAX_POSE_LEN):
        raise ValueError(f"pose must be a name (a string of up to {MAX_POSE_LEN} characters) or null, got {pose!r:.40}")


def _open_take(path: Path):
    """Open a take for reading; a FIFO, device or folder is refused before a read could block."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: opening a FIFO must not wait for a writer
    except OSError as err:
        raise ControllerUnavailable(f"cannot read recording {path}: {err.strerror or err}") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_TAKE_BYTES:
        os.close(fd)
        why = "not a regular file (a FIFO, device or folder)" if not stat.S_ISREG(info.st_mode) else \
            f"{info.st_size / 2**20:.0f} MB, more than a take can be ({MAX_TAKE_BYTES // 2**20} MB)"
        raise ControllerUnavailable(f"cannot read recording {path}: {why}")
    os.set_blocking(fd, True)
    return os.fdopen(fd, encoding="utf-8")


def read_jsonl(path: str | Path) -> list[ControlFrame]:
    """All frames of a JSONL recording (t relative to its start), checked and sorted by time."""
    path = Path(path)
    frames = []
    latest = -math.inf
    try:
        with _open_take(path) as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    check_record(record)
                    if record["t"] < latest - MAX_BACKSTEP_S:
                        raise ValueError(f"t goes back from {latest:g} to {record['t']:g} s")
                    latest = max(latest, record["t"])
                    frames.append(ControlFrame.from_json(record))
                except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as err:
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
        self.duration = max(0.0, self._times[-1])  # the take's real length: at most MAX_TAKE_S

    def frame_at(self, now: float) -> ControlFrame:
        """The recorded frame in effect at `now`, stamped `t0 + its recorded time`."""
        i = bisect.bisect_right(self._times, now - self.t0 + 1e-9) - 1  # 1 ns: (t0 + t) - t0 may round below t
        if i < 0:
            return ControlFrame(t=now, present=False)
        rec = self.recorded[i]
        return ControlFrame(self.t0 + rec.t, rec.present, rec.x, rec.y, rec.size, rec.emg, rec.pose,
                            rec.roll, rec.pitch, rec.yaw)

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
