"""`instrument play` end to end: a real JACK server, the play process, a separate receiving client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mido
import pytest

pytestmark = [pytest.mark.jack, pytest.mark.slow]


def play_cmd(model: Path, record: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "instrument", "play", "--controller", "demo", "--midi-api", "jack",
            "--model", str(model), "--seed", "3", "--record", str(record), "--temperature", "1.0", *extra]


def recorded(mid: Path, log: Path) -> tuple[list[tuple[float, tuple]], float]:
    """Messages of the recording as (absolute monotonic time, bytes), and the session's t0."""
    t0 = next(json.loads(line)["t0_monotonic"] for line in log.read_text().splitlines() if '"start"' in line)
    out, t = [], 0.0
    for message in mido.MidiFile(mid):
        t += message.time
        if not message.is_meta:
            out.append((t0 + t, tuple(message.bytes())))
    return out, t0


def balanced(messages: list[tuple]) -> dict[tuple[int, int], int]:
    """(channel, pitch) -> note-ons minus note-offs, for notes that end up sounding."""
    count: dict[tuple[int, int], int] = {}
    for b in messages:
        if b[0] & 0xF0 in (0x80, 0x90):
            key = (b[0] & 0x0F, b[1])
            on = b[0] & 0xF0 == 0x90 and b[2] > 0
            count[key] = 1 if on else 0  # a note-off silences the key whatever came before
    return {k: v for k, v in count.items() if v}


def test_demo_play_reaches_a_second_client_exactly_as_recorded(jack_server, jack_receiver, tiny_charrnn, tmp_path):
    mid = tmp_path / "take.mid"
    proc = subprocess.Popen(play_cmd(tiny_charrnn, mid, "--duration", "5"), stderr=subprocess.PIPE, text=True)
    receiver = jack_receiver(source="Deep Symphony")
    ready = receiver.wait_ready()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    time.sleep(0.2)
    received = receiver.stop()
    sent, _ = recorded(mid, tmp_path / "take.log.jsonl")
    notes_sent = [(t, b) for t, b in sent if b[0] & 0xF0 in (0x80, 0x90) and t > ready["t"] + 0.05]
    assert len(notes_sent) >= 4, "the demo should play a few notes in 5 s"
    got = [(r["t"], tuple(r["bytes"])) for r in received]
    # Every recorded note message arrived, in the recorded order, as recorded: never early (a message sent at
    # generation time rather than at its deadline would come about the lookahead early) and never a beat late.
    # A shared 2-core machine can stall a JACK client for tens of ms now and then, so the bound is 250 ms and the
    # 5-ms latency goal is checked on the median here; `instrument bench latency` measures the figures themselves.
    delays, position = [], 0
    for t, b in notes_sent:
        match = next((i for i in range(position, len(got)) if got[i][1] == b and -0.001 <= got[i][0] - t <= 0.25), None)
        assert match is not None, f"recorded {b} at +{t - ready['t']:.3f} s did not arrive in order within -1..+250 ms"
        delays.append(got[match][0] - t)
        position = match + 1
    assert sorted(delays)[len(delays) // 2] <= 0.005, f"median delay {sorted(delays)[len(delays) // 2] * 1000:.1f} ms"
    assert balanced([b for _, b in got]) == {}  # every note_on got its note_off
    assert [b[:2] for _, b in got[-2:]] == [(0xB0, 123), (0xB0, 120)]


def test_sigint_stops_cleanly_with_nothing_left_sounding(jack_server, jack_receiver, tiny_charrnn, tmp_path):
    receiver = jack_receiver(name="ds-sink")
    receiver.wait_ready()
    mid = tmp_path / "interrupted.mid"
    proc = subprocess.Popen(play_cmd(tiny_charrnn, mid, "--connect", "ds-sink", "--lookahead", "0.5"),
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and not any(  # wait until notes are flowing
            r["bytes"][0] & 0xF0 == 0x90 for r in _read(receiver.out)):
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped by SIGINT" in err and "Traceback" not in err
    time.sleep(0.2)
    got = [tuple(r["bytes"]) for r in receiver.stop()]
    assert any(b[0] == 0x90 for b in got)
    assert balanced(got) == {}
    assert got[-2:] == [(0xB0, 123, 0), (0xB0, 120, 0)]
    sent, _ = recorded(mid, tmp_path / "interrupted.log.jsonl")  # the recording is complete and silent too
    assert balanced([b for _, b in sent]) == {} and [b for _, b in sent if b[0] & 0xF0 in (0x80, 0x90)] == \
        [b for b in got if b[0] & 0xF0 in (0x80, 0x90)]


def _read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}") and "bytes" in line]


def test_no_midi_system_is_one_line_and_recording_goes_on(tiny_charrnn, tmp_path):
    mid = tmp_path / "nomidi.mid"
    env = {**os.environ, "JACK_DEFAULT_SERVER": "no-server-here", "JACK_NO_START_SERVER": "1"}
    proc = subprocess.run(play_cmd(tiny_charrnn, mid, "--duration", "2"), env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    problem = [line for line in proc.stderr.splitlines() if "no JACK server" in line]
    assert len(problem) == 1 and "jackd -S -d dummy" in problem[0]
    assert mido.MidiFile(mid).length > 0


def test_a_taken_port_name_is_reported_as_jack_names_it(jack_server, tiny_charrnn, tmp_path):
    """Issue 19, item 11: a second `Deep Symphony` is `Deep Symphony-01` under JACK, and the start line says so."""
    import re

    from instrument.midi_out import MidiSink

    first = MidiSink(api="jack")  # another player already holds the name
    try:
        proc = subprocess.run(play_cmd(tiny_charrnn, tmp_path / "second.mid", "--duration", "2"),
                              capture_output=True, text=True, timeout=60)
    finally:
        first.close()
    assert proc.returncode == 0, proc.stderr
    start = proc.stderr.splitlines()[0]
    assert re.search(r"virtual port 'Deep Symphony-\d+:Deep Symphony'", start), start
