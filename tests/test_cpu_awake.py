"""The CPU wake-up latency request held while the instrument plays in real-time mode (instrument/cpu_awake.py)."""

from __future__ import annotations

import os
import struct

from instrument import cpu_awake
from instrument.clock import FakeClock
from instrument.engine import Engine, EngineConfig
from instrument.mapping import Mapping
from instrument.midi_out import ListSink
from tests.required import missing


def current_request() -> int | None:
    """The kernel's effective CPU wake-up latency request in us (None where it cannot be read)."""
    try:
        fd = os.open(cpu_awake.PM_QOS_PATH, os.O_RDONLY)
    except OSError:
        return None
    try:
        return struct.unpack("i", os.read(fd, 4))[0]
    finally:
        os.close(fd)


def test_a_missing_or_forbidden_device_plays_on_with_one_line_saying_why(tmp_path):
    missing = cpu_awake.hold(path=str(tmp_path / "no-such-device"))
    assert not missing.held and "not held" in missing.why and "\n" not in missing.why
    missing.release()  # nothing to release: no error


def test_the_request_is_written_as_a_native_int_and_released(tmp_path):
    device = tmp_path / "cpu_dma_latency"
    device.write_bytes(b"")
    awake = cpu_awake.hold(0, path=str(device))
    assert awake.held and device.read_bytes() == struct.pack("i", 0)
    awake.release()
    awake.release()  # idempotent
    assert not awake.held


def test_the_engine_holds_the_cpus_awake_while_it_plays_and_lets_them_sleep_after(tmp_path):
    if current_request() is None:
        missing(f"{cpu_awake.PM_QOS_PATH} cannot be read here")
    before = current_request()
    seen: list[int | None] = []
    events: list[dict] = []

    class Controller:
        def latest(self):
            seen.append(current_request())  # polled by the engine while it plays
            from controllers.frame import ControlFrame
            return ControlFrame(t=0.0, present=False)

        def stats(self):
            return {}

    from tests.test_bench_latency import Voice

    clock = FakeClock(5.0)
    engine = Engine(Voice(), Controller(), Mapping.default(), [ListSink()], clock,
                    EngineConfig(threaded=False, realtime=True), on_event=lambda kind, **f: events.append({"kind": kind, **f}))
    engine.run(duration=0.2)
    awake = [e for e in events if e["kind"] == "cpu_awake"]
    assert len(awake) == 1
    if awake[0]["held"]:
        assert seen[-1] == 0 and seen.count(0) >= len(seen) - 2, seen  # in force from start to stop
        assert current_request() == before  # released at the stop
    else:  # not root: the line says why, and the machine's setting is untouched
        assert "not held" in awake[0]["message"] and current_request() == before
