"""Controllers: device streams (JeVois, Myo, webcam, replay, demo) turned into ControlFrames.

This package never imports torch or opens MIDI ports. `open_controller(spec)` is the
one way in; every controller has `latest()`, `next_frame(timeout)`, `stats()` and
`close()` and is a context manager (see `controllers.base.Controller`).

Specs: `auto`, `demo`, `jevois[:PORT]`, `myo[:PORT]`, `webcam[:INDEX|FILE]`, `osc[:PORT]`
(or `osc:HOST:PORT`), `replay:FILE.jsonl`; `mouse` (an XY pad window) is registered by
instrument/ui/mouse_pad.py, since GUI code lives in instrument/ui.
"""

from __future__ import annotations

import glob
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from controllers.base import Clock, Controller
from controllers.errors import ControllerError, ControllerSpecError, ControllerUnavailable

log = logging.getLogger(__name__)

__all__ = ["open_controller", "probe_auto", "accepted_specs", "register_scheme", "Controller",
           "ControllerError", "ControllerSpecError", "ControllerUnavailable"]

JEVOIS_USB_ID = (0x1D6B, 0x0102)  # JeVois-A33 smart camera (Linux gadget)
DEFAULT_JEVOIS_PORT = "/dev/ttyACM0"


@dataclass(frozen=True)
class OpenOptions:
    """What every opener gets besides the spec's argument."""

    clock: Clock
    profile: str | None
    raw: bool


Opener = Callable[[str | None, OpenOptions], Controller]
_SCHEMES: dict[str, tuple[Opener, str]] = {}


def register_scheme(scheme: str, usage: str) -> Callable[[Opener], Opener]:
    """Decorator adding a controller scheme (`usage` is shown in the list of accepted specs)."""

    def add(opener: Opener) -> Opener:
        _SCHEMES[scheme] = (opener, usage)
        return opener

    return add


def accepted_specs() -> str:
    """The accepted `--controller` specs, as one line."""
    return ", ".join(usage for _, usage in _SCHEMES.values())


# What kind of controller each scheme is: a voice picks its default mapping by kind.
SCHEME_KINDS = {"jevois": "camera", "webcam": "camera", "myo": "emg", "mouse": "xy", "osc": "replay",
                "replay": "replay", "demo": "replay"}


def controller_kind(spec: str) -> str:
    """camera | emg | xy | replay for an opened controller's spec (unknown schemes: replay, i.e. anything)."""
    return SCHEME_KINDS.get((spec or "").partition(":")[0], "replay")


def open_controller(spec: str, *, clock: Clock = time.monotonic, profile: str | None = None,
                    raw: bool = False) -> Controller:
    """Open the controller a `--controller` spec names (raises ControllerError subclasses).

    The controller's `spec` attribute says what was opened (for `auto`: what it picked).
    """
    scheme, _, arg = (spec or "").strip().partition(":")
    if scheme not in _SCHEMES:
        raise ControllerSpecError(f"unknown controller {spec!r}: use one of {accepted_specs()}")
    # A profile the performer named must exist, whatever the controller: a typo found at the
    # sound check beats a stage show played without the calibration.
    _load_profile(profile)
    controller = _SCHEMES[scheme][0](arg or None, OpenOptions(clock, profile, raw))
    if scheme != "auto":
        controller.spec = spec.strip()
    return controller


def _load_profile(name: str | None):
    if name is None:
        return None
    from controllers.calibration import load_profile

    return load_profile(name)


def _check_port(kind: str, path: str, scheme: str) -> None:
    if not os.path.exists(path):
        raise ControllerUnavailable(f"no {kind} at {path}: no such device; plug it in, name its port "
                                    f"({scheme}:/dev/ttyACMn), or use --controller demo")


def find_jevois() -> str | None:
    """The serial port of a plugged-in JeVois camera, or None."""
    from serial.tools import list_ports

    for port in list_ports.comports():
        text = " ".join(str(s) for s in (port.description, port.manufacturer, port.product) if s).lower()
        if (port.vid, port.pid) == JEVOIS_USB_ID or "jevois" in text:
            return port.device
    return None


@register_scheme("jevois", "jevois[:PORT]")
def _open_jevois(arg: str | None, opts: OpenOptions) -> Controller:
    from controllers.jevois import JeVoisController

    path = arg or find_jevois() or DEFAULT_JEVOIS_PORT
    _check_port("JeVois", path, "jevois")
    profile = _load_profile(opts.profile)
    return JeVoisController(path, clock=opts.clock, raw=opts.raw, reach=profile.reach if profile else None)


