"""OSC in over UDP: Wekinator, TouchOSC, Max/Pd or MediaPipe senders turned into ControlFrames.

`osc[:PORT]` or `osc:HOST:PORT` listens for UDP datagrams (default port 9000 on every
interface, so a phone on the same network can reach it). Two address spaces are understood:

    /wek/outputs  f f f ...     Wekinator's outputs, in [0, 1]: x, y, size, then emg0..emg7
                                in that order (fewer outputs set fewer axes; more are ignored)
    /instrument/x     f         hand left/right, 0 = left
    /instrument/y     f         hand height, 0 = bottom
    /instrument/size  f         hand size (distance to the camera)
    /instrument/roll, /pitch, /yaw  f   an orientation (a phone's, an armband's): 0.5 = level
    /instrument/xy    f f       x and y at once (a TouchOSC XY pad)
    /instrument/present  b|f|i  hand there (T/F, or a number > 0.5)
    /instrument/emg   f x 8     the 8 EMG channels
    /instrument/emg/N f         EMG channel N, 0..7
    /instrument/pose  s         a pose name (an empty string clears it)
    /instrument/frame f f f [b|f|i]   x y size [present]

Numbers are ints or floats; values outside [0, 1] are clamped (counted as `clamped`). An axis
keeps its last value until a message changes it, so a sender may send only what moved. Until a
sender uses /present (or /frame with 4 arguments), any axis message means the hand is there.
Messages in one datagram (an OSC bundle) make one frame, stamped at receipt by the injected
clock; bundle time tags are ignored (a late gesture is played now). Values pass unfiltered:
smooth in the sender if needed.

What cannot be used is dropped and counted, never raised: `not_osc` (bytes that are no OSC
packet), `unknown_address`, `bad_args` (wrong count or type, a pose that is no short string),
`non_finite` (NaN or infinity). The first few unknown addresses are logged once each, so a
sender set up with the wrong addresses shows at once in `instrument monitor`.

`parse_datagram` and `parse_message` are pure; `OscState` turns updates into frames (time
passed in); `OscController` is the thin UDP thread around them.
"""

from __future__ import annotations

import logging
import math
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage

from controllers.base import Clock, ThreadedController
from controllers.errors import ControllerSpecError, ControllerUnavailable
from controllers.frame import SCALAR_FRAME_AXES, ControlFrame

log = logging.getLogger(__name__)

DEFAULT_PORT = 9000
DEFAULT_HOST = "0.0.0.0"  # every interface: TouchOSC on a phone sends over the network
MAX_DATAGRAM = 65536  # UDP's largest payload fits
MAX_POSE_LEN = 64  # as in a recorded take
EMG_CHANNELS = 8
WEKINATOR = "/wek/outputs"
PREFIX = "/instrument/"
MAX_LOGGED_UNKNOWN = 8  # distinct unknown addresses logged (then only counted)
DROP_REASONS = ("not_osc", "unknown_address", "bad_args", "non_finite")


@dataclass(frozen=True, slots=True)
class Update:
    """What one OSC message sets; None leaves an axis as it was."""

    x: float | None = None
    y: float | None = None
    size: float | None = None
    roll: float | None = None  # an orientation (e.g. a phone's or an IMU's), 0.5 = level
    pitch: float | None = None
    yaw: float | None = None
    present: bool | None = None
    emg: tuple[tuple[int, float], ...] = ()  # (channel, value) pairs
    pose: str | None = None  # "" clears the pose
    clamped: int = 0  # how many values were outside [0, 1]


@dataclass(frozen=True, slots=True)
class Drop:
    """A message or datagram that carries nothing usable; `reason` names its drop counter."""

    reason: str  # one of DROP_REASONS
    address: str = ""


Parsed = Update | Drop


