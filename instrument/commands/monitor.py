"""`instrument monitor`: print (or record) a controller's live frames, then its drop counters.

A performer checks the hardware with it: is the camera seeing my hand, does the
armband stream, how many lines or packets were dropped? `--json` prints the JSONL
frame format (one object per line, `t` in seconds from the start), the same format
`--record` writes and `replay:FILE.jsonl` plays back.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import sys
import time
from collections.abc import Callable

from controllers.frame import ControlFrame
from instrument.errors import UsageError

BARS = " ▁▂▃▄▅▆▇█"
WINDOW_MODULE = "instrument.ui.monitor_window"  # optional: when installed, `--window` shows frames (open_window_sink)


def _window_extension():
    """The live-window module (`--window`) when it is installed, else None; imported only when used."""
    return importlib.import_module(WINDOW_MODULE) if _window_installed() else None


def _window_installed() -> bool:
    return importlib.util.find_spec(WINDOW_MODULE) is not None  # no import: the window loads OpenCV


def add_controller_arguments(parser: argparse.ArgumentParser) -> None:
    """`--controller`, `--profile` and `--raw`, shared by monitor and calibrate."""
    parser.add_argument("--controller", default="auto", metavar="SPEC",
                        help="auto (default), demo, jevois[:PORT], myo[:PORT], webcam[:INDEX], "
                             "osc[:PORT] (UDP, default 9000), replay:FILE.jsonl, mouse")
    parser.add_argument("--profile", metavar="NAME", help="calibration profile to apply (see `instrument calibrate`)")


def configure(parser: argparse.ArgumentParser) -> None:
    """Flags of `instrument monitor`."""
    add_controller_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object per frame (JSONL)")
    parser.add_argument("--frames", type=int, metavar="N", help="stop after N frames")
    parser.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds")
    parser.add_argument("--record", metavar="FILE.jsonl", help="also record the frames to a JSONL file")
    parser.add_argument("--raw", action="store_true", help="values before filtering and calibration")
    if _window_installed():  # the flag only: importing the window module at --help costs OpenCV's 0.2 s
        parser.add_argument("--window", action="store_true", help="also show the frames in a window: "
                            "camera (or XY pad), hand circle and control bars")


def open_for_cli(spec: str, profile: str | None = None, raw: bool = False):
    """open_controller with its errors turned into one-line UsageErrors."""
    from controllers import open_controller
    from controllers.errors import ControllerError

    try:
        return open_controller(spec, profile=profile, raw=raw)
    except ControllerError as err:
        raise UsageError(str(err)) from None


def format_frame(frame: ControlFrame, t0: float) -> str:
    """One human-readable line for a frame."""
    head = f"{frame.t - t0:8.3f}s"
    if not frame.present:
        return f"{head}  -- hand lost --"
    parts = [head]
    axes = " ".join(f"{name}={value:.3f}" for name, value in (("x", frame.x), ("y", frame.y), ("size", frame.size))
                    if value is not None)  # an OSC sender may send only some axes
    if axes:
        parts.append(axes)
    if frame.emg is not None:
        bars = "".join(BARS[min(8, int(v * 8.999))] for v in frame.emg)
        parts.append(f"emg[{bars}] " + " ".join(f"{v:.2f}" for v in frame.emg))
    if frame.pose is not None:
        parts.append(f"pose={frame.pose}")
    return "  ".join(parts)


def run(args: argparse.Namespace) -> int:
    """Stream frames until --frames/--seconds, the end of a replay, or Ctrl-C."""
    if args.frames is not None and args.frames < 1:
        raise UsageError(f"--frames must be at least 1, got {args.frames}")
    t0 = time.monotonic()  # before opening: the demo and replays start their script at open
    controller = open_for_cli(args.controller, args.profile, args.raw)
    sinks: list[Callable[[ControlFrame], None]] = []
    closers: list[Callable[[], None]] = [controller.close]
    if args.json:
        sinks.append(lambda fr: print(json.dumps(fr.to_json(t0), separators=(",", ":")), flush=True))
    else:
        sinks.append(lambda fr: print(format_frame(fr, t0), flush=True))
    if args.record:
        from controllers.errors import ControllerError
        from controllers.replay import FrameRecorder

        try:
            recorder = FrameRecorder(args.record, t0)
        except ControllerError as err:
            controller.close()
            raise UsageError(str(err)) from None
        sinks.append(recorder.write)
        closers.insert(0, recorder.close)
    if getattr(args, "window", False):
        sink = _window_extension().open_window_sink(args, controller)
        sinks.append(sink)
        closers.insert(0, sink.close)
    count = 0
    try:
        while args.frames is None or count < args.frames:
            if args.seconds is not None and time.monotonic() - t0 >= args.seconds:
                break
            frame = controller.next_frame(timeout=0.25)
            if frame is None:
                if controller.stats().get("finished"):
                    break  # a replay ended
                continue
            count += 1
            for sink in sinks:
                sink(frame)
    except KeyboardInterrupt:
        pass
    finally:
        stats = controller.stats()
        for close in closers:
            close()
        counters = " ".join(f"{k}={v}" for k, v in stats.items())
        print(f"monitor: {count} frames from {args.controller}; {counters}", file=sys.stderr, flush=True)
    return 0
