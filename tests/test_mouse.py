"""`--controller mouse`: the pointer over the XY pad is the hand, the wheel its size.

The pure mapping is checked on synthetic highgui events; the window tests drive a
real X pointer (XWarpPointer) and a real wheel (XTEST) over the pad under Xvfb.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import cv2
import pytest

from controllers import ControllerUnavailable, open_controller
from instrument.ui.highgui import host
from instrument.ui.mouse_pad import BORDER, FIELD_H, FIELD_W, PAD_WINDOW, START_SIZE, MouseController
from instrument.clock import FakeClock
from tests.xdisplay import XDisplay, ensure_display

WHEEL_UP = 120 << 16  # highgui packs the wheel delta into the high 16 bits of `flags`
WHEEL_DOWN = ((-120) & 0xFFFF) << 16


@pytest.fixture(scope="module")
def display(tmp_path_factory):
    return XDisplay(ensure_display(tmp_path_factory.mktemp("x11")))


def pad(clock=None) -> MouseController:
    return MouseController(clock=clock or FakeClock(10.0), own_window=False)


def test_pointer_position_is_the_hand_with_y_up():
    mouse = pad()
    mouse.pointer_event(cv2.EVENT_MOUSEMOVE, 0, 0, 0)
    top_left = mouse.latest()
    assert top_left.present and (top_left.x, top_left.y) == (0.0, 1.0)
    mouse.pointer_event(cv2.EVENT_MOUSEMOVE, FIELD_W - 1, FIELD_H - 1, 0)
    assert (mouse.latest().x, mouse.latest().y) == (1.0, 0.0)
    mouse.pointer_event(cv2.EVENT_MOUSEMOVE, 80, 60, 0)
    frame = mouse.latest()
    assert frame.x == pytest.approx(80 / 319) and frame.y == pytest.approx(1 - 60 / 239)
    assert frame.size == START_SIZE


def test_wheel_sets_size_within_0_and_1():
    mouse = pad()
    mouse.pointer_event(cv2.EVENT_MOUSEMOVE, 100, 100, 0)
    mouse.pointer_event(cv2.EVENT_MOUSEWHEEL, 100, 100, WHEEL_UP)
    mouse.pointer_event(cv2.EVENT_MOUSEWHEEL, 100, 100, WHEEL_UP)
    assert mouse.latest().size == pytest.approx(START_SIZE + 0.1)
    for _ in range(30):
        mouse.pointer_event(cv2.EVENT_MOUSEWHEEL, 100, 100, WHEEL_DOWN)
    assert mouse.latest().size == 0.0 and mouse.latest().present


def test_leaving_the_field_or_right_click_takes_the_hand_away():
    clock = FakeClock(10.0)
    mouse = pad(clock)
    mouse.pointer_event(cv2.EVENT_MOUSEMOVE, 100, 100, 0)
    clock.advance(0.1)
    mouse.pointer_event(cv2.EVENT_MOUSEMOVE, -3, 100, 0)  # onto the border
    lost = mouse.latest()
    assert not lost.present and lost.t == 10.1
    mouse.pointer_event(cv2.EVENT_MOUSEMOVE, 50, 50, 0)
    assert mouse.latest().present
    mouse.pointer_event(cv2.EVENT_RBUTTONDOWN, 50, 50, 0)
    assert not mouse.latest().present
    mouse.pointer_event(cv2.EVENT_MOUSEMOVE, 60, 50, 0)
    assert not mouse.latest().present  # still away until the next right click
    mouse.pointer_event(cv2.EVENT_RBUTTONDOWN, 60, 50, 0)
    assert mouse.latest().present


def test_next_frame_waits_for_movement():
    mouse = pad()
    assert mouse.next_frame(timeout=0.01) is None
    mouse.pointer_event(cv2.EVENT_MOUSEMOVE, 10, 10, 0)
    assert mouse.next_frame(timeout=0.01).present


def test_without_a_display_the_mouse_says_it_needs_a_window(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    with pytest.raises(ControllerUnavailable, match=r"needs a window, but no display \(DISPLAY is not set\).*demo"):
        open_controller("mouse")


def test_mouse_spec_takes_no_argument():
    from controllers.errors import ControllerSpecError

    with pytest.raises(ControllerSpecError, match="mouse takes no argument"):
        open_controller("mouse:2")


def test_the_mouse_controller_does_not_import_torch():
    code = "import sys, controllers, instrument.ui.mouse_pad; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "DISPLAY": ""})


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_real_pointer_and_wheel_over_the_pad_window_play(display):
    mouse = open_controller("mouse")
    try:
        pane = host().pane(PAD_WINDOW)
        assert pane is not None
        wait_until(lambda: pane.frames >= 2)
        x0, y0 = pane.image_rect[0] + BORDER, pane.image_rect[1] + BORDER
        display.move_pointer(x0 + 240, y0 + 60)  # right and high
        wait_until(lambda: mouse.latest().present and mouse.latest().x > 0.7)
        frame = mouse.latest()
        assert frame.x == pytest.approx(240 / 319, abs=0.01) and frame.y == pytest.approx(1 - 60 / 239, abs=0.01)
        display.wheel(+3)  # a quick spin, 50 ms a notch: every notch counts, none lost to the unzoom
        wait_until(lambda: mouse.latest().size >= START_SIZE + 0.15 - 1e-9)
        wait_until(lambda: pane.unzooms == 1)  # Qt zoomed on the wheel; once it rested, the pad undid it
        assert mouse.latest().size == pytest.approx(START_SIZE + 0.15)
        display.wheel(-1)
        wait_until(lambda: abs(mouse.latest().size - (START_SIZE + 0.10)) < 1e-9)
        wait_until(lambda: pane.unzooms == 2)
        display.move_pointer(x0 + 40, y0 + 200)  # pixels map 1:1 again
        wait_until(lambda: mouse.latest().x < 0.2)
        assert mouse.latest().x == pytest.approx(40 / 319, abs=0.01)
        assert mouse.latest().y == pytest.approx(1 - 200 / 239, abs=0.01)
        display.move_pointer(x0 - BORDER // 2, y0 + 60)  # onto the border: hand away
        wait_until(lambda: not mouse.latest().present)
    finally:
        mouse.close()
    assert host().pane(PAD_WINDOW) is None


def test_the_monitor_window_takes_over_the_pad(display):
    from instrument.ui.monitor_view import CAMERA, MonitorState
    from instrument.ui.monitor_window import MonitorWindow

    mouse = open_controller("mouse")
    window = MonitorWindow(lambda: MonitorState(t=0.0), mouse)
    try:
        window.open()
        assert host().pane(PAD_WINDOW) is None  # one window: the pad is now the camera panel
        wait_until(lambda: window.pane.frames >= 2)
        x, y = window.pane.image_rect[:2]
        display.move_pointer(x + CAMERA[0] + 32, y + CAMERA[1] + 200)  # left and low
        wait_until(lambda: mouse.latest().present and mouse.latest().x < 0.2)
        frame = mouse.latest()
        assert frame.x == pytest.approx(32 / 319, abs=0.01) and frame.y == pytest.approx(1 - 200 / 239, abs=0.01)
        display.move_pointer(x + CAMERA[0] + 500, y + CAMERA[1] + 100)  # off the panel, over the roll
        wait_until(lambda: not mouse.latest().present)
    finally:
        window.close()
        mouse.close()
