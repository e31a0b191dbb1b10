"""JeVois: the pure line parser, the capped line buffer, and the real adapter over a pty."""

from __future__ import annotations

import logging
import os
import time

import pytest
from hypothesis import given, settings, strategies as st

from controllers.fakes import FakeJeVois
from controllers.jevois import STARTUP, Detection, JeVoisController, LineBuffer, Marker, Skip, parse_line
from tests.conftest import wait_until



@pytest.mark.parametrize("line, x, y, size", [
    ("N2 blob 0 0 200 200", 0.5, 0.5, 0.1),
    ("N2 blob -1000 750 2000 1500", 0.0, 0.0, 1.0),   # left, bottom (down is positive)
    ("N2 blob 1000 -750 0 0", 1.0, 1.0, 0.0),          # right, top
    ("T2 500 -375", 0.75, 0.75, None),
    ("D2 blob -100 -100 100 -100 100 100 -100 100", 0.5, 0.5, 0.1),
    ("D2 blob 4 -100 -100 100 -100 100 100 -100 100", 0.5, 0.5, 0.1),  # ObjectTracker's vertex count
    ("D2 blob 4 -100 -100 100 -100 100 100 -100 100 extra", 0.5, 0.5, 0.1),
    ("F2 hand 2 -200 0 200 0", 0.5, 0.5, 0.2),
    ("2941 N2 blob 0 0 200 200", 0.5, 0.5, 0.1),         # frame stamp
    ("769/15:52:42 T2 0 0", 0.5, 0.5, None),             # frame/time stamp
    ("N2 blob 10.5 -20.25 300.0 100.0\r\n", 0.50525, 0.5135, 0.15),  # serprec > 0, CRLF
])
def test_messages_map_to_unit_square_with_y_up(line, x, y, size):
    det = parse_line(line)
    assert isinstance(det, Detection)
    assert det.x == pytest.approx(x) and det.y == pytest.approx(y)
    assert det.size == (None if size is None else pytest.approx(size))


def test_markers_and_skips():
    assert parse_line("MARK START") == Marker("START")
    assert parse_line(b"MARK STOP\r\n") == Marker("STOP")
    assert parse_line("OK").reason == "ok"
    assert parse_line("ALIVE").reason == "alive"
    assert parse_line("ERR Unknown command [foo]").reason == "err"
    for log_line in ("INFO: JeVois ready", "INF Engine: started", "DBG x", "FTL boom"):
        assert parse_line(log_line).reason == "log"
    assert parse_line("").reason == "blank"
    assert parse_line(b"N2 \xff\xfe 1 2 3 4").reason == "not_utf8"
    assert parse_line("T2 &^%$@").reason == "garbage"
    assert parse_line("N2 blob nan 0 1 1").reason == "garbage"
    assert parse_line("N2 blob 0 0 1 inf").reason == "garbage"
    assert parse_line("D2 blob 1 2 3").reason == "garbage"
    assert parse_line("N3 blob 0 0 0 1 1 1").reason == "unsupported"


def test_huge_values_are_clipped_not_raised():
    det = parse_line("N2 blob 1e300 -1e300 1e300 5")
    assert (det.x, det.y, det.size) == (1.0, 1.0, 1.0)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=200),
                 st.lists(st.sampled_from(["N2", "D2", "F2", "T2", "MARK", "STOP", "4", "-1e999", "nan", "12", "x",
                                           "1e308", "-0.5", "2941", "769/15:52:42", "\t", "ERR"]), max_size=14).map(" ".join)))
def test_parser_never_raises_and_stays_in_range(line):
    parsed = parse_line(line)
    assert isinstance(parsed, (Detection, Marker, Skip))
    if isinstance(parsed, Detection):
        assert 0.0 <= parsed.x <= 1.0 and 0.0 <= parsed.y <= 1.0
        assert parsed.size is None or 0.0 <= parsed.size <= 1.0


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=3000), max_size=8))
def test_line_buffer_memory_is_bounded(chunks):
    buf = LineBuffer(max_len=1024)
    for chunk in chunks:
        for line in buf.feed(chunk):
            assert len(line) <= 1024
        assert len(buf._buf) <= 1024


def test_line_buffer_joins_partial_lines_and_counts_overlong():
    buf = LineBuffer(max_len=16)
    assert buf.feed(b"N2 blob 0") == []
    assert buf.feed(b" 0 1 1\r\nT2") == [b"N2 blob 0 0 1 1"]
    assert buf.feed(b" 1 2\n" + b"x" * 40 + b"\nT2 3 4\n") == [b"T2 1 2", b"T2 3 4"]
    assert buf.overlong == 1
    assert buf.feed(b"y" * (1 << 20)) == [] and len(buf._buf) == 0  # 1 MB without newline
    assert buf.feed(b"tail\nT2 5 6\n") == [b"T2 5 6"]
    assert buf.overlong == 2


