"""The mapping's new targets reach a second JACK client: velocity, transpose and CC out (issue 18).

`instrument play` runs as its own process on a recorded take (replay) with a mapping that
drives velocity by x, transpose by y and CC 74 by size; a separate JACK client receives what
it sends. The take moves one axis at a time, so each target's effect is seen on its own.
"""

from __future__ import annotations

import json
import subprocess
import sys

import mido
import pytest

from tests.play_helpers import busy_charrnn, read_jsonl, session_log, sounding

pytestmark = [pytest.mark.jack, pytest.mark.slow]

VELOCITY_STEP_S, TRANSPOSE_STEP_S, CC_RAMP_S, DURATION_S = 1.5, 3.0, (0.5, 1.0), 4.5


def recorded_messages(mid) -> list[tuple[float, "mido.Message"]]:
    """(seconds from the recording's start, message) of every message the session recorded as sent."""
    out, t = [], 0.0
    for message in mido.MidiFile(mid):
        t += message.time
        if not message.is_meta:
            out.append((t, message))
    return out


def write_take(path) -> None:
    """x 0 -> 1 at 1.5 s, y 0 -> 1 at 3 s, size ramping 0 -> 1 from 0.5 to 1 s; a frame every 10 ms."""
    lines = []
    for i in range(int(DURATION_S * 100) + 1):
        t = i / 100
        size = min(1.0, max(0.0, (t - CC_RAMP_S[0]) / (CC_RAMP_S[1] - CC_RAMP_S[0])))
        lines.append(json.dumps({"t": t, "present": True, "x": float(t >= VELOCITY_STEP_S),
                                 "y": float(t >= TRANSPOSE_STEP_S), "size": round(size, 4), "emg": None, "pose": None}))
    path.write_text("\n".join(lines) + "\n")


def test_velocity_transpose_and_cc_out_change_what_the_receiver_gets(jack_server, jack_receiver, tmp_path):
    take, mapping, mid = tmp_path / "take.jsonl", tmp_path / "reach.toml", tmp_path / "reach.mid"
    write_take(take)
    mapping.write_text('[velocity]\naxis = "x"\nrange = [20, 127]\n'
                       '[transpose]\naxis = "y"\nrange = [0, 12]\n'
                       '[cc.74]\naxis = "size"\n')
    receiver = jack_receiver(source="Deep Symphony")
    proc = subprocess.Popen([sys.executable, "-m", "instrument", "play", "--controller", f"replay:{take}",
                             "--mapping", str(mapping), "--model", str(busy_charrnn(tmp_path)), "--midi-api", "jack",
                             "--seed", "3", "--record", str(mid), "--duration", str(DURATION_S), "--no-realtime"],
                            stderr=subprocess.PIPE, text=True)
    receiver.wait_ready()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert any("x -> velocity, y -> transpose, size -> cc74" in line for line in err.splitlines()), err  # the start line
    received = receiver.stop()
    t0 = next(e["t0_monotonic"] for e in session_log(mid) if e["event"] == "start")
    got = [(r["t"] - t0, tuple(r["bytes"])) for r in received]
    ons = [(t, b[1], b[2]) for t, b in got if b[0] & 0xF0 == 0x90 and b[2] > 0]
    # when the engine saw each step, in session seconds (the take started with the controller, a little earlier)
    frames = read_jsonl(mid.with_suffix(".controls.jsonl"))
    loud_at = next(f["t"] for f in frames if f["x"] == 1.0)
    up_at = next(f["t"] for f in frames if f["y"] == 1.0)
    ramp_end = next(f["t"] for f in frames if f["size"] == 1.0)

    def during(start, end):
        return [(pitch, velocity) for t, pitch, velocity in ons if start <= t < end]

    soft, loud = during(0.0, loud_at - 0.01), during(loud_at + 0.3, up_at - 0.01)
    assert soft and loud, ons
    assert max(v for _, v in soft) <= 20 and min(v for _, v in loud) >= 124, ons  # 80 * 20/80 and 80 * 127/80
    low, high = during(0.0, up_at - 0.01), during(up_at + 0.3, DURATION_S)
    assert high and max(p for p, _ in low) <= 75 and min(p for p, _ in high) >= 67  # the voice plays 55..75
    assert max(p for p, _ in high) > 75  # an octave up
    assert sounding([b for _, b in got]) == {}  # every note-on, transposed or not, got its own note-off

    ccs = [(t, b[2]) for t, b in got if b[:2] == (0xB0, 74)]
    values = [v for _, v in ccs]
    assert values[0] <= 3 and values[-1] == 127 and values == sorted(values)  # followed the ramp up
    assert all(a != b for a, b in zip(values, values[1:]))  # only changes are sent
    # ~100 Hz at most, judged on the times the instrument sent them (its recording): a JACK client stalled for a few
    # ms on a shared machine delivers two of them closer together than they were sent.
    sent = [(t, message.value) for t, message in recorded_messages(mid) if message.type == "control_change"
            and message.control == 74]
    assert [v for _, v in sent] == values  # every one sent arrived, in order
    assert all(t2 - t1 >= 0.005 for (t1, _), (t2, _) in zip(sent, sent[1:]))
    assert all(t < ramp_end + 0.1 for t, _ in ccs)  # and nothing once the hand stays still
