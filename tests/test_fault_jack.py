"""The MIDI server disappears during `play` (issue 7, item 2): a real JACK server is killed and restarted.

`instrument play` runs as its own process on its virtual port; a receiving client in
another process listens. The server is SIGKILLed mid-play: the player says so in one
line, goes on generating and recording, and when a server comes back it reopens its
port, says so, and a new receiver hears it again. The recording is a valid .mid with
notes all through the outage, and everything ends in silence.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.play_helpers import received_notes, recording, session_log, sounding, wait_for

pytestmark = [pytest.mark.jack]


def test_killed_jack_server_is_survived_and_the_port_comes_back(jack_server, jack_receiver, tiny_charrnn, tmp_path):
    mid, stderr_path = tmp_path / "outage.mid", tmp_path / "play.stderr"
    argv = [sys.executable, "-m", "instrument", "play", "--controller", "demo", "--midi-api", "jack", "--model",
            str(tiny_charrnn), "--seed", "5", "--record", str(mid), "--no-realtime", "--lookahead", "0.3"]
    with open(stderr_path, "w") as stderr:  # a file: libjack must not block on a full pipe while we wait
        proc = subprocess.Popen(argv, stderr=stderr, text=True, env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    try:
        before = jack_receiver(source="Deep Symphony", name="ds-outage-before")
        before.wait_ready()
        wait_for(lambda: any(b[0] == 0x90 for b in received_notes(before.out)), 60, "the first note", proc)

        jack_server.stop(signal.SIGKILL)  # the server crashes
        killed = time.monotonic()
        wait_for(lambda: any(e["event"] == "midi_lost" for e in session_log(mid)), 5, "the player to notice", proc)
        time.sleep(2.0)
        assert proc.poll() is None, stderr_path.read_text()

        jack_server.start()
        restarted = time.monotonic()
        wait_for(lambda: any(e["event"] == "midi_restored" for e in session_log(mid)), 5, "the port to reopen", proc)
        assert time.monotonic() - restarted < 5
        after = jack_receiver(source="Deep Symphony", name="ds-outage-after")
        after.wait_ready()
        wait_for(lambda: any(b[0] == 0x90 for b in received_notes(after.out)), 20, "notes after the restart", proc)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)  # faulthandler writes every thread's stack to the stderr file
            proc.wait(timeout=10)
            raise AssertionError(f"play did not stop on SIGINT:\n{stderr_path.read_text()}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if jack_server.proc is None:  # leave a running server to the tests after this one
            jack_server.start()
    err = stderr_path.read_text()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    lost = [line for line in err.splitlines() if "went away" in line]
    assert len(lost) == 1 and "still playing" in lost[0], err  # one clear message, not a flood from libjack
    assert len([line for line in err.splitlines() if "MIDI is back" in line]) == 1, err

    t0, sent = recording(mid)  # mido reads it: a valid file
    gap = [t for t, b in sent if b[0] & 0xF0 == 0x90 and killed + 0.5 <= t0 + t <= restarted]
    assert len(gap) >= 3, "generation and recording went on while the server was gone"
    assert sounding([b for _, b in sent]) == {}
    time.sleep(0.2)
    heard = [tuple(r["bytes"]) for r in after.stop()]
    assert sounding(heard) == {} and heard[-2:] == [(0xB0, 123, 0), (0xB0, 120, 0)]
    events = [e["event"] for e in session_log(mid)]
    assert events.count("midi_lost") == 1 and events.count("midi_restored") == 1 and events[-1] == "stop"


def test_a_connect_destination_that_quits_and_returns_is_reconnected(jack_server, jack_receiver, tmp_path):
    """Issue 19, item 4: the synth behind `--connect` restarts; the player says so and reconnects by itself."""
    from tests.play_helpers import busy_charrnn, kill_with_stacks, start_play, stop_with

    name = "ds-comes-back"
    first = jack_receiver(name=name)
    first.wait_ready()
    mid = tmp_path / "connect.mid"
    proc = start_play(busy_charrnn(tmp_path), mid, "--midi-api", "jack", "--connect", name, "--program", "12")
    try:
        wait_for(lambda: any(b[0] == 0x90 for b in received_notes(first.out)), 60, "the first note", proc)
        first.stop()  # the destination quits
        wait_for(lambda: any(e["event"] == "midi_lost" for e in session_log(mid)), 5, "the player to notice", proc)
        time.sleep(0.5)
        second = jack_receiver(name=name)  # and comes back under the same name
        second.wait_ready()
        wait_for(lambda: any(e["event"] == "midi_restored" for e in session_log(mid)), 5, "the reconnection", proc)
        wait_for(lambda: any(b[0] == 0x90 for b in received_notes(second.out)), 20, "notes after the return", proc)
        err = stop_with(proc, signal.SIGINT)
    finally:
        kill_with_stacks(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    lost = [line for line in err.splitlines() if "went away" in line]
    assert len(lost) == 1 and name in lost[0] and "still playing" in lost[0], err
    back = [line for line in err.splitlines() if "MIDI is back" in line]
    assert len(back) == 1 and name in back[0], err
    time.sleep(0.2)
    heard = [tuple(r["bytes"]) for r in second.stop()]
    assert heard[0] == (0xC0, 11)  # --program 12 (a vibraphone) again, before any note: the sound is kept
    assert sounding(heard) == {} and heard[-2:] == [(0xB0, 123, 0), (0xB0, 120, 0)]
    events = [e["event"] for e in session_log(mid)]
    assert events.count("midi_lost") == 1 and events.count("midi_restored") == 1 and events[-1] == "stop"


def test_a_dying_server_does_not_freeze_the_engine(jack_server, tmp_path):
    """Issue 19, item 5: closing a port of a killed server held the GIL for ~1 s; the port is abandoned instead.

    The engine records a control frame every 10-17 ms; a freeze shows as a gap between two of them.
    Real-time scheduling is left on (where permitted) so the sending jitter measures the engine alone.
    """
    from controllers.replay import read_jsonl
    from tests.play_helpers import busy_charrnn

    mid, stderr_path = tmp_path / "stall.mid", tmp_path / "play.stderr"
    argv = [sys.executable, "-m", "instrument", "play", "--controller", "demo", "--midi-api", "jack", "--model",
            str(busy_charrnn(tmp_path)), "--seed", "5", "--record", str(mid)]
    with open(stderr_path, "w") as stderr:  # a file: libjack must not block on a full pipe while we wait
        proc = subprocess.Popen(argv, stderr=stderr, text=True, env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    try:
        wait_for(lambda: any(e["event"] == "start" for e in session_log(mid)), 60, "the start", proc)
        time.sleep(2.0)
        jack_server.stop(signal.SIGKILL)
        wait_for(lambda: any(e["event"] == "midi_lost" for e in session_log(mid)), 5, "the player to notice", proc)
        time.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGABRT)
            proc.wait(timeout=10)
        jack_server.start()
    err = stderr_path.read_text()
    assert proc.returncode == 0, err
    times = [frame.t for frame in read_jsonl(mid.with_suffix(".controls.jsonl"))]
    longest = max(b - a for a, b in zip(times, times[1:]))
    assert longest < 0.25, f"the engine stood still for {longest * 1000:.0f} ms"
    events = session_log(mid)
    stop = next(e for e in events if e["event"] == "stop")
    if not any(e["event"] == "realtime_unavailable" for e in events):
        assert stop["jitter_max_ms"] < 5.0, stop
