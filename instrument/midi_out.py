"""MIDI output: the rtmidi port (ALSA, JACK, CoreMIDI or Windows MM), the crash-safe .mid recorder, a test sink.

Every sink has `send(message, t)` (t = session seconds when it was really sent),
`maintain(now)` (cheap housekeeping, called by the engine when it is idle) and
`close(t)`. `MidiSink` silences what it sent when it closes, whoever closes it.

Choosing the API (`select_api`, a pure function of the platform, the APIs rtmidi was compiled
with and what runs): `auto` takes the platform's native one. On Linux that is ALSA when the
sequencer (/dev/snd/seq) exists, otherwise JACK when a JACK server answers; on macOS CoreMIDI;
on Windows Windows MM, which has no virtual ports (a loopMIDI port and `--connect` stand in).
Only the Linux branch looks at /dev/snd or JACK. We always name the API: rtmidi's default
constructor tries ALSA and raises even when JACK runs. A JACK server that dies is
noticed by a watchdog (a socket probe, no JACK calls), the port is dropped at once
(rtmidi busy-waits on a dead JACK client's full buffer) and reopened when a server
answers again; a `--connect` destination that quits is noticed and reconnected the
same way; the engine and the recording carry on meanwhile. A client of a dead server
is never closed (that holds the GIL for a second): see `abandon`.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import os
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mido
import rtmidi

from instrument.errors import MidiUnavailable, UsageError

DEFAULT_PORT_NAME = "Deep Symphony"
# --midi-api name -> rtmidi API; `instrument ports` lists them in this order
APIS = {"alsa": rtmidi.API_LINUX_ALSA, "jack": rtmidi.API_UNIX_JACK, "coremidi": rtmidi.API_MACOSX_CORE,
        "winmm": rtmidi.API_WINDOWS_MM}
API_NAMES = {"alsa": "ALSA", "jack": "JACK", "coremidi": "CoreMIDI", "winmm": "Windows MM"}
MIDI_API_CHOICES = ("auto", *APIS)  # what --midi-api accepts
VIRTUAL_PORTS = frozenset({"alsa", "jack", "coremidi"})  # the APIs that can open a port of their own
NO_MIDI_HELP = ("start a JACK server (`jackd -S -d dummy`, or with your sound card `jackd -d alsa`) "
                "or load the ALSA sequencer (`sudo modprobe snd-seq`)")
NO_VIRTUAL_HELP = ("Windows MM has no virtual MIDI ports: create one with loopMIDI "
                   "(https://www.tobias-erichsen.de/software/loopmidi.html) and play into it with "
                   "`--connect loopMIDI` (`instrument ports` lists the names)")
StatusCallback = Callable[[str, str], None]  # (kind, one-line message)


# -------------------------------------------------------------------- MIDI systems
def alsa_available() -> bool:
    """True when the ALSA sequencer device exists."""
    return os.path.exists("/dev/snd/seq")


def jack_server_running(server: str | None = None) -> bool:
    """True when a JACK server answers on its socket (no libjack call, so nothing is printed)."""
    if not (hasattr(os, "getuid") and hasattr(socket, "AF_UNIX")):
        return False  # Windows: JACK is not one of our MIDI systems there
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


def _linux_like(platform: str) -> bool:
    """Platforms whose MIDI systems are ALSA and JACK (Linux; also the BSDs, with JACK)."""
    return platform != "darwin" and not platform.startswith(("win", "cygwin", "msys"))


@dataclass(frozen=True)
class MidiSystem:
    """What the API choice looks at: the platform, rtmidi's compiled APIs, and (Linux only) what runs."""

    platform: str  # sys.platform
    compiled: tuple[str, ...]  # names (keys of APIS) of the APIs this python-rtmidi was built with
    alsa_seq: bool = False  # /dev/snd/seq exists
    jack_running: bool = False  # a JACK server answers