class _Bad(Exception):
    """Internal: a message's arguments cannot be used (`reason` is the counter)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _unit(value: object) -> tuple[float, int]:
    """A number clamped to [0, 1] and 1 if it was clamped; _Bad for anything else."""
    if not _is_number(value):
        raise _Bad("bad_args")
    number = float(value)  # an int too large for a float raises OverflowError: caught as bad_args
    if not math.isfinite(number):
        raise _Bad("non_finite")
    clamped = min(1.0, max(0.0, number))
    return clamped, int(clamped != number)


def _flag(value: object) -> bool:
    """A presence flag: T/F, or a number (> 0.5 is True)."""
    if isinstance(value, bool):
        return value
    number, _ = _unit(value)
    return number > 0.5


def _units(args: Sequence, count: int) -> tuple[list[float], int]:
    if len(args) != count:
        raise _Bad("bad_args")
    pairs = [_unit(a) for a in args]
    return [v for v, _ in pairs], sum(c for _, c in pairs)


def _wekinator(args: Sequence) -> Update:
    if not args:
        raise _Bad("bad_args")
    used = args[:3 + EMG_CHANNELS]  # outputs past the 11th are ignored
    values, clamped = _units(used, len(used))
    return Update(**dict(zip(("x", "y", "size"), values)), emg=tuple(enumerate(values[3:])), clamped=clamped)


def _instrument(name: str, args: Sequence) -> Update:
    if name in SCALAR_FRAME_AXES:
        (value,), clamped = _units(args, 1)
        return Update(**{name: value}, clamped=clamped)
    if name == "xy":
        (x, y), clamped = _units(args, 2)
        return Update(x=x, y=y, clamped=clamped)
    if name == "present":
        if len(args) != 1:
            raise _Bad("bad_args")
        return Update(present=_flag(args[0]))
    if name == "emg":
        values, clamped = _units(args, EMG_CHANNELS)
        return Update(emg=tuple(enumerate(values)), clamped=clamped)
    if name.startswith("emg/") and name[4:] in {str(c) for c in range(EMG_CHANNELS)}:
        (value,), clamped = _units(args, 1)
        return Update(emg=((int(name[4:]), value),), clamped=clamped)
    if name == "pose":
        if len(args) != 1 or not isinstance(args[0], str) or len(args[0]) > MAX_POSE_LEN \
                or not args[0].isprintable():
            raise _Bad("bad_args")
        return Update(pose=args[0])
    if name == "frame":
        if len(args) not in (3, 4):
            raise _Bad("bad_args")
        (x, y, size), clamped = _units(args[:3], 3)
        present = _flag(args[3]) if len(args) == 4 else None
        return Update(x=x, y=y, size=size, present=present, clamped=clamped)
    raise _Bad("unknown_address")


def parse_message(address: str, args: Sequence) -> Parsed:
    """One OSC message (address and decoded arguments) as an Update, or a Drop; never raises."""
    try:
        if address == WEKINATOR:
            return _wekinator(args)
        if isinstance(address, str) and address.startswith(PREFIX):
            return _instrument(address[len(PREFIX):], args)
        return Drop("unknown_address", str(address))
    except _Bad as bad:
        return Drop(bad.reason, str(address))
    except (OverflowError, TypeError, ValueError):
        return Drop("bad_args", str(address))


def parse_datagram(data: bytes) -> list[Parsed]:
    """Every message of one UDP datagram (a message or a bundle, nested bundles flattened); never raises."""
    try:
        if OscBundle.dgram_is_bundle(data):
            messages = list(_flatten(OscBundle(data)))
        elif OscMessage.dgram_is_message(data):
            messages = [OscMessage(data)]
        else:
            return [Drop("not_osc")]
        parsed = [(m.address, list(m.params)) for m in messages]
    # python-osc raises ParseError for most bad bytes, but also IndexError, struct.error,
    # UnicodeDecodeError or RecursionError (bundles nested a thousand deep) for some: this is
    # the boundary where untrusted bytes meet the library, and nothing may escape it.
    except Exception:  # noqa: BLE001
        return [Drop("not_osc")]
    if not parsed:
        return [Drop("not_osc")]  # an empty bundle
    return [parse_message(address, args) for address, args in parsed]


def _flatten(bundle: OscBundle):
    for content in bundle:
        if isinstance(content, OscBundle):
            yield from _flatten(content)
        else:
            yield content


class OscState:
    """The sender's current axes; `apply` folds updates in and returns the frame they make (pure: t passed in)."""

    def __init__(self) -> None:
        self.x: float | None = None
        self.y: float | None = None
        self.size: float | None = None
        self.roll: float | None = None
        self.pitch: float | None = None
        self.yaw: float | None = None
        self.emg: list[float] | None = None
        self.pose: str | None = None
        self.present = False
        self.explicit_present = False  # the sender says when the hand is there (/present, /frame 4 args)

    def apply(self, updates: Sequence[Update], t: float) -> ControlFrame:
        """Fold `updates` in order; the frame at time `t`."""
        for u in updates:
            moved = False
            for axis in SCALAR_FRAME_AXES:
                value = getattr(u, axis)
                if value is not None:
                    setattr(self, axis, value)
                    moved = True
            for channel, value in u.emg:
                if self.emg is None:
                    self.emg = [0.0] * EMG_CHANNELS
                self.emg[channel] = value
            if u.pose is not None:
                self.pose = u.pose or None
            if u.present is not None:
                self.present, self.explicit_present = u.present, True
            elif not self.explicit_present and (moved or u.emg):
                self.present = True  # a sender that never says whether the hand is there: moving means there
        return self.frame(t)

    def frame(self, t: float) -> ControlFrame:
        """The current reading as a frame at time `t` (no axes while the hand is not there)."""
        if not self.present:
            return ControlFrame(t=t, present=False)
        return ControlFrame(t=t, present=True, x=self.x, y=self.y, size=self.size, roll=self.roll, pitch=self.pitch,
                            yaw=self.yaw, emg=tuple(self.emg) if self.emg is not None else None, pose=self.pose)


