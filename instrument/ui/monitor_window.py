"""The live monitor window: `instrument play --monitor` and `instrument monitor --window`.

The window lives on the shared highgui thread (`instrument.ui.highgui`) and draws at
most 30 frames a second. Each frame it takes a snapshot (the engine's `snapshot()`,
or the latest controller frame in `instrument monitor`), turns it into a
`MonitorState` and draws it (`instrument.ui.monitor_view`). The engine never waits for
it and never calls it: when drawing is slow, frames are dropped, never the music.

With no display (no DISPLAY, an X server that does not answer, an OpenCV without
GUI) opening says so in one line and returns None: the instrument plays on.

With `--controller mouse` the camera panel is the XY pad: the monitor takes the
pad over from the mouse controller's own window and forwards the pointer to it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from controllers.frame import ControlFrame
from instrument.ui.highgui import DisplayUnavailable, Pane, host
from instrument.controls import Controls
from instrument.mapping import AxisMap, Mapping
from instrument.ui.monitor_view import CAMERA, Bar, MonitorState, draw
from instrument.ui.pianoroll import pitch_name

WINDOW_NAME = "Deep Symphony Live - monitor"
DROPPED_LINES = ("garbage", "not_utf8", "unsupported", "overlong")  # JeVois serial lines thrown away
DROPPED_PACKETS = ("gaps", "link_losses", "read_failures")  # Myo notifications lost, camera reads failed


class MonitorWindow:
    """A window showing `source()` (a MonitorState) on the highgui thread; `close()` ends it."""

    def __init__(self, source: Callable[[], MonitorState], controller=None) -> None:
        self.source = source
        self.controller = controller
        self._pad = controller if hasattr(controller, "attach_window") else None
        self.pane: Pane | None = None
        self.closed = False

    def open(self) -> None:
        """Open the window (raises DisplayUnavailable with the reason)."""
        on_mouse = self._forward_to_pad if self._pad is not None else None
        self.pane = host().add(Pane(WINDOW_NAME, lambda: draw(self.source()), on_mouse=on_mouse,
                                    on_close=self._closed_by_user))
        if self._pad is not None:
            self._pad.attach_window()

    def _forward_to_pad(self, event: int, x: int, y: int, flags: int) -> None:
        cx, cy, cw, ch = CAMERA
        self._pad.pointer_event(event, x - cx, y - cy, flags, cw, ch)

    def _closed_by_user(self) -> None:
        self.closed = True
        if self._pad is not None:
            self._pad.detach_window()

    def close(self) -> None:
        """Close the window (idempotent); the mouse pad, if any, is left closed too."""
        if not self.closed and self.pane is not None:
            self.closed = True
            host().remove(self.pane.name)


# ---------------------------------------------------------------------- what to show
def _axis_value(frame, axis: str) -> float | None:
    """One axis ("y", "emg3", ...) of a ControlFrame or of its Unfiltered values; None when absent."""
    if frame is None or not getattr(frame, "present", True):
        return None
    if axis.startswith("emg"):
        return frame.emg[int(axis[3:])] if frame.emg is not None else None
    return getattr(frame, axis)


def _axis_text(axis: str, filtered: float | None, unfiltered: float | None) -> str:
    """'y 0.62' or, where the controller filters, 'y 0.65>0.62' (before > after the 1€ filter)."""
    if filtered is None:
        return f"{axis} -"
    return f"{axis} {filtered:.2f}" if unfiltered is None else f"{axis} {unfiltered:.2f}>{filtered:.2f}"


def _fraction(axis_map: AxisMap, value: float | None) -> float | None:
    if value is None or axis_map.hi == axis_map.lo:
        return None
    return (value - axis_map.lo) / (axis_map.hi - axis_map.lo)


UNITS = {"density": " /s", "transpose": " st"}


def control_bars(frame: ControlFrame | None, controls: Controls | None, mapping: Mapping,
                 listens: frozenset[str] | None = None) -> tuple[Bar, ...]:
    """A bar per mapped control the voice listens to (all mapped ones when `listens` is None)."""
    controls = controls or Controls(present=False)
    unfiltered = frame.unfiltered if frame is not None else None
    heard = (lambda name: True) if listens is None else (lambda name: name in listens)
    bars = []
    for name, axis_map in mapping.scalars.items():
        if not heard(name):
            continue
        unit = UNITS.get(name, "")
        axis = _axis_value(frame, axis_map.axis)
        before = _axis_value(unfiltered, axis_map.axis) if axis is not None else None
        value = getattr(controls, name)
        shown = "-" if value is None else f"{value:.1f}{unit}"
        if name == "register" and value is not None:
            shown += f" {pitch_name(int(round(value)))}"
        bars.append(Bar(name, axis, _fraction(axis_map, value), f"{_axis_text(axis_map.axis, axis, before)} -> {shown}",
                        unfiltered=before))
    if mapping.noise is not None and heard("noise_slots") and (controls.noise_slots is not None or (frame is not None and frame.emg)):
        for channel, slot in enumerate(mapping.noise_slots):
            axis = _axis_value(frame, f"emg{channel}")
            before = _axis_value(unfiltered, f"emg{channel}") if axis is not None else None
            value = controls.noise_slots[slot] if controls.noise_slots and slot < len(controls.noise_slots) else None
            bars.append(Bar(f"emg{channel}", axis, _fraction(mapping.noise, value),
                            f"{_axis_text('', axis, before).strip()} -> slot {slot} {'-' if value is None else f'{value:+.2f}'}",
                            unfiltered=before))
    if mapping.poses is not None and heard("theme") and (controls.theme is not None or (frame is not None and frame.pose)):
        pose = frame.pose if frame is not None else None
        bars.append(Bar("theme", None, None, f"pose {pose or '-'} -> {controls.theme or '-'}"))
    return tuple(bars)


def camera_view(controller, spec: str) -> tuple[object, str]:
    """(BGR image or None, label) for the camera panel of this controller."""
    image = getattr(controller, "last_image", None)
    if image is not None:
        return image, f"{spec}: hand tracker"
    kind = type(controller).__name__
    if hasattr(controller, "attach_window"):
        return None, "XY pad: move = hand, wheel = size, right click = away"
    if "JeVois" in kind:
        return None, "JeVois: video stays on the camera (serial stream)"
    return None, f"{spec}: no camera image (the circle is the hand it reports)"


def controller_line(spec: str, stats: dict) -> tuple[str, list[str]]:
    """The controller status line and its alerts (reconnecting)."""
    lines = sum(stats.get(k, 0) for k in DROPPED_LINES)
    packets = sum(stats.get(k, 0) for k in DROPPED_PACKETS)
    text = f"controller {spec}: dropped lines {lines}, packets {packets}"
    if stats.get("reconnects"):
        text += f", reconnects {stats['reconnects']}"
    alerts = ["RECONNECTING " + spec] if stats.get("connected", 1) == 0 and not stats.get("finished") else []
    return text, alerts


def _ms(value) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def state_from_snapshot(snap, *, mapping: Mapping, controller, spec: str, seed: int | None,
                        clock_mode: str, listens: frozenset[str] | None = None) -> MonitorState:
    """The monitor state of one `Engine.snapshot()` (an EngineSnapshot)."""
    frame = snap.frame
    image, label = camera_view(controller, spec)
    stats = snap.stats or {}
    clock = {"none": "free-running (no MIDI clock)", "internal": "sending MIDI clock (24 ppqn)"}.get(
        clock_mode, f"following {clock_mode[7:]}" if clock_mode.startswith("follow:") else clock_mode)
    ctl_text, alerts = controller_line(spec, snap.controller or {})
    if frame is None or not frame.present:
        alerts.insert(0, "HAND LOST")
    midi = snap.midi or "no MIDI"
    if "lost" in midi.lower() or midi.lower().startswith("no midi"):
        alerts.append(midi if len(midi) < 48 else midi[:45] + "...")
    status = (
        f"model {snap.model} on {snap.device}" + (f", seed {seed}" if seed is not None else ""),
        midi if midi.upper().startswith("MIDI") else f"MIDI {midi}",
        f"tempo {snap.tempo:.1f} bpm, clock {clock}",
        f"control->note p99 {_ms(stats.get('control_to_note_p99_ms'))}, jitter p99 {_ms(stats.get('jitter_p99_ms'))}",
        f"sent {stats.get('sent', 0)} msgs, late {stats.get('late', 0)}, caught up {stats.get('caught_up', 0)}, "
        f"underruns {stats.get('underruns', 0)}, "
        f"rollbacks {stats.get('rollbacks', 0)}",
        ctl_text,
        f"t {snap.t:.1f} s, generated to {snap.horizon:.2f} s",
    )
    hand = (frame.x, frame.y, frame.size) if frame is not None and frame.present and frame.x is not None else None
    return MonitorState(t=snap.t, present=frame is not None and frame.present, hand=hand, camera=image,
                        camera_label=label, bars=control_bars(frame, snap.controls, mapping, listens), notes=snap.notes,
                        status=status, alerts=tuple(alerts))


def open_play_monitor(session, echo: Callable[[str], None] | None = None) -> MonitorWindow | None:
    """`play --monitor`: a window on the session's engine, or None (said in one line) without a display."""
    config = session.config
    mapping = session.engine.mapping

    def source() -> MonitorState:
        engine = session.engine
        if not engine.t0:  # not started: no session time yet (and an early snapshot() would be meaningless)
            return MonitorState(t=0.0, status=(f"starting {config.controller} -> {config.model} ...",))
        return state_from_snapshot(engine.snapshot(), mapping=mapping, controller=session.controller,
                                   spec=config.controller, seed=session.seed, clock_mode=config.clock,
                                   listens=engine.generation.listens)

    return _open(MonitorWindow(source, session.controller), "instrument play", echo)


