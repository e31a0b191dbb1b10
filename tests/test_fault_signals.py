"""Signals and errors during `play` (issue 7, item 3): silence at a separate client, a complete recording.

A real JACK server, `instrument play` as its own process connected to a receiving
client in another process. SIGINT and SIGTERM stop cleanly (exit 0); a model that
raises mid-step (DEEP_SYMPHONY_FAULT=model-step-after:N, the test hook in
instrument/voices/base.py) stops with exit code 1 and one line. In every case the receiver
got a note-off for every note-on, then CC123 and CC120, and the recording is a valid
.mid holding exactly the notes the receiver heard.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.play_helpers import kill_with_stacks, notes_only, received_notes, recording, session_log, sounding, start_play, stop_with, wait_for

pytestmark = [pytest.mark.jack]


def check_silent_and_recorded(received: list[dict], mid) -> None:
    got = [tuple(r["bytes"]) for r in received]
    assert any(b[0] == 0x90 and b[2] > 0 for b in got), "no note reached the receiver"
    assert sounding(got) == {}, "a note-on without its note-off at the receiver"
    assert got[-2:] == [(0xB0, 123, 0), (0xB0, 120, 0)]  # then all-notes-off and all-sound-off
    _, sent = recording(mid)  # mido reads the file: it is complete, not truncated
    assert sounding([b for _, b in sent]) == {}
    assert notes_only(b for _, b in sent) == notes_only(got)  # the recording is what was played, all of it


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_with_every_note_off_and_a_complete_recording(jack_server, jack_receiver, tiny_charrnn,
                                                                     tmp_path, sig):
    name = f"ds-signal-{sig.name.lower()}"
    receiver = jack_receiver(name=name)
    receiver.wait_ready()
    mid = tmp_path / "take.mid"
    proc = start_play(tiny_charrnn, mid, "--midi-api", "jack", "--connect", name, "--lookahead", "0.5")
    try:
        wait_for(lambda: any(b[0] == 0x90 for b in received_notes(receiver.out)), 60, "the first note", proc)
        time.sleep(1.0)  # notes are sounding and the future is generated ahead
        err = stop_with(proc, sig)
    finally:
        kill_with_stacks(proc)
    assert proc.returncode == 0, err
    assert f"stopped by {sig.name}" in err and "Traceback" not in err
    time.sleep(0.2)
    check_silent_and_recorded(receiver.stop(), mid)
    assert [e["event"] for e in session_log(mid)][-1] == "stop"


def test_a_failing_model_step_ends_in_silence_with_exit_code_1(jack_server, jack_receiver, tiny_charrnn, tmp_path):
    name = "ds-signal-fault"
    receiver = jack_receiver(name=name)
    receiver.wait_ready()
    mid = tmp_path / "failed.mid"
    env = {**os.environ, "DEEP_SYMPHONY_FAULT": "model-step-after:250"}
    proc = start_play(tiny_charrnn, mid, "--midi-api", "jack", "--connect", name, "--lookahead", "0.5", env=env)
    try:
        _, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"play did not stop after the model failed:\n{kill_with_stacks(proc)}") from None
    assert proc.returncode == 1, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "the model failed" in errors[0] and "injected fault" in errors[0], err
    assert "all notes off" in errors[0] and str(mid) in errors[0]
    time.sleep(0.2)
    check_silent_and_recorded(receiver.stop(), mid)
    events = [e["event"] for e in session_log(mid)]
    assert events[-1] == "stop"


def test_the_fault_hook_is_off_unless_asked(tiny_charrnn):
    """Without DEEP_SYMPHONY_FAULT the hook never raises (it is read once, at import)."""
    from instrument.voices import base as voices

    assert os.environ.get("DEEP_SYMPHONY_FAULT") is None and voices._FAULT_AFTER is None
    for _ in range(1000):
        voices.fault_check()


def test_repeated_ctrl_c_still_exits_0_with_a_complete_recording(jack_server, jack_receiver, tiny_charrnn, tmp_path):
    """Issue 19, item 11: an impatient performer presses Ctrl-C again and again while the player stops."""
    name = "ds-signal-repeat"
    receiver = jack_receiver(name=name)
    receiver.wait_ready()
    mid = tmp_path / "impatient.mid"
    proc = start_play(tiny_charrnn, mid, "--midi-api", "jack", "--connect", name, "--lookahead", "0.5")
    try:
        wait_for(lambda: any(b[0] == 0x90 for b in received_notes(receiver.out)), 60, "the first note", proc)
        time.sleep(0.5)
        for _ in range(200):  # every 10 ms until it has exited: some land while it stops
            if proc.poll() is not None:
                break
            proc.send_signal(signal.SIGINT)
            time.sleep(0.01)
        _, err = proc.communicate(timeout=30)
    finally:
        kill_with_stacks(proc)
    assert proc.returncode == 0, err
    assert "stopped by SIGINT" in err and "Traceback" not in err and "KeyboardInterrupt" not in err
    time.sleep(0.2)
    check_silent_and_recorded(receiver.stop(), mid)
    assert [e["event"] for e in session_log(mid)][-1] == "stop"