def parse_spec(arg: str | None) -> tuple[str, int]:
    """(host, port) of an `osc[:PORT]` / `osc:HOST:PORT` spec's argument; ControllerSpecError if bad."""
    if not arg:
        return DEFAULT_HOST, DEFAULT_PORT
    host, _, port_text = arg.rpartition(":")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ControllerSpecError(f"bad OSC spec 'osc:{arg}': use osc, osc:PORT or osc:HOST:PORT "
                                  "with PORT in 0..65535 (e.g. osc:9000)")
    return host or DEFAULT_HOST, int(port_text)


class OscController(ThreadedController):
    """Frames from OSC senders on a UDP port; the thread receives, parses and publishes, nothing else."""

    RECV_TIMEOUT_S = 0.05  # how soon close() is noticed

    def __init__(self, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *, clock: Clock) -> None:
        super().__init__(clock, f"osc:{port}")
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            self._sock.bind((host, port))
        except (OSError, OverflowError) as err:
            self._sock.close()
            why = getattr(err, "strerror", None) or err
            raise ControllerUnavailable(f"cannot listen for OSC on UDP {host}:{port}: {why}; "
                                        "pick another port (osc:PORT) or stop the program using it") from None
        self._sock.settimeout(self.RECV_TIMEOUT_S)
        self.host, self.port = host, self._sock.getsockname()[1]  # port 0: the one the system chose
        self.state = OscState()
        self._unknown_logged: set[str] = set()
        for name in ("listening", "datagrams", "messages", "frames", *DROP_REASONS, "clamped", "thread_errors"):
            self.counters.set(name, 0)
        self.counters.set("listening", 1)
        self.start()

    def _serve(self) -> None:
        while not self.stopping:
            try:
                data = self._sock.recv(MAX_DATAGRAM)
            except TimeoutError:
                continue
            except OSError:
                if self.stopping:
                    return  # the socket was closed under us
                raise
            self.handle_datagram(data, self.clock())

    def handle_datagram(self, data: bytes, now: float) -> None:
        """Parse one datagram, count what was dropped, publish one frame if anything was usable."""
        self.counters.inc("datagrams")
        updates = []
        for parsed in parse_datagram(data):
            if isinstance(parsed, Drop):
                self.counters.inc(parsed.reason)
                if parsed.reason == "unknown_address":
                    self._log_unknown(parsed.address)
                continue
            self.counters.inc("messages")
            if parsed.clamped:
                self.counters.inc("clamped", parsed.clamped)
            updates.append(parsed)
        if updates:
            self.frames.put(self.state.apply(updates, now))
            self.counters.inc("frames")

    def _log_unknown(self, address: str) -> None:
        if address in self._unknown_logged or len(self._unknown_logged) >= MAX_LOGGED_UNKNOWN:
            return
        self._unknown_logged.add(address)
        log.warning("OSC: ignoring address %r (use /wek/outputs or /instrument/x, /y, /size, /xy, /present, "
                    "/roll, /pitch, /yaw, /emg, /emg/N, /pose, /frame)", address[:80])

    def close(self) -> None:
        """Stop the thread, then close the socket (idempotent)."""
        super().close()
        self.counters.set("listening", 0)
        self._sock.close()
