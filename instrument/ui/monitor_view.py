"""What the monitor window shows, drawn from one `MonitorState` into one BGR image.

Pure drawing, no window and no threads: `draw(state)` returns a 960x600 image with
four panels. Top left the camera image (or the XY pad, or a placeholder for
controllers whose video does not reach the host) with the tracked hand circle;
below it a bar per mapped control (raw and filtered axis, mapped value); top right the status block; below it the
scrolling piano roll of the notes actually sent, the last 8 s, coloured by
velocity, with the playhead as a white line.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from instrument.ui.pianoroll import (BACKGROUND, DIM_TEXT, FONT, GRID, PLAYHEAD, TEXT, Note, RollArea, draw_keys,
                                  draw_notes, draw_time_grid, draw_velocity_legend, pitch_range)

WIDTH, HEIGHT = 960, 600
ROLL_SECONDS = 8.0  # of history in the roll
ROLL_AHEAD_S = 0.5  # empty space right of the playhead, so the line is visible
CAMERA = (10, 28, 320, 240)  # x, y, w, h
BARS = (10, 300, 320, 290)
STATUS = (360, 10, 590, 150)
ROLL = (402, 190, 548, 370)  # pitch names go left of it
ALERT = (40, 40, 255)  # BGR red
WARN = (0, 190, 255)  # BGR amber
BAR_FILL = (200, 150, 60)
BAR_TRACK = (55, 52, 48)
RAW_TICK = WARN  # amber: the axis before the 1€ filter
FILTERED_TICK = (255, 255, 255)


@dataclass(frozen=True)
class Bar:
    """One mapped control: its driving axis in [0, 1], raw and filtered, and its value as a fraction of its range."""

    label: str  # e.g. "register"
    axis: float | None  # the controller's axis after its 1€ filter, 0..1 (a white tick on the bar)
    value: float | None  # the control's position in its range, 0..1 (the fill)
    text: str  # e.g. "y 0.65>0.62 -> 70.3"
    unfiltered: float | None = None  # the same axis before the filter (an amber tick); None: not filtered


@dataclass(frozen=True)
class MonitorState:
    """Everything one monitor frame shows (built from an engine snapshot or controller frames)."""

    t: float  # the playhead, session seconds
    present: bool = False  # hand seen
    hand: tuple[float, float, float | None] | None = None  # x, y (up), size, all 0..1
    camera: np.ndarray | None = None  # BGR image of the webcam, if any
    camera_label: str = ""  # what the camera panel shows, e.g. "webcam:0" or "JeVois: video stays on the camera"
    bars: tuple[Bar, ...] = ()
    notes: tuple[Note, ...] = ()
    status: tuple[str, ...] = ()
    alerts: tuple[str, ...] = ()  # "HAND LOST", "RECONNECTING", ...
    roll: bool = True  # False: no engine, nothing is played (instrument monitor)


def _text(img, text: str, org: tuple[int, int], scale: float = 0.45, color=TEXT, thickness: int = 1) -> None:
    cv2.putText(img, text, org, FONT, scale, color, thickness, cv2.LINE_AA)


def roll_area(state: MonitorState) -> RollArea:
    """Where the roll of `state` draws each pitch and time (its pitch span follows the notes shown)."""
    t0 = state.t - ROLL_SECONDS
    visible = [p for p, _, start, end in state.notes if (end is None or end >= t0) and start <= state.t]
    lo, hi = pitch_range(visible)
    x, y, w, h = ROLL
    return RollArea(x, y, w, h, t0, state.t + ROLL_AHEAD_S, lo, hi)


_BLANK = np.full((HEIGHT, WIDTH, 3), BACKGROUND, np.uint8)  # copied per frame: np.full with a colour is slow


def draw(state: MonitorState) -> np.ndarray:
    """The monitor image for one state: (600, 960, 3) uint8 BGR (about 5 ms)."""
    img = _BLANK.copy()
    _draw_camera(img, state)
    _draw_bars(img, state.bars)
    _draw_status(img, state)
    if state.roll:
        _draw_roll(img, state)
    else:
        x, y, w, h = ROLL
        cv2.rectangle(img, (x, y), (x + w, y + h), GRID, 1)
        _text(img, "no notes here: `instrument play --monitor` shows what is played", (x + 12, y + h // 2), 0.45,
              DIM_TEXT)
    return img


def _draw_camera(img: np.ndarray, state: MonitorState) -> None:
    x, y, w, h = CAMERA
    _text(img, state.camera_label or "camera", (x, y - 8), 0.45, DIM_TEXT)
    if state.camera is not None:
        camera = state.camera
        if camera.shape[:2] != (h, w):
            camera = cv2.resize(camera, (w, h), interpolation=cv2.INTER_AREA)
        if camera.ndim == 2:
            camera = cv2.cvtColor(camera, cv2.COLOR_GRAY2BGR)
        img[y:y + h, x:x + w] = camera
    else:  # no video on the host: a grid standing for the camera's field of view
        img[y:y + h, x:x + w] = (34, 31, 28)
        for k in range(1, 4):
            cv2.line(img, (x + k * w // 4, y), (x + k * w // 4, y + h - 1), (48, 45, 42), 1)
            cv2.line(img, (x, y + k * h // 4), (x + w - 1, y + k * h // 4), (48, 45, 42), 1)
    cv2.rectangle(img, (x - 1, y - 1), (x + w, y + h), GRID, 1)
    if state.present and state.hand is not None:
        hx, hy, size = state.hand
        centre = (x + int(round(hx * (w - 1))), y + int(round((1.0 - hy) * (h - 1))))
        radius = max(4, int(round((size if size is not None else 0.1) * w / 2)))
        cv2.circle(img, centre, radius, (80, 255, 120), 2, cv2.LINE_AA)
        cv2.drawMarker(img, centre, (80, 255, 120), cv2.MARKER_CROSS, 10, 1, cv2.LINE_AA)
    elif not state.present:
        _text(img, "hand lost", (x + w // 2 - 44, y + h // 2 + 6), 0.6, WARN, 2)


def _draw_bars(img: np.ndarray, bars: tuple[Bar, ...]) -> None:
    x, y, w, h = BARS
    _text(img, "controls  (amber tick: raw axis, white: 1-euro filtered, fill: control sent to the model)", (x, y),
          0.32, DIM_TEXT)
    row = 21 if len(bars) <= 12 else max(12, (h - 12) // len(bars))
    track_x, track_w = x + 78, 130
    for i, bar in enumerate(bars):
        top = y + 10 + i * row
        _text(img, bar.label, (x, top + row - 7), 0.4)
        cv2.rectangle(img, (track_x, top + 3), (track_x + track_w, top + row - 5), BAR_TRACK, -1)
        if bar.value is not None:
            fill = int(round(min(1.0, max(0.0, bar.value)) * track_w))
            cv2.rectangle(img, (track_x, top + 3), (track_x + fill, top + row - 5), BAR_FILL, -1)
        if bar.unfiltered is not None:  # drawn first: where the two agree, the white tick covers it
            tick = track_x + int(round(min(1.0, max(0.0, bar.unfiltered)) * track_w))
            cv2.line(img, (tick, top + 1), (tick, top + row - 3), RAW_TICK, 3)
        if bar.axis is not None:
            tick = track_x + int(round(min(1.0, max(0.0, bar.axis)) * track_w))
            cv2.line(img, (tick, top + 1), (tick, top + row - 3), FILTERED_TICK, 2)
        _text(img, bar.text, (track_x + track_w + 8, top + row - 7), 0.38, DIM_TEXT)


def _draw_status(img: np.ndarray, state: MonitorState) -> None:
    x, y, w, h = STATUS
    line_y = y + 14
    for alert in state.alerts:
        _text(img, alert, (x, line_y + 4), 0.6, ALERT, 2)
        line_y += 24
    for line in state.status:
        if line_y > y + h + 20:
            break
        _text(img, line, (x, line_y), 0.43)
        line_y += 19


def _draw_roll(img: np.ndarray, state: MonitorState) -> None:
    area = roll_area(state)
    draw_keys(img, area)
    draw_time_grid(img, area, 1.0)
    draw_notes(img, area, state.notes, now=state.t)
    px = area.x_of(state.t)
    cv2.line(img, (px, area.y), (px, area.y + area.h - 1), PLAYHEAD, 2)
    _text(img, f"notes sent, last {ROLL_SECONDS:g} s", (area.x, area.y - 10), 0.42, DIM_TEXT)
    draw_velocity_legend(img, area.x + area.w - 150, area.y - 18, 120, 8)
