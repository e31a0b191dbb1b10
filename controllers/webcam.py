"""Webcam hand tracker: a host-side copy of what the study's JeVois did on-board.

OpenCV MOG2 background subtraction marks what moves, a morphological opening removes
speckle, the largest contour is taken as the hand and `minEnclosingCircle` gives its
centre and radius. Frames are processed at 320x240 (like the JeVois mapping), so the
cost per frame is the same for any camera. Axes: x in [0, 1] left to right, y in
[0, 1] bottom to top, size = circle diameter / frame width.
"""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np

from controllers import quiet_opencv
from controllers.base import Clock, ThreadedController
from controllers.errors import ControllerUnavailable
from controllers.filters import CameraConditioner
from controllers.frame import ControlFrame

log = logging.getLogger(__name__)

WIDTH, HEIGHT = 320, 240


class HandTracker:
    """Pure per-frame core: `process(frame_bgr) -> (x, y, size) | None`."""

    def __init__(self, *, history: int = 300, var_threshold: float = 25.0, min_area: float = 0.004,
                 warmup_frames: int = 10) -> None:
        cv2.setNumThreads(1)  # 320x240 is too small to gain from OpenCV's thread pool; it only adds jitter
        self.subtractor = cv2.createBackgroundSubtractorMOG2(history=history, varThreshold=var_threshold,
                                                             detectShadows=False)
        self.min_area = min_area * WIDTH * HEIGHT  # smaller blobs are noise, not a hand
        self._kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
        self.last_mask: np.ndarray | None = None  # (240, 320) uint8, for the monitor window
        self.warmup_frames = warmup_frames  # the first frames only teach the background model
        self._seen = 0

    def process(self, frame_bgr: np.ndarray) -> tuple[float, float, float] | None:
        """Track the largest moving blob in one BGR frame (any size; resized to 320x240)."""
        if frame_bgr.shape[1] != WIDTH or frame_bgr.shape[0] != HEIGHT:
            frame_bgr = cv2.resize(frame_bgr, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
        mask = self.subtractor.apply(frame_bgr)  # (240, 320) uint8, 255 = foreground
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._kernel)
        self.last_mask = mask
        self._seen += 1
        if self._seen <= self.warmup_frames:
            return None
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if not contours:
            return None
        hand = max(contours, key=cv2.contourArea)
        if cv2.contourArea(hand) < self.min_area:
            return None
        (cx, cy), radius = cv2.minEnclosingCircle(hand)
        clip = lambda v: min(1.0, max(0.0, v))  # noqa: E731
        return clip(cx / WIDTH), clip(1.0 - cy / HEIGHT), clip(2.0 * radius / WIDTH)


class WebcamController(ThreadedController):
    """Frames from an OpenCV camera (index) or a video file (path), tracked by HandTracker."""

    def __init__(self, source: int | str = 0, *, clock: Clock, reach=None, raw: bool = False,
                 mirror: bool = True) -> None:
        super().__init__(clock, f"webcam:{source}")
        self.source = source
        self.mirror = mirror  # a laptop camera faces the player: mirror so "right" is the player's right
        self.tracker = HandTracker()
        self.conditioner = CameraConditioner(reach=reach, raw=raw)
        self.last_image: np.ndarray | None = None  # latest BGR frame, for the monitor window
        for name in ("connected", "reconnects", "frames", "read_failures", "thread_errors"):
            self.counters.set(name, 0)
        quiet_opencv()  # a missing camera is our one line, not OpenCV's "[ WARN:0@0.01] ... [ERROR:0@0.01] ..."
        self._capture = self._open()
        if self._capture is None:
            raise ControllerUnavailable(f"no camera at webcam:{source}: OpenCV could not open it; "
                                        "try another index (webcam:1) or --controller demo")
        self.counters.set("connected", 1)
        self._present = False
        self.start()

    def _open(self):
        capture = cv2.VideoCapture(self.source)
        if not capture.isOpened():
            capture.release()
            return None
        if isinstance(self.source, int):
            capture.set(cv2.CAP_PROP_FRAME_WIDTH, WIDTH)
            capture.set(cv2.CAP_PROP_FRAME_HEIGHT, HEIGHT)
        return capture

    def _serve(self) -> None:
        if self._capture is None:
            self._capture = self._open()
            if self._capture is None:
                return
            self.counters.inc("reconnects")
            self.counters.set("connected", 1)
        is_file = isinstance(self.source, str)
        try:
            while not self.stopping:
                ok, image = self._capture.read()
                now = self.clock()
                if not ok:
                    self.counters.inc("read_failures")
                    if is_file:  # a recording ended: hold still, hand lost
                        self._publish(None, now)
                        self._stop.wait(0.05)
                        continue
                    log.warning("webcam %s stopped delivering frames; reopening", self.source)
                    return
                self.counters.inc("frames")
                if self.mirror:
                    image = cv2.flip(image, 1)
                self.last_image = image
                self._publish(self.tracker.process(image), now)
                if is_file:
                    time.sleep(1.0 / 30.0)  # play files at camera speed
        finally:
            if self._capture is not None and (self.stopping or not is_file):
                self._capture.release()
                self._capture = None
                self.counters.set("connected", 0)

    def _publish(self, hand: tuple[float, float, float] | None, now: float) -> None:
        if hand is None:
            if self._present or self.frames.seq == 0:
                self._present = False
                self.frames.put(ControlFrame(t=now, present=False))
            return
        if not self._present:
            self.conditioner.reset()
        self._present = True
        self.frames.put(self.conditioner.frame(*hand, now))