# -- the real adapter over a real pty ------------------------------------------------
def test_startup_sequence_in_order_then_frames_follow_the_hand():
    with FakeJeVois(hand=lambda t: (0.25, 0.8, 0.2)) as fake, \
            JeVoisController(fake.path, clock=time.monotonic, raw=True) as jv:
        assert wait_until(lambda: jv.latest().present)
        assert fake.commands[: len(STARTUP)] == list(STARTUP)
        frame = jv.latest()
        assert frame.x == pytest.approx(0.25, abs=1e-3) and frame.y == pytest.approx(0.8, abs=1e-3)
        assert frame.size == pytest.approx(0.2, abs=1e-3)
        assert jv.stats()["connected"] == 1 and jv.stats()["startup_errors"] == 0


def test_filtered_frames_carry_the_unfiltered_position_for_the_monitor():
    with FakeJeVois(hand=lambda t: (0.25, 0.8, 0.2)) as fake, \
            JeVoisController(fake.path, clock=time.monotonic) as jv:
        assert wait_until(lambda: jv.latest().present)
        frame = jv.latest()
        assert (frame.unfiltered.x, frame.unfiltered.y, frame.unfiltered.size) == pytest.approx((0.25, 0.8, 0.2), abs=1e-3)
        assert frame.x == pytest.approx(0.25, abs=1e-2)  # a still hand: the filter has caught up


def test_err_reply_is_reported_and_does_not_hang(caplog):
    caplog.set_level(logging.WARNING)
    with FakeJeVois(err_on=("setmapping2",), stream_on_start=True) as fake, \
            JeVoisController(fake.path, clock=time.monotonic) as jv:
        assert wait_until(lambda: "streamon" in fake.commands, 2.0)
        assert jv.stats()["startup_errors"] == 1
        assert "refused 'setmapping2" in caplog.text
        assert wait_until(lambda: jv.latest().present)


def test_silent_camera_warns_after_the_reply_timeout_and_still_plays(caplog):
    caplog.set_level(logging.WARNING)
    # 2 s instead of the default 1 s, so a loaded test machine still sees frames before the warning.
    with FakeJeVois(answer=False, stream_on_start=True) as fake, \
            JeVoisController(fake.path, clock=time.monotonic, reply_timeout_s=2.0) as jv:
        assert wait_until(lambda: jv.latest().present, 1.6)  # frames flow before the warning
        assert jv.stats()["no_answer"] == 0
        assert wait_until(lambda: jv.stats()["no_answer"] == 1, 3.0)
        assert "did not answer 'ping'" in caplog.text
        assert fake.commands == ["ping"]  # the rest of the start-up is skipped


def test_hand_lost_by_marks_and_by_silence():
    visible = {"on": True}
    with FakeJeVois(hand=lambda t: (0.5, 0.5, 0.1) if visible["on"] else None) as fake, \
            JeVoisController(fake.path, clock=time.monotonic, lost_after_s=0.3) as jv:
        assert wait_until(lambda: jv.latest().present)
        visible["on"] = False  # MARK STOP with no detection before it
        assert wait_until(lambda: not jv.latest().present, 0.2)
        visible["on"] = True
        assert wait_until(lambda: jv.latest().present)
        fake.streaming = False  # no line at all
        t = time.monotonic()
        assert wait_until(lambda: not jv.latest().present, 1.0)
        assert time.monotonic() - t >= 0.2


def test_unplug_and_replug_reconnects_within_two_seconds_and_reruns_startup():
    with FakeJeVois() as fake, JeVoisController(fake.path, clock=time.monotonic) as jv:
        assert wait_until(lambda: jv.latest().present)
        fake.unplug()
        assert not os.path.exists(fake.path)
        assert wait_until(lambda: not jv.latest().present and jv.stats()["connected"] == 0)
        time.sleep(0.6)  # let the backoff reach its maximum
        fake.replug()
        start = time.monotonic()
        assert wait_until(lambda: jv.latest().present, 2.0)
        assert time.monotonic() - start <= 2.0
        assert jv.stats()["reconnects"] == 1
        assert fake.commands.count("ping") == 2 and fake.commands[-1] == "streamon"


@settings(max_examples=15, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=200), st.just(b"N2 blob nan 1 2 3\r\n"), st.just(b"T2 &^%$@\r\n")),
                min_size=1, max_size=5))
def test_hostile_bytes_over_the_pty_are_counted_not_raised(shared_fake, chunks):
    fake, jv = shared_fake
    before = jv.stats()["lines"]
    for chunk in chunks:
        fake.write_raw(chunk)
    fake.write_raw(b"\r\nMARK STOP\r\nN2 blob 0 0 100 100\r\n")
    assert wait_until(lambda: jv.stats()["lines"] > before, 2.0)
    assert jv.stats()["thread_errors"] == 0 and jv.stats()["connected"] == 1


