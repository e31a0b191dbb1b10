"""A private JACK server for the benchmarks: a dummy driver at the period asked for, stopped afterwards.

The benchmarks use a running server when it already has the period asked for; otherwise they
start `jackd -n NAME -S -d dummy -r 48000 -p N` under a name of their own (which dies with the
benchmark: PDEATHSIG) and point JACK_DEFAULT_SERVER at it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

from instrument.errors import UsageError

SAMPLE_RATE = 48000


def _die_with_parent() -> None:
    """preexec_fn: the child gets SIGTERM when this process dies (Linux), so a killed bench leaks no server."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def jack_period(server: str) -> int | None:
    """The period (frames) of the running JACK server `server`, read with `jack_bufsize`; None if unknown."""
    tool = shutil.which("jack_bufsize")
    if tool is None:
        return None
    env = {**os.environ, "JACK_DEFAULT_SERVER": server, "JACK_NO_START_SERVER": "1"}
    try:
        out = subprocess.run([tool], env=env, capture_output=True, text=True, timeout=10).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return int(out[0]) if out and out[0].isdigit() else None


def start_private_jack(period: int = 128, name: str | None = None) -> tuple[subprocess.Popen | None, str]:
    """Start `jackd -n NAME -S -d dummy -r 48000 -p PERIOD`; (process, name), process None if jackd is missing."""
    from instrument.midi_systems import jack_server_running

    name = name or f"ds-bench-{os.getpid()}-{period}"
    jackd = shutil.which("jackd")
    if jackd is None:
        return None, name
    env = {**os.environ, "JACK_NO_AUDIO_RESERVATION": "1"}
    proc = subprocess.Popen([jackd, "-n", name, "-S", "-d", "dummy", "-r", str(SAMPLE_RATE), "-p", str(period)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            preexec_fn=_die_with_parent)
    deadline = time.monotonic() + 10
    while not jack_server_running(name) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    return proc, name


def stop_private_jack(proc: subprocess.Popen | None) -> None:
    """Stop a server started by `start_private_jack` and wait for it."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _private_jack() -> subprocess.Popen | None:
    """A private -p 128 server made this process's default (`bench soak` uses it); None if jackd is missing."""
    proc, name = start_private_jack(128)
    if proc is not None:
        os.environ["JACK_DEFAULT_SERVER"] = name
    return proc


class JackFor:
    """A JACK server with the wanted period for the duration of a `with`: the running one, or a private one."""

    def __init__(self, period: int) -> None:
        self.period = period
        self.proc: subprocess.Popen | None = None
        self.name = ""
        self.where = ""
        self._env: dict[str, str | None] = {}

    def __enter__(self) -> "JackFor":
        from instrument.midi_systems import jack_server_running

        running = os.environ.get("JACK_DEFAULT_SERVER") or "default"
        if jack_server_running(running) and jack_period(running) == self.period:
            self.name, self.where = running, f"running server {running!r}"
        else:
            self.proc, self.name = start_private_jack(self.period)
            if self.proc is None or not jack_server_running(self.name):
                stop_private_jack(self.proc)
                raise UsageError(f"bench latency measures at a separate JACK client and needs a JACK server with "
                                 f"-p {self.period}: install jackd2 (apt install jackd2), or start "
                                 f"`jackd -S -d dummy -r {SAMPLE_RATE} -p {self.period}`")
            self.where = f"private server {self.name!r}"
        self._env = {k: os.environ.get(k) for k in ("JACK_DEFAULT_SERVER", "JACK_NO_START_SERVER")}
        os.environ.update(JACK_DEFAULT_SERVER=self.name, JACK_NO_START_SERVER="1")
        return self

    def __exit__(self, *exc) -> None:
        for key, value in self._env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop_private_jack(self.proc)


# ----------------------------------------------------------------------------- the receiver
