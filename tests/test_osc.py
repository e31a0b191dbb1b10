"""OSC in (issue 18): the pure parser, the sender's state, and the real adapter over UDP on localhost.

Wekinator's `/wek/outputs` and the `/instrument/...` address space reach frames end to end;
hostile datagrams (random bytes, wrong types, NaN, unknown addresses, nested bundles) are
counted in the drop counters the pure parser names and never raise, and the adapter keeps
working after them.
"""

from __future__ import annotations

import math
import socket

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from pythonosc.parsing import osc_types

from controllers import controller_kind, open_controller
from controllers.errors import ControllerSpecError, ControllerUnavailable
from controllers.fake_osc import FakeOscSender
from controllers.frame import ControlFrame
from controllers.osc import DROP_REASONS, Drop, OscController, OscState, Update, parse_datagram, parse_message, \
    parse_spec
from tests.conftest import wait_until

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])


class FakeClock:
    def __init__(self, t: float = 100.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def osc(address: str, *args) -> bytes:
    """An OSC message's bytes, written directly (python-osc's builder re-parses, refusing strings with NULs)."""
    tags, body = ",", b""
    for arg in args:
        if arg is None or isinstance(arg, bool):
            tags += {None: "N", True: "T", False: "F"}[arg]
        elif isinstance(arg, int):
            tags, body = tags + "i", body + osc_types.write_int(arg)
        elif isinstance(arg, float):
            tags, body = tags + "f", body + osc_types.write_float(arg)
        elif isinstance(arg, str):
            tags, body = tags + "s", body + osc_types.write_string(arg)
        else:
            tags, body = tags + "b", body + osc_types.write_blob(arg)
    return osc_types.write_string(address) + osc_types.write_string(tags) + body


def assert_frame_valid(frame: ControlFrame) -> None:
    for value in (frame.x, frame.y, frame.size):
        assert value is None or (math.isfinite(value) and 0.0 <= value <= 1.0)
    assert frame.emg is None or (len(frame.emg) == 8 and all(0.0 <= v <= 1.0 for v in frame.emg))


@pytest.fixture
def listener():
    """The real adapter on a free localhost port, with an injected clock, and a sender aimed at it."""
    clock = FakeClock()
    controller = OscController("127.0.0.1", 0, clock=clock)
    sender = FakeOscSender(controller.port)
    yield controller, sender, clock
    sender.close()
    controller.close()


def wait_datagrams(controller, n: int) -> None:
    assert wait_until(lambda: controller.stats()["datagrams"] >= n, timeout=5.0), controller.stats()


# -- the pure parser --------------------------------------------------------------------
def test_wekinator_outputs_are_x_y_size_then_emg_in_order():
    got = parse_message("/wek/outputs", [0.1, 0.2, 0.3, *[c / 10 for c in range(8)]])
    assert got == Update(x=0.1, y=0.2, size=0.3, emg=tuple((c, c / 10) for c in range(8)))
    assert parse_message("/wek/outputs", [0.5, 0.25]) == Update(x=0.5, y=0.25)  # fewer outputs, fewer axes
    many = parse_message("/wek/outputs", [0.5] * 20)  # more than 11: the rest is ignored
    assert isinstance(many, Update) and len(many.emg) == 8
    assert parse_message("/wek/outputs", [1.5, -2, 0.5]) == Update(x=1.0, y=0.0, size=0.5, clamped=2)


@pytest.mark.parametrize("address, args, expected", [
    ("/instrument/x", [0.25], Update(x=0.25)),
    ("/instrument/y", [1], Update(y=1.0)),  # ints are numbers too
    ("/instrument/size", [0.5], Update(size=0.5)),
    ("/instrument/xy", [0.1, 0.9], Update(x=0.1, y=0.9)),
    ("/instrument/present", [False], Update(present=False)),
    ("/instrument/present", [1.0], Update(present=True)),  # a TouchOSC toggle sends 0.0 / 1.0
    ("/instrument/emg", [0.5] * 8, Update(emg=tuple((c, 0.5) for c in range(8)))),
    ("/instrument/emg/7", [0.75], Update(emg=((7, 0.75),))),
    ("/instrument/pose", ["fist"], Update(pose="fist")),
    ("/instrument/pose", [""], Update(pose="")),
    ("/instrument/frame", [0.1, 0.2, 0.3, True], Update(x=0.1, y=0.2, size=0.3, present=True)),
    ("/instrument/frame", [0.1, 0.2, 0.3], Update(x=0.1, y=0.2, size=0.3)),
    ("/instrument/x", [7.5], Update(x=1.0, clamped=1)),
    ("/instrument/roll", [0.25], Update(roll=0.25)),  # an orientation, e.g. a phone's tilt
    ("/instrument/yaw", [-1.0], Update(yaw=0.0, clamped=1)),
])
def test_instrument_addresses(address, args, expected):
    assert parse_message(address, args) == expected


@pytest.mark.parametrize("address, args, reason", [
    ("/instrument/x", [float("nan")], "non_finite"),
    ("/wek/outputs", [0.5, float("inf")], "non_finite"),
    ("/instrument/x", ["left"], "bad_args"),
    ("/instrument/x", [True], "bad_args"),  # a flag is no position
    ("/instrument/x", [], "bad_args"),
    ("/instrument/x", [0.1, 0.2], "bad_args"),
    ("/instrument/emg", [0.5] * 7, "bad_args"),
    ("/instrument/pose", [3], "bad_args"),
    ("/instrument/pose", ["x" * 65], "bad_args"),
    ("/instrument/pose", ["a\nb"], "bad_args"),
    ("/instrument/present", [b"\x01"], "bad_args"),
    ("/instrument/frame", [0.1, 0.2], "bad_args"),
    ("/instrument/y", [10**400], "bad_args"),  # an int no float can hold
    ("/wek/outputs", [], "bad_args"),
    ("/instrument/emg/8", [0.5], "unknown_address"),
    ("/instrument/z", [0.5], "unknown_address"),
    ("/1/fader1", [0.5], "unknown_address"),
])
def test_unusable_messages_are_named_drops(address, args, reason):
    assert parse_message(address, args) == Drop(reason, address)


def test_garbage_and_bundles():
    assert parse_datagram(b"") == [Drop("not_osc")]
    assert parse_datagram(b"hello world") == [Drop("not_osc")]
    assert parse_datagram(b"#bundle\x00") == [Drop("not_osc")]  # cut short
    assert parse_datagram(osc("/instrument/x", 0.5)) == [Update(x=0.5)]
    nested = b"#bundle\x00" + bytes(8)
    for _ in range(3000):  # bundles nested deeper than Python's recursion limit
        nested = b"#bundle\x00" + bytes(8) + len(nested).to_bytes(4, "big") + nested
    assert parse_datagram(nested) == [Drop("not_osc")]


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_never_raise(data):
    for parsed in parse_datagram(data):
        assert isinstance(parsed, (Update, Drop))
        assert not isinstance(parsed, Drop) or parsed.reason in DROP_REASONS


OSC_ARG = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(-2**31, 2**31 - 1),
                    st.booleans(), st.text(max_size=80), st.binary(min_size=1, max_size=16), st.none())