def compiled_apis() -> tuple[str, ...]:
    """The keys of APIS that this python-rtmidi was compiled with (rtmidi.get_compiled_api())."""
    by_number = {number: name for name, number in APIS.items()}
    return tuple(by_number[a] for a in rtmidi.get_compiled_api() if a in by_number)


def current_system() -> MidiSystem:
    """This machine's MidiSystem; /dev/snd and JACK are probed on Linux-like platforms only."""
    compiled = compiled_apis()
    if not _linux_like(sys.platform):
        return MidiSystem(sys.platform, compiled)
    return MidiSystem(sys.platform, compiled, alsa_seq=alsa_available(),
                      jack_running="jack" in compiled and jack_server_running())


def select_api(requested: str, system: MidiSystem, *, virtual: bool = False) -> str:
    """The key of APIS to use for `--midi-api requested` on `system` (pure).

    `virtual`: a port of our own is wanted (no --connect). UsageError for an API that this
    platform or this python-rtmidi does not have; MidiUnavailable when the API is fine but
    nothing runs (or, on Windows MM, for a virtual port: the message names loopMIDI).
    """
    if requested not in MIDI_API_CHOICES:
        raise UsageError(f"unknown MIDI API {requested!r}: use {', '.join(MIDI_API_CHOICES)}")
    linux = _linux_like(system.platform)
    have = ", ".join(system.compiled) or "none"
    if requested == "auto":
        if system.platform == "darwin":
            api = "coremidi"
        elif not linux:
            api = "winmm"
        elif "alsa" in system.compiled and system.alsa_seq:
            api = "alsa"
        elif "jack" in system.compiled and system.jack_running:
            api = "jack"
        else:
            raise MidiUnavailable(f"no MIDI system: no ALSA sequencer (/dev/snd/seq) and no JACK server; {NO_MIDI_HELP}")
        if api not in system.compiled:
            raise MidiUnavailable(f"this python-rtmidi was built without {API_NAMES[api]} (it has: {have}); "
                                  "reinstall it with `pip install --force-reinstall python-rtmidi`")
    else:
        api = requested
        if api in ("alsa", "jack") and not linux:
            native = "coremidi" if system.platform == "darwin" else "winmm"
            raise UsageError(f"--midi-api {api}: {API_NAMES[api]} is used on Linux; here use --midi-api {native} "
                             "(or auto)")
        if api not in system.compiled:
            raise UsageError(f"--midi-api {api}: this python-rtmidi has no {API_NAMES[api]} (it has: {have}); "
                             "use --midi-api auto")
        if api == "alsa" and not system.alsa_seq:
            raise MidiUnavailable(f"no ALSA sequencer (/dev/snd/seq is missing): {NO_MIDI_HELP}")
        if api == "jack" and not system.jack_running:
            raise MidiUnavailable(f"no JACK server is running: {NO_MIDI_HELP}")
    if virtual and api not in VIRTUAL_PORTS:
        raise MidiUnavailable(NO_VIRTUAL_HELP)
    return api


def choose_api(requested: str, *, virtual: bool = False) -> str:
    """The API for `--midi-api auto|alsa|jack|coremidi|winmm` on this machine (see `select_api`)."""
    return select_api(requested, current_system(), virtual=virtual)


_LIBJACK: ctypes.CDLL | None | bool = False  # False: not looked for yet
JACK_NO_START_SERVER, JACK_PORT_IS_OUTPUT = 0x01, 0x02
_libjack_quiet = False


