"""Shared fixtures: a real JACK server (dummy driver) and a separate receiving client.

MIDI tests use real components: `jackd -S -d dummy -r 48000 -p 128` started once per
test session under a unique server name, and a receiver that runs as its own process.
Without jackd the tests are skipped, except in CI (env CI set), where they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from instrument.midi_systems import jack_server_running
from tests.required import missing

TESTS = Path(__file__).resolve().parent



class JackServer:
    """A dummy-driver JACK server under its own name; stop() and start() for fault tests."""

    def __init__(self, name: str, log: Path) -> None:
        self.name = name
        self.log = log
        self.proc: subprocess.Popen | None = None
        self.env = {**os.environ, "JACK_NO_AUDIO_RESERVATION": "1", "JACK_DEFAULT_SERVER": name,
                    "JACK_NO_START_SERVER": "1"}

    def start(self, timeout: float = 10.0) -> None:
        """Start jackd and wait until it answers."""
        jackd = shutil.which("jackd")
        if jackd is None:
            missing("jackd is not installed (apt install jackd2)")
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([jackd, "-n", self.name, "-S", "-d", "dummy", "-r", "48000", "-p", "128"],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not jack_server_running(self.name):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                missing(f"jackd did not start (see {self.log})")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (SIGKILL to simulate a crash) and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@pytest.fixture(scope="session")
def jack_server(tmp_path_factory):
    """A running JACK server; JACK_DEFAULT_SERVER points at it for this process and its children."""
    server = JackServer(f"dstest{os.getpid()}", tmp_path_factory.mktemp("jack") / "jackd.log")
    server.start()
    previous = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
    os.environ.update(JACK_DEFAULT_SERVER=server.name, JACK_NO_START_SERVER="1")
    try:
        yield server
    finally:
        server.stop()
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class Receiver:
    """tests/jack_receiver.py running as a separate process."""

    def __init__(self, out: Path, source: str | None = None, name: str = "ds-receiver") -> None:
        self.out = out
        cmd = [sys.executable, str(TESTS / "jack_receiver.py"), "--out", str(out), "--name", name]
        if source:
            cmd += ["--source", source]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)

    def wait_ready(self, timeout: float = 30.0) -> dict:
        """Block until the receiver is connected (or listening); returns its ready record."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.out.exists():
                lines = self.out.read_text().splitlines()
                if lines and lines[0].endswith("}"):
                    return json.loads(lines[0])
            if self.proc.poll() is not None:
                raise AssertionError(f"receiver exited: {self.proc.stderr.read().decode()}")
            time.sleep(0.02)
        raise AssertionError("receiver not ready in time")

    def stop(self) -> list[dict]:
        """Stop it and return the received messages [{t, bytes}]."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=10)
        lines = [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]
        return [rec for rec in lines if "bytes" in rec]


@pytest.fixture
def jack_receiver(jack_server, tmp_path):
    """Factory: jack_receiver(source=None|'Deep Symphony', name=...) -> a started Receiver (stopped at teardown)."""
    started: list[Receiver] = []

    def start(source: str | None = None, name: str = "ds-receiver") -> Receiver:
        receiver = Receiver(tmp_path / f"received_{len(started)}.jsonl", source, name)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        if receiver.proc.poll() is None:
            receiver.proc.kill()
            receiver.proc.wait()


@pytest.fixture(scope="session")
def tiny_charrnn(tmp_path_factory) -> Path:
    """A tiny randomly initialised conditioned Char-RNN checkpoint (.pt with its .json), for engine tests."""
    import torch

    from models.charrnn.model import CharRNN, CharRNNConfig
    from models.checkpoint import save_checkpoint
    from models.conditioning import DEFAULT_SPEC

    torch.manual_seed(0)
    config = CharRNNConfig(embed_dim=8, hidden_size=32, num_layers=1, dropout=0.0)
    return save_checkpoint(tmp_path_factory.mktemp("model") / "tiny", CharRNN(config), config,
                           meta={"conditioning": DEFAULT_SPEC.to_dict()})


def wait_until(predicate, timeout: float = 3.0) -> bool:
    """Poll `predicate` every 5 ms until it holds or `timeout` passes; its final value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())
