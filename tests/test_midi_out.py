"""MIDI output: the crash-safe recorder, API choice, and real JACK ports with a separate receiver."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mido
import pytest

from instrument.errors import MidiUnavailable
from instrument.ledger import NoteLedger
from instrument.midi_out import MidiSink
from instrument.midi_file import FileSink
from instrument.midi_systems import choose_api, jack_server_running
from tests.conftest import JackServer


def note(kind: str, pitch: int, velocity: int = 0, channel: int = 0) -> mido.Message:
    return mido.Message(kind, channel=channel, note=pitch, velocity=velocity)


def read_notes(path) -> list[tuple[float, str, int]]:
    out, t = [], 0.0
    for message in mido.MidiFile(path):  # iterating a MidiFile yields times in seconds
        t += message.time
        if message.type in ("note_on", "note_off"):
            out.append((round(t, 4), message.type, message.note))
    return out


def close_silenced(sink, ledger: NoteLedger, t: float = 0.0) -> None:
    """What the engine does at stop: the ledger's panic (note-offs, then CC123 + CC120) to the sink, then close."""
    for message in ledger.panic(t):
        sink.send(message, t)
    sink.close(t)


def send(sink, ledger: NoteLedger, message, t: float) -> None:
    """A message on its way through the note ledger to the sink, as the engine sends it."""
    for admitted in ledger.admit(message, t):
        sink.send(admitted, t)


def test_file_sink_records_real_times_and_is_valid_after_every_flush(tmp_path):
    path = tmp_path / "take.mid"
    sink = FileSink(path, tempo_bpm=90.0)
    sink.send(note("note_on", 60, 100), 0.5)
    sink.send(note("note_off", 60), 1.2345)
    sink.maintain(2.0)  # a flush: the file is complete while we keep playing
    got = read_notes(path)
    assert [(kind, n) for _, kind, n in got] == [("note_on", 60), ("note_off", 60)]
    assert got[0][0] == pytest.approx(0.5, abs=4e-4) and got[1][0] == pytest.approx(1.2345, abs=4e-4)  # 1/1440 s ticks
    sink.send(note("note_on", 64, 90), 3.0)
    sink.flush()
    size = path.stat().st_size
    # a crash now (no close) leaves a valid file with everything flushed
    assert [n[2] for n in read_notes(path)] == [60, 60, 64]
    ledger = NoteLedger()
    ledger.admit(note("note_on", 64, 90), 3.0)
    close_silenced(sink, ledger, 4.0)  # the ledger ends the sounding note at the close time
    assert read_notes(path)[-1] == (4.0, "note_off", 64) and path.stat().st_size > size


def test_file_sink_times_stay_within_a_millisecond_over_an_hour(tmp_path):
    path = tmp_path / "long.mid"
    sink = FileSink(path)
    times = [k * 0.37 + 0.0013 for k in range(10000)]  # ~1 h of events
    for k, t in enumerate(times):
        sink.send(note("note_on" if k % 2 == 0 else "note_off", 60, 80 if k % 2 == 0 else 0), t)
    sink.close()
    got = [t for t, _, _ in read_notes(path)]
    assert max(abs(a - b) for a, b in zip(got, times)) < 0.001


def test_no_midi_system_is_one_clear_message(monkeypatch):
    monkeypatch.setenv("JACK_DEFAULT_SERVER", "no-such-server-here")
    with pytest.raises(MidiUnavailable, match=r"jackd -S -d dummy"):
        choose_api("jack")
    reports = []
    sink = MidiSink(api="jack", on_status=lambda kind, message: reports.append((kind, message)))
    sink.send(note("note_on", 60, 90), 0.0)  # dropped, not raised
    sink.close()
    assert [kind for kind, _ in reports] == ["midi_unavailable"]
    assert "no JACK server is running" in reports[0][1] and "recording" in reports[0][1]


@pytest.mark.jack
def test_virtual_port_reaches_a_separate_client_and_close_silences(jack_server, jack_receiver):
    sink = MidiSink(api="jack")
    assert sink.connected and sink.api == "jack"
    receiver = jack_receiver(source="Deep Symphony")
    receiver.wait_ready()
    time.sleep(0.1)
    ledger = NoteLedger()
    send(sink, ledger, note("note_on", 60, 100, channel=2), 0.0)
    send(sink, ledger, note("note_on", 67, 100, channel=2), 0.0)
    send(sink, ledger, note("note_off", 60, 0, channel=2), 0.0)
    time.sleep(0.1)
    close_silenced(sink, ledger)  # 67 is still sounding: it must be ended, then CC123 + CC120 on channel 3
    time.sleep(0.2)
    got = [tuple(rec["bytes"]) for rec in receiver.stop()]
    assert got == [(0x92, 60, 100), (0x92, 67, 100), (0x82, 60, 0), (0x82, 67, 0), (0xB2, 123, 0), (0xB2, 120, 0)]


@pytest.mark.jack
def test_connect_to_an_existing_port(jack_server, jack_receiver):
    receiver = jack_receiver(name="ds-listener")
    receiver.wait_ready()
    sink = MidiSink(port="Deep Symphony connect", connect="ds-listener", api="jack")
    time.sleep(0.1)
    ledger = NoteLedger()
    send(sink, ledger, note("note_on", 72, 64), 0.0)
    time.sleep(0.1)
    close_silenced(sink, ledger)
    time.sleep(0.2)
    assert [tuple(r["bytes"]) for r in receiver.stop()][:2] == [(0x90, 72, 64), (0x80, 72, 0)]


