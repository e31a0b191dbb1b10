"""Fake devices on real ptys, speaking the real protocols: for tests, benchmarks and rehearsal.

Each fake owns the master side of an `os.openpty()` pair and exposes the slave
through a stable symlink path (like a udev `/dev/serial/by-id/...` link), which the
real adapter opens with pyserial. `unplug()` closes the pty and removes the link, so
the adapter sees the same EIO and "no such file" as with a real USB device;
`replug()` creates a fresh pty behind the same path.

    python -m controllers.fakes jevois    # prints the path, streams a circling hand
    python -m controllers.fakes myo       # a BLED112 with a Myo behind it
    python -m controllers.fakes osc       # an OSC sender (controllers/fake_osc.py) to UDP port 9000
"""

from __future__ import annotations

import argparse
import math
import os
import select
import shutil
import sys
import tempfile
import threading
import time
import tty
from collections.abc import Callable

HandPath = Callable[[float], "tuple[float, float, float] | None"]


def circling_hand(t: float) -> tuple[float, float, float] | None:
    """A hand circling the frame once every 4 s, lost for 0.5 s every 10 s."""
    if t % 10.0 > 9.5:
        return None
    angle = 2.0 * math.pi * t / 4.0
    return 0.5 + 0.35 * math.cos(angle), 0.5 + 0.35 * math.sin(angle), 0.2


class PtyDevice:
    """A pty whose slave is reachable at `self.path`, a symlink that vanishes on unplug."""

    def __init__(self, name: str = "tty") -> None:
        self._dir = tempfile.mkdtemp(prefix="fake-dev-")
        self.path = os.path.join(self._dir, name)
        self.master: int | None = None
        self._slave: int | None = None
        self.write_lock = threading.Lock()
        self.dropped_writes = 0
        self.plug()

    @property
    def plugged(self) -> bool:
        """True while the device is present."""
        return self.master is not None

    def plug(self) -> None:
        """Create a fresh pty and point the symlink at it."""
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no CR/LF translation: a byte pipe like USB CDC
        os.set_blocking(master, False)  # a reader that went away must not block the fake
        tmp = self.path + ".new"
        os.symlink(os.ttyname(slave), tmp)
        os.replace(tmp, self.path)
        self.master, self._slave = master, slave

    def unplug(self) -> None:
        """Remove the path and close the pty: readers get EIO, openers get ENOENT."""
        with self.write_lock:
            if os.path.lexists(self.path):
                os.unlink(self.path)
            for fd in (self.master, self._slave):
                if fd is not None:
                    os.close(fd)
            self.master = self._slave = None

    def write(self, data: bytes, timeout: float = 1.0) -> None:
        """Send bytes to the host, waiting up to `timeout` s for room; the rest is dropped (counted)."""
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        with self.write_lock:
            while view and self.master is not None:
                try:
                    view = view[os.write(self.master, view):]
                except BlockingIOError:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    select.select([], [self.master], [], min(left, 0.05))
                except OSError:
                    break
            if view:
                self.dropped_writes += 1

    def read(self, timeout: float) -> bytes:
        """Bytes the host wrote, waiting up to `timeout` s; b'' if none."""
        fd = self.master
        if fd is None:
            time.sleep(timeout)
            return b""
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
            return os.read(fd, 4096) if ready else b""
        except (OSError, ValueError):  # closed by unplug() meanwhile, or no slave open yet
            time.sleep(min(timeout, 0.01))
            return b""

    def close(self) -> None:
        """Unplug for good and remove the temporary folder."""
        self.unplug()
        shutil.rmtree(self._dir, ignore_errors=True)


