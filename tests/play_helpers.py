"""Helpers for the fault tests that run `instrument play` as a real process (issue 7)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mido

NOTE_KINDS = (0x80, 0x90)


def start_play(model: Path, record: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    """`instrument play --controller demo` (unless `extra` names another) as its own process."""
    argv = [sys.executable, "-m", "instrument", "play", "--model", str(model), "--seed", "3",
            "--record", str(record), "--no-realtime", *extra]
    if "--controller" not in extra:
        argv += ["--controller", "demo"]
    env = {**(os.environ if env is None else env), "PYTHONFAULTHANDLER": "1"}  # SIGABRT dumps every thread
    return subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)


def stop_with(proc: subprocess.Popen, sig: int, timeout: float = 30.0) -> str:
    """Send `sig` to a running player and wait for it to end; its stderr (stacks if it hangs)."""
    proc.send_signal(sig)
    try:
        return proc.communicate(timeout=timeout)[1]
    except subprocess.TimeoutExpired:
        raise AssertionError(f"play did not stop on {signal.Signals(sig).name}:\n{kill_with_stacks(proc)}") from None


def kill_with_stacks(proc: subprocess.Popen) -> str:
    """End a player that should have ended by itself; returns its stderr with every thread's stack."""
    if proc.poll() is not None:
        return ""
    proc.send_signal(signal.SIGABRT)  # faulthandler prints the stacks, then the process dies
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err or ""


def read_jsonl(path: Path) -> list[dict]:
    """The complete JSON lines of a file that may still be written."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def received_notes(path: Path) -> list[tuple[int, ...]]:
    """Note messages a receiver logged so far."""
    return [tuple(r["bytes"]) for r in read_jsonl(path) if "bytes" in r and r["bytes"][0] & 0xF0 in NOTE_KINDS]


def wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    """Poll `predicate` until true; fail with `what` (and the player's stderr if it died)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"play exited ({proc.returncode}) while waiting for {what}: {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def session_log(mid: Path) -> list[dict]:
    """The session log's events."""
    return read_jsonl(mid.with_suffix(".log.jsonl"))


def recording(mid: Path) -> tuple[float, list[tuple[float, tuple[int, ...]]]]:
    """(t0_monotonic, [(session seconds, bytes)]) of a recorded session; mido must read the file."""
    t0 = next(e["t0_monotonic"] for e in session_log(mid) if e["event"] == "start")
    out, t = [], 0.0
    for message in mido.MidiFile(mid):
        t += message.time
        if not message.is_meta:
            out.append((t, tuple(message.bytes())))
    return t0, out


def sounding(messages) -> dict[tuple[int, int], int]:
    """(channel, pitch) still sounding after `messages` (bytes tuples); {} when silent."""
    state: dict[tuple[int, int], int] = {}
    for b in messages:
        if b[0] & 0xF0 in NOTE_KINDS:
            state[(b[0] & 0x0F, b[1])] = 1 if b[0] & 0xF0 == 0x90 and b[2] > 0 else 0
    return {k: v for k, v in state.items() if v}


def notes_only(messages) -> list[tuple[int, ...]]:
    """The note messages among bytes tuples."""
    return [b for b in messages if b[0] & 0xF0 in NOTE_KINDS]


def busy_charrnn(folder: Path) -> Path:
    """A tiny Char-RNN whose output bias makes it play steadily (~10 notes/s): a clock for "music goes on".

    An untrained tiny model may sit on long time shifts for seconds; this one draws NOTE_ON/NOTE_OFF
    of pitches 55..75 and TIME_SHIFTs of 30..80 ms about equally often, whatever the controls.
    """
    import torch

    from models.charrnn.model import CharRNN, CharRNNConfig
    from models.checkpoint import save_checkpoint
    from models.conditioning import DEFAULT_SPEC
    from models.events import CODEC, Event, EventType

    torch.manual_seed(0)
    config = CharRNNConfig(embed_dim=8, hidden_size=32, num_layers=1, dropout=0.0)
    model = CharRNN(config)
    with torch.no_grad():
        model.head.weight.mul_(0.1)
        model.head.bias.fill_(-10.0)
        for pitch in range(55, 76):
            model.head.bias[CODEC.encode(Event(EventType.NOTE_ON, pitch))] = 3.0
            model.head.bias[CODEC.encode(Event(EventType.NOTE_OFF, pitch))] = 3.0
        for steps in range(3, 9):
            model.head.bias[CODEC.encode(Event(EventType.TIME_SHIFT, steps))] = 5.0
    return save_checkpoint(folder / "busy", model, config, meta={"conditioning": DEFAULT_SPEC.to_dict()})
