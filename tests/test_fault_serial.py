"""Hostile serial input (issue 7, item 4): fuzzed bytes over the real pty path into the real adapters.

`test_jevois.py` and `test_bgapi_myo.py` fuzz the pure parsers and check that the
adapters survive random chunks. Here the adapters' own books are audited: every
hostile line or packet that reaches the real JeVois / Myo adapter through a real pty
lands in exactly the drop counter the pure parser assigns it, nothing escapes the
device thread, the published frames stay valid, and memory stays bounded under a
flood of bytes with no line end or no valid packet.
"""

from __future__ import annotations

import math
import os
import struct
import time

import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

from controllers import bgapi
from controllers.fakes import FakeBLED112, FakeJeVois
from controllers.jevois import MAX_LINE, Detection, JeVoisController, Skip, parse_line
from controllers.myo import EMG_VALUE_HANDLES, MyoController
from tests.conftest import wait_until

JEVOIS_DROPS = ("garbage", "not_utf8", "unsupported")
BGAPI_DROPS = ("garbage_bytes", "unknown_class", "bad_length", "truncated")
NOTIFY = bgapi.event(4, 5, struct.pack("<BHBB", 0, 0x2B, 1, 16) + bytes(range(16)))
READ_CHUNK = 65536  # the most one pty read hands the adapter (the tty buffer), far below the MBs fed
FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])



def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def delta(after: dict, before: dict, names) -> dict:
    return {n: after.get(n, 0) - before.get(n, 0) for n in names}


def assert_frame_valid(frame) -> None:
    for value in (frame.x, frame.y, frame.size):
        assert value is None or (math.isfinite(value) and 0.0 <= value <= 1.0)
    assert frame.emg is None or all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in frame.emg)


# -- JeVois -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quiet_jevois():
    """The real adapter (filtered, as `play` uses it) on a fake camera that answered start-up, then went quiet."""
    fake = FakeJeVois().start()
    jv = JeVoisController(fake.path, clock=time.monotonic)
    assert wait_until(lambda: "streamon" in fake.commands and jv.stats()["connected"] == 1)
    fake.streaming = False
    time.sleep(0.05)
    yield fake, jv
    jv.close()
    fake.close()


numbers = st.sampled_from(["nan", "NaN", "-nan", "inf", "-inf", "1e999", "-1e999", "1e308", "-1e308", "0", "12.5",
                           "-750", "1000", "4", "2", "9" * 400, "0x10", "1_000", "\u0661\u0662"])
words = st.sampled_from(["N2", "T2", "D2", "F2", "MARK", "START", "STOP", "blob", "OK", "ALIVE", "ERR", "INFO:",
                         "2941", "769/15:52:42", "&^%$@"])
soup = st.lists(st.one_of(numbers, words), max_size=14).map(" ".join)
hostile_line = st.one_of(
    st.binary(max_size=120).map(lambda b: b.replace(b"\n", b"")),  # random bytes, often not UTF-8
    st.text(max_size=80).map(lambda s: s.replace("\n", "").encode("utf-8")),
    soup.map(str.encode),
    st.builds(lambda x, y: f"N2 blob {x} {y} 100 100".encode(), numbers, numbers),
    st.integers(MAX_LINE + 1, 3 * MAX_LINE).map(lambda n: b"Q" * n),  # over-long, ends in a newline
)


@FUZZ
@given(st.lists(hostile_line, min_size=1, max_size=12), st.booleans())
def test_every_hostile_line_is_counted_where_the_parser_says(quiet_jevois, lines, crlf):
    fake, jv = quiet_jevois
    expected = dict.fromkeys((*JEVOIS_DROPS, "detections", "lines", "overlong"), 0)
    for line in lines:
        if len(line) > MAX_LINE:
            expected["overlong"] += 1
            continue
        expected["lines"] += 1
        parsed = parse_line(line)
        if isinstance(parsed, Detection):
            expected["detections"] += 1
        elif isinstance(parsed, Skip) and parsed.reason in JEVOIS_DROPS:
            expected[parsed.reason] += 1
    before = jv.stats()
    end = b"\r\n" if crlf else b"\n"
    fake.write_raw(b"".join(line + end for line in lines))
    assert wait_until(lambda: delta(jv.stats(), before, expected) == expected, 3.0), \
        (delta(jv.stats(), before, expected), expected)
    stats = jv.stats()
    assert stats["thread_errors"] == 0 and stats["connected"] == 1 and fake.pty.dropped_writes == 0
    assert len(jv._lines._buf) <= MAX_LINE
    assert_frame_valid(jv.latest())