def test_megabyte_line_is_capped_and_stream_resumes(shared_fake):
    fake, jv = shared_fake
    overlong = jv.stats()["overlong"]
    for _ in range(16):
        fake.write_raw(b"Z" * 65536)
        time.sleep(0.002)
    fake.write_raw(b"\r\nMARK STOP\r\nN2 blob 500 0 100 100\r\n")
    assert wait_until(lambda: jv.latest().present and abs(jv.latest().x - 0.75) < 1e-6, 3.0)
    assert jv.stats()["overlong"] == overlong + 1
    assert len(jv._lines._buf) == 0


# -- issue 19, item 10: markers that come and go ------------------------------------------------
def stream_frames(fake, frames, period: float = 1 / 60) -> None:
    """Write `frames` (lists of lines) to the pty one video-frame period apart."""
    start = time.monotonic()
    for k, lines in enumerate(frames):
        while time.monotonic() < start + k * period:
            time.sleep(0.001)
        fake.write_raw("".join(line + "\r\n" for line in lines).encode())


def n2(x: float, size: float) -> str:
    """An N2 line for a hand at x in [0, 1] (y at the centre) of `size` frame widths."""
    return f"N2 blob {x * 2000 - 1000:.0f} 0 {size * 2000:.0f} {size * 2000:.0f}"


def test_marked_frames_keep_the_largest_then_unmarked_detections_each_count(shared_fake):
    fake, jv = shared_fake
    big_then_small = [n2(0.25, 0.5), n2(0.75, 0.1), "MARK STOP"]  # two objects in one marked frame
    stream_frames(fake, [big_then_small] * 10)
    assert wait_until(lambda: jv.latest().present and abs(jv.latest().x - 0.25) < 1e-3, 2.0)
    time.sleep(0.05)
    assert abs(jv.latest().x - 0.25) < 1e-3  # the small object never wins inside a marked frame
    # sermark turned off: a small hand moving, one detection per video frame, no markers
    xs = [0.30 + 0.01 * k for k in range(40)]
    stream_frames(fake, [[n2(x, 0.1)] for x in xs])
    assert wait_until(lambda: abs(jv.latest().x - xs[-1]) < 1e-3, 2.0), jv.latest()
    # markers back (serout restarted): the largest object rules each frame again
    stream_frames(fake, [[n2(0.6, 0.05), n2(0.1, 0.4), "MARK STOP"]] * 10)
    assert wait_until(lambda: abs(jv.latest().x - 0.1) < 1e-3, 2.0), jv.latest()
    time.sleep(0.05)
    assert abs(jv.latest().x - 0.1) < 1e-3


def test_start_and_stop_markers_bracket_frames_and_detections_outside_count_alone(shared_fake):
    fake, jv = shared_fake
    stream_frames(fake, [["MARK START", n2(0.2, 0.3), n2(0.8, 0.05), "MARK STOP"]] * 5)
    assert wait_until(lambda: abs(jv.latest().x - 0.2) < 1e-3, 2.0)
    stream_frames(fake, [[n2(0.8, 0.05)]])  # between frames: its own frame, published at once
    assert wait_until(lambda: abs(jv.latest().x - 0.8) < 1e-3, 1.0), jv.latest()


def test_frame_marks_state_machine():
    from controllers.jevois import FrameMarks

    marks = FrameMarks()
    assert marks.detection(0.1, 0.000) and marks.detection(0.05, 0.001)  # no marker yet: each is a frame
    assert not marks.marker("STOP", 0.002)  # a frame with detections ended
    for k in range(1, 6):  # sermark Stop at 60 fps: each STOP opens the next frame
        t = 0.002 + k / 60
        assert marks.detection(0.3, t - 0.005) and not marks.detection(0.1, t - 0.004)
        assert marks.detection(0.4, t - 0.003)  # larger than the best so far in this frame
        assert not marks.marker("STOP", t)
    assert marks.marker("STOP", t + 1 / 60)  # a frame without a detection: the hand is gone
    last_stop = t + 1 / 60
    assert marks.detection(0.3, last_stop + 0.01) and not marks.detection(0.1, last_stop + 0.02)
    assert marks.detection(0.1, last_stop + 0.2)  # no marker for many periods: markers stopped
    assert marks.detection(0.05, last_stop + 0.21) and not marks.inside
    assert not marks.marker("START", last_stop + 0.3) and marks.inside  # START opens a frame
    assert marks.detection(0.2, last_stop + 0.301) and not marks.detection(0.1, last_stop + 0.302)
    assert not marks.marker("STOP", last_stop + 0.31) and not marks.inside  # START-marking: STOP closes
    assert marks.detection(0.01, last_stop + 0.32)  # between frames: its own frame


@pytest.fixture(scope="module")
def shared_fake():
    fake = FakeJeVois(stream_on_start=False).start()
    jv = JeVoisController(fake.path, clock=time.monotonic, raw=True)
    assert wait_until(lambda: "streamon" in fake.commands)
    fake.streaming = False
    yield fake, jv
    jv.close()
    fake.close()
