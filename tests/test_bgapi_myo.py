"""BGAPI framing and the Myo session, against the fake BLED112 on a real pty."""

from __future__ import annotations

import math
import os
import struct
import time

import pytest
from hypothesis import given, settings, strategies as st

from controllers import bgapi
from controllers.emg import EmgEnvelope, PoseClassifier, decode_emg
from controllers.fakes import FakeBLED112
from controllers.imu import IMU_CCCD, IMU_VALUE_HANDLE, Orientation, encode_imu, euler, quaternion
from controllers.myo import EMG_CCCDS, MODE_HANDLE, MyoController
from tests.conftest import wait_until

NOTIFY = bgapi.event(4, 5, struct.pack("<BHBB", 0, 0x2B, 1, 16) + bytes(range(16)))
DISCONNECTED = bgapi.event(3, 4, struct.pack("<BH", 0, 0x0208))



def test_command_bytes_match_the_protocol():
    assert bgapi.attribute_write(0, 0x19, bytes.fromhex("0103030000")) == bytes.fromhex("00090405" "00" "1900" "05" "0103030000")
    assert bgapi.gap_discover() == bytes.fromhex("0001060201")
    assert bgapi.gap_end_procedure() == bytes.fromhex("00000604")
    assert bgapi.connection_disconnect(2) == bytes.fromhex("0001030002")
    assert bgapi.gap_connect_direct(bytes(6))[:4] == bytes.fromhex("000f0603")


def test_framer_handles_any_split():
    stream = NOTIFY + DISCONNECTED + NOTIFY
    for cut in range(1, len(stream)):
        framer = bgapi.BgapiFramer()
        packets = framer.feed(stream[:cut]) + framer.feed(stream[cut:])
        assert [(p.cls, p.cmd) for p in packets] == [(4, 5), (3, 4), (4, 5)]
        assert bgapi.parse_attribute_value(packets[0].payload).value == bytes(range(16))


def test_framer_recovers_from_truncation_garbage_and_unknown_classes():
    framer = bgapi.BgapiFramer()
    truncated = NOTIFY[:-7]  # its own length byte still claims 21
    wrong_length = bytes((0x80, 0x12)) + NOTIFY[2:]  # header says 18, layout says 21
    unknown_class = bytes((0x80, 0x02, 0x42, 0x00, 1, 2))
    packets = framer.feed(b"\xff\x13" + truncated + NOTIFY + wrong_length + unknown_class + DISCONNECTED)
    packets += framer.expire()  # the line goes quiet: whatever waits for more bytes is rescanned
    kinds = [(p.cls, p.cmd) for p in packets]
    assert kinds[-1] == (3, 4)  # the packet after all the damage is found
    assert framer.counters["garbage_bytes"] > 0
    assert framer.counters["bad_length"] >= 1 and framer.counters["unknown_class"] >= 1


def test_expire_drops_a_cut_packet():
    framer = bgapi.BgapiFramer()
    assert framer.feed(NOTIFY[:10]) == [] and framer.pending == 10
    assert framer.expire() == [] and framer.pending == 0
    assert framer.counters["truncated"] == 1 and framer.feed(NOTIFY)[0].cls == 4


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=80), st.just(NOTIFY), st.just(NOTIFY[:9]), st.just(DISCONNECTED),
                          st.builds(lambda n, c: bytes((0x80, n, c, 5)), st.integers(0, 255), st.integers(0, 255))),
                max_size=12))
def test_framer_never_raises_and_stays_bounded(chunks):
    framer = bgapi.BgapiFramer()
    for chunk in chunks:
        for packet in framer.feed(chunk):
            assert len(packet.payload) <= bgapi.MAX_PAYLOAD and packet.cls in bgapi.KNOWN_CLASSES
            if (packet.is_event, packet.cls, packet.cmd) == (True, 4, 5):
                bgapi.parse_attribute_value(packet.payload)
        assert framer.pending < 4 + bgapi.MAX_PAYLOAD
    framer.expire()
    framer.feed(NOTIFY * 3)  # after any damage and a quiet moment, clean packets come through again
    assert framer.feed(NOTIFY)[-1].payload == NOTIFY[4:]


