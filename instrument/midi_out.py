"""MIDI output: the rtmidi port (ALSA or JACK), the crash-safe .mid recorder, a test sink.

Every sink has `send(message, t)` (t = session seconds when it was really sent),
`maintain(now)` (cheap housekeeping, called by the engine when it is idle) and
`close(t)`. `MidiSink` silences what it sent when it closes, whoever closes it.

Choosing the API: `auto` takes ALSA when the sequencer (/dev/snd/seq) exists,
otherwise JACK when a JACK server answers. We always name the API: rtmidi's default
constructor tries ALSA and raises even when JACK runs. A JACK server that dies is
noticed by a watchdog (a socket probe, no JACK calls), the port is dropped at once
(rtmidi busy-waits on a dead JACK client's full buffer) and reopened when a server
answers again; the engine and the recording carry on meanwhile.
"""

from __future__ import annotations

import ctypes
import glob
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import mido
import rtmidi

from instrument.errors import MidiUnavailable, UsageError

DEFAULT_PORT_NAME = "Deep Symphony"
APIS = {"alsa": rtmidi.API_LINUX_ALSA, "jack": rtmidi.API_UNIX_JACK}
NO_MIDI_HELP = ("start a JACK server (`jackd -S -d dummy`, or with your sound card `jackd -d alsa`) "
                "or load the ALSA sequencer (`sudo modprobe snd-seq`)")
StatusCallback = Callable[[str, str], None]  # (kind, one-line message)


# -------------------------------------------------------------------- MIDI systems
def alsa_available() -> bool:
    """True when the ALSA sequencer device exists."""
    return os.path.exists("/dev/snd/seq")


def jack_server_running(server: str | None = None) -> bool:
    """True when a JACK server answers on its socket (no libjack call, so nothing is printed)."""
    name = server or os.environ.get("JACK_DEFAULT_SERVER") or "default"
    for folder in ("/dev/shm", "/tmp"):  # jack2 on Linux, then jack1 / other builds
        path = f"{folder}/jack_{name}_{os.getuid()}_0"
        if not os.path.exists(path):
            continue
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            return True
        except OSError:
            return False  # a stale socket left by a killed server
        finally:
            probe.close()
    return False


def choose_api(requested: str) -> str:
    """'alsa' or 'jack' for `--midi-api auto|alsa|jack`; MidiUnavailable when nothing is there."""
    if requested not in ("auto", "alsa", "jack"):
        raise UsageError(f"unknown MIDI API {requested!r}: use auto, alsa or jack")
    if requested == "alsa" or (requested == "auto" and alsa_available()):
        if not alsa_available():
            raise MidiUnavailable(f"no ALSA sequencer (/dev/snd/seq is missing): {NO_MIDI_HELP}")
        return "alsa"
    if requested == "jack" or jack_server_running():
        if not jack_server_running():
            raise MidiUnavailable(f"no JACK server is running: {NO_MIDI_HELP}")
        return "jack"
    raise MidiUnavailable(f"no MIDI system: no ALSA sequencer (/dev/snd/seq) and no JACK server; {NO_MIDI_HELP}")


_libjack_quiet = False


def quiet_libjack() -> None:
    """Route libjack's own error/info printing to a C no-op, so a dying server costs one line of ours."""
    global _libjack_quiet
    if _libjack_quiet:
        return
    _libjack_quiet = True
    site = os.path.dirname(os.path.dirname(rtmidi.__file__))
    candidates = glob.glob(os.path.join(site, "python_rtmidi*", "libjack*.so*")) + ["libjack.so.0"]
    for candidate in candidates:  # the wheel bundles its own libjack; a system build links the system one
        try:
            lib = ctypes.CDLL(candidate)
        except OSError:
            continue
        # strlen(const char *) has the shape of a jack message callback and does nothing visible;
        # a C function (not a Python callback) is safe on JACK's threads, even at interpreter exit.
        noop = ctypes.cast(ctypes.CDLL(None).strlen, ctypes.c_void_p)
        for setter in ("jack_set_error_function", "jack_set_info_function"):
            getattr(lib, setter).argtypes = [ctypes.c_void_p]
            getattr(lib, setter)(noop)
        return


def _new_out(api: str, client_name: str) -> rtmidi.MidiOut:
    if api == "jack":
        quiet_libjack()
        if not jack_server_running():
            raise MidiUnavailable(f"no JACK server is running: {NO_MIDI_HELP}")
    try:
        return rtmidi.MidiOut(APIS[api], name=client_name)
    except rtmidi.SystemError as err:
        raise MidiUnavailable(f"cannot open the {api.upper()} MIDI system ({err}): {NO_MIDI_HELP}") from None


