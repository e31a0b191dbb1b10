"""The crash-safe .mid recorder: what was sent, with its real timestamps, always a valid file."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path

import mido



class FileSink:
    """Records what was sent, with its real timestamps, to a Standard MIDI File that is always valid.

    The file is a format-0 .mid whose end-of-track marker and track length are rewritten at
    every flush (once a second and at close), so a crash loses at most the last second and
    never leaves a truncated file. The engine ends every sounding note (from its ledger) before close.

    A write that fails (a full disk) cuts the file back to its last complete flush and stops the
    recording: `on_error(path, err)` is told once, or the OSError is raised when there is no
    `on_error`. A failure at construction always raises: the file could not be started.
    """

    wants_clock = False
    _EOT = b"\x00\xff\x2f\x00"

    def __init__(self, path: str | Path, tempo_bpm: float = 120.0, ticks_per_beat: int = 960,
                 flush_s: float = 1.0, name: str = "Deep Symphony session",
                 on_error: Callable[[Path, OSError], None] | None = None) -> None:
        self.path = Path(path)
        self.ticks_per_second = ticks_per_beat * tempo_bpm / 60.0
        self.ticks_per_beat = ticks_per_beat
        self._base_t, self._base_tick = 0.0, 0  # ticks count from here at ticks_per_second (a tempo change moves it)
        self.flush_s = flush_s
        self.on_error = on_error
        self._pending = bytearray()
        self._last_tick = 0
        self._last_flush = 0.0
        self._closed = False
        self._stop_requested = False
        tempo = round(60_000_000 / tempo_bpm)
        title = name.encode("latin-1", "replace")[:127]
        first = (b"\x00\xff\x03" + bytes([len(title)]) + title
                 + b"\x00\xff\x51\x03" + tempo.to_bytes(3, "big"))
        header = (b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
                  + ticks_per_beat.to_bytes(2, "big") + b"MTrk" + (0).to_bytes(4, "big"))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "wb", buffering=0)  # unbuffered: every write lands, or fails, now
        self._track_start = self._eot_at = len(header)
        self._pending += first
        try:
            _pwrite_all(self._file.fileno(), header, 0)
            self._write_pending()
        except OSError as err:
            self._end()
            err.filename = err.filename or str(self.path)
            raise

    def send(self, message: mido.Message, t: float) -> None:
        """Append one message at session time `t` (buffered until the next flush)."""
        if self._closed or self._stop_requested or message.type in ("clock", "start", "stop", "continue"):
            return
        tick = max(self._last_tick, self._base_tick + round((t - self._base_t) * self.ticks_per_second))
        _write_varlen(self._pending, tick - self._last_tick)
        self._pending += bytes(message.bytes())
        self._last_tick = tick

    def meta(self, message: mido.MetaMessage, t: float) -> None:
        """Append a meta event (tempo, key signature) at session time `t`; a tempo change rescales later ticks.

        Times stay the real send times: from `t` on, a beat lasts as long as the new tempo says.
        """
        if self._closed or self._stop_requested:
            return
        self.send(message, t)
        if message.type == "set_tempo":
            self._base_t, self._base_tick = t, self._last_tick
            self.ticks_per_second = self.ticks_per_beat * 1e6 / message.tempo

    def maintain(self, now: float) -> None:
        """Flush if the last flush is older than flush_s."""
        if now - self._last_flush >= self.flush_s:
            self._last_flush = now
            self.flush()

    def flush(self) -> None:
        """Write what is pending, then a fresh end-of-track and the track length."""
        if self._closed:
            return
        if self._stop_requested:
            self._end()
            return
        try:
            self._write_pending()
        except OSError as err:
            self._fail(err)

    def stop_recording(self) -> None:
        """Record nothing more (safe from any thread): the file keeps what its last flush wrote."""
        self._stop_requested = True

    def close(self, t: float | None = None) -> None:
        """Flush, sync and close (idempotent)."""
        if self._closed:
            return
        self.flush()
        if self._closed:
            return
        try:
            os.fsync(self._file.fileno())
        except OSError as err:
            self._end()
            if self.on_error is None:
                raise
            self.on_error(self.path, err)
            return
        self._end()

    def _write_pending(self) -> None:
        fd = self._file.fileno()
        end = self._eot_at + len(self._pending)
        _pwrite_all(fd, bytes(self._pending) + self._EOT, self._eot_at)
        _pwrite_all(fd, (end + len(self._EOT) - self._track_start).to_bytes(4, "big"), self._track_start - 4)
        self._eot_at = end
        self._pending.clear()

    def _fail(self, err: OSError) -> None:
        """Cut the file back to its last complete flush (only bytes it already holds are rewritten), stop."""
        fd = self._file.fileno()
        try:
            _pwrite_all(fd, self._EOT, self._eot_at)
            os.ftruncate(fd, self._eot_at + len(self._EOT))
            _pwrite_all(fd, (self._eot_at + len(self._EOT) - self._track_start).to_bytes(4, "big"),
                        self._track_start - 4)
        except OSError:
            pass  # best effort: the length and marker of the last flush are most likely still in place
        self._end()
        if self.on_error is None:
            raise err
        self.on_error(self.path, err)

    def _end(self) -> None:
        self._closed = True
        self._pending.clear()
        self._file.close()


def _pwrite_all(fd: int, data: bytes, offset: int) -> None:
    """Write all of `data` at `offset` (a short write is continued), or raise OSError."""
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view, offset = view[n:], offset + n


def _write_varlen(buf: bytearray, value: int) -> None:
    """Append a MIDI variable-length quantity."""
    chunk = [value & 0x7F]
    value >>= 7
    while value:
        chunk.append(0x80 | (value & 0x7F))
        value >>= 7
    buf.extend(reversed(chunk))

