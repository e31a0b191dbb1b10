"""Make the README's pictures from a real session: `python docs/make_images.py`.

Plays 20 s with the shipped Char-RNN, driven by the fake JeVois on a real pty (a hand
circling the frame, so the monitor shows raw and 1€-filtered axes), into a JACK server
with the dummy driver, with `--monitor` on an Xvfb display. Near the end it screenshots
the monitor window (docs/monitor.png), then `instrument export` draws the recorded
session (docs/session-roll.png). Needs what the tests need: jackd2, xvfb, libx11-6.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from controllers.fakes import FakeJeVois  # noqa: E402
from tests.conftest import JackServer  # noqa: E402
from tests.xdisplay import XDisplay, start_xvfb  # noqa: E402

SECONDS = 20.0
SHOT_AT = 17.0  # seconds into the session: the roll is full, the hand mid-circle


def crop_to_window(screen: np.ndarray) -> np.ndarray:
    """The monitor window out of a screenshot of the otherwise black Xvfb root."""
    ys, xs = np.nonzero(screen.max(axis=2))
    return screen[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def main() -> int:
    """Play, screenshot, export; prints the files written."""
    work = Path(tempfile.mkdtemp(prefix="ds-images-"))
    jack = JackServer("dsimages", work / "jackd.log")
    jack.start()
    display, xvfb = start_xvfb(work / "xvfb.log")
    try:
        with FakeJeVois() as camera:
            session = work / "session.mid"
            env = {**jack.env, "DISPLAY": display}
            play = subprocess.Popen(
                [sys.executable, "-m", "instrument", "play", "--controller", f"jevois:{camera.path}",
                 "--midi-api", "jack", "--clock", "internal", "--duration", str(SECONDS), "--seed", "11",
                 "--record", str(session), "--monitor"], cwd=ROOT, env=env)
            started = time.monotonic()
            time.sleep(max(0.0, SHOT_AT - (time.monotonic() - started)))
            screen = XDisplay(display).screenshot(1280, 800)
            if play.wait(timeout=120) != 0:
                raise SystemExit(f"instrument play exited {play.returncode}")
        cv2.imwrite(str(ROOT / "docs" / "monitor.png"), crop_to_window(screen))
        subprocess.run([sys.executable, "-m", "instrument", "export", str(session),
                        "--png", str(ROOT / "docs" / "session-roll.png")], cwd=ROOT, check=True)
    finally:
        xvfb.terminate()
        jack.stop()
    print("wrote docs/monitor.png and docs/session-roll.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