def list_ports(api: str) -> tuple[list[str], list[str]]:
    """(output destinations, input sources) visible through `api`; raises MidiUnavailable."""
    out = _new_out(api, "Deep Symphony ports")
    try:
        inp = rtmidi.MidiIn(APIS[api], name="Deep Symphony ports")
    except rtmidi.SystemError as err:
        raise MidiUnavailable(str(err)) from None
    try:
        return list(out.get_ports()), list(inp.get_ports())
    finally:
        out.delete()
        inp.delete()


def find_port(ports: list[str], name: str) -> int:
    """Index of the port whose name contains `name` (case-insensitive); UsageError listing them if none."""
    wanted = name.lower()
    exact = [i for i, p in enumerate(ports) if p.lower() == wanted]
    partial = [i for i, p in enumerate(ports) if wanted in p.lower()]
    if exact or partial:
        return (exact or partial)[0]
    listed = ", ".join(repr(p) for p in ports) or "none"
    raise UsageError(f"no MIDI port matching {name!r}; ports available: {listed}")


# -------------------------------------------------------------------- sinks
class MidiSink:
    """A virtual output port (default) or a connection to an existing port, kept alive by a watchdog."""

    wants_clock = True
    WATCH_S = 0.25  # how often the watchdog checks the server (and retries when it is gone)
    MAX_UNCHECKED = 1000  # sends between liveness checks; far below rtmidi's JACK buffer (~2300)

    def __init__(self, port: str = DEFAULT_PORT_NAME, connect: str | None = None, api: str = "auto",
                 on_status: StatusCallback | None = None) -> None:
        self.port_name = port
        self.connect = connect
        self.requested_api = api
        self.on_status = on_status or (lambda kind, message: None)
        self.api: str | None = None
        self.status = "closed"
        self._out: rtmidi.MidiOut | None = None
        self._lock = threading.Lock()
        self._unchecked = 0
        self._stop = threading.Event()
        try:
            self.api = choose_api(api)
            self._open()
        except MidiUnavailable as err:
            self._report("midi_unavailable", f"{err}; still recording to file, will connect when it appears")
        self._watchdog = threading.Thread(target=self._watch, name="midi-watchdog", daemon=True)
        self._watchdog.start()

    @property
    def connected(self) -> bool:
        """True while messages reach a MIDI system."""
        return self._out is not None

    @property
    def full_port_name(self) -> str:
        """The port as other programs see it (best effort)."""
        return self.connect if self.connect else f"{self.port_name}:{self.port_name}" if self.api == "jack" else self.port_name

    def send(self, message: mido.Message, t: float) -> None:
        """Send one message now (dropped while no MIDI system is there; the engine's ledger still tracks it)."""
        with self._lock:
            out = self._out
            if out is None:
                return
            self._unchecked += 1
            if self._unchecked > self.MAX_UNCHECKED and self.api == "jack":
                self._unchecked = 0
                if not jack_server_running():
                    self._lose_locked()
                    return
            out.send_message(message.bytes())

    def maintain(self, now: float) -> None:
        """Nothing to do: the watchdog thread owns reconnection."""

    def close(self, t: float = 0.0) -> None:
        """Close the port (idempotent). The engine has silenced it first, from its note ledger."""
        if self._stop.is_set():
            return
        self._stop.set()
        with self._lock:
            out, self._out = self._out, None
        if out is not None:
            out.close_port()
            out.delete()
        self.status = "closed"

    # -- port management (watchdog thread and constructor) --------------------------
    def _open(self) -> None:
        out = _new_out(self.api, self.port_name)
        try:
            if self.connect:
                out.open_port(find_port(out.get_ports(), self.connect), self.port_name)
            else:
                out.open_virtual_port(self.port_name)
        except rtmidi.SystemError as err:
            out.delete()
            raise MidiUnavailable(f"cannot open MIDI port {self.port_name!r} on {self.api.upper()}: {err}") from None
        with self._lock:
            self._out = out
            self._unchecked = 0
        where = f"connected to {self.connect!r}" if self.connect else f"virtual port {self.full_port_name!r}"
        self.status = f"{self.api.upper()} {where}"

    def _lose_locked(self) -> None:
        dead, self._out = self._out, None
        self.status = "MIDI server lost"
        # Closing a client of a dead server waits ~1 s inside libjack: not on this thread.
        threading.Thread(target=_close_quietly, args=(dead,), daemon=True).start()
        self._report("midi_lost", f"the {self.api.upper()} MIDI server went away; still playing "
                     "and recording to file, will reconnect when it returns")

    def _watch(self) -> None:
        while not self._stop.wait(self.WATCH_S):
            try:
                if self._out is not None:
                    if self.api == "jack" and not jack_server_running():
                        with self._lock:
                            if self._out is not None:
                                self._lose_locked()
                    continue
                if self.api is None or self.requested_api == "auto":
                    try:
                        self.api = choose_api(self.requested_api)
                    except MidiUnavailable:
                        continue
                if self.api == "jack" and not jack_server_running():
                    continue
                self._open()
                self._report("midi_restored", f"MIDI is back: {self.status}")
            except (MidiUnavailable, UsageError, rtmidi.RtMidiError):
                continue  # the server is still starting or the destination is not there yet

    def _report(self, kind: str, message: str) -> None:
        self.status = message
        self.on_status(kind, message)