def test_envelope_is_mean_absolute_value_over_50ms():
    env = EmgEnvelope()
    assert env.size == 10
    for _ in range(5):
        env.push(decode_emg(bytes([64] * 8 + [256 - 64] * 8)))  # +64 and -64
    assert env.value() == pytest.approx((0.5,) * 8)
    for _ in range(5):
        env.push(decode_emg(bytes(16)))
    assert env.value() == pytest.approx((0.0,) * 8)


def test_pose_classifier_votes_before_switching():
    clf = PoseClassifier({"rest": [[0.0] * 8] * 3, "fist": [[1.0] * 8] * 3}, k=3, votes=5)
    assert [clf([0.1] * 8) for _ in range(3)][-1] == "rest"
    assert clf([0.9] * 8) == "rest"  # one odd window does not switch
    assert [clf([0.9] * 8) for _ in range(3)][-1] == "fist"


# -- the real adapter over a real pty ------------------------------------------------
def test_session_follows_the_protocol_and_streams_emg():
    with FakeBLED112() as fake, MyoController(fake.path, clock=time.monotonic) as myo:
        assert wait_until(lambda: myo.latest().present)
        # raw EMG, IMU data on, no classifier; never sleep; notifications on the 4 EMG and the IMU characteristics
        assert fake.writes[:2] == [(MODE_HANDLE, bytes.fromhex("0103030100")), (MODE_HANDLE, bytes.fromhex("090101"))]
        assert sorted(h for h, v in fake.writes if v == b"\x01\x00") == sorted((*EMG_CCCDS, IMU_CCCD))
        sent = [(c, i) for c, i, _ in fake.commands]
        assert sent.index((6, 2)) < sent.index((6, 3)) < sent.index((4, 5))  # discover, connect, write
        start = myo.stats()["notifications"]
        time.sleep(0.5)
        rate = (myo.stats()["notifications"] - start) / 0.5
        assert 60 <= rate <= 130  # 100 notifications/s, 2 samples each
        frame = myo.latest()
        assert len(frame.emg) == 8 and all(0.0 <= v <= 1.0 for v in frame.emg) and max(frame.emg) > 0
    assert fake.disconnects == 1  # close() disconnected cleanly


def test_calibrated_emg_frames_carry_the_unfiltered_envelope():
    from controllers.calibration import EmgCalibration

    calibration = EmgCalibration(rest=(0.0,) * 8, max=(64.0,) * 8)
    with FakeBLED112() as fake, MyoController(fake.path, clock=time.monotonic, calibration=calibration) as myo:
        assert wait_until(lambda: myo.latest().present and myo.latest().unfiltered is not None)
        frame = myo.latest()
        assert len(frame.unfiltered.emg) == 8 and all(0.0 <= v <= 1.0 for v in frame.unfiltered.emg)
        assert max(frame.unfiltered.emg) > 0


def test_cut_packets_are_counted_and_streaming_goes_on():
    with FakeBLED112(truncate_every=10, drop_every=7) as fake, MyoController(fake.path, clock=time.monotonic) as myo:
        assert wait_until(lambda: myo.latest().present)
        time.sleep(0.6)
        stats = myo.stats()
        assert stats["truncated"] + stats["bad_length"] + stats["garbage_bytes"] > 0
        assert stats["notifications"] > 30 and stats["thread_errors"] == 0


def test_link_loss_rescans_and_reconnects():
    with FakeBLED112() as fake, MyoController(fake.path, clock=time.monotonic) as myo:
        assert wait_until(lambda: myo.latest().present)
        fake.drop_link()
        assert wait_until(lambda: myo.stats()["link_losses"] == 1)
        assert wait_until(lambda: myo.latest().present and myo.stats()["reconnects"] == 1, 2.0)


def test_unplug_and_replug_reconnects_within_two_seconds():
    with FakeBLED112() as fake, MyoController(fake.path, clock=time.monotonic) as myo:
        assert wait_until(lambda: myo.latest().present)
        fake.unplug()
        assert not os.path.exists(fake.path)
        assert wait_until(lambda: not myo.latest().present)
        time.sleep(0.6)
        fake.replug()
        start = time.monotonic()
        assert wait_until(lambda: myo.latest().present, 2.0)
        assert time.monotonic() - start <= 2.0 and myo.stats()["reconnects"] == 1


