"""Piano-roll drawing with OpenCV, shared by the live monitor and the exported PNG.

Pure functions on a BGR image: `draw_keys` paints the pitch lanes (black keys darker,
a line and a name at every C), `draw_notes` paints notes as boxes coloured by
velocity, `draw_time_grid` the vertical time lines. Geometry lives in `RollArea`, so
a test can ask where a pitch or a time lands.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
BLACK_KEYS = frozenset({1, 3, 6, 8, 10})
FONT = cv2.FONT_HERSHEY_SIMPLEX

BACKGROUND = (24, 22, 20)  # BGR
WHITE_LANE = (40, 37, 34)
BLACK_LANE = (30, 28, 26)
GRID = (70, 66, 62)
TEXT = (210, 210, 205)
DIM_TEXT = (140, 140, 135)
PLAYHEAD = (255, 255, 255)

Note = tuple[int, int, float, float | None]  # (pitch, velocity, start s, end s or None = still sounding)


def pitch_name(pitch: int) -> str:
    """Scientific pitch name of a MIDI note: 60 -> 'C4', 61 -> 'C#4'."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


def _turbo_lut() -> np.ndarray:
    ramp = np.linspace(40, 235, 128).astype(np.uint8).reshape(-1, 1)  # skip turbo's darkest blue and red
    return cv2.applyColorMap(ramp, cv2.COLORMAP_TURBO).reshape(128, 3)


VELOCITY_LUT = _turbo_lut()  # (128, 3) BGR: blue = soft, green = medium, red = loud


def velocity_color(velocity: int) -> tuple[int, int, int]:
    """The BGR colour of a note of this velocity (1..127)."""
    b, g, r = VELOCITY_LUT[min(127, max(0, int(velocity)))]
    return int(b), int(g), int(r)


def pitch_range(pitches: Iterable[int], min_span: int = 24) -> tuple[int, int]:
    """A lowest and highest pitch to show: whole octaves around the notes, at least `min_span` wide."""
    pitches = list(pitches)
    if not pitches:
        return 48, 48 + max(min_span, 12) - 1
    lo, hi = min(pitches), max(pitches)
    while hi - lo + 1 < min_span:
        lo, hi = lo - 1, hi + 1
    lo = max(0, lo - lo % 12)
    hi = min(127, hi + (11 - hi % 12))
    return lo, hi


@dataclass(frozen=True)
class RollArea:
    """Where a roll is drawn: pixel rectangle, time span [t0, t1] and pitch span [lo, hi]."""

    x: int
    y: int
    w: int
    h: int
    t0: float
    t1: float
    lo: int
    hi: int

    @property
    def lane_h(self) -> float:
        """Height of one pitch lane in pixels."""
        return self.h / (self.hi - self.lo + 1)

    def x_of(self, t: float) -> int:
        """The pixel column of time `t` (seconds)."""
        return int(round(self.x + (t - self.t0) / (self.t1 - self.t0) * self.w))

    def lane(self, pitch: int) -> tuple[int, int]:
        """Top and bottom pixel rows of a pitch's lane (higher pitch = higher up)."""
        top = self.y + (self.hi - pitch) * self.lane_h
        return int(round(top)), int(round(top + self.lane_h)) - 1


def draw_keys(img: np.ndarray, area: RollArea, label_x: int | None = None, every_pitch: bool = False) -> None:
    """Pitch lanes (black keys darker), a line at each C and the C names left of `area` (or at `label_x`)."""
    cv2.rectangle(img, (area.x, area.y), (area.x + area.w - 1, area.y + area.h - 1), WHITE_LANE, -1)
    show_all = every_pitch and area.lane_h >= 11
    for pitch in range(area.lo, area.hi + 1):
        top, bottom = area.lane(pitch)
        if pitch % 12 in BLACK_KEYS:
            cv2.rectangle(img, (area.x, top), (area.x + area.w - 1, bottom), BLACK_LANE, -1)
        if pitch % 12 == 0:
            cv2.line(img, (area.x, bottom), (area.x + area.w - 1, bottom), GRID, 1)
        if pitch % 12 == 0 or (show_all and pitch % 12 not in BLACK_KEYS):
            name = pitch_name(pitch)
            scale = 0.4 if area.lane_h >= 9 else 0.32
            (tw, th), _ = cv2.getTextSize(name, FONT, scale, 1)
            x = (label_x if label_x is not None else area.x - 6 - tw)
            y = min(area.y + area.h - 1, max(area.y + th, (top + bottom) // 2 + th // 2))
            cv2.putText(img, name, (x, y), FONT, scale, TEXT if pitch % 12 == 0 else DIM_TEXT, 1, cv2.LINE_AA)


def draw_time_grid(img: np.ndarray, area: RollArea, step: float, lines: bool = True, origin: float = 0.0) -> None:
    """Every `step` s from `origin`: a vertical line (or, with lines=False, a tick below) and the time (t >= 0)."""
    first = math.ceil((area.t0 - origin) / step - 1e-9)
    last = math.floor((area.t1 - origin) / step + 1e-9)
    bottom = area.y + area.h
    for k in range(first, last + 1):
        t = origin + k * step
        x = area.x_of(t)
        if lines:
            cv2.line(img, (x, area.y), (x, bottom - 1), GRID, 1)
        else:
            cv2.line(img, (x, bottom), (x, bottom + 4), DIM_TEXT, 1)
        if t < 0:
            continue  # before the session started
        text = f"{t:g} s"
        (tw, th), _ = cv2.getTextSize(text, FONT, 0.38, 1)
        cv2.putText(img, text, (max(area.x, x - tw // 2), bottom + th + 6), FONT, 0.38, DIM_TEXT, 1, cv2.LINE_AA)


def draw_notes(img: np.ndarray, area: RollArea, notes: Iterable[Note], now: float | None = None) -> int:
    """Paint each note in the area as a box coloured by velocity; returns how many were visible."""
    x_lo, x_hi = area.x, area.x + area.w - 1
    shown = 0
    for pitch, velocity, start, end in notes:
        if end is None:
            end = now if now is not None else start
        if end < area.t0 or start > area.t1 or not area.lo <= pitch <= area.hi:
            continue
        top, bottom = area.lane(pitch)
        x0 = max(x_lo, area.x_of(start))
        x1 = min(x_hi, max(x0 + 1, area.x_of(end) - 1))  # a 1 px gap separates repeated notes
        color = velocity_color(velocity)
        cv2.rectangle(img, (x0, top), (x1, max(top, bottom - (1 if area.lane_h >= 4 else 0))), color, -1)
        shown += 1
    return shown


def draw_velocity_legend(img: np.ndarray, x: int, y: int, w: int, h: int) -> None:
    """A horizontal velocity colour bar, 1 to 127, labelled."""
    ramp = np.repeat(VELOCITY_LUT[np.linspace(1, 127, w).astype(int)][np.newaxis], h, axis=0)
    img[y:y + h, x:x + w] = ramp
    cv2.putText(img, "velocity 1", (x - 78, y + h - 1), FONT, 0.38, DIM_TEXT, 1, cv2.LINE_AA)
    cv2.putText(img, "127", (x + w + 4, y + h - 1), FONT, 0.38, DIM_TEXT, 1, cv2.LINE_AA)