def _close_quietly(out: rtmidi.MidiOut | None) -> None:
    if out is None:
        return
    try:
        out.close_port()
        out.delete()
    except rtmidi.RtMidiError:
        pass  # the client died with its server


class FileSink:
    """Records what was sent, with its real timestamps, to a Standard MIDI File that is always valid.

    The file is a format-0 .mid whose end-of-track marker and track length are rewritten at
    every flush (once a second and at close), so a crash loses at most the last second and
    never leaves a truncated file. The engine ends every sounding note (from its ledger) before close.
    """

    wants_clock = False
    _EOT = b"\x00\xff\x2f\x00"

    def __init__(self, path: str | Path, tempo_bpm: float = 120.0, ticks_per_beat: int = 960,
                 flush_s: float = 1.0, name: str = "Deep Symphony session") -> None:
        self.path = Path(path)
        self.ticks_per_second = ticks_per_beat * tempo_bpm / 60.0
        self.flush_s = flush_s
        self._pending = bytearray()
        self._last_tick = 0
        self._last_flush = 0.0
        self._closed = False
        tempo = round(60_000_000 / tempo_bpm)
        title = name.encode("latin-1", "replace")[:127]
        first = (b"\x00\xff\x03" + bytes([len(title)]) + title
                 + b"\x00\xff\x51\x03" + tempo.to_bytes(3, "big"))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w+b")
        self._file.write(b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
                         + ticks_per_beat.to_bytes(2, "big") + b"MTrk" + (0).to_bytes(4, "big"))
        self._track_start = self._file.tell()
        self._eot_at = self._track_start
        self._pending += first
        self.flush()

    def send(self, message: mido.Message, t: float) -> None:
        """Append one message at session time `t` (buffered until the next flush)."""
        if self._closed or message.type in ("clock", "start", "stop", "continue"):
            return
        tick = max(self._last_tick, round(t * self.ticks_per_second))
        _write_varlen(self._pending, tick - self._last_tick)
        self._pending += bytes(message.bytes())
        self._last_tick = tick

    def maintain(self, now: float) -> None:
        """Flush if the last flush is older than flush_s."""
        if now - self._last_flush >= self.flush_s:
            self._last_flush = now
            self.flush()

    def flush(self) -> None:
        """Write what is pending, then a fresh end-of-track and the track length."""
        if self._closed:
            return
        f = self._file
        f.seek(self._eot_at)
        f.write(self._pending)
        self._eot_at = f.tell()
        f.write(self._EOT)
        f.truncate()
        f.seek(self._track_start - 4)
        f.write((self._eot_at + len(self._EOT) - self._track_start).to_bytes(4, "big"))
        f.flush()
        self._pending.clear()

    def close(self, t: float | None = None) -> None:
        """Flush, sync and close (idempotent)."""
        if self._closed:
            return
        self.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self._closed = True


def _write_varlen(buf: bytearray, value: int) -> None:
    """Append a MIDI variable-length quantity."""
    chunk = [value & 0x7F]
    value >>= 7
    while value:
        chunk.append(0x80 | (value & 0x7F))
        value >>= 7
    buf.extend(reversed(chunk))


class ListSink:
    """Keeps every (t, message) it is sent: the recording fake for tests."""

    wants_clock = True

    def __init__(self) -> None:
        self.sent: list[tuple[float, mido.Message]] = []
        self.closed = False

    def send(self, message: mido.Message, t: float) -> None:
        """Record one message."""
        self.sent.append((t, message))

    def maintain(self, now: float) -> None:
        """Nothing to do."""

    def close(self, t: float = 0.0) -> None:
        """Mark closed."""
        self.closed = True

    def notes(self) -> list[tuple[float, mido.Message]]:
        """Only the note messages."""
        return [(t, m) for t, m in self.sent if m.type in ("note_on", "note_off")]
