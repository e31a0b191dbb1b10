"""The one thread that talks to OpenCV's highgui, shared by the monitor window and the mouse pad.

OpenCV's Qt backend binds its GUI to the thread that makes the first highgui call;
a call from any other thread is queued to that thread and blocks until it runs.
So every window of the process lives on one daemon thread, `highgui`, and the rest
of the program never calls highgui itself: it adds a `Pane` (a render callback that
returns the image to show, plus mouse and close callbacks) and removes it.

The thread draws each pane at most `fps` times a second and pumps window events in
between with `waitKey`, so a mouse moving over a pane is seen within a few ms. A
render callback only reads what others published (snapshots); nothing ever waits
for this thread except `add()` and `remove()`, once, when a window opens or closes.

`display_problem()` says, before any highgui call, why no window can open (no
DISPLAY, an X server that does not answer, an OpenCV built without GUI): Qt aborts
the whole process when it cannot reach a display, so that must be checked first.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

log = logging.getLogger(__name__)

MouseCallback = Callable[[int, int, int, int], None]  # (cv2 event, x, y, flags) in image pixels
# A spin of the wheel is one gesture: the window is recreated to undo Qt's zoom only once the wheel has
# rested this long, because notches that arrive while it is being recreated go to no window and are lost.
WHEEL_REST_S = 0.4
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype", "/usr/share/fonts")


class DisplayUnavailable(RuntimeError):
    """No window can be opened here (the message says why, in one line)."""


def _gui_backend() -> str:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GUI:"):
            return line.split(":", 1)[1].strip()
    return "UNKNOWN"


def _x_server_answers(display: str) -> bool:
    name = ctypes.util.find_library("X11")
    if name is None:  # no libX11 to ask with: trust a local server's socket
        number = display.split(":")[-1].split(".")[0]
        return not display.startswith(":") or os.path.exists(f"/tmp/.X11-unix/X{number}")
    x11 = ctypes.CDLL(name)
    x11.XOpenDisplay.restype = ctypes.c_void_p
    x11.XOpenDisplay.argtypes = [ctypes.c_char_p]
    x11.XCloseDisplay.argtypes = [ctypes.c_void_p]
    handle = x11.XOpenDisplay(display.encode())
    if not handle:
        return False
    x11.XCloseDisplay(handle)
    return True


def display_problem() -> str | None:
    """Why no OpenCV window can open on this machine (one line), or None when one can."""
    if _gui_backend() in ("NONE", ""):
        return "this OpenCV has no GUI support (opencv-python-headless?): pip install opencv-python"
    if sys.platform.startswith("linux"):
        display = os.environ.get("DISPLAY", "")
        if not display and not os.environ.get("WAYLAND_DISPLAY"):
            return "no display (DISPLAY is not set)"
        if display and not _x_server_answers(display):
            return f"the X display {display} does not answer"
    return None


@dataclass(eq=False)
class Pane:
    """One window: what to show, and what to do with its mouse and close events."""

    name: str
    render: Callable[[], np.ndarray | None]  # BGR uint8 image, or None to keep the last one
    on_mouse: MouseCallback | None = None
    on_close: Callable[[], None] | None = None  # the user closed the window (or pressed Esc/q)
    image_rect: tuple[int, int, int, int] | None = None  # (x, y, w, h) of the image on screen
    frames: int = 0  # images shown so far
    unzooms: int = 0  # times the window was recreated to undo Qt's wheel zoom
    render_errors: int = 0
    _ready: threading.Event = field(default_factory=threading.Event, repr=False)
    _error: str | None = field(default=None, repr=False)
    _last_wheel: float | None = field(default=None, repr=False)  # monotonic time of the last notch, while zoomed


class GuiHost:
    """The highgui thread: `add(pane)` opens a window, `remove(name)` closes it."""

    def __init__(self, fps: float = 30.0) -> None:
        self.frame_s = 1.0 / fps
        self._panes: dict[str, Pane] = {}
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="highgui", daemon=True)
        self._started = False
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def add(self, pane: Pane, timeout: float = 5.0) -> Pane:
        """Open `pane`'s window (raises DisplayUnavailable with the reason if it cannot)."""
        problem = display_problem()
        if problem is not None:
            raise DisplayUnavailable(problem)
        if self._stopping.is_set():
            raise DisplayUnavailable("the window thread has stopped (the program is exiting)")
        with self._lock:
            if not self._started:
                self._started = True
                self._thread.start()
        if threading.current_thread() is self._thread:
            self._open(pane)  # from a callback on this thread: open now (queueing would deadlock)
        else:
            self._requests.put(("add", pane))
        if not pane._ready.wait(timeout):
            raise DisplayUnavailable(f"the window {pane.name!r} did not open within {timeout:g} s")
        if pane._error is not None:
            raise DisplayUnavailable(pane._error)
        return pane

    def remove(self, name: str, timeout: float = 2.0) -> None:
        """Close a window (no-op if it is not open); waits until it is gone, unless called from a callback."""
        done = threading.Event()
        self._requests.put(("remove", name, done))
        if threading.current_thread() is not self._thread:
            done.wait(timeout)

    def stop(self, timeout: float = 2.0) -> None:
        """Close every window and end the thread (at exit: Qt aborts if its thread dies with windows open)."""
        self._stopping.set()
        if self._started and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def pane(self, name: str) -> Pane | None:
        """The open pane of that name, or None."""
        return self._panes.get(name)

    # ------------------------------------------------------------------ the thread
    def _loop(self) -> None:
        for font_dir in FONT_DIRS:  # opencv-python's Qt ships no fonts; point it at the system's
            if os.path.isdir(font_dir):
                os.environ.setdefault("QT_QPA_FONTDIR", font_dir)
                break
        next_frame = time.monotonic()
        while not self._stopping.is_set():
            self._serve_requests()
            for pane in list(self._panes.values()):
                if pane._last_wheel is not None and time.monotonic() - pane._last_wheel >= WHEEL_REST_S:
                    self._unzoom(pane)
                else:
                    self._draw(pane)
            next_frame += self.frame_s
            now = time.monotonic()
            if next_frame < now:
                next_frame = now  # fell behind: drop frames rather than hurry
            # waitKey pumps window events (mouse, close) while it waits for the next frame
            key = cv2.waitKey(max(1, int((next_frame - now) * 1000))) if self._panes else -1
            if not self._panes:
                time.sleep(self.frame_s)
            self._check_closed(key)
        for name in list(self._panes):
            self._destroy(name)
        self._panes.clear()
        while not self._requests.empty():  # nobody may wait forever on a window that will never open
            request = self._requests.get_nowait()
            if request[0] == "add":
                request[1]._error = "the window thread has stopped"
                request[1]._ready.set()
            else:
                request[2].set()

    def _serve_requests(self) -> None:
        while True:
            try:
                request = self._requests.get_nowait()
            except queue.Empty:
                return
            if request[0] == "add":
                self._open(request[1])
            else:
                _, name, done = request
                pane = self._panes.pop(name, None)
                if pane is not None:
                    self._destroy(name)
                done.set()

    def _open(self, pane: Pane) -> None:
        try:
            self._create(pane)
            self._draw(pane)
            cv2.waitKey(1)
            pane.image_rect = tuple(cv2.getWindowImageRect(pane.name))
        except cv2.error as err:
            pane._error = f"OpenCV cannot open a window: {str(err).strip().splitlines()[-1]}"
            self._panes.pop(pane.name, None)
        pane._ready.set()

    def _create(self, pane: Pane) -> None:
        cv2.namedWindow(pane.name, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
        cv2.setMouseCallback(pane.name, lambda event, x, y, flags, _: self._on_mouse(pane, event, x, y, flags))
        self._panes[pane.name] = pane

    @staticmethod
    def _on_mouse(pane: Pane, event: int, x: int, y: int, flags: int) -> None:
        if event in (cv2.EVENT_MOUSEWHEEL, cv2.EVENT_MOUSEHWHEEL):
            pane._last_wheel = time.monotonic()  # Qt's highgui zooms the view on the wheel: undone once it rests
        if pane.on_mouse is not None:
            pane.on_mouse(event, x, y, flags)

    def _unzoom(self, pane: Pane) -> None:
        """Recreate a window the wheel zoomed, at the same place (highgui has no call to reset the zoom)."""
        pane._last_wheel = None
        x, y = (pane.image_rect or (0, 0))[:2]
        self._destroy(pane.name)
        self._create(pane)
        cv2.moveWindow(pane.name, x, y)
        self._draw(pane)
        cv2.waitKey(1)
        rect = tuple(cv2.getWindowImageRect(pane.name))
        if rect[:2] != (x, y):  # moveWindow places the frame, the rect is the image: correct by the difference
            cv2.moveWindow(pane.name, 2 * x - rect[0], 2 * y - rect[1])
            cv2.waitKey(1)
            rect = tuple(cv2.getWindowImageRect(pane.name))
        pane.image_rect = rect
        pane.unzooms += 1

    def _draw(self, pane: Pane) -> None:
        try:
            image = pane.render()
        except Exception as err:  # noqa: BLE001 - a drawing bug must not take the window thread down
            pane.render_errors += 1
            if pane.render_errors == 1:
                log.warning("window %s: drawing failed: %s", pane.name, err, exc_info=True)
            return
        if image is not None:
            cv2.imshow(pane.name, image)
            pane.frames += 1
            if pane.frames % 15 == 1:
                pane.image_rect = tuple(cv2.getWindowImageRect(pane.name))

    def _check_closed(self, key: int) -> None:
        for name, pane in list(self._panes.items()):
            closed = key in (27, ord("q"))  # Esc or q closes the window under focus: all of ours
            if not closed:
                try:
                    closed = cv2.getWindowProperty(name, cv2.WND_PROP_VISIBLE) < 1
                except cv2.error:
                    closed = True
            if closed:
                self._panes.pop(name, None)
                self._destroy(name)
                if pane.on_close is not None:
                    pane.on_close()

    @staticmethod
    def _destroy(name: str) -> None:
        try:
            cv2.destroyWindow(name)
            cv2.waitKey(1)
        except cv2.error:
            pass


_HOST: GuiHost | None = None
_HOST_LOCK = threading.Lock()


def host() -> GuiHost:
    """The process-wide highgui thread (started when the first window opens)."""
    global _HOST
    with _HOST_LOCK:
        if _HOST is None:
            _HOST = GuiHost()
            atexit.register(_HOST.stop)
        return _HOST