def _libjack() -> ctypes.CDLL | None:
    """The libjack python-rtmidi talks to (its wheel bundles one; a system build links the system one)."""
    global _LIBJACK
    if _LIBJACK is False:
        _LIBJACK = None
        site = os.path.dirname(os.path.dirname(rtmidi.__file__))
        for candidate in glob.glob(os.path.join(site, "python_rtmidi*", "libjack*.so*")) + ["libjack.so.0"]:
            try:
                lib = ctypes.CDLL(candidate)
            except OSError:
                continue
            lib.jack_client_open.restype = ctypes.c_void_p
            lib.jack_client_open.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
            lib.jack_get_ports.restype = ctypes.POINTER(ctypes.c_char_p)
            lib.jack_get_ports.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong]
            lib.jack_free.argtypes = [ctypes.c_void_p]
            lib.jack_client_close.argtypes = [ctypes.c_void_p]
            for setter in ("jack_set_error_function", "jack_set_info_function"):
                getattr(lib, setter).argtypes = [ctypes.c_void_p]
            _LIBJACK = lib
            break
    return _LIBJACK


def quiet_libjack() -> None:
    """Route libjack's own error/info printing to a C no-op, so a dying server costs one line of ours."""
    global _libjack_quiet
    if _libjack_quiet:
        return
    _libjack_quiet = True
    lib = _libjack()
    if lib is None:
        return
    # strlen(const char *) has the shape of a jack message callback and does nothing visible;
    # a C function (not a Python callback) is safe on JACK's threads, even at interpreter exit.
    noop = ctypes.cast(ctypes.CDLL(None).strlen, ctypes.c_void_p)
    for setter in ("jack_set_error_function", "jack_set_info_function"):
        getattr(lib, setter)(noop)


def jack_output_ports() -> list[str] | None:
    """Full names of the JACK MIDI output ports now; None when libjack cannot tell.

    A short-lived client of its own, through ctypes, which lets go of the GIL in every libjack
    call: the engine plays on meanwhile (rtmidi's calls hold the GIL, ~15 ms to open a client).
    """
    lib = _libjack()
    if lib is None or not jack_server_running():
        return None
    quiet_libjack()
    status = ctypes.c_int(0)
    client = lib.jack_client_open(b"deep-symphony-probe", JACK_NO_START_SERVER, ctypes.byref(status))
    if not client:
        return None
    try:
        found = lib.jack_get_ports(client, None, b"midi", JACK_PORT_IS_OUTPUT)
        names = []
        if found:
            i = 0
            while found[i]:
                names.append(found[i].decode("utf-8", "replace"))
                i += 1
            lib.jack_free(ctypes.cast(found, ctypes.c_void_p))
        return names
    finally:
        lib.jack_client_close(client)


def _new_out(api: str, client_name: str) -> rtmidi.MidiOut:
    if api == "jack":  # only ever chosen on Linux-like platforms (select_api)
        quiet_libjack()
        if not jack_server_running():
            raise MidiUnavailable(f"no JACK server is running: {NO_MIDI_HELP}")
    try:
        return rtmidi.MidiOut(APIS[api], name=client_name)
    except rtmidi.SystemError as err:
        fix = f": {NO_MIDI_HELP}" if api in ("alsa", "jack") else ""
        raise MidiUnavailable(f"cannot open the {API_NAMES[api]} MIDI system ({err}){fix}") from None