def test_nan_and_huge_numbers_are_counted_and_never_reach_a_frame(quiet_jevois):
    fake, jv = quiet_jevois
    before = jv.stats()
    fake.write_raw(b"N2 blob nan 0 100 100\r\nN2 blob 0 0 100 inf\r\nT2 1e999 0\r\nD2 blob 4 nan nan\r\n"
                   b"F2 hand 99999999999999999999 1 2\r\nN2 blob -0 NaN 1 1 extra\r\n")
    assert wait_until(lambda: jv.stats()["garbage"] - before["garbage"] == 6)
    assert jv.stats()["detections"] == before["detections"]
    fake.write_raw(b"N2 blob 1e300 -1e300 1e300 5\r\n")  # huge but finite: clipped to the frame's edge
    assert wait_until(lambda: jv.stats()["detections"] == before["detections"] + 1)
    assert wait_until(lambda: jv.latest().present)
    frame = jv.latest()
    assert_frame_valid(frame)
    assert frame.x > 0.5 and frame.y > 0.5  # right and up, wherever the filter has got to
    assert jv.stats()["thread_errors"] == 0


def test_a_flood_without_newline_keeps_memory_bounded_and_counts_once(quiet_jevois):
    fake, jv = quiet_jevois
    before = jv.stats()
    chunk = os.urandom(65536).replace(b"\n", b"x")
    rss_start, biggest = rss_bytes(), 0
    for _ in range(128):  # 8 MB, no line end
        fake.write_raw(chunk)
        biggest = max(biggest, len(jv._lines._buf))
    fake.write_raw(b"\r\nN2 blob 500 0 200 200\r\n")
    assert wait_until(lambda: jv.stats()["detections"] == before["detections"] + 1, 10.0)
    assert fake.pty.dropped_writes == 0
    assert biggest <= MAX_LINE + READ_CHUNK and len(jv._lines._buf) == 0  # sampled mid-feed: one read more
    assert jv.stats()["overlong"] == before["overlong"] + 1  # one over-long line, counted once
    assert rss_bytes() - rss_start < 4 * 2**20  # 8 MB went through; a few pages came back at most
    assert jv.stats()["thread_errors"] == 0 and jv.latest().present


# -- Myo / BGAPI ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def quiet_myo():
    """The real Myo adapter, connected through a fake BLED112 that sends notifications only when told."""
    fake = FakeBLED112(autostream=False).start()
    myo = MyoController(fake.path, clock=time.monotonic)
    assert wait_until(lambda: myo.stats()["connected"] == 1 and fake.streaming)
    time.sleep(0.05)
    yield fake, myo
    myo.close()
    fake.close()


def expected_bgapi(data: bytes) -> tuple[dict, int, list[bgapi.Packet]]:
    """What a fresh framer makes of `data` followed by silence: drop counters, EMG notifications, packets."""
    framer = bgapi.BgapiFramer()
    packets = framer.feed(data) + framer.expire()
    emg = 0
    for p in packets:
        if (p.is_event, p.cls, p.cmd) == (True, 4, 5):
            value = bgapi.parse_attribute_value(p.payload)
            emg += value.handle in EMG_VALUE_HANDLES and len(value.value) == 16
    return {n: framer.counters[n] for n in BGAPI_DROPS}, emg, packets


def inject(fake, myo, data: bytes) -> dict:
    """Write `data`, let the line go quiet (the adapter expires a cut packet), then one clean notification."""
    before = myo.stats()
    fake.write_raw(data)
    time.sleep(0.03)  # > PACKET_GAP_S, so a packet cut short is given up before the next one
    fake.write_raw(NOTIFY)
    return before


