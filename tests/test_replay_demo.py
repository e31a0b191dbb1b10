"""Record/replay with original timing, the deterministic demo script, and open_controller."""

from __future__ import annotations

import json
import time

import pytest

import controllers
from controllers import open_controller
from controllers.errors import ControllerSpecError, ControllerUnavailable
from controllers.frame import ControlFrame
from controllers.replay import DemoController, FrameRecorder, ReplayController, demo_frame


class FakeClock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        return self.t


def test_record_then_replay_keeps_values_and_timing(tmp_path):
    path = tmp_path / "take.jsonl"
    frames = [ControlFrame(t=50.0 + 0.1 * i, x=0.1 * i, y=0.5, size=0.2) for i in range(5)]
    frames.append(ControlFrame(t=50.7, present=False))
    with FrameRecorder(path, t0=50.0) as rec:
        for f in frames:
            rec.write(f)
    assert json.loads(path.read_text().splitlines()[1])["t"] == pytest.approx(0.1)
    clock = FakeClock(1000.0)
    replay = ReplayController(path, clock=clock)
    clock.t = 1000.25
    assert replay.latest().x == pytest.approx(0.2) and replay.latest().t == pytest.approx(1000.2)
    clock.t = 1000.75
    assert replay.latest().present is False
    clock.t = 2000.0
    assert replay.latest() == ControlFrame(t=1000.7, present=False)  # holds the last frame


def test_replay_next_frame_paces_in_real_time(tmp_path):
    path = tmp_path / "take.jsonl"
    path.write_text("\n".join(json.dumps({"t": t, "x": 0.5, "y": 0.5}) for t in (0.0, 0.1, 0.2)) + "\n")
    with open_controller(f"replay:{path}") as replay:
        start = time.monotonic()
        got = [replay.next_frame(1.0) for _ in range(3)]
        assert 0.19 <= time.monotonic() - start < 1.0  # paced by the take's own 0.2 s (a busy machine may add, never take away)
        assert all(f.present and f.x == 0.5 for f in got)
        assert replay.next_frame(0.1) is None and replay.stats()["finished"] == 1


def test_bad_recording_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"t": 0, "x": 0.5}\n{"t": 1, "x": 7}\n')
    with pytest.raises(ControllerUnavailable, match=r"bad.jsonl:2"):
        open_controller(f"replay:{path}")


def test_demo_is_a_pure_function_of_time():
    a, b = DemoController(FakeClock(5.0)), DemoController(FakeClock(900.0))
    for s in (0.0, 3.3, 12.7, 24.5, 47.25):
        a.clock.t, b.clock.t = 5.0 + s, 900.0 + s
        fa, fb = a.latest(), b.latest()
        assert (fa.present, fa.x, fa.y, fa.size, fa.emg, fa.pose) == (fb.present, fb.x, fb.y, fb.size, fb.emg, fb.pose)
        assert fa.t == 5.0 + s


def test_demo_sweeps_bursts_and_loses_the_hand():
    frames = [demo_frame(i / 10) for i in range(300)]
    present = [f for f in frames if f.present]
    assert len(present) < len(frames)  # hand-lost moments
    ys, xs = [f.y for f in present], [f.x for f in present]
    assert max(ys) - min(ys) > 0.6 and max(xs) - min(xs) > 0.6  # slow sweeps
    assert max(max(f.emg) for f in present) > 0.8 and min(min(f.emg) for f in present) < 0.1  # EMG bursts
    assert {f.pose for f in present} == {"rest", "wave_in", "wave_out"}


def test_unknown_spec_lists_accepted_specs():
    with pytest.raises(ControllerSpecError) as err:
        open_controller("kinect")
    message = str(err.value)
    for spec in ("auto", "demo", "jevois[:PORT]", "myo[:PORT]", "webcam[:INDEX]", "replay:FILE.jsonl", "mouse"):
        assert spec in message
    assert isinstance(err.value, ValueError)
    with pytest.raises(ControllerSpecError, match="replay needs a file"):
        open_controller("replay")


def test_missing_devices_are_clear_errors(tmp_path):
    with pytest.raises(ControllerUnavailable, match="no JeVois at .*ttyNOPE"):
        open_controller(f"jevois:{tmp_path}/ttyNOPE")
    with pytest.raises(ControllerUnavailable, match="no Myo dongle at"):
        open_controller(f"myo:{tmp_path}/ttyNOPE")


