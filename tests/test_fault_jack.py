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
