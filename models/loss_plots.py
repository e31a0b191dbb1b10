"""Training loss curves as PNGs beside the checkpoints, drawn with OpenCV (no plotting dependency)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_curves(history: list[dict], path: Path, size: tuple[int, int] = (800, 480)) -> None:
    """Train and validation loss (nats/event) against steps, as a PNG drawn with OpenCV."""
    import cv2

    w, h = size
    left, right, top, bottom = 70, 20, 30, 50
    img = np.full((h, w, 3), 255, np.uint8)
    series = {"train": [(r["step"], r["train_loss"]) for r in history if r.get("train_loss") is not None],
              "valid": [(r["step"], r["valid_nll"]) for r in history if r.get("valid_nll") is not None]}
    points = [p for s in series.values() for p in s]
    if points:
        xs, ys = zip(*points)
        x0, x1 = 0, max(max(xs), 1)
        y0, y1 = min(ys), max(ys)
        y0, y1 = (y0 - 0.05, y1 + 0.05) if y1 - y0 < 0.1 else (y0 - 0.05 * (y1 - y0), y1 + 0.05 * (y1 - y0))
        px = lambda x: int(left + (x - x0) / (x1 - x0) * (w - left - right))  # noqa: E731
        py = lambda y: int(h - bottom - (y - y0) / (y1 - y0) * (h - top - bottom))  # noqa: E731
        for i in range(5):  # grid and y labels
            y = y0 + (y1 - y0) * i / 4
            cv2.line(img, (left, py(y)), (w - right, py(y)), (225, 225, 225), 1)
            cv2.putText(img, f"{y:.2f}", (5, py(y) + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
        cv2.putText(img, f"step {x1}", (w - right - 80, h - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (60, 60, 60), 1, cv2.LINE_AA)
        for (name, pts), color in zip(series.items(), [(200, 120, 40), (40, 40, 220)]):
            if pts:
                poly = np.array([[px(x), py(y)] for x, y in pts], np.int32).reshape(-1, 1, 2)
                cv2.polylines(img, [poly], False, color, 2, cv2.LINE_AA)
                for x, y in poly.reshape(-1, 2):  # markers: one per epoch, visible from the first
                    cv2.circle(img, (int(x), int(y)), 3, color, -1, cv2.LINE_AA)
                cv2.putText(img, name, (left + 10 + 80 * (name == "valid"), top - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (w - right, h - bottom), (0, 0, 0), 1)
    cv2.putText(img, "loss (nats/event) vs step", (left + 200, top - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    _write_png(img, path)


def plot_losses(history: list[dict], path: Path, width: int = 900, height: int = 600) -> None:
    """Loss curves (W distance, GP, generator loss, info) as a PNG, drawn with OpenCV."""
    import cv2

    keys = [("wdist", (200, 80, 0)), ("gp", (0, 140, 255)), ("loss_g", (40, 40, 200)), ("info", (60, 160, 60)), ("rec", (150, 0, 150))]
    img = np.full((height, width, 3), 255, np.uint8)
    if len(history) < 2:
        _write_png(img, path)
        return
    panel_h = height // len(keys)
    for i, (key, colour) in enumerate(keys):
        y = np.array([h.get(key, np.nan) for h in history], dtype=float)
        y = y[np.isfinite(y)] if np.isfinite(y).any() else np.zeros(2)
        if len(y) > 50:  # moving average so the trend is readable
            y = np.convolve(y, np.ones(25) / 25, mode="valid")
        lo, hi = np.percentile(y, 1), np.percentile(y, 99)
        hi = hi if hi > lo else lo + 1.0
        xs = np.linspace(50, width - 10, len(y))
        ys = i * panel_h + 10 + (1 - (np.clip(y, lo, hi) - lo) / (hi - lo)) * (panel_h - 30)
        pts = np.stack([xs, ys], axis=1).astype(np.int32).reshape(-1, 1, 2)
        cv2.polylines(img, [pts], False, colour, 1, cv2.LINE_AA)
        cv2.putText(img, f"{key}  [{lo:.3g}, {hi:.3g}]  last {y[-1]:.3g}", (55, i * panel_h + 22),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
        cv2.line(img, (0, (i + 1) * panel_h), (width, (i + 1) * panel_h), (200, 200, 200), 1)
    cv2.putText(img, f"DCRNN WGAN-GP, {history[-1]['step']} generator steps", (55, height - 6),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    _write_png(img, path)


def _write_png(img: np.ndarray, path: Path) -> None:
    """Write atomically, so a viewer never opens a half-written picture while training runs."""
    import cv2

    tmp = path.with_suffix(".tmp.png")
    cv2.imwrite(str(tmp), img)
    tmp.replace(path)
