"""A real X display for window tests: Xvfb when DISPLAY is unset, screenshots and a pointer.

Screenshots read the X server's framebuffer with `XGetImage` on the root window, the
same pixels `xwd -root` would save, through libX11 via ctypes (no extra tools). The
pointer is driven with `XWarpPointer` (real MotionNotify events) and the wheel with
the XTEST extension (libXtst), the way a user's hand on a mouse drives them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from tests.required import missing

_ZPIXMAP = 2
_ALL_PLANES = ctypes.c_ulong(0xFFFFFFFF)



class _XImage(ctypes.Structure):
    _fields_ = [("width", ctypes.c_int), ("height", ctypes.c_int), ("xoffset", ctypes.c_int),
                ("format", ctypes.c_int), ("data", ctypes.POINTER(ctypes.c_ubyte)),
                ("byte_order", ctypes.c_int), ("bitmap_unit", ctypes.c_int),
                ("bitmap_bit_order", ctypes.c_int), ("bitmap_pad", ctypes.c_int), ("depth", ctypes.c_int),
                ("bytes_per_line", ctypes.c_int), ("bits_per_pixel", ctypes.c_int)]


def _libx11():
    name = ctypes.util.find_library("X11")
    if name is None:
        missing("libX11 is not installed (apt install libx11-6)")
    lib = ctypes.CDLL(name)
    lib.XOpenDisplay.restype = ctypes.c_void_p
    lib.XOpenDisplay.argtypes = [ctypes.c_char_p]
    lib.XDefaultRootWindow.restype = ctypes.c_ulong
    lib.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
    lib.XGetImage.restype = ctypes.POINTER(_XImage)
    lib.XGetImage.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_int, ctypes.c_int, ctypes.c_uint,
                              ctypes.c_uint, ctypes.c_ulong, ctypes.c_int]
    lib.XDestroyImage = None  # a macro in Xlib; the image's own destroy function is used instead
    lib.XWarpPointer.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_int, ctypes.c_int,
                                 ctypes.c_uint, ctypes.c_uint, ctypes.c_int, ctypes.c_int]
    lib.XDisplayWidth.argtypes = lib.XDisplayHeight.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.XFlush.argtypes = [ctypes.c_void_p]
    lib.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.XCloseDisplay.argtypes = [ctypes.c_void_p]
    lib.XFree.argtypes = [ctypes.c_void_p]
    return lib


class XDisplay:
    """A connection to the test display: `screenshot()`, `move_pointer()`, `wheel()`."""

    def __init__(self, display: str) -> None:
        self.name = display
        self.x11 = _libx11()
        self.handle = self.x11.XOpenDisplay(display.encode())
        if not self.handle:
            missing(f"cannot open X display {display}")
        self.root = self.x11.XDefaultRootWindow(self.handle)

    def screenshot(self, width: int, height: int) -> np.ndarray:
        """The top-left `width` x `height` pixels of the screen (at most all of it) as BGR (like `xwd -root`)."""
        width = min(width, self.x11.XDisplayWidth(self.handle, 0))  # beyond the screen Xlib would exit()
        height = min(height, self.x11.XDisplayHeight(self.handle, 0))
        self.x11.XSync(self.handle, 0)
        image = self.x11.XGetImage(self.handle, self.root, 0, 0, width, height, _ALL_PLANES, _ZPIXMAP)
        if not image:
            raise AssertionError("XGetImage failed")
        try:
            info = image.contents
            assert info.bits_per_pixel == 32, f"unexpected {info.bits_per_pixel} bits per pixel"
            raw = np.ctypeslib.as_array(info.data, shape=(info.height * info.bytes_per_line,))
            rows = raw.reshape(info.height, info.bytes_per_line)[:, : info.width * 4]
            return rows.reshape(info.height, info.width, 4)[:, :, :3].copy()  # BGRX (little endian) -> BGR
        finally:
            self.x11.XFree(ctypes.cast(image.contents.data, ctypes.c_void_p))
            self.x11.XFree(ctypes.cast(image, ctypes.c_void_p))

    def move_pointer(self, x: int, y: int) -> None:
        """Warp the pointer to screen position (x, y): a real motion event for the window under it."""
        self.x11.XWarpPointer(self.handle, 0, self.root, 0, 0, 0, 0, x, y)
        self.x11.XFlush(self.handle)

    def wheel(self, steps: int) -> None:
        """Turn the wheel `steps` notches (positive = up) through XTEST."""
        name = ctypes.util.find_library("Xtst")
        if name is None:
            missing("libXtst is not installed (apt install libxtst6)")
        xtst = ctypes.CDLL(name)
        xtst.XTestFakeButtonEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_ulong]
        button = 4 if steps > 0 else 5
        for _ in range(abs(steps)):
            xtst.XTestFakeButtonEvent(self.handle, button, 1, 0)
            xtst.XTestFakeButtonEvent(self.handle, button, 0, 0)
            self.x11.XFlush(self.handle)
            time.sleep(0.05)

    def close(self) -> None:
        """Close the connection."""
        if self.handle:
            self.x11.XCloseDisplay(self.handle)
            self.handle = None


def _socket_for(display: str) -> Path:
    return Path(f"/tmp/.X11-unix/X{display.lstrip(':').split('.')[0]}")


def start_xvfb(log: Path, width: int = 1280, height: int = 800) -> tuple[str, subprocess.Popen]:
    """Start `Xvfb :N` on a free display number; (":N", process)."""
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        missing("Xvfb is not installed (apt install xvfb)")
    for number in range(90 + os.getpid() % 100, 400):
        display = f":{number}"
        if _socket_for(display).exists() or Path(f"/tmp/.X{number}-lock").exists():
            continue
        with open(log, "ab") as out:
            proc = subprocess.Popen([xvfb, display, "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break  # lost a race for this number: try the next
            if _socket_for(display).exists():
                return display, proc
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    missing(f"Xvfb did not start (see {log})")
    raise AssertionError("unreachable")


_STARTED: dict[str, object] = {}


def ensure_display(log_dir: Path) -> str:
    """The display for window tests: $DISPLAY when set (CI starts Xvfb), else an Xvfb started once per process.

    Qt connects to a display once per process, so every window test must share one.
    """
    import atexit

    if "display" in _STARTED:
        return _STARTED["display"]
    display = os.environ.get("DISPLAY")
    if not display:
        display, proc = start_xvfb(log_dir / "xvfb.log")
        os.environ["DISPLAY"] = display

        def stop_xvfb() -> None:  # after the window thread closed its windows (atexit runs in reverse)
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()

        atexit.register(stop_xvfb)
    x11, deadline = _libx11(), time.monotonic() + 10.0
    while not (handle := x11.XOpenDisplay(display.encode())):  # Xvfb makes its socket before it answers
        if time.monotonic() > deadline:
            missing(f"the X display {display} does not answer")
        time.sleep(0.05)
    x11.XCloseDisplay(handle)
    _STARTED["display"] = display
    return display
