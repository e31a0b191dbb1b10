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
        assert time.monotonic() - start == pytest.approx(0.2, abs=0.08)
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
