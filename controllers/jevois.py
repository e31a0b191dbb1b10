"""JeVois smart camera over USB serial: the pure line parser and the pyserial shell.

The camera runs ObjectTracker and sends JeVois "standardized serial messages"
(http://jevois.org/doc/UserSerialStyle.html) in 2D:

    T2 x y                       terse: centre only
    N2 id x y w h                normal: centre and size
    D2 id x1 y1 ... x4 y4 [extra]   detail: corners (also `D2 id 4 x1 y1 ...`)
    F2 id n x1 y1 ... xn yn [extra]   fish: n vertices
    MARK START / MARK STOP       frame brackets (sermark)

optionally behind a stamp (`2941 `, `769/15:52:42 `), with decimals when serprec > 0.
Coordinates are standardized: x in -1000..1000, y in -750..750 with down positive.
We map both to [0, 1] with y pointing up. Everything else (OK, ALIVE, INFO:, INF/DBG/
ERR/FTL logs, blank lines, bytes that are not UTF-8, garbage) becomes a counted `Skip`.
"""

from __future__ import annotations

import logging
import math
import os
import re
from dataclasses import dataclass

from controllers.base import Clock, ThreadedController
from controllers.errors import ControllerUnavailable
from controllers.filters import CameraConditioner
from controllers.frame import ControlFrame

log = logging.getLogger(__name__)

X_HALF, Y_HALF = 1000.0, 750.0  # standardized coordinate half-ranges
MAX_LINE = 4096  # bytes; longer lines are discarded up to the next newline
STARTUP = (
    "ping",
    "setmapping2 YUYV 320 240 60.0 JeVois ObjectTracker",
    "setpar serout USB",  # must follow setmapping2: loading a module resets serial settings
    "setpar serstyle Normal",
    "setpar sermark Stop",
    "streamon",
)


@dataclass(frozen=True, slots=True)
class Detection:
    """One tracked object in [0, 1] units (y up); size is None for terse T2 lines."""

    x: float
    y: float
    size: float | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Marker:
    """`MARK START` or `MARK STOP`: the brackets around one video frame's messages."""

    kind: str  # "START" | "STOP"


@dataclass(frozen=True, slots=True)
class Skip:
    """A line that carries no detection; `reason` names the counter it goes to."""

    reason: str  # blank | ok | alive | err | log | not_utf8 | garbage | unsupported
    text: str = ""


ParsedLine = Detection | Marker | Skip

_STAMP = re.compile(r"^[0-9][0-9:/.\-]*$")  # frame number, time, frame/time, frame/date/time
_LOG_PREFIXES = ("INF ", "DBG ", "FTL ", "WRN ")
_REPLIES = {"OK": "ok", "ALIVE": "alive"}


def _number(token: str) -> float:
    value = float(token)  # raises ValueError on garbage
    if not math.isfinite(value):
        raise ValueError(f"non-finite value {token!r}")
    return value


def _unit(value: float, half: float) -> float:
    """A standardized coordinate mapped to [0, 1] (clipped)."""
    return min(1.0, max(0.0, (value + half) / (2.0 * half)))


def _extent(width: float, height: float) -> float:
    """Object size as a fraction of the frame width (x and y share units per pixel)."""
    return min(1.0, max(0.0, max(abs(width), abs(height)) / (2.0 * X_HALF)))


def _from_vertices(values: list[float], obj_id: str | None) -> Detection:
    xs, ys = values[0::2], values[1::2]
    cx, cy = sum(xs) / len(xs), sum(ys) / len(ys)
    return Detection(_unit(cx, X_HALF), 1.0 - _unit(cy, Y_HALF), _extent(max(xs) - min(xs), max(ys) - min(ys)), obj_id)


def _numbers_then_extra(tokens: list[str]) -> list[float]:
    """All tokens as numbers, allowing one trailing non-numeric `extra` token."""
    try:
        return [_number(t) for t in tokens]
    except ValueError:
        return [_number(t) for t in tokens[:-1]]


def _parse_message(tag: str, args: list[str]) -> ParsedLine:
    if tag == "T2" and len(args) == 2:
        x, y = (_number(a) for a in args)
        return Detection(_unit(x, X_HALF), 1.0 - _unit(y, Y_HALF))
    if tag == "N2" and len(args) in (4, 5):
        obj_id = args[0] if len(args) == 5 else None
        x, y, w, h = (_number(a) for a in args[-4:])
        return Detection(_unit(x, X_HALF), 1.0 - _unit(y, Y_HALF), _extent(w, h), obj_id)
    if tag == "D2" and len(args) >= 9:
        values = _numbers_then_extra(args[1:])
        if len(values) == 9 and values[0] == 4:  # `D2 id 4 x1 y1 ...`: with vertex count
            values = values[1:]
        if len(values) == 8:
            return _from_vertices(values, args[0])
    if tag == "F2" and len(args) >= 4:
        n = int(_number(args[1]))
        values = _numbers_then_extra(args[2:])
        if 1 <= n == len(values) // 2 and len(values) == 2 * n:
            return _from_vertices(values, args[0])
    if tag in ("T2", "N2", "D2", "F2"):
        return Skip("garbage")
    return Skip("unsupported")


