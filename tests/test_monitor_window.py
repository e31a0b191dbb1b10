"""The live monitor window under a real X server (Xvfb): screenshots show what was played.

The engine here is the real one (on a fake clock, with a scripted voice so the notes
are known); the window is the real highgui window on the shared GUI thread; the
screenshot is the X server's framebuffer (XGetImage on the root window).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from controllers.frame import ControlFrame
from instrument.clock import FakeClock
from instrument.engine import Engine, EngineConfig
from instrument.mapping import Mapping
from instrument.midi_out import ListSink
from instrument.ui.monitor_view import CAMERA, MonitorState, roll_area
from instrument.ui.monitor_window import MonitorWindow, open_play_monitor, state_from_snapshot
from instrument.ui.pianoroll import VELOCITY_LUT, velocity_color
from tests.scripted_voice import ScriptedVoice
from tests.xdisplay import XDisplay, ensure_display

LOW, HIGH = 55, 77  # the two pitches the script plays
SOFT, LOUD = 31, 119  # and their velocities


@pytest.fixture(scope="module")
def display(tmp_path_factory):
    return XDisplay(ensure_display(tmp_path_factory.mktemp("x11")))


class StillHand:
    """A controller whose hand rests at (0.25, 0.75), size 0.3."""

    def latest(self) -> ControlFrame:
        return ControlFrame(t=0.0, present=True, x=0.25, y=0.75, size=0.3)

    def stats(self) -> dict:
        return {"connected": 1, "garbage": 2}


def played(sink: ListSink) -> list[tuple[int, int, float, float]]:
    """(pitch, velocity, start, end) of the notes the sink received."""
    on: dict[int, tuple[int, float]] = {}
    notes = []
    for t, message in sink.notes():
        if message.type == "note_on" and message.velocity > 0:
            on[message.note] = (message.velocity, t)
        elif message.type in ("note_off", "note_on") and message.note in on:
            velocity, start = on.pop(message.note)
            notes.append((message.note, velocity, start, t))
    return notes


def wait_for_frames(pane, count: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while pane.frames < count:
        assert time.monotonic() < deadline, "the window drew nothing"
        time.sleep(0.02)


def test_the_roll_on_screen_shows_the_notes_that_were_sent(display):
    clock = FakeClock(50.0)
    sink = ListSink()
    engine = Engine(ScriptedVoice([(LOW, SOFT), (HIGH, LOUD)], on=30, gap=20), StillHand(), Mapping.default(), [sink], clock, EngineConfig(threaded=False))
    engine.start()
    while clock.now() - engine.t0 < 10.0:  # 10 s: the first 2 s have scrolled out of the 8 s roll
        clock.advance(0.005)
        engine.tick()
    sent = played(sink)
    assert len(sent) >= 18
    drew_on: set[str] = set()

    def source() -> MonitorState:
        drew_on.add(threading.current_thread().name)
        return state_from_snapshot(engine.snapshot(), mapping=engine.mapping, controller=engine.controller,
                                   spec="still", seed=7, clock_mode="internal")

    window = MonitorWindow(source)
    window.open()
    try:
        wait_for_frames(window.pane, 3)
        x, y, w, h = window.pane.image_rect
        shot = display.screenshot(x + w, y + h)[y:y + h, x:x + w]
    finally:
        window.close()
    assert drew_on == {"highgui"}  # drawn on the window's own thread, never the engine's

    state = source()
    area = roll_area(state)
    assert (area.lo, area.hi) == (48, 83)
    visible = [n for n in sent if n[3] > area.t0 + 0.1]
    scrolled_out = [n for n in sent if n[3] < area.t0 - 0.05]
    assert visible and scrolled_out
    for pitch, velocity, start, end in visible:
        top, bottom = area.lane(pitch)
        row = (top + bottom) // 2
        cols = range(max(area.x, area.x_of(start)) + 1, area.x_of(end) - 2)
        colour = np.array(velocity_color(velocity), np.uint8)
        hits = np.all(shot[row, cols.start:cols.stop] == colour, axis=1)
        assert hits.mean() > 0.9, f"note {pitch} v{velocity} {start:.2f}-{end:.2f} s not on screen"
        for other in (LOW, HIGH):  # and not in the other pitch's lane at that time
            if other != pitch:
                other_row = sum(area.lane(other)) // 2
                assert not np.all(shot[other_row, cols.start:cols.stop] == colour, axis=1).any()
    # soft and loud notes are told apart by colour
    assert velocity_color(SOFT) != velocity_color(LOUD)
    # between notes (the 0.2 s rests) the lanes are empty
    rest_col = area.x_of(visible[-1][3] + 0.1)
    if rest_col < area.x_of(state.t):
        for pitch in (LOW, HIGH):
            assert tuple(shot[sum(area.lane(pitch)) // 2, rest_col]) not in {velocity_color(SOFT), velocity_color(LOUD)}
    # the playhead: a white line at the engine's time
    playhead = area.x_of(state.t)
    column = shot[area.y + 5:area.y + area.h - 5, playhead - 1:playhead + 2]
    assert np.all(column.max(axis=1) >= 250)
    # the hand circle in the camera panel, at (0.25, 0.75): green pixels on its rim
    cx, cy, cw, ch = CAMERA
    centre_x, centre_y, radius = cx + 0.25 * (cw - 1), cy + 0.25 * (ch - 1), 0.3 * cw / 2
    rim = shot[int(centre_y), int(centre_x + radius) - 2:int(centre_x + radius) + 3]
    assert (rim[:, 1] > 200).any() and (rim[:, 2] < 150).any()
    engine.shutdown()


def test_play_monitor_without_a_display_says_so_in_one_line_and_plays_on(tiny_charrnn, tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run(
        [sys.executable, "-m", "instrument", "play", "--model", str(tiny_charrnn), "--controller", "demo",
         "--no-midi", "--duration", "1.5", "--seed", "1", "--record", str(tmp_path / "s.mid"), "--monitor"],
        env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "monitor window" in line]
    assert lines == ["instrument play: no monitor window: no display (DISPLAY is not set); playing on without it"]
    assert "Traceback" not in result.stderr
    assert (tmp_path / "s.mid").stat().st_size > 30  # it played and recorded


def test_play_monitor_opens_a_window_beside_the_real_engine(display, tiny_charrnn, tmp_path):
    lut = {tuple(int(c) for c in colour) for colour in VELOCITY_LUT}
    legend_pixels = 120 * 8  # the velocity legend above the roll is drawn in the same colours
    proc = subprocess.Popen(
        [sys.executable, "-m", "instrument", "play", "--model", str(tiny_charrnn), "--controller", "demo",
         "--no-midi", "--duration", "6", "--seed", "2", "--record", str(tmp_path / "s.mid"), "--monitor"],
        env={**os.environ, "DISPLAY": display.name}, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        found = None
        while found is None and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            screen = display.screenshot(1280, 800)
            keys = screen.reshape(-1, 3).astype(np.uint32) @ np.array([1, 256, 65536], np.uint32)
            lut_keys = np.array([b + 256 * g + 65536 * r for b, g, r in lut], np.uint32)
            lit = int(np.isin(keys, lut_keys).sum())  # pixels in velocity colours: the legend and the notes
            found = lit if lit > legend_pixels + 100 else None
        stderr = proc.communicate(timeout=60)[1]
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    assert "no monitor window" not in stderr
    assert found is not None, "no notes appeared in the monitor's roll"


def test_instrument_monitor_window_shows_the_controller(display, capsys):
    from instrument.cli import main

    assert main(["monitor", "--controller", "demo", "--window", "--frames", "40"]) == 0
    err = capsys.readouterr().err
    assert "no monitor window" not in err
    assert "40 frames from demo" in err


def test_open_play_monitor_headless_returns_none(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    said: list[str] = []

    class Session:  # only what open_play_monitor reads before opening
        class config:
            controller, clock = "demo", "none"
        engine = type("E", (), {"mapping": Mapping.default()})()
        controller, seed = StillHand(), 1

    assert open_play_monitor(Session(), echo=said.append) is None
    assert said == ["instrument play: no monitor window: no display (DISPLAY is not set); playing on without it"]


def test_bars_show_the_axis_before_and_after_the_filter():
    from controllers.frame import Unfiltered
    from instrument.ui.monitor_view import BARS, FILTERED_TICK, RAW_TICK, draw
    from instrument.ui.monitor_window import control_bars

    frame = ControlFrame(t=1.0, present=True, x=0.5, y=0.25, size=0.2, unfiltered=Unfiltered(x=0.9, y=0.25, size=0.2))
    mapping = Mapping.default()
    bars = {bar.label: bar for bar in control_bars(frame, mapping.map(frame), mapping)}
    assert (bars["density"].axis, bars["density"].unfiltered) == (0.5, 0.9)
    assert "x 0.90>0.50" in bars["density"].text
    shot = draw(MonitorState(t=1.0, present=True, bars=(bars["density"],)))
    x, y, w, h = BARS
    row = shot[y + 10 + 10, x + 78:x + 78 + 131]  # the middle of the first bar's track
    amber = np.flatnonzero((row == RAW_TICK).all(axis=1))
    white = np.flatnonzero((row == FILTERED_TICK).all(axis=1))
    assert amber.size and white.size
    assert abs(amber.mean() / 130 - 0.9) < 0.02 and abs(white.mean() / 130 - 0.5) < 0.02
    unfiltered_mouse = ControlFrame(t=1.0, present=True, x=0.5, y=0.25, size=0.2)  # the mouse filters nothing
    assert all(bar.unfiltered is None for bar in control_bars(unfiltered_mouse, mapping.map(unfiltered_mouse), mapping))


def test_the_webcam_image_fills_the_camera_panel_and_bars_show_axis_and_control():
    import cv2

    from instrument.ui.monitor_view import draw
    from instrument.ui.monitor_window import camera_view, control_bars

    class Webcam:  # what the webcam controller exposes: its latest BGR frame
        last_image = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)

    image, label = camera_view(Webcam(), "webcam:0")
    assert image is Webcam.last_image and "webcam:0" in label
    frame = ControlFrame(t=1.0, present=True, x=0.5, y=0.25, size=0.2)
    mapping = Mapping.default()
    bars = {bar.label: bar for bar in control_bars(frame, mapping.map(frame), mapping)}
    assert bars["register"].axis == 0.25 and bars["register"].value == pytest.approx(0.25)  # y 0.25 -> 57 of 48..84
    assert "57.0" in bars["register"].text and bars["density"].axis == 0.5
    shot = draw(MonitorState(t=1.0, present=True, camera=image, camera_label=label))
    x, y, w, h = CAMERA
    assert np.array_equal(shot[y:y + h, x:x + w], cv2.resize(image, (w, h)))
