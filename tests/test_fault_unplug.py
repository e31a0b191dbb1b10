"""Controller unplug and replug during `play` (issue 7, item 1), with the fake devices on real ptys.

`instrument play --controller jevois:PTY` (or `myo:PTY`) runs as its own process. The
fake device vanishes (its path is removed, the pty closed) for 2 s and comes back
freshly booted. The music goes on through the gap (the recording has notes in it), the
adapter reconnects within 2 s of the return and reruns its start-up, and the session
log records the gap and the return.
"""

from __future__ import annotations

import signal
import time

import pytest

from controllers.fakes import FakeBLED112, FakeJeVois
from tests.play_helpers import busy_charrnn, kill_with_stacks, read_jsonl, recording, session_log, sounding, start_play, stop_with, wait_for

GAP_S = 2.0


@pytest.fixture(scope="module")
def busy_model(tmp_path_factory):
    """A tiny model that never falls silent by itself, so a silent gap would be the instrument's fault."""
    return busy_charrnn(tmp_path_factory.mktemp("busy"))


def play_through_an_unplug(fake, spec: str, model, tmp_path, started) -> dict:
    """Play, unplug the fake for GAP_S, replug, stop; returns what the test checks."""
    mid = tmp_path / "take.mid"
    proc = start_play(model, mid, "--controller", spec, "--no-midi")
    try:
        wait_for(lambda: any(e["event"] == "start" for e in session_log(mid)), 60, "the session to start", proc)
        wait_for(started, 10, "the device's start-up", proc)
        controls = mid.with_name("take.controls.jsonl")
        wait_for(lambda: any(f["present"] for f in read_jsonl(controls)), 10, "a frame from the device", proc)
        time.sleep(0.5)
        unplugged = time.monotonic()  # taken first: the adapter may notice before unplug() returns
        fake.unplug()
        time.sleep(GAP_S)
        assert proc.poll() is None
        replugged = time.monotonic()
        fake.replug()
        wait_for(lambda: any(e["event"] == "controller_connected" and e["t"] > 1e-9 + unplugged - t0_of(mid)
                             for e in session_log(mid)), 5, "the reconnect", proc)
        time.sleep(1.0)
        err = stop_with(proc, signal.SIGINT)
    finally:
        kill_with_stacks(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    t0, sent = recording(mid)
    return {"t0": t0, "sent": sent, "log": session_log(mid), "frames": read_jsonl(controls),
            "unplugged": unplugged - t0, "replugged": replugged - t0}


def t0_of(mid) -> float:
    return next(e["t0_monotonic"] for e in session_log(mid) if e["event"] == "start")


def check_gap_survived(run: dict) -> None:
    unplugged, replugged = run["unplugged"], run["replugged"]
    gaps = [e["t"] for e in run["log"] if e["event"] == "controller_gap"]
    back = [e["t"] for e in run["log"] if e["event"] == "controller_connected" and e["t"] > unplugged]
    assert len(gaps) == 1 and unplugged <= gaps[0] <= unplugged + 1.0, run["log"]  # the log records the gap
    assert len(back) == 1 and back[0] - replugged <= 2.0, (back, replugged)  # reconnected within 2 s of the return
    in_gap = [b for t, b in run["sent"] if b[0] & 0xF0 in (0x80, 0x90) and unplugged < t < replugged]
    ons = [b for b in in_gap if b[0] & 0xF0 == 0x90 and b[2] > 0]
    assert len(ons) >= 5, f"the music stopped while the device was gone ({len(ons)} notes in {GAP_S} s)"
    assert sounding([b for _, b in run["sent"]]) == {}
    # the recorded controls: present before, absent in the gap, present again after the return
    frames = [(f["t"], f["present"]) for f in run["frames"]]
    assert any(p for t, p in frames if t < unplugged)
    assert any(not p for t, p in frames if unplugged < t < replugged)
    assert not any(p for t, p in frames if unplugged + 0.2 < t < replugged)
    assert any(p for t, p in frames if t > replugged)


@pytest.mark.slow
def test_jevois_unplugged_and_replugged_during_play(busy_model, tmp_path):
    with FakeJeVois() as fake:
        run = play_through_an_unplug(fake, f"jevois:{fake.path}", busy_model, tmp_path,
                                     lambda: "streamon" in fake.commands)
        commands = list(fake.commands)
    check_gap_survived(run)
    assert commands.count("ping") == 2 and commands[-1] == "streamon"  # the start-up ran again, in full


@pytest.mark.slow
def test_myo_dongle_unplugged_and_replugged_during_play(busy_model, tmp_path):
    with FakeBLED112() as fake:
        run = play_through_an_unplug(fake, f"myo:{fake.path}", busy_model, tmp_path, lambda: fake.streaming)
        discovers = [c for c in fake.commands if c[:2] == (6, 2)]
        writes = list(fake.writes)
    check_gap_survived(run)
    # the whole session again after the return: scan, connect, raw-EMG mode, the four EMG notifications
    assert len(discovers) == 2
    # raw EMG + IMU mode, then notifications on the 4 EMG and the IMU characteristics: once per connection
    assert writes.count((0x19, bytes.fromhex("0103030100"))) == 2 and len([w for w in writes if w[1] == b"\x01\x00"]) == 10
