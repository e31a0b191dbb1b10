"""A session's piano roll as a PNG, drawn with OpenCV: notes over time, the gesture underneath.

Top: the notes of the session's .mid (what was sent, at the times it was sent), one
lane per pitch with its name on the left, coloured by velocity (the legend is at the
top right), beat and bar lines from the file's tempo with the bar numbers above, and
the time in seconds below. Underneath, on the same time axis, the control curves of
the session's JSONL (`NAME.controls.jsonl`): x, y and size of the hand, the 8 EMG
channels, and shading where the hand was lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import mido
import numpy as np

from controllers.frame import ControlFrame
from instrument.ui.pianoroll import (BACKGROUND, DIM_TEXT, FONT, GRID, TEXT, RollArea, draw_keys, draw_notes,
                                  draw_time_grid, draw_velocity_legend, pitch_range)

WIDTH = 1400
LEFT, RIGHT = 64, 24  # margins: pitch names on the left
TITLE_H = 56
CURVE_H = 70  # one strip of control curves
AXIS_COLORS = {"x": (90, 200, 255), "y": (120, 240, 120), "size": (240, 170, 90)}  # BGR
EMG_COLORS = [tuple(int(c) for c in cv2.applyColorMap(np.uint8([[i * 32 + 16]]), cv2.COLORMAP_HSV)[0, 0])
              for i in range(8)]
LOST_SHADE = (40, 40, 90)


@dataclass(frozen=True)
class RollImage:
    """What was drawn: the image and where its notes are, for callers that check it."""

    image: np.ndarray  # BGR uint8
    area: RollArea  # the notes' pitch/time geometry
    notes: int
    duration: float
    strips: tuple[RollArea, ...] = ()  # the control-curve strips (values 0..1 bottom to top), hand then EMG


def read_tempo(midi: mido.MidiFile) -> float:
    """The first tempo of a MIDI file in bpm (120 when it has none)."""
    for track in midi.tracks:
        for message in track:
            if message.type == "set_tempo":
                return mido.tempo2bpm(message.tempo)
    return 120.0


def _seconds_step(duration: float, width: int) -> float:
    """A round label step giving labels at least ~70 px apart."""
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600):
        if step / max(duration, 1e-6) * width >= 70:
            return float(step)
    return 1200.0


def draw_session_roll(notes, frames: list[ControlFrame] | None, *, tempo: float = 120.0, title: str = "",
                      width: int = WIDTH) -> RollImage:
    """The roll image for `notes` (models.events.Note) and the session's frames (t in session seconds)."""
    end = max([n.end for n in notes] + [f.t for f in frames or []] + [1.0])
    duration = math.ceil(end * 2) / 2  # to the next half second
    lo, hi = pitch_range((n.pitch for n in notes), min_span=24)
    lanes = hi - lo + 1
    lane_h = min(12, max(4, 560 // lanes))
    roll_h = lanes * lane_h
    has_emg = bool(frames) and any(f.emg is not None for f in frames)
    strips = (["hand"] + (["emg"] if has_emg else [])) if frames else []
    height = TITLE_H + roll_h + 28 + len(strips) * (CURVE_H + 22) + 10
    img = np.full((height, width, 3), BACKGROUND, np.uint8)
    area = RollArea(LEFT, TITLE_H, width - LEFT - RIGHT, roll_h, 0.0, duration, lo, hi)

    cv2.putText(img, title, (LEFT, 22), FONT, 0.55, TEXT, 1, cv2.LINE_AA)
    cv2.putText(img, f"{len(notes)} notes, {end:.1f} s, {tempo:.0f} bpm (bar lines: 4/4)", (LEFT, 42), FONT, 0.42,
                DIM_TEXT, 1, cv2.LINE_AA)
    draw_velocity_legend(img, width - RIGHT - 160, 16, 130, 8)
    draw_keys(img, area, every_pitch=True)
    _draw_beats(img, area, tempo)
    draw_time_grid(img, area, _seconds_step(duration, area.w), lines=False)
    draw_notes(img, area, ((n.pitch, n.velocity, n.start, n.end) for n in notes))

    y = TITLE_H + roll_h + 28
    strip_areas = []
    for strip in strips:
        strip_areas.append(RollArea(LEFT, y + 16, area.w, CURVE_H, 0.0, duration, 0, 1))
        _draw_strip(img, strip_areas[-1], frames, strip)
        y += CURVE_H + 22
    return RollImage(img, area, len(notes), end, tuple(strip_areas))


def _draw_beats(img: np.ndarray, area: RollArea, tempo: float) -> None:
    """Faint beat lines (when they are at least 6 px apart), bar lines and bar numbers (4/4)."""
    beat = 60.0 / tempo
    px_per_s = area.w / (area.t1 - area.t0)
    bar_px = 4 * beat * px_per_s
    number_every = next(k for k in (1, 2, 4, 8, 16, 32, 64, 10**6) if k * bar_px >= 28)
    for k in range(int((area.t1 - area.t0) / beat + 1e-9) + 1):
        x = area.x_of(area.t0 + k * beat)
        if k % 4 == 0:
            cv2.line(img, (x, area.y), (x, area.y + area.h - 1), GRID, 1)
            if (k // 4) % number_every == 0:
                cv2.putText(img, str(k // 4 + 1), (x + 2, area.y - 3), FONT, 0.33, DIM_TEXT, 1, cv2.LINE_AA)
        elif beat * px_per_s >= 6:
            cv2.line(img, (x, area.y), (x, area.y + area.h - 1), (36, 34, 31), 1)


def _draw_strip(img: np.ndarray, area: RollArea, frames: list[ControlFrame], kind: str) -> None:
    """One strip of control curves (values 0..1 bottom to top) with hand-lost shading."""
    x0, y0, w, h = area.x, area.y, area.w, area.h
    cv2.rectangle(img, (x0, y0), (x0 + w - 1, y0 + h - 1), (34, 31, 28), -1)
    start = None
    for frame in frames + [ControlFrame(t=area.t1, present=True)]:  # shade runs of lost frames
        if not frame.present and start is None:
            start = frame.t
        elif frame.present and start is not None:
            cv2.rectangle(img, (area.x_of(start), y0), (area.x_of(frame.t), y0 + h - 1), LOST_SHADE, -1)
            start = None
    cv2.rectangle(img, (x0, y0), (x0 + w - 1, y0 + h - 1), GRID, 1)
    if kind == "hand":
        series = {name: [(f.t, getattr(f, name)) for f in frames if f.present and getattr(f, name) is not None]
                  for name in AXIS_COLORS}
        colors = AXIS_COLORS
        legend = "hand: x (left-right)  y (height)  size    shaded: hand lost"
    else:
        series = {f"emg{i}": [(f.t, f.emg[i]) for f in frames if f.present and f.emg is not None] for i in range(8)}
        colors = {f"emg{i}": EMG_COLORS[i] for i in range(8)}
        legend = "EMG envelopes, channels 0-7"
    cv2.putText(img, legend, (x0, y0 - 5), FONT, 0.38, DIM_TEXT, 1, cv2.LINE_AA)
    for name, points in series.items():
        _polyline(img, area, points, colors[name])
    if kind == "hand":
        x = x0 + w - 150
        for name, color in AXIS_COLORS.items():
            cv2.line(img, (x, y0 - 9), (x + 14, y0 - 9), color, 2)
            cv2.putText(img, name, (x + 18, y0 - 5), FONT, 0.38, TEXT, 1, cv2.LINE_AA)
            x += 50


def _polyline(img: np.ndarray, area: RollArea, points: list[tuple[float, float]], color) -> None:
    """Draw a curve, broken where samples are more than 0.25 s apart (the hand was lost)."""
    run: list[tuple[int, int]] = []
    last_t = None
    for t, v in points:
        if last_t is not None and t - last_t > 0.25 and len(run) > 1:
            cv2.polylines(img, [np.array(run, np.int32)], False, color, 2, cv2.LINE_AA)
            run = []
        run.append((area.x_of(t), int(round(area.y + (1.0 - v) * (area.h - 1)))))
        last_t = t
    if len(run) > 1:
        cv2.polylines(img, [np.array(run, np.int32)], False, color, 2, cv2.LINE_AA)


def render_png(mid_path: str | Path, out_path: str | Path, controls_path: str | Path | None = None) -> RollImage:
    """Read a session (.mid and, if given, its controls JSONL) and write its roll PNG."""
    from controllers.replay import read_jsonl
    from models.events import midi_to_notes

    midi = mido.MidiFile(str(mid_path), clip=True)
    notes = midi_to_notes(midi, include_drums=True)
    frames = read_jsonl(controls_path) if controls_path is not None else None
    roll = draw_session_roll(notes, frames, tempo=read_tempo(midi), title=Path(mid_path).name)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out_path), roll.image, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"cannot write {out_path}")
    return roll
