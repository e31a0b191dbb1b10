"""`--controller mouse`: an XY pad in a window, so anyone can play without hardware.

The pointer over the pad is the hand: x left to right, y bottom to top, both in
[0, 1] like a camera's axes; the wheel sets `size` (one notch = 0.05). Moving onto
the pad's border (or off the pad panel of the monitor window) is taking the hand
away: the frame says `present=False`. A right click toggles the hand away and back
without moving.

The pad is its own small window, drawn by the shared highgui thread
(`instrument.ui.highgui`), unless the monitor window is open: the monitor then calls
`attach_window()`, shows the pad in its camera panel and forwards the pointer events
there with `pointer_event()`. Frames are published from the GUI thread's mouse
callback into the usual one-slot mailbox; the engine polls `latest()` as for any
controller. No filtering: a mouse does not jitter like a tracked hand.
"""

from __future__ import annotations

import logging
import threading

import cv2
import numpy as np

from controllers.base import Clock, FrameSource
from controllers.errors import ControllerSpecError, ControllerUnavailable
from controllers.frame import ControlFrame
from instrument.ui.highgui import DisplayUnavailable, Pane, host

log = logging.getLogger(__name__)

PAD_WINDOW = "Deep Symphony - XY pad"
FIELD_W, FIELD_H = 320, 240  # the playing field, the size of the camera panel of the monitor
BORDER = 24  # pixels around the field: the pointer there means "hand away"
WHEEL_STEP = 0.05  # size change per wheel notch
START_SIZE = 0.25


def wheel_delta(flags: int) -> int:
    """The wheel delta highgui packs into a mouse event's flags (a signed 16-bit high word; 120 = one notch up)."""
    delta = (flags >> 16) & 0xFFFF
    return delta - 0x10000 if delta >= 0x8000 else delta