def _open(window: MonitorWindow, who: str, echo) -> MonitorWindow | None:
    echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
    try:
        window.open()
    except DisplayUnavailable as err:
        echo(f"{who}: no monitor window: {err}; playing on without it")
        return None
    return window


# ---------------------------------------------------------------------- instrument monitor --window
def configure_window(parser: argparse.ArgumentParser) -> None:
    """Add `--window` to `instrument monitor`."""
    parser.add_argument("--window", action="store_true",
                        help="also show the frames in a window: camera (or XY pad), hand circle and control bars")


class _FrameSink:
    """`instrument monitor --window`: keeps the newest frame; the window draws it at its own pace."""

    def __init__(self, controller, spec: str, mapping: Mapping) -> None:
        self.controller, self.spec, self.mapping = controller, spec, mapping
        self.frame: ControlFrame | None = None
        self.controls: Controls | None = None
        self.t0: float | None = None
        self.window: MonitorWindow | None = None

    def __call__(self, frame: ControlFrame) -> None:
        """Take one frame (called by the monitor loop; cheap)."""
        if self.t0 is None:
            self.t0 = frame.t
        self.controls = self.mapping.map(frame)
        self.frame = frame

    def state(self) -> MonitorState:
        """What the window shows now."""
        frame, controls = self.frame, self.controls
        image, label = camera_view(self.controller, self.spec)
        text, alerts = controller_line(self.spec, self.controller.stats())
        if frame is None or not frame.present:
            alerts.insert(0, "HAND LOST")
        t = 0.0 if frame is None or self.t0 is None else frame.t - self.t0
        counters = ", ".join(f"{k} {v}" for k, v in self.controller.stats().items())
        hand = (frame.x, frame.y, frame.size) if frame is not None and frame.present and frame.x is not None else None
        return MonitorState(t=t, present=frame is not None and frame.present, hand=hand, camera=image,
                            camera_label=label, bars=control_bars(frame, controls, self.mapping),
                            status=("instrument monitor: the controller alone (no model, no MIDI)", text,
                                    counters[:90], f"t {t:.1f} s, mapping {self.mapping.source}"),
                            alerts=tuple(alerts), roll=False)

    def close(self) -> None:
        """Close the window."""
        if self.window is not None:
            self.window.close()


def open_window_sink(args: argparse.Namespace, controller) -> Callable[[ControlFrame], None]:
    """`instrument monitor --window`: a frame sink with `.close()` (a no-op sink without a display)."""
    sink = _FrameSink(controller, args.controller, Mapping.default())
    sink.window = _open(MonitorWindow(sink.state, controller), "instrument monitor", None)
    return sink


__all__ = ["MonitorWindow", "open_play_monitor", "open_window_sink", "configure_window", "state_from_snapshot",
           "control_bars"]