ADDRESS = st.one_of(st.sampled_from(["/wek/outputs", "/instrument/x", "/instrument/xy", "/instrument/emg",
                                     "/instrument/emg/3", "/instrument/pose", "/instrument/frame",
                                     "/instrument/present", "/instrument/"]),
                    st.text(alphabet="/abcxyz019", min_size=1, max_size=20).map(lambda s: "/" + s))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(ADDRESS, st.lists(OSC_ARG, max_size=12)), min_size=1, max_size=5))
def test_random_messages_never_raise_and_make_valid_frames(messages):
    state = OscState()
    for address, args in messages:
        parsed = parse_datagram(osc(address, *args))
        assert len(parsed) == 1
        if isinstance(parsed[0], Update):
            assert_frame_valid(state.apply(parsed, 1.0))
        else:
            assert parsed[0].reason in DROP_REASONS


# -- the sender's state -------------------------------------------------------------------
def test_axes_hold_until_changed_and_moving_means_present():
    state = OscState()
    assert state.frame(0.0) == ControlFrame(t=0.0, present=False)
    assert state.apply([Update(x=0.2)], 1.0) == ControlFrame(t=1.0, x=0.2)
    assert state.apply([Update(y=0.7), Update(emg=((2, 0.5),))], 2.0) == \
        ControlFrame(t=2.0, x=0.2, y=0.7, emg=(0, 0, 0.5, 0, 0, 0, 0, 0))
    assert state.apply([Update(pose="fist")], 3.0).pose == "fist"
    assert state.apply([Update(pose="")], 4.0).pose is None


def test_a_sender_that_says_present_is_believed():
    state = OscState()
    assert state.apply([Update(present=False)], 1.0) == ControlFrame(t=1.0, present=False)
    assert not state.apply([Update(x=0.5)], 2.0).present  # it said the hand is gone: moving axes do not change that
    assert state.apply([Update(present=True)], 3.0) == ControlFrame(t=3.0, x=0.5)