@register_scheme("myo", "myo[:PORT]")
def _open_myo(arg: str | None, opts: OpenOptions) -> Controller:
    from controllers.emg import PoseClassifier
    from controllers.myo import MyoController, find_bled112

    path = arg or find_bled112()
    if path is None:
        raise ControllerUnavailable("no BLED112 dongle (USB 2458:0001) found: plug it in, "
                                    "name its port (myo:/dev/ttyACMn), or use --controller demo")
    _check_port("Myo dongle", path, "myo")
    profile = _load_profile(opts.profile)
    poses = PoseClassifier(profile.poses) if profile and profile.poses else None
    return MyoController(path, clock=opts.clock, raw=opts.raw, poses=poses,
                         calibration=profile.emg if profile else None)


@register_scheme("webcam", "webcam[:INDEX]")
def _open_webcam(arg: str | None, opts: OpenOptions) -> Controller:
    quiet_opencv()
    from controllers.webcam import WebcamController

    source: int | str = 0 if arg is None else int(arg) if arg.isdigit() else arg  # index or video file
    profile = _load_profile(opts.profile)
    return WebcamController(source, clock=opts.clock, raw=opts.raw, reach=profile.reach if profile else None)


@register_scheme("osc", "osc[:PORT]")
def _open_osc(arg: str | None, opts: OpenOptions) -> Controller:
    from controllers.osc import OscController, parse_spec

    host, port = parse_spec(arg)
    return OscController(host, port, clock=opts.clock)


@register_scheme("replay", "replay:FILE.jsonl")
def _open_replay(arg: str | None, opts: OpenOptions) -> Controller:
    from controllers.replay import ReplayController

    if not arg:
        raise ControllerSpecError("replay needs a file: replay:FILE.jsonl")
    return ReplayController(arg, clock=opts.clock)


@register_scheme("demo", "demo")
def _open_demo(arg: str | None, opts: OpenOptions) -> Controller:
    from controllers.replay import DemoController

    if arg:
        raise ControllerSpecError(f"demo takes no argument, got 'demo:{arg}'")
    return DemoController(opts.clock)


def quiet_opencv() -> None:
    """Silence OpenCV's own log (`[ WARN:0@0.01] ... can't open camera by index`) before a camera is
    probed: our one-line messages say what happened. An OPENCV_LOG_LEVEL the user set is kept."""
    if "OPENCV_LOG_LEVEL" in os.environ:
        return
    import cv2

    cv_log = getattr(getattr(cv2, "utils", None), "logging", None)  # OpenCV 4 and 5
    if cv_log is not None and hasattr(cv_log, "setLogLevel"):
        cv_log.setLogLevel(cv_log.LOG_LEVEL_SILENT)
    elif hasattr(cv2, "setLogLevel"):  # older builds: 0 is LOG_LEVEL_SILENT
        cv2.setLogLevel(0)


def _camera_present() -> bool:
    if sys.platform.startswith("linux"):
        return bool(glob.glob("/dev/video*"))
    return True  # elsewhere only OpenCV can tell


def probe_auto() -> str:
    """The spec `auto` resolves to: a JeVois, else a Myo dongle, else a webcam, else demo."""
    from controllers.myo import find_bled112

    jevois = find_jevois()
    if jevois:
        return f"jevois:{jevois}"
    dongle = find_bled112()
    if dongle:
        return f"myo:{dongle}"
    if _camera_present():
        quiet_opencv()
        import cv2

        capture = cv2.VideoCapture(0)
        try:
            if capture.isOpened():
                return "webcam:0"
        finally:
            capture.release()
    return "demo"


@register_scheme("auto", "auto")
def _open_auto(arg: str | None, opts: OpenOptions) -> Controller:
    if arg:
        raise ControllerSpecError(f"auto takes no argument, got 'auto:{arg}'")
    spec = probe_auto()
    log.info("controller auto: using %s", spec)
    try:
        return open_controller(spec, clock=opts.clock, profile=opts.profile, raw=opts.raw)
    except ControllerUnavailable as err:
        log.warning("controller auto: %s; using demo", err)
        return open_controller("demo", clock=opts.clock)
