"""The webcam hand tracker (pure core) and its OpenCV shell on a real video file."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from controllers.webcam import HandTracker, WebcamController


def scene(center=None, radius=30, seed=0):
    rng = np.random.default_rng(seed)
    image = np.full((240, 320, 3), 40, np.uint8) + rng.integers(0, 6, (240, 320, 3), dtype=np.uint8)
    if center is not None:
        cv2.circle(image, center, radius, (190, 170, 150), -1)
    return image


def test_tracks_a_moving_hand_position_and_size():
    tracker = HandTracker()
    for i in range(30):
        assert tracker.process(scene(seed=i)) is None  # empty room: nothing moves
    x, y, size = tracker.process(scene((240, 60), 30, seed=99))
    assert x == pytest.approx(0.75, abs=0.02)
    assert y == pytest.approx(0.75, abs=0.02)  # 60 px from the top = high
    assert size == pytest.approx(60 / 320, abs=0.02)


def test_ignores_speckle_and_resizes_large_frames():
    tracker = HandTracker()
    big = lambda img: cv2.resize(img, (640, 480))  # noqa: E731
    for i in range(20):
        tracker.process(big(scene(seed=i)))
    speckled = scene(seed=50)
    speckled[100:102, 100:102] = 255
    assert tracker.process(big(speckled)) is None
    x, y, _ = tracker.process(big(scene((80, 180), 40, seed=51)))
    assert x == pytest.approx(0.25, abs=0.03) and y == pytest.approx(0.25, abs=0.03)


def test_controller_shell_on_a_video_file(tmp_path):
    path = str(tmp_path / "hand.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 30, (320, 240))
    for i in range(45):
        writer.write(scene((60 + 4 * i, 120), 30) if i >= 20 else scene())
    writer.release()
    with WebcamController(path, clock=time.monotonic, raw=True, mirror=False) as cam:
        end = time.monotonic() + 5
        seen = []
        while time.monotonic() < end and len(seen) < 5:
            f = cam.next_frame(0.5)
            if f is not None and f.present:
                seen.append(f)
        assert len(seen) == 5
        assert seen[-1].x > seen[0].x  # moving right
        assert all(f.y == pytest.approx(0.5, abs=0.05) for f in seen)
        assert cam.stats()["frames"] >= 20


OPENCV_LOG = ("[ERROR", "[ WARN", "[ INFO", "VIDEOIO")  # how OpenCV's own log lines start or name themselves


def _without_opencv_log_level() -> dict:
    return {k: v for k, v in os.environ.items() if k != "OPENCV_LOG_LEVEL"}


def test_a_missing_camera_is_our_one_line_not_opencvs_log():
    # There is no camera index 7 here (nor in CI): OpenCV used to print "[ WARN:0@0.01] ... can't open
    # camera by index" and "[ERROR:0@0.01] ... Camera index out of range" before our own message.
    code = ("import time\nfrom controllers.webcam import WebcamController\n"
            "try:\n    WebcamController(7, clock=time.monotonic)\nexcept Exception as err:\n    print(err)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            env=_without_opencv_log_level())
    assert "no camera at webcam:7" in result.stdout
    assert not any(marker in result.stderr for marker in OPENCV_LOG), result.stderr


def test_play_with_a_missing_camera_prints_one_line(tiny_charrnn, tmp_path):
    result = subprocess.run([sys.executable, "-m", "instrument", "play", "--controller", "webcam:7", "--model",
                             str(tiny_charrnn), "--no-midi", "--record", str(tmp_path), "--duration", "1"],
                            capture_output=True, text=True, timeout=120, env=_without_opencv_log_level())
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()], result.stderr
    assert "no camera at webcam:7" in result.stderr and not any(m in result.stderr for m in OPENCV_LOG)