def list_ports(api: str) -> tuple[list[str], list[str]]:
    """(output destinations, input sources) visible through `api`; raises MidiUnavailable."""
    out = _new_out(api, "Deep Symphony ports")
    try:
        inp = rtmidi.MidiIn(APIS[api], name="Deep Symphony ports")
    except rtmidi.SystemError as err:
        out.delete()
        raise MidiUnavailable(f"cannot open the {API_NAMES[api]} MIDI system ({err})") from None
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
    """A virtual output port (default) or a connection to an existing port, kept alive by a watchdog.

    The watchdog thread (every WATCH_S) notices a JACK server that died (a socket probe) and, with
    `connect`, a destination that quit (its name gone from the port list, a read of JACK's shared
    memory). Either way messages are dropped at once, one line says so, and the watchdog reconnects
    when the server or the destination is back: a returning destination through the same client,
    a returning server through a new one. A client of a dead server is abandoned, never closed
    (see `abandon`). `close()` waits for the watchdog, so no port is ever opened after it.
    """

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
        self._out: rtmidi.MidiOut | None = None  # where messages go; None: dropped
        self._waiting: rtmidi.MidiOut | None = None  # with `connect`: our client while the destination is away
        self._destination: str | None = None  # the exact name of the port we are connected to
        self._jack_name: str | None = None  # our virtual port's full name, as JACK lists it
        self._lock = threading.Lock()
        self._unchecked = 0
        self._lost_pending = False  # the server was dropped and not yet reported
        self._stop = threading.Event()
        self._watchdog: threading.Thread | None = None
        try:
            self.api = choose_api(api, virtual=connect is None)
            self._open(initial=True)
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
        """The port as other programs see it: the destination, or our port as JACK lists it.

        JACK renames a client whose name is taken (a second `Deep Symphony` is `Deep Symphony-01`),
        so the name is read back from JACK's port list after opening."""
        if self.connect:
            return self._destination or self.connect
        if self._jack_name:
            return self._jack_name
        return f"{self.port_name}:{self.port_name}" if self.api == "jack" else self.port_name

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
                    self._drop_server_locked()
                    out = None
            if out is not None:
                out.send_message(message.bytes())
                return
        self._report_server_lost()  # outside the lock: the engine never waits for a message to be printed

    def maintain(self, now: float) -> None:
        """Nothing to do: the watchdog thread owns reconnection."""

    def close(self, t: float = 0.0) -> None:
        """Close the port (idempotent). The engine has silenced it first, from its note ledger."""
        if self._stop.is_set():
            return
        self._stop.set()
        watchdog = self._watchdog
        if watchdog is not None and watchdog is not threading.current_thread():
            watchdog.join(timeout=2.0)  # it may be opening a port right now: it sees _stop and gives it back
        with self._lock:
            clients = [c for c in (self._out, self._waiting) if c is not None]
            self._out = self._waiting = None
        for client in clients:
            release(client, self.api)
        self.status = "closed"

    # -- port management (watchdog thread and constructor) --------------------------
    def _open(self, initial: bool = False) -> bool:
        """Open the port on a new client; False when `close()` came first or the destination is not back yet."""
        before = jack_output_ports() if self.api == "jack" and not self.connect else None
        out = _new_out(self.api, self.port_name)
        destination = None
        try:
            if self.connect:
                destination = self._connect(out)
            else:
                out.open_virtual_port(self.port_name)
        except rtmidi.SystemError as err:
            out.delete()
            raise MidiUnavailable(f"cannot open MIDI port {self.port_name!r} on {API_NAMES[self.api]}: {err}") from None
        except UsageError:
            if initial:  # a destination that is not there at start: a usage error (one line, exit 2)
                out.delete()
                raise
            with self._lock:  # after a server restart: wait for the destination with this client
                keep = not self._stop.is_set()
                if keep:
                    self._waiting = out
            if not keep:
                release(out, self.api)
            return False
        jack_name = _new_port(before, jack_output_ports(), self.port_name) if before is not None else None
        with self._lock:
            opened = not self._stop.is_set()  # close() came while we were opening: give the port back
            if opened:
                self._out, self._destination, self._jack_name, self._unchecked = out, destination, jack_name, 0
        if not opened:
            release(out, self.api)
            return False
        self._set_status()
        return True

    def _connect(self, out: rtmidi.MidiOut) -> str:
        """Connect `out` to the `connect` destination; its exact port name (UsageError when it is not there)."""
        ports = out.get_ports()
        index = find_port(ports, self.connect)
        out.open_port(index, self.port_name)
        return ports[index]

    def _set_status(self) -> None:
        where = f"connected to {self.full_port_name!r}" if self.connect else f"virtual port {self.full_port_name!r}"
        self.status = f"{API_NAMES[self.api]} {where}"

    def _drop_server_locked(self) -> None:
        """The JACK server died: abandon every client of it (closing one would freeze the process)."""
        dropped = [client for client in (self._out, self._waiting) if client is not None]
        for client in dropped:
            abandon(client)
        self._out = self._waiting = None
        if dropped:
            self._lost_pending = True  # reported once, by whoever dropped it (send or the watchdog)
        self.status = "MIDI server lost"

    def _report_server_lost(self) -> None:
        with self._lock:
            pending, self._lost_pending = self._lost_pending, False
        if pending:
            self._report("midi_lost", f"the {API_NAMES[self.api]} MIDI server went away; still playing "
                         "and recording to file, will reconnect when it returns")

    def _watch(self) -> None:
        while not self._stop.wait(self.WATCH_S):
            try:
                self._check()
            except (MidiUnavailable, UsageError, rtmidi.RtMidiError):
                continue  # the server is still starting or the destination is not there yet

    def _check(self) -> None:
        """One watchdog round: notice a lost server or destination, or reconnect."""
        out, waiting = self._out, self._waiting
        if out is not None or waiting is not None:
            if self.api == "jack" and not jack_server_running():
                with self._lock:
                    self._drop_server_locked()
                self._report_server_lost()
            elif out is not None and self.connect and self._destination not in out.get_ports():
                with self._lock:  # keep our client (its server lives) to reconnect it when the destination is back
                    moved = self._out is out
                    if moved:
                        self._out, self._waiting = None, out
                if moved:
                    self._report("midi_lost", f"the MIDI destination {self._destination!r} went away; still "
                                 "playing and recording to file, will reconnect when it returns")
            elif waiting is not None:
                self._reconnect(waiting)
            return
        if self.api is None or self.requested_api == "auto":
            try:
                self.api = choose_api(self.requested_api, virtual=self.connect is None)
            except MidiUnavailable:
                return
        if self.api == "jack" and not jack_server_running():
            return
        if self._open() and not self._stop.is_set():
            self._report("midi_restored", f"MIDI is back: {self.status}")

    def _reconnect(self, client: rtmidi.MidiOut) -> None:
        """The destination may be back: connect the waiting client again (UsageError while it is not)."""
        find_port(client.get_ports(), self.connect)  # cheap: raises while the destination is away
        client.close_port()
        destination = self._connect(client)
        with self._lock:
            if self._stop.is_set():  # close() releases the waiting client
                return
            self._out, self._waiting, self._destination, self._unchecked = client, None, destination, 0
        self._set_status()
        if not self._stop.is_set():
            self._report("midi_restored", f"MIDI is back: {self.status}")

    def _report(self, kind: str, message: str) -> None:
        self.status = message
        self.on_status(kind, message)


