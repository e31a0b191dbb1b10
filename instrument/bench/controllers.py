"""`instrument bench controllers`: adapter overhead and webcam tracker cost.

Adapter overhead is measured from the moment bytes are written into the fake
device's pty to the moment the adapter's frame is available to a waiting reader
(the real JeVois/Myo adapters, real ptys, real pyserial). It includes the pty
hand-off and one thread wake-up, as on real USB serial. Goal: p99 <= 1 ms.
The webcam tracker is timed on synthetic 320x240 frames with a moving blob.
Goal: <= 3 ms per frame.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def configure_controllers(parser: argparse.ArgumentParser) -> None:
    """Flags of `instrument bench controllers`."""
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    parser.add_argument("--samples", type=int, default=300, help="frames measured per adapter (default 300)")


def _percentiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {"p50_ms": round(float(np.percentile(a, 50)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "max_ms": round(float(a.max()), 3), "n": int(a.size)}


def _measure(controller, emit, samples: int) -> list[float]:
    """Write one message with `emit()`, time until the controller publishes its frame."""
    latencies = []
    seq = controller.frames.seq
    for _ in range(samples):
        time.sleep(0.004)  # let the device thread go back to waiting, as between real frames
        start = time.perf_counter()
        emit()
        got = controller.frames.wait_newer(seq, 1.0)
        end = time.perf_counter()
        if got is None:
            continue
        seq = got[0]
        latencies.append((end - start) * 1e3)
    return latencies


def bench_jevois(samples: int) -> dict:
    """Bytes of one N2 line into the pty -> frame available, real JeVois adapter."""
    from controllers.fakes import FakeJeVois
    from controllers.jevois import JeVoisController

    with FakeJeVois(stream_on_start=False) as fake:
        controller = JeVoisController(fake.path, clock=time.monotonic)
        try:
            deadline = time.monotonic() + 5.0
            while "streamon" not in fake.commands and time.monotonic() < deadline:
                time.sleep(0.01)
            fake.streaming = False  # we write the lines ourselves
            xs = iter(np.linspace(-900, 900, samples + 1).round().astype(int).tolist() * 2)
            return _percentiles(_measure(controller, lambda: fake.write_raw(f"N2 blob {next(xs)} 0 200 200\r\nMARK STOP\r\n".encode()), samples))
        finally:
            controller.close()


def bench_myo(samples: int) -> dict:
    """Bytes of one EMG notification into the pty -> frame available, real Myo adapter."""
    from controllers.fakes import FakeBLED112
    from controllers.myo import MyoController

    with FakeBLED112(autostream=False) as fake:
        controller = MyoController(fake.path, clock=time.monotonic)
        try:
            deadline = time.monotonic() + 5.0
            while not fake.streaming and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.05)
            return _percentiles(_measure(controller, fake.emit_emg, samples))
        finally:
            controller.close()


def bench_webcam(frames: int = 300) -> dict:
    """HandTracker time per 320x240 frame, a disk moving over a noisy background."""
    import cv2

    from controllers.webcam import HandTracker

    rng = np.random.default_rng(0)
    background = rng.integers(0, 60, size=(240, 320, 3), dtype=np.uint8)
    tracker = HandTracker()
    times = []
    for i in range(frames + 30):
        image = background.copy()
        cv2.circle(image, (int(160 + 100 * np.cos(i / 15)), int(120 + 70 * np.sin(i / 15))), 30, (200, 180, 160), -1)
        start = time.perf_counter()
        tracker.process(image)
        if i >= 30:  # the background model warms up first
            times.append((time.perf_counter() - start) * 1e3)
    return _percentiles(times)


def run_controllers(args: argparse.Namespace) -> int:
    """Run the three measurements and print them (text or JSON)."""
    samples = max(10, args.samples)
    results = {
        "jevois_bytes_to_frame": bench_jevois(samples),
        "myo_bytes_to_frame": bench_myo(samples),
        "webcam_tracker_320x240": bench_webcam(),
    }
    goals = {"jevois_bytes_to_frame": 1.0, "myo_bytes_to_frame": 1.0, "webcam_tracker_320x240": 3.0}
    if args.json:
        print(json.dumps({"results": results, "goals_p99_ms": goals}))
        return 0
    print(f"{'measure':26s} {'p50 ms':>8s} {'p99 ms':>8s} {'max ms':>8s} {'goal p99':>9s}")
    for name, r in results.items():
        mark = "ok" if r["p99_ms"] <= goals[name] else "OVER"
        print(f"{name:26s} {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} {r['max_ms']:8.3f} {goals[name]:8.1f}  {mark}")
    return 0