def parse_line(line: bytes | str) -> ParsedLine:
    """Parse one serial line (without or with its CR/LF); never raises."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            return Skip("not_utf8")
    text = line.strip()
    if not text:
        return Skip("blank")
    if text in _REPLIES:
        return Skip(_REPLIES[text], text)
    if text.startswith("ERR"):
        return Skip("err", text)
    if text.startswith("INFO:") or text.startswith(_LOG_PREFIXES) or text in ("INF", "DBG", "FTL"):
        return Skip("log", text)
    tokens = text.split()
    if len(tokens) > 1 and _STAMP.match(tokens[0]) and tokens[1][:1].isalpha():
        tokens = tokens[1:]  # serstamp prefix
    if tokens[:2] == ["MARK", "START"] or tokens[:2] == ["MARK", "STOP"]:
        return Marker(tokens[1]) if len(tokens) == 2 else Skip("garbage")
    try:
        return _parse_message(tokens[0], tokens[1:])
    except (ValueError, OverflowError):
        return Skip("garbage")


class FrameMarks:
    """Which detections make up one video frame, from the MARK START / MARK STOP brackets (pure: times passed in).

    Inside a marked frame several detections are several objects: only the largest is kept.
    Outside one, every detection is its own frame. With `sermark Stop` (as STARTUP sets) each
    STOP opens the next frame; a camera that sends START opens frames with it and closes them
    with STOP. A frame open for several marker periods means the markers stopped (serout
    restarted, sermark off): detections count alone again until the next marker.
    """

    def __init__(self) -> None:
        self.inside = False  # in a marked frame
        self.period: float | None = None  # smoothed time between STOPs: one video frame
        self._opened_at = self._last_stop = -math.inf
        self._starts = self._seen = False  # the camera sends MARK START too; a detection since the last marker
        self._best = -1.0  # the largest object published in the current frame

    def timeout(self) -> float:
        """How long a marked frame may stay open: three video frames (unknown yet: 0.25 s), 50..500 ms."""
        return 0.25 if self.period is None else min(0.5, max(0.05, 3.0 * self.period))

    def detection(self, size: float, now: float) -> bool:
        """A detection of `size` at `now`; True when it is to be published."""
        if self.inside and now - self._opened_at > self.timeout():
            self.inside = False  # no marker for several frames: the camera stopped marking
        first, self._seen = not self._seen, True
        if self.inside and not (first or size > self._best):
            return False
        self._best = max(self._best, size)
        return True

    def marker(self, kind: str, now: float) -> bool:
        """A MARK START or STOP at `now`; True when it ends a frame that held no detection (the hand is lost)."""
        if kind == "START":
            self._starts = True
            self._open(now)
            return False
        empty = not self._seen
        interval = now - self._last_stop
        if 0.0 < interval < 1.0:  # a running camera; longer gaps are pauses, not frames
            self.period = interval if self.period is None else 0.8 * self.period + 0.2 * interval
        self._last_stop = now
        self._open(now)  # with START markers, STOP closes the frame instead
        self.inside = not self._starts
        return empty

    def _open(self, now: float) -> None:
        self.inside, self._seen, self._best, self._opened_at = True, False, -1.0, now


class LineBuffer:
    """Splits a byte stream into lines; caps memory at `max_len` bytes per line.

    A line longer than `max_len` is discarded up to its newline and counted in
    `overlong`; the partial line stays buffered until its newline arrives.
    """

    def __init__(self, max_len: int = MAX_LINE) -> None:
        self.max_len = max_len
        self.overlong = 0
        self._buf = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return the complete lines (without CR/LF) they finish."""
        lines: list[bytes] = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            if self._discarding:
                self._discarding = False
            else:
                self._buf += data[start:end]
                if len(self._buf) > self.max_len:
                    self.overlong += 1
                else:
                    lines.append(bytes(self._buf).rstrip(b"\r"))
            self._buf.clear()
            start = end + 1
        if not self._discarding:
            self._buf += data[start:]
            if len(self._buf) > self.max_len:
                self.overlong += 1
                self._discarding = True
                self._buf.clear()
        return lines

    def clear(self) -> None:
        """Drop any partial line (after a reconnect)."""
        self._buf.clear()
        self._discarding = False


def check_port(path: str) -> None:
    """Refuse a port that is not there at start (relative paths too), in one line; later losses are retried."""
    if not os.path.exists(path) or os.path.isdir(path):
        where = path if os.path.isabs(path) else f"{path} ({os.path.abspath(path)})"
        raise ControllerUnavailable(f"no JeVois at {where}: no such device; plug it in, name its port "
                                    "(jevois:/dev/ttyACMn), or use --controller demo")


