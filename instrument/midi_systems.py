"""MIDI systems: which rtmidi API to use (ALSA, JACK, CoreMIDI, Windows MM), and client lifecycles.

Choosing the API (`select_api`, a pure function of the platform, the APIs rtmidi was compiled
with and what runs): `auto` takes the platform's native one. On Linux that is ALSA when the
sequencer (/dev/snd/seq) exists, otherwise JACK when a JACK server answers; on macOS CoreMIDI;
on Windows Windows MM, which has no virtual ports (a loopMIDI port and `--connect` stand in).
Only the Linux branch looks at /dev/snd or JACK. We always name the API: rtmidi's default
constructor tries ALSA and raises even when JACK runs. A client of a dead JACK server is never
closed (that holds the GIL for a second): see `abandon` and `release`.
"""

from __future__ import annotations

import ctypes
import glob
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

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