def test_auto_falls_back_to_demo_quickly_when_nothing_is_there(monkeypatch):
    monkeypatch.setattr(controllers, "find_jevois", lambda: None)
    monkeypatch.setattr("controllers.myo.find_bled112", lambda: None)
    monkeypatch.setattr(controllers, "_camera_present", lambda: False)
    start = time.monotonic()
    with open_controller("auto") as c:
        assert isinstance(c, DemoController)
    assert time.monotonic() - start < 2.0


def test_auto_prefers_a_jevois(monkeypatch):
    from controllers.fakes import FakeJeVois

    with FakeJeVois() as fake:
        monkeypatch.setattr(controllers, "find_jevois", lambda: fake.path)
        assert controllers.probe_auto() == f"jevois:{fake.path}"


# -- issue 19, item 8: hostile takes are refused at load, in one line naming file and line ------
GOOD_LINE = '{"t": 0.0, "x": 0.5, "y": 0.5, "size": 0.2, "emg": null, "pose": "rest"}'


@pytest.mark.parametrize("line, fragment", [
    ('{"t": 1.0, "pose": ["fist"]}', "pose"),
    ('{"t": 1.0, "pose": {"a": 1}}', "pose"),
    ('{"t": 1.0, "pose": 3}', "pose"),
    ('{"t": 1e12}', "t "),
    ('{"t": Infinity}', "t "),
    ('{"t": NaN}', "t "),
    ('{"t": 1e400}', "t "),
    ('{"t": "5"}', "t "),
    ('{"x": 0.5}', "t "),
    ('{"t": 1.0, "x": "0.5"}', "x "),
    ('{"t": 1.0, "y": true}', "y "),
    ('{"t": 1.0, "size": NaN}', "size"),
    ('{"t": 1.0, "emg": [0.1, 0.2]}', "emg"),
    ('{"t": 1.0, "emg": [0, 0, 0, 0, 0, 0, 0, NaN]}', "emg"),
    ('{"t": 1.0, "emg": "strong"}', "emg"),
    ('{"t": 1.0, "present": "false"}', "present"),
    ('[1.0, 0.5]', "JSON object"),
    ('{"t": -50.0}', "goes back"),
])
def test_hostile_frames_are_refused_at_load_naming_file_and_line(tmp_path, line, fragment):
    path = tmp_path / "hostile.jsonl"
    path.write_text(GOOD_LINE + "\n" + line + "\n")
    with pytest.raises(ControllerUnavailable) as err:
        ReplayController(path, clock=FakeClock())
    message = str(err.value)
    assert "hostile.jsonl:2" in message and fragment in message and "\n" not in message, message


def test_frames_slightly_out_of_order_are_still_a_take(tmp_path):
    path = tmp_path / "take.jsonl"
    path.write_text("\n".join(json.dumps({"t": t, "x": 0.5}) for t in (0.0, 0.2, 0.15, 0.3)) + "\n")
    replay = ReplayController(path, clock=FakeClock())
    assert [f.t for f in replay.recorded] == [0.0, 0.15, 0.2, 0.3] and replay.duration == 0.3


def test_a_fifo_or_a_folder_is_refused_without_hanging(tmp_path):
    import os
    import subprocess
    import sys

    fifo = tmp_path / "take.jsonl"
    os.mkfifo(fifo)
    (tmp_path / "folder.jsonl").mkdir()
    script = ("from controllers.replay import ReplayController\n"
              "from controllers.errors import ControllerUnavailable\n"
              "for name in ('take.jsonl', 'folder.jsonl'):\n"
              "    try:\n"
              f"        ReplayController({str(tmp_path)!r} + '/' + name, clock=lambda: 0.0)\n"
              "    except ControllerUnavailable as err:\n"
              "        print(err)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and len(lines) == 2, proc.stdout + proc.stderr
    assert "take.jsonl" in lines[0] and "not a regular file" in lines[0]
    assert "folder.jsonl" in lines[1] and "not a regular file" in lines[1]


@pytest.mark.parametrize("command", ["play", "render"])
def test_hostile_takes_end_play_and_render_in_one_line(tmp_path, tiny_charrnn, command, capsys):
    from instrument.cli import main

    path = tmp_path / "far.jsonl"
    path.write_text(GOOD_LINE + '\n{"t": 1e12, "x": 0.5}\n')
    if command == "play":
        argv = ["play", "--model", str(tiny_charrnn), "--controller", f"replay:{path}", "--no-midi",
                "--duration", "0.5", "--record", str(tmp_path / "takes")]
    else:
        argv = ["render", "--model", str(tiny_charrnn), "--controls", str(path), "--out", str(tmp_path / "o.mid")]
    start = time.monotonic()
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"instrument {command}: error: ") and "far.jsonl:2" in lines[0]
    assert time.monotonic() - start < 30