@settings(max_examples=10, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=120), st.just(NOTIFY[:11]), st.just(bytes((0x80, 0x30, 0x0C, 1)))),
                min_size=1, max_size=6))
def test_hostile_bytes_over_the_pty_never_kill_the_session(streaming_myo, chunks):
    fake, myo = streaming_myo
    for chunk in chunks:
        fake.write_raw(chunk)
    before = myo.stats()["notifications"]
    assert wait_until(lambda: myo.stats()["notifications"] > before + 2, 2.0)
    assert myo.stats()["thread_errors"] == 0 and myo.latest().present


@pytest.fixture(scope="module")
def streaming_myo():
    fake = FakeBLED112().start()
    myo = MyoController(fake.path, clock=time.monotonic)
    assert wait_until(lambda: myo.latest().present)
    yield fake, myo
    myo.close()
    fake.close()


# -- the IMU: orientation -> roll, pitch, yaw axes (issue 18) ----------------------------------
class FakeMyoWithImu(FakeBLED112):
    """The fake dongle's Myo, also notifying its IMU orientation (every other EMG notification: 50 Hz)
    once the mode asks for IMU data and its CCCD is enabled, as a real Myo does."""

    def __init__(self, orientation, **kwargs) -> None:
        super().__init__(**kwargs)
        self.orientation = orientation  # seconds since start -> (roll, pitch, yaw) in radians
        self.imu_sent = 0

    def emit_emg(self) -> None:
        super().emit_emg()
        imu_on = self.mode is not None and self.mode[3:4] == b"\x01" and (IMU_CCCD, b"\x01\x00") in self.writes
        if imu_on and self.notifications_sent % 2 == 0:
            value = encode_imu(quaternion(*self.orientation(time.monotonic() - self.t0)))
            self.pty.write(bgapi.event(4, 5, struct.pack("<BHBB", self.connection or 0, IMU_VALUE_HANDLE, 1, 20) + value))
            self.imu_sent += 1


@pytest.mark.parametrize("roll, pitch, yaw", [(0.0, 0.0, 0.0), (0.9, -0.4, 2.0), (-2.5, 1.2, -1.0)])
def test_orientation_round_trips_through_the_imu_bytes(roll, pitch, yaw):
    got = euler(quaternion(roll, pitch, yaw))
    assert got == pytest.approx((roll, pitch, yaw), abs=1e-9)
    decoded = Orientation()
    axes = decoded.push(encode_imu(quaternion(roll, pitch, yaw)))
    assert axes[:2] == pytest.approx(((roll + math.pi) / (2 * math.pi), (pitch + math.pi / 2) / math.pi), abs=1e-3)
    assert axes[2] == 0.5  # the first reading's direction is yaw's middle


def test_yaw_counts_from_the_first_direction_and_bad_readings_change_nothing():
    imu = Orientation()
    imu.push(encode_imu(quaternion(0.0, 0.0, 3.0)))
    assert imu.push(encode_imu(quaternion(0.0, 0.0, 3.0 + math.pi / 2)))[2] == pytest.approx(0.75, abs=1e-3)  # wraps at pi
    assert imu.push(bytes(20)) is None and imu.push(b"short") is None
    assert imu.axes[2] == pytest.approx(0.75, abs=1e-3)
    imu.reset()
    assert imu.axes is None and imu.push(encode_imu(quaternion(0.0, 0.0, 1.0)))[2] == 0.5


def test_myo_frames_carry_the_imu_orientation_as_roll_pitch_yaw():
    turn = (0.6, -0.3, 0.0)  # forearm twisted out, arm a little lowered
    with FakeMyoWithImu(lambda t: turn) as fake, MyoController(fake.path, clock=time.monotonic) as myo:
        assert wait_until(lambda: myo.latest().roll is not None)
        frame = myo.latest()
        assert len(frame.emg) == 8  # EMG frames, each with the latest orientation
        assert frame.roll == pytest.approx((0.6 + math.pi) / (2 * math.pi), abs=1e-3)
        assert frame.pitch == pytest.approx((-0.3 + math.pi / 2) / math.pi, abs=1e-3)
        assert frame.yaw == 0.5
        assert myo.stats()["imu_notifications"] > 0 and myo.stats()["imu_bad"] == 0

