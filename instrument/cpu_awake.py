"""Keep the CPUs out of their idle states while the instrument plays (Linux PM QoS, /dev/cpu_dma_latency).

An idle CPU sleeps in a C-state (or, in a virtual machine, its virtual CPU halts and the host
runs something else on the core); waking it for a gesture costs time, and the model step that
follows runs cold. Real-time audio setups hold a CPU wake-up latency request of 0 us while they
play: the kernel then idles the CPUs by polling instead of sleeping. The request lasts while the
file stays open, and the kernel drops it when the process exits, however it exits.

Measured (`instrument bench latency`, shipped Char-RNN, 200 gestures, JACK -p 64, the 2-core CI
VM, idle): without the request, control -> note p99 6.8 / max 8.7 ms and 51 machine stalls (16
over 5 ms) seen by the bench's probe; with it, p99 5.0 / max 5.5 ms and 13 stalls (none over
5 ms). The price: idle cores spin, so a laptop draws more power while playing. `play
--no-realtime` does without it (and without SCHED_FIFO).

Needs write access to /dev/cpu_dma_latency (root, or a udev rule as for audio groups); without
it, `hold` says why in one line and the instrument plays as before.
"""

from __future__ import annotations

import os
import struct

PM_QOS_PATH = "/dev/cpu_dma_latency"


class CpuAwake:
    """A held wake-up latency request; `release()` (or process exit) ends it."""

    def __init__(self, fd: int | None, why: str) -> None:
        self._fd = fd
        self.why = why  # one line: what was asked, or why it could not be

    @property
    def held(self) -> bool:
        """Whether the request is in force."""
        return self._fd is not None

    def release(self) -> None:
        """Let the CPUs sleep again (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def hold(microseconds: int = 0, path: str = PM_QOS_PATH) -> CpuAwake:
    """Ask that no CPU take longer than `microseconds` to wake, until released."""
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as err:
        return CpuAwake(None, f"CPU wake-up latency not held ({path}: {err.strerror}); idle CPUs may wake slowly")
    try:
        os.write(fd, struct.pack("i", int(microseconds)))  # the kernel reads a native 32-bit int
    except OSError as err:
        os.close(fd)
        return CpuAwake(None, f"CPU wake-up latency not held ({path}: {err.strerror}); idle CPUs may wake slowly")
    return CpuAwake(fd, f"CPU wake-up latency held at {microseconds} us while playing")