class JeVoisController(ThreadedController):
    """Frames from a JeVois camera on a serial port; survives unplug and replug.

    The device thread opens the port, runs the start-up sequence (each command is
    answered by OK or ERR; an ERR is logged and counted, never a hang; no answer
    within `reply_timeout_s` means "warn and keep listening"), then streams. The
    hand is lost (`present=False`) when a video frame ends (MARK STOP) without a
    detection, or when no detection arrives for `lost_after_s`. When the port fails
    it is reopened with backoff and the start-up is run again.
    """

    def __init__(self, path: str = "/dev/ttyACM0", *, clock: Clock, reach=None, raw: bool = False,
                 lost_after_s: float = 0.5, reply_timeout_s: float = 1.0, module_load_timeout_s: float = 5.0,
                 baudrate: int = 115200) -> None:
        check_port(path)
        super().__init__(clock, f"jevois:{path}")
        self.path = path
        self.baudrate = baudrate
        self.lost_after_s = lost_after_s
        self.reply_timeout_s = reply_timeout_s
        self.module_load_timeout_s = module_load_timeout_s
        self.conditioner = CameraConditioner(reach=reach, raw=raw)
        for name in ("connected", "reconnects", "lines", "detections", "garbage", "not_utf8",
                     "unsupported", "overlong", "startup_errors", "no_answer", "thread_errors"):
            self.counters.set(name, 0)
        self._lines = LineBuffer()
        self._reply: Skip | None = None
        self._present = False
        self._last_detection_t = -math.inf
        self._marks = FrameMarks()
        self._ever_connected = False
        self._missing_logged = False
        self.start()

    # -- the device thread -------------------------------------------------------
    def _serve(self) -> None:
        import serial  # pyserial; imported here so parsing needs no serial package

        try:
            port = serial.Serial(self.path, self.baudrate, timeout=0.02, write_timeout=1.0)
        except (serial.SerialException, OSError, ValueError) as err:
            if not self._missing_logged:
                log.warning("JeVois %s not available (%s); retrying until it appears", self.path, err)
                self._missing_logged = True
            return
        self._missing_logged = False
        self._lines.clear()
        if self._ever_connected:
            self.counters.inc("reconnects")
            log.warning("JeVois %s is back; rerunning start-up", self.path)
        self._ever_connected = True
        self.counters.set("connected", 1)
        try:
            self._startup(port)
            while not self.stopping:
                self._pump(port)
        except (serial.SerialException, OSError) as err:
            self.last_error = f"device lost: {err}"
            log.warning("JeVois %s lost (%s); reconnecting", self.path, err)
        finally:
            port.close()
            self.counters.set("connected", 0)
            self._hand_lost(self.clock())

    def _startup(self, port) -> None:
        for command in STARTUP:
            if self.stopping:
                return
            timeout = self.module_load_timeout_s if command.startswith("setmapping") else self.reply_timeout_s
            port.write((command + "\r\n").encode("ascii"))
            reply = self._await_reply(port, timeout)
            if reply is None:
                self.counters.inc("no_answer")
                log.warning(
                    "JeVois %s did not answer %r within %.1f s; listening anyway "
                    "(a camera set up by its own script streams without being asked)",
                    self.path, command, timeout,
                )
                return
            if reply.reason == "err":
                self.counters.inc("startup_errors")
                self.last_error = f"JeVois refused {command!r}: {reply.text}"
                log.warning("JeVois %s refused %r: %s", self.path, command, reply.text)

    def _await_reply(self, port, timeout: float) -> Skip | None:
        """Read (and process) lines until OK/ERR or `timeout`; ALIVE alone also answers."""
        self._reply = None
        deadline = self.clock() + timeout
        alive_at = None
        while not self.stopping:
            now = self.clock()
            if self._reply is not None:
                if self._reply.reason in ("ok", "err"):
                    return self._reply
                alive_at = alive_at or now  # ALIVE: an OK may follow shortly
                if now - alive_at > 0.2:
                    return self._reply
            elif now > deadline:
                return None
            self._pump(port)
        return None

    def _pump(self, port) -> None:
        data = port.read(port.in_waiting or 1)
        now = self.clock()
        if data:
            for line in self._lines.feed(data):
                self._handle(parse_line(line), now)
            self.counters.set("overlong", self._lines.overlong)
        if self._present and now - self._last_detection_t > self.lost_after_s:
            self._hand_lost(now)

    def _handle(self, parsed: ParsedLine, now: float) -> None:
        self.counters.inc("lines")
        if isinstance(parsed, Detection):
            self.counters.inc("detections")
            self._last_detection_t = now
            if self._marks.detection(parsed.size if parsed.size is not None else 0.0, now):
                self._publish(parsed, now)
        elif isinstance(parsed, Marker):
            if self._marks.marker(parsed.kind, now) and self._present:
                self._hand_lost(now)
        elif parsed.reason in ("ok", "alive", "err"):
            self._reply = parsed
        elif parsed.reason not in ("blank", "log"):
            self.counters.inc(parsed.reason)

    def _publish(self, det: Detection, now: float) -> None:
        if not self._present:
            self.conditioner.reset()
        self._present = True
        self.frames.put(self.conditioner.frame(det.x, det.y, det.size, now))

    def _hand_lost(self, now: float) -> None:
        if self._present or self.frames.seq == 0:
            self._present = False
            self.frames.put(ControlFrame(t=now, present=False))