WRONG_LENGTH = bytes((0x80, 0x12)) + NOTIFY[2:]  # header says 18 bytes, the notification's layout says 21
TRUNCATED = NOTIFY[:11]  # cut off by the wire; the line then goes quiet
UNKNOWN_CLASS = bytes((0x80, 0x02, 0x42, 0x00, 0xAA, 0xBB))
ABSURD_LENGTH = bytes((0x80, 0xF0, 0x04, 0x05)) + bytes(20)


@pytest.mark.parametrize("name, data", [
    ("wrong length", WRONG_LENGTH), ("truncated", TRUNCATED), ("unknown class", UNKNOWN_CLASS),
    ("absurd length", ABSURD_LENGTH), ("all at once", WRONG_LENGTH + UNKNOWN_CLASS + ABSURD_LENGTH + TRUNCATED),
])
def test_bad_packets_land_in_the_drop_counters_and_streaming_goes_on(quiet_myo, name, data):
    fake, myo = quiet_myo
    drops, emg, _ = expected_bgapi(data)
    assert sum(drops.values()) > 0, name
    before = inject(fake, myo, data)
    assert wait_until(lambda: myo.stats()["notifications"] == before["notifications"] + emg + 1)
    stats = myo.stats()
    assert delta(stats, before, BGAPI_DROPS) == drops, name
    assert stats["thread_errors"] == 0 and stats["connected"] == 1 and stats["link_losses"] == 0
    assert myo.latest().present and len(myo.latest().emg) == 8
    assert_frame_valid(myo.latest())


packet_like = st.builds(lambda t, n, c, i, body: bytes((t, n, c, i)) + body,
                        st.sampled_from(bgapi.TYPE_BYTES + (0x42, 0xFF)), st.integers(0, 255),
                        st.integers(0, 12), st.integers(0, 8), st.binary(max_size=40))


@FUZZ
@given(st.lists(st.one_of(st.binary(max_size=60), packet_like, st.just(NOTIFY), st.just(TRUNCATED),
                          st.just(WRONG_LENGTH), st.just(UNKNOWN_CLASS)), min_size=1, max_size=8))
def test_fuzzed_bgapi_streams_are_counted_and_never_kill_the_session(quiet_myo, chunks):
    fake, myo = quiet_myo
    data = b"".join(chunks)
    drops, emg, packets = expected_bgapi(data)
    assume(not any(p.is_event and (p.cls, p.cmd) == (3, 4) for p in packets))  # a genuine disconnect event
    before = inject(fake, myo, data)
    assert wait_until(lambda: myo.stats()["notifications"] >= before["notifications"] + 1, 3.0)
    stats = myo.stats()
    counted = sum(delta(stats, before, BGAPI_DROPS).values())
    # One write lands whole, so the counts match the pure framer's; a scheduling pause inside it can only
    # make the adapter give up on more bytes, never fewer.
    assert counted >= sum(drops.values())
    assert stats["thread_errors"] == 0 and stats["connected"] == 1
    assert myo._framer.pending < 4 + bgapi.MAX_PAYLOAD
    assert_frame_valid(myo.latest())


def test_a_megabyte_of_noise_keeps_the_framer_bounded_then_emg_flows_again(quiet_myo):
    fake, myo = quiet_myo
    before = myo.stats()
    noise = os.urandom(2**20)
    rss_start, biggest = rss_bytes(), 0
    for start in range(0, len(noise), 16384):
        fake.write_raw(noise[start:start + 16384])
        biggest = max(biggest, myo._framer.pending)
    time.sleep(0.03)
    fake.write_raw(NOTIFY)
    assert wait_until(lambda: myo.stats()["notifications"] > before["notifications"], 20.0)
    stats = myo.stats()
    assert biggest < 4 + bgapi.MAX_PAYLOAD + READ_CHUNK and myo._framer.pending == 0  # sampled mid-feed
    assert sum(delta(stats, before, BGAPI_DROPS).values()) > 2**19  # most of the noise was counted as dropped
    assert rss_bytes() - rss_start < 4 * 2**20
    assert stats["thread_errors"] == 0 and fake.pty.dropped_writes == 0
