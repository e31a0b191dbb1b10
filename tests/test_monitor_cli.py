"""`instrument monitor` and `instrument calibrate` end to end, against a real pty writer."""

from __future__ import annotations

import json
import os
import threading
import tty

import pytest

from controllers.calibration import load_profile
from instrument.cli import main


class ObjectTrackerWriter:
    """Any process writing ObjectTracker lines into a pty (it never answers commands)."""

    def __init__(self, lines: list[bytes]):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.lines = lines
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        i = 0
        while not self._stop.wait(1 / 60):
            try:
                os.write(self.master, self.lines[i % len(self.lines)] + b"MARK STOP\r\n")
                os.read(self.master, 4096)  # the adapter's commands: ignored
            except (BlockingIOError, OSError):
                pass
            i += 1

    def close(self):
        self._stop.set()
        self._thread.join()
        os.close(self.master)
        os.close(self.slave)


def json_lines(text):
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_monitor_json_prints_normalized_positions(capsys):
    writer = ObjectTrackerWriter([b"N2 blob 500 -375 400 400\r\n"])  # right, up, 1/5 of the width
    try:
        assert main(["monitor", "--controller", f"jevois:{writer.path}", "--json", "--frames", "20"]) == 0
    finally:
        writer.close()
    out = capsys.readouterr()
    frames = json_lines(out.out)
    assert len(frames) == 20
    for f in frames:
        assert f["present"] is True
        assert (f["x"], f["y"], f["size"]) == pytest.approx((0.75, 0.75, 0.2))
        assert set(f) == {"t", "present", "x", "y", "size", "emg", "pose"}
    assert [f["t"] for f in frames] == sorted(f["t"] for f in frames)
    assert "lines=" in out.err and "garbage=0" in out.err  # drop counters at exit


def test_monitor_raw_follows_detail_lines_in_order(capsys):
    lines = [f"D2 blob 4 {x - 50} -50 {x + 50} -50 {x + 50} 50 {x - 50} 50\r\n".encode() for x in (-600, 0, 600)]
    writer = ObjectTrackerWriter(lines)
    try:
        assert main(["monitor", "--controller", f"jevois:{writer.path}", "--json", "--raw", "--frames", "9"]) == 0
    finally:
        writer.close()
    xs = [round(f["x"], 3) for f in json_lines(capsys.readouterr().out)]
    assert set(xs) <= {0.2, 0.5, 0.8} and len(set(xs)) == 3
    order = {0.2: 0, 0.5: 1, 0.8: 2}
    assert all(order[b] == (order[a] + 1) % 3 for a, b in zip(xs, xs[1:]))


def test_record_then_monitor_the_replay(tmp_path, capsys):
    take = tmp_path / "take.jsonl"
    assert main(["monitor", "--controller", "demo", "--frames", "12", "--record", str(take)]) == 0
    capsys.readouterr()
    assert len(take.read_text().splitlines()) == 12
    assert main(["monitor", "--controller", f"replay:{take}", "--json"]) == 0  # ends with the recording
    replayed = json_lines(capsys.readouterr().out)
    recorded = [json.loads(line) for line in take.read_text().splitlines()]
    assert [r["x"] for r in replayed] == [r["x"] for r in recorded]


def test_bad_controller_spec_is_one_line_exit_2(capsys):
    assert main(["monitor", "--controller", "kinect", "--frames", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "unknown controller 'kinect'" in err and "jevois[:PORT]" in err


def test_calibrate_saves_a_profile_from_a_recording(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    take = tmp_path / "calib.jsonl"
    rows = []
    for i in range(240):  # 4 s at 60 Hz: rest, squeeze, then reach sweeps
        t = i / 60
        level = 0.05 if t < 0.6 else 0.6 if t < 1.4 else 0.3
        x = 0.2 + 0.6 * ((i * 7) % 60) / 59
        y = 0.3 + 0.4 * ((i * 11) % 60) / 59
        rows.append({"t": t, "x": x, "y": y, "emg": [level + 0.01 * c for c in range(8)]})
    take.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    args = ["calibrate", "--controller", f"replay:{take}", "--profile", "test", "--seconds", "0.5", "--countdown", "0"]
    assert main(args) == 0
    profile = load_profile("test")
    assert all(0.04 <= r <= 0.2 for r in profile.emg.rest) and all(m >= 0.55 for m in profile.emg.max)
    assert profile.reach.x[0] == pytest.approx(0.2, abs=0.05) and profile.reach.x[1] == pytest.approx(0.8, abs=0.05)
    assert str(tmp_path) in capsys.readouterr().out