def test_specs():
    assert parse_spec(None) == ("0.0.0.0", 9000)
    assert parse_spec("9001") == ("0.0.0.0", 9001)
    assert parse_spec("127.0.0.1:0") == ("127.0.0.1", 0)
    for bad in ("abc", "70000", "host:", "-1"):
        with pytest.raises(ControllerSpecError, match="osc:PORT"):
            parse_spec(bad)
    assert controller_kind("osc:9000") == "replay"  # any axis may come: the voice's default mapping


# -- the real adapter over UDP --------------------------------------------------------
def test_wekinator_end_to_end_over_udp(listener):
    controller, sender, clock = listener
    clock.t = 12.5
    sender.wekinator(0.25, 0.75, 0.5, 0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875)
    frame = controller.next_frame(timeout=5.0)
    assert frame == ControlFrame(t=12.5, x=0.25, y=0.75, size=0.5, emg=(0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875))
    assert controller.latest() == frame


def test_instrument_messages_end_to_end_over_udp(listener):
    controller, sender, clock = listener
    sender.send("/instrument/x", 0.25)
    sender.send("/instrument/y", 0.5)
    sender.send("/instrument/emg/3", 2.0)  # clamped
    sender.send("/instrument/pose", "wave_in")
    wait_datagrams(controller, 4)
    assert controller.latest() == ControlFrame(t=100.0, x=0.25, y=0.5, emg=(0, 0, 0, 1.0, 0, 0, 0, 0), pose="wave_in")
    clock.t = 101.0
    sender.send_bundle([("/instrument/frame", (0.875, 0.125, 0.25, True)), ("/instrument/emg", (0.5,) * 8)])
    wait_datagrams(controller, 5)
    assert controller.latest() == ControlFrame(t=101.0, x=0.875, y=0.125, size=0.25, emg=(0.5,) * 8, pose="wave_in")  # f32-exact
    sender.send("/instrument/pitch", 0.75)  # an orientation axis: a mapping can drive any target with it
    wait_datagrams(controller, 6)
    assert controller.latest().pitch == 0.75 and controller.latest().x == 0.875
    sender.send("/instrument/present", False)
    wait_datagrams(controller, 7)
    assert controller.latest() == ControlFrame(t=101.0, present=False)
    stats = controller.stats()
    assert stats["frames"] == 7 and stats["messages"] == 8 and stats["clamped"] == 1  # a bundle is one frame
    assert all(stats[reason] == 0 for reason in DROP_REASONS)


def test_streaming_fake_reaches_open_controller():
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with open_controller(f"osc:127.0.0.1:{port}") as controller, FakeOscSender(port, style="wekinator").start():
        frames = [controller.next_frame(timeout=5.0) for _ in range(5)]
    assert all(f is not None and f.present and f.emg is not None for f in frames)
    assert [f.t for f in frames] == sorted(f.t for f in frames)


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=256),
                          st.tuples(ADDRESS, st.lists(OSC_ARG, max_size=12)).map(lambda m: osc(m[0], *m[1]))),
                min_size=1, max_size=8))
def test_hostile_datagrams_are_counted_over_udp(listener, datagrams):
    controller, sender, clock = listener
    before = controller.stats()
    expected = {reason: 0 for reason in DROP_REASONS}
    usable = 0
    for data in datagrams:
        parsed = parse_datagram(data)
        usable += any(isinstance(p, Update) for p in parsed)
        for p in parsed:
            if isinstance(p, Drop):
                expected[p.reason] += 1
        sender.send_raw(data)
    sender.send("/instrument/xy", 0.5, 0.5)  # and it still plays
    wait_datagrams(controller, before["datagrams"] + len(datagrams) + 1)
    after = controller.stats()
    assert {r: after[r] - before[r] for r in DROP_REASONS} == expected
    assert after["frames"] - before["frames"] == usable + 1 and after["thread_errors"] == 0
    frame = controller.latest()
    assert (frame.x, frame.y) == (0.5, 0.5) or not frame.present
    assert_frame_valid(frame)


def test_a_port_in_use_is_one_line():
    with OscController("127.0.0.1", 0, clock=FakeClock()) as first:
        with pytest.raises(ControllerUnavailable, match=rf"cannot listen for OSC on UDP 127.0.0.1:{first.port}: .*osc:PORT"):
            OscController("127.0.0.1", first.port, clock=FakeClock())


def test_instrument_monitor_shows_what_arrives(capsys):
    from instrument.cli import main

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with FakeOscSender(port).start():
        assert main(["monitor", "--controller", f"osc:127.0.0.1:{port}", "--frames", "3"]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == 3 and all("x=" in line and "emg[" in line for line in lines), out
    assert f"3 frames from osc:127.0.0.1:{port}" in err and "not_osc=0" in err