class FakeDevice:
    """A PtyDevice served by a thread calling `_tick()`; start/unplug/replug/close."""

    def __init__(self, name: str) -> None:
        self.pty = PtyDevice(name)
        self.path = self.pty.path
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"fake-{name}", daemon=True)
        self.t0 = time.monotonic()

    def start(self):
        """Start serving; returns self."""
        self._thread.start()
        return self

    def unplug(self) -> None:
        """The device vanishes (pty closed, path removed)."""
        self.pty.unplug()
        self._on_unplug()

    def replug(self) -> None:
        """The device comes back at the same path, freshly booted."""
        self.pty.plug()

    def write_raw(self, data: bytes) -> None:
        """Inject arbitrary bytes into the host's input (for fuzzing)."""
        self.pty.write(data)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._tick()

    def _tick(self) -> None:
        raise NotImplementedError

    def _on_unplug(self) -> None:
        pass

    def close(self) -> None:
        """Stop the thread and remove the device."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        self.pty.close()

    def __enter__(self):
        return self.start() if not self._thread.is_alive() else self

    def __exit__(self, *exc_info) -> None:
        self.close()


class FakeJeVois(FakeDevice):
    """A JeVois running ObjectTracker: answers the start-up commands, streams a hand path.

    `answer=False` models a camera that ignores commands (its own script set it up);
    `err_on` lists commands answered with ERR; `stream_on_start` streams before
    `streamon`. The serial style follows `setpar serstyle` (Terse T2, Normal N2,
    Detail D2 with vertex count), as on the camera; each video frame ends in MARK STOP.
    """

    def __init__(
        self,
        hand: HandPath = circling_hand,
        *,
        fps: float = 60.0,
        answer: bool = True,
        err_on: tuple[str, ...] = (),
        stream_on_start: bool = False,
        style: str = "Normal",
        stamp: bool = False,
    ) -> None:
        super().__init__("jevois")
        self.hand = hand
        self.fps = fps
        self.answer = answer
        self.err_on = tuple(err_on)
        self.stream_on_start = stream_on_start
        self.initial_style = style
        self.stamp = stamp
        self.commands: list[str] = []
        self.boots = 0
        self.frames_sent = 0
        self._boot()

    def _boot(self) -> None:
        self.boots += 1
        self.streaming = self.stream_on_start
        self.style = self.initial_style
        self._inbox = b""
        self._next_frame_t = time.monotonic()

    def replug(self) -> None:
        """Come back at the same path, freshly booted (settings reset, not streaming)."""
        self._boot()
        super().replug()

    def _reply(self, command: str) -> str:
        if not self.answer:
            return ""
        if any(command.startswith(bad) for bad in self.err_on):
            return f"ERR Unsupported command [{command}]\r\n"
        words = command.split()
        if command == "ping":
            return "ALIVE\r\nOK\r\n"
        if command == "streamon":
            self.streaming = True
        elif command == "streamoff":
            self.streaming = False
        elif words[:2] == ["setpar", "serstyle"] and len(words) == 3:
            self.style = words[2]
        elif not words:
            return ""
        return "OK\r\n"

    def _detection_line(self, x: float, y: float, size: float) -> str:
        cx, cy, half = x * 2000 - 1000, (1 - y) * 1500 - 750, size * 1000
        if self.style == "Terse":
            line = f"T2 {cx:.0f} {cy:.0f}"
        elif self.style == "Detail":
            corners = [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
            line = "D2 blob 4 " + " ".join(f"{a:.0f} {b:.0f}" for a, b in corners)
        else:
            line = f"N2 blob {cx:.0f} {cy:.0f} {2 * half:.0f} {2 * half:.0f}"
        return (f"{self.frames_sent} " if self.stamp else "") + line + "\r\n"

    def _tick(self) -> None:
        now = time.monotonic()
        wait = min(0.005, self._next_frame_t - now) if self.streaming else 0.005
        data = self.pty.read(max(0.0, wait))
        if data:
            self._inbox += data
            while b"\n" in self._inbox:
                raw, self._inbox = self._inbox.split(b"\n", 1)
                command = raw.decode("utf-8", "replace").strip()
                if command:
                    self.commands.append(command)
                    self.pty.write(self._reply(command).encode())
        now = time.monotonic()
        if self.streaming and self.pty.plugged and now >= self._next_frame_t:
            self._next_frame_t = max(self._next_frame_t + 1.0 / self.fps, now - 0.1)
            hand = self.hand(now - self.t0)
            out = self._detection_line(*hand) if hand is not None else ""
            self.pty.write((out + "MARK STOP\r\n").encode())
            self.frames_sent += 1


def __getattr__(name: str):
    if name == "FakeBLED112":  # lazy: keeps the JeVois fake free of the BGAPI modules
        from controllers.fake_bled112 import FakeBLED112

        return FakeBLED112
    if name == "FakeOscSender":  # lazy: UDP, no pty
        from controllers.fake_osc import FakeOscSender

        return FakeOscSender
    raise AttributeError(name)


def main(argv: list[str] | None = None) -> int:
    """`python -m controllers.fakes {jevois,myo,osc}`: run a fake device until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="python -m controllers.fakes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("device", choices=("jevois", "myo", "osc"))
    parser.add_argument("--port", type=int, default=9000, help="osc: the UDP port to send to (default 9000)")
    parser.add_argument("--style", choices=("instrument", "wekinator"), default="instrument",
                        help="osc: /instrument/... bundles or Wekinator's /wek/outputs")
    args = parser.parse_args(argv)
    if args.device == "osc":
        from controllers.fake_osc import stream_forever

        print(f"sending OSC ({args.style}) to 127.0.0.1:{args.port}; "
              f"try: instrument monitor --controller osc:{args.port}", file=sys.stderr, flush=True)
        stream_forever(args.port, style=args.style)
        return 0
    if args.device == "jevois":
        fake = FakeJeVois()
        spec = f"jevois:{fake.path}"
    else:
        from controllers.fake_bled112 import FakeBLED112

        fake = FakeBLED112()
        spec = f"myo:{fake.path}"
    with fake:
        print(fake.path, flush=True)
        print(f"try: instrument monitor --controller {spec}", file=sys.stderr, flush=True)
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
