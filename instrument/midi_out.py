"""MIDI output: the rtmidi port sink (ALSA, JACK, CoreMIDI or Windows MM) and a recording test sink.

Every sink has `send(message, t)` (t = session seconds when it was really sent),
`maintain(now)` (cheap housekeeping, called by the engine when it is idle) and
`close(t)`. The engine silences every sink from its note ledger before closing it.
A JACK server that dies is noticed by a watchdog (a socket probe, no JACK calls), the
port is dropped at once (rtmidi busy-waits on a dead JACK client's full buffer) and
reopened when a server answers again; a `--connect` destination that quits is noticed
and reconnected the same way; the engine and the recording carry on meanwhile. The
API choice and client lifecycles are in instrument/midi_systems.py; the crash-safe
.mid recorder is instrument/midi_file.py.
"""

from __future__ import annotations

import threading

import mido
import rtmidi

from instrument.errors import MidiUnavailable, UsageError
from instrument.midi_systems import (
    API_NAMES,
    DEFAULT_PORT_NAME,
    StatusCallback,
    _new_out,
    abandon,
    choose_api,
    find_port,
    jack_output_ports,
    jack_server_running,
    release,
)


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
        self._programs: dict[int, list[int]] = {}  # channel -> the last program change's bytes
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
        if message.type == "program_change":  # the instrument's sound: sent again to a port that comes back
            self._programs[message.channel] = message.bytes()
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
            self._resend_programs()
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
            self._resend_programs()
            self._report("midi_restored", f"MIDI is back: {self.status}")

    def _resend_programs(self) -> None:
        """A port that comes back gets the program changes it missed (`--program`), before any note."""
        with self._lock:
            out = self._out
            if out is not None:
                for data in list(self._programs.values()):
                    out.send_message(data)

    def _report(self, kind: str, message: str) -> None:
        self.status = message
        self.on_status(kind, message)


def _new_port(before: list[str] | None, after: list[str] | None, port_name: str) -> str | None:
    """Our virtual port among JACK's output ports: the one named `*:port_name` that was not there before."""
    if before is None or after is None:
        return None
    new = [p for p in after if p.endswith(f":{port_name}") and p not in before]
    return new[0] if len(new) == 1 else None




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
