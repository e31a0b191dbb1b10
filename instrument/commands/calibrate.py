"""`instrument calibrate`: record a performer's EMG rest/max and reach box into a profile.

    instrument calibrate --controller myo --profile alice
    instrument calibrate --controller jevois --profile alice      # reach box
    instrument calibrate --controller myo --profile alice --poses rest,wave_in,wave_out

The profile is saved as TOML in the user config directory
(`$XDG_CONFIG_HOME/deep-symphony/profiles/NAME.toml`); `play --profile NAME` and
`monitor --profile NAME` load it. Parts not measured this time are kept.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import numpy as np

from instrument.commands.monitor import add_controller_arguments, open_for_cli
from instrument.errors import UsageError


def configure(parser: argparse.ArgumentParser) -> None:
    """Flags of `instrument calibrate`."""
    add_controller_arguments(parser)
    parser.set_defaults(profile="default")
    parser.add_argument("--seconds", type=float, default=4.0, metavar="S",
                        help="length of each recording phase (default 4; the reach phase takes twice as long)")
    parser.add_argument("--countdown", type=float, default=3.0, metavar="S",
                        help="seconds to get ready before each phase (default 3)")
    parser.add_argument("--poses", metavar="A,B,...",
                        help="also record example envelopes of these poses for the pose classifier")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _record(controller, prompt: str, seconds: float, countdown: float) -> list:
    _say(prompt)
    for left in range(int(round(countdown)), 0, -1):
        _say(f"  {left}...")
        time.sleep(1.0)
    _say("  recording")
    frames, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        frame = controller.next_frame(timeout=0.1)
        if frame is not None and frame.present:
            frames.append(frame)
    return frames


def _probe(controller, timeout: float = 5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        frame = controller.next_frame(timeout=0.1)
        if frame is not None and frame.present:
            return frame
    raise UsageError("the controller sent no frames with a hand or signal in 5 s; check it with `instrument monitor`")


def run(args: argparse.Namespace) -> int:
    """Run the calibration phases the device supports and save the profile."""
    from controllers.calibration import EmgCalibration, Profile, ReachBox, load_profile, profile_path, save_profile
    from controllers.errors import ControllerError

    if args.seconds <= 0 or args.countdown < 0:
        raise UsageError("--seconds must be > 0 and --countdown >= 0")
    try:
        path = profile_path(args.profile)
        profile = load_profile(args.profile) if path.exists() else Profile(name=args.profile)
    except ControllerError as err:
        raise UsageError(str(err)) from None
    controller = open_for_cli(args.controller, None, raw=True)
    try:
        first = _probe(controller)
        if first.emg is not None:
            rest = _record(controller, "Relax your forearm completely.", args.seconds, args.countdown)
            peak = _record(controller, "Squeeze your fist as hard as is comfortable.", args.seconds, args.countdown)
            if not rest or not peak:
                raise UsageError("no EMG frames arrived while recording; check the armband with `instrument monitor`")
            lo = np.mean([f.emg for f in rest], axis=0)
            hi = np.percentile([f.emg for f in peak], 95, axis=0)
            weak = [i for i in range(8) if hi[i] < lo[i] + 0.01]
            if weak:
                raise UsageError(f"EMG channel(s) {weak} barely rose above rest; squeeze harder or check the armband's fit")
            emg = EmgCalibration(rest=tuple(float(v) for v in lo), max=tuple(float(v) for v in hi))
            profile = replace(profile, emg=emg)
            if args.poses:
                poses = {}
                for label in [p.strip() for p in args.poses.split(",") if p.strip()]:
                    frames = _record(controller, f"Hold the pose {label!r}.", args.seconds, args.countdown)
                    examples = [emg.apply(f.emg) for f in frames][:: max(1, len(frames) // 50)]
                    if not examples:
                        raise UsageError(f"no EMG frames arrived while recording pose {label!r}")
                    poses[label] = examples
                profile = replace(profile, poses=poses)
        if first.x is not None:
            frames = _record(controller, "Move your hand around the edges of your comfortable reach.",
                             2 * args.seconds, args.countdown)
            xs, ys = [f.x for f in frames], [f.y for f in frames]
            if len(frames) < 5:
                raise UsageError("the camera saw the hand in fewer than 5 frames; check it with `instrument monitor`")
            bx, by = np.percentile(xs, [2, 98]), np.percentile(ys, [2, 98])
            if bx[1] - bx[0] < 0.05 or by[1] - by[0] < 0.05:
                raise UsageError("the reach box is too small; move your hand further left/right and up/down")
            reach = ReachBox(x=(float(bx[0]), float(bx[1])), y=(float(by[0]), float(by[1])))
            profile = replace(profile, reach=reach)
        saved = save_profile(profile)
    except ControllerError as err:
        raise UsageError(str(err)) from None
    finally:
        controller.close()
    print(saved)
    return 0