@pytest.mark.jack
def _server_death_scenario(name: str, log: str) -> None:
    """Kill the JACK server under an open sink, then bring it back (runs in a child process)."""
    server = JackServer(name, Path(log))
    os.environ["JACK_DEFAULT_SERVER"] = server.name
    server.start()
    reports = []
    sink = MidiSink(api="jack", on_status=lambda kind, message: reports.append(kind))
    try:
        assert sink.connected
        server.stop(signal.SIGKILL)
        assert not jack_server_running(server.name)
        deadline = time.monotonic() + 3
        while sink.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        for _ in range(5000):  # more than rtmidi's JACK buffer holds: must not hang
            sink.send(note("note_on", 60, 90), 0.0)
            sink.send(note("note_off", 60), 0.0)
        assert time.monotonic() - started < 1.0
        assert reports == ["midi_lost"]
        server.start()
        deadline = time.monotonic() + 5
        while not sink.connected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sink.connected and reports == ["midi_lost", "midi_restored"]
    finally:
        sink.close()
        server.stop()
    print("scenario ok", reports)


def test_server_death_is_survived_and_the_port_comes_back(tmp_path, jack_server):
    # A child process: libjack's threads inside a client whose server was SIGKILLed must
    # not be able to take the whole test session down with them if they crash.
    code = ("import sys; from tests.test_midi_out import _server_death_scenario; "
            "_server_death_scenario(sys.argv[1], sys.argv[2])")
    result = subprocess.run([sys.executable, "-c", code, f"dsdie{os.getpid()}", str(tmp_path / "jackd.log")],
                            capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "scenario ok ['midi_lost', 'midi_restored']" in result.stdout


# -- issue 19: a full disk, a reported name that is the real one, no reopening after close -----------
def test_file_sink_stays_valid_when_the_disk_fills(tmp_path, monkeypatch):
    import errno

    from instrument import midi_file as midi_out

    path = tmp_path / "full.mid"
    errors = []
    sink = FileSink(path, on_error=lambda where, err: errors.append((where, err)))
    for k in range(20):
        sink.send(note("note_on" if k % 2 == 0 else "note_off", 60, 90 if k % 2 == 0 else 0), k * 0.1)
    sink.flush()
    good = read_notes(path)
    budget = [10]
    real_pwrite = os.pwrite

    def full_disk(fd, data, offset):  # room for 10 more bytes, then ENOSPC; rewriting what exists always works
        if offset + len(data) <= os.fstat(fd).st_size:
            return real_pwrite(fd, data, offset)
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = min(len(data), budget[0])
        budget[0] -= n
        return real_pwrite(fd, data[:n], offset)

    monkeypatch.setattr(midi_out.os, "pwrite", full_disk)
    for k in range(20, 40):
        sink.send(note("note_on" if k % 2 == 0 else "note_off", 62, 90 if k % 2 == 0 else 0), k * 0.1)
    sink.flush()
    assert [(where, err.errno) for where, err in errors] == [(path, errno.ENOSPC)]
    assert read_notes(path) == good  # the file of the last good flush, still valid
    sink.send(note("note_on", 64, 90), 5.0)  # recording has stopped: nothing more, nothing raised
    sink.maintain(10.0)
    sink.close(10.0)
    assert read_notes(path) == good and len(errors) == 1


def jack_ports() -> list[str]:
    return subprocess.run(["jack_lsp"], capture_output=True, text=True, timeout=10).stdout.splitlines()


@pytest.mark.jack
def test_a_second_port_of_the_same_name_reports_its_real_name(jack_server):
    first = MidiSink(port="ds-twin", api="jack")
    second = MidiSink(port="ds-twin", api="jack")
    try:
        ports = jack_ports()
        assert first.full_port_name == "ds-twin:ds-twin" and first.full_port_name in ports
        assert second.full_port_name != first.full_port_name and second.full_port_name in ports  # ds-twin-01:ds-twin
        assert repr(second.full_port_name) in second.status
    finally:
        first.close()
        second.close()


@pytest.mark.jack
def test_close_never_lets_the_watchdog_reopen_the_port(jack_server, monkeypatch):
    """The watchdog was opening a port (the server had just come back) when play stopped: no port, no message."""
    import threading

    from instrument import midi_out

    monkeypatch.setenv("JACK_DEFAULT_SERVER", "no-such-server-yet")
    real_new_out, opening = midi_out._new_out, threading.Event()

    def slow_new_out(api, name):
        opening.set()
        time.sleep(0.3)
        return real_new_out(api, name)

    monkeypatch.setattr(midi_out, "_new_out", slow_new_out)
    reports = []
    sink = MidiSink(port="ds-race", api="jack", on_status=lambda kind, message: reports.append(kind))
    assert reports == ["midi_unavailable"]
    monkeypatch.setenv("JACK_DEFAULT_SERVER", jack_server.name)  # the server appears
    assert opening.wait(5)  # the watchdog is opening the port now
    sink.close()
    time.sleep(0.5)
    assert reports == ["midi_unavailable"] and not sink.connected
    assert "ds-race:ds-race" not in jack_ports()