def _new_port(before: list[str] | None, after: list[str] | None, port_name: str) -> str | None:
    """Our virtual port among JACK's output ports: the one named `*:port_name` that was not there before."""
    if before is None or after is None:
        return None
    new = [p for p in after if p.endswith(f":{port_name}") and p not in before]
    return new[0] if len(new) == 1 else None


_ABANDONED: list = []  # clients of dead JACK servers, kept for ever (see abandon)


def abandon(client) -> None:
    """Keep an rtmidi client of a dead JACK server for ever instead of closing it.

    On such a client `close_port()` and `delete()` (and the garbage collector, which calls them)
    wait about 1 s inside libjack while holding the GIL: every thread of the process stands still,
    the engine and the generation included. So it is never closed, on any thread, not even at
    interpreter exit (one extra reference). The price is a small leak per server death: the
    client's memory and libjack's (exited) threads.
    """
    _ABANDONED.append(client)
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(client))


def release(client, api: str | None) -> None:
    """Close an rtmidi client (MidiOut or MidiIn) when its MIDI system is alive, else abandon it.

    Every rtmidi client of a session should end here: a JACK client whose server died must not be closed.
    """
    if api == "jack" and not jack_server_running():
        abandon(client)
        return
    try:
        client.close_port()
        client.delete()
    except rtmidi.RtMidiError:
        pass  # the client died with its server


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