class MouseController(FrameSource):
    """Pointer events -> ControlFrames; shows its own pad window unless a monitor hosts the pad."""

    def __init__(self, *, clock: Clock, own_window: bool = True) -> None:
        super().__init__(clock)
        self.size = START_SIZE
        self._xy: tuple[float, float] | None = None  # last position on the field
        self._away = False  # right-click toggled the hand away
        self._inside = False
        self._lock = threading.Lock()
        self._attached = False
        self._closed = False
        self._pad: Pane | None = None
        for name in ("frames", "moves", "wheel_notches", "connected"):
            self.counters.set(name, 0)
        if own_window:
            self._open_pad()
        self.counters.set("connected", 1)

    # ------------------------------------------------------------------ the pure core
    def pointer_event(self, event: int, x: int, y: int, flags: int, width: int = FIELD_W,
                      height: int = FIELD_H) -> None:
        """One highgui mouse event at pixel (x, y) relative to a `width` x `height` field."""
        inside = 0 <= x < width and 0 <= y < height
        if event == cv2.EVENT_MOUSEWHEEL:
            delta = wheel_delta(flags)
            notches = delta / 120.0 if abs(delta) >= 120 else (1.0 if delta > 0 else -1.0)
            self.size = min(1.0, max(0.0, round(self.size + WHEEL_STEP * notches, 6)))
            self.counters.inc("wheel_notches", int(abs(notches)) or 1)
        elif event == cv2.EVENT_RBUTTONDOWN:
            self._away = not self._away
        elif event not in (cv2.EVENT_MOUSEMOVE, cv2.EVENT_LBUTTONDOWN, cv2.EVENT_LBUTTONUP):
            return
        if inside and event != cv2.EVENT_MOUSEWHEEL:
            self._xy = (x / max(1, width - 1), 1.0 - y / max(1, height - 1))
            self.counters.inc("moves")
        self._inside = inside
        self._publish()

    def _publish(self) -> None:
        now = self.clock()
        if self._inside and not self._away and self._xy is not None:
            frame = ControlFrame(t=now, present=True, x=self._xy[0], y=self._xy[1], size=self.size)
        else:
            frame = ControlFrame(t=now, present=False)
        self.frames.put(frame)
        self.counters.inc("frames")

    # ------------------------------------------------------------------ windows
    def attach_window(self) -> None:
        """A monitor window hosts the pad from now on: close our own window."""
        with self._lock:
            self._attached = True
            pad, self._pad = self._pad, None
        if pad is not None:
            host().remove(pad.name)

    def detach_window(self) -> None:
        """The hosting monitor closed: show our own pad again (if we are still open)."""
        with self._lock:
            self._attached = False
            reopen = not self._closed
        self._inside = False
        self._publish()
        if reopen:
            try:
                self._open_pad()
            except ControllerUnavailable as err:
                log.warning("%s", err)

    def _open_pad(self) -> None:
        pane = Pane(PAD_WINDOW, self.render_pad, on_mouse=self._on_pad_mouse, on_close=self._on_pad_closed)
        try:
            host().add(pane)
        except DisplayUnavailable as err:
            raise ControllerUnavailable(f"the mouse controller needs a window, but {err}; "
                                        "use --controller demo (or webcam) instead") from None
        with self._lock:
            self._pad = pane

    def _on_pad_mouse(self, event: int, x: int, y: int, flags: int) -> None:
        self.pointer_event(event, x - BORDER, y - BORDER, flags)

    def _on_pad_closed(self) -> None:
        with self._lock:
            self._pad = None
        self._inside = False
        self._publish()
        log.warning("the XY pad window was closed: the hand is away until the instrument stops")

    def render_pad(self) -> np.ndarray:
        """The pad window's image: the field with a grid, the hand circle and a hint."""
        img = np.full((FIELD_H + 2 * BORDER, FIELD_W + 2 * BORDER, 3), (24, 22, 20), np.uint8)
        x0, y0 = BORDER, BORDER
        img[y0:y0 + FIELD_H, x0:x0 + FIELD_W] = (44, 40, 36)
        for k in range(1, 4):
            cv2.line(img, (x0 + k * FIELD_W // 4, y0), (x0 + k * FIELD_W // 4, y0 + FIELD_H - 1), (64, 60, 56), 1)
            cv2.line(img, (x0, y0 + k * FIELD_H // 4), (x0 + FIELD_W - 1, y0 + k * FIELD_H // 4), (64, 60, 56), 1)
        frame = self.latest()
        if frame.present and frame.x is not None:
            centre = (x0 + int(round(frame.x * (FIELD_W - 1))), y0 + int(round((1 - frame.y) * (FIELD_H - 1))))
            cv2.circle(img, centre, max(4, int(round((frame.size or 0.0) * FIELD_W / 2))), (80, 255, 120), 2,
                       cv2.LINE_AA)
        cv2.putText(img, "move = hand   wheel = size   right click = away", (6, 15), cv2.FONT_HERSHEY_SIMPLEX,
                    0.38, (200, 200, 195), 1, cv2.LINE_AA)
        cv2.putText(img, f"size {self.size:.2f}" + ("" if frame.present else "   hand away"),
                    (6, FIELD_H + 2 * BORDER - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (200, 200, 195), 1, cv2.LINE_AA)
        return img

    def close(self) -> None:
        """Close the pad window (if ours); the hand is away from now on."""
        with self._lock:
            self._closed = True
            pad, self._pad = self._pad, None
        if pad is not None:
            host().remove(pad.name)
        self.counters.set("connected", 0)


def open_mouse(arg: str | None, *, clock: Clock, profile: str | None = None, raw: bool = False) -> MouseController:
    """The `mouse` controller spec: a pad window (shared with the monitor when it opens)."""
    if arg:
        raise ControllerSpecError(f"mouse takes no argument, got 'mouse:{arg}'")
    if profile:
        log.info("controller mouse: calibration profile %r is not used (a mouse needs none)", profile)
    return MouseController(clock=clock)
