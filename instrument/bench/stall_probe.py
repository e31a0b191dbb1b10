"""A machine stall probe for the latency bench: is a slow gesture the engine's fault or the machine's?

A separate process, at a real-time priority above every engine thread where permitted, sleeps
1 ms at a time and records each wake-up that comes more than `--threshold-ms` late. It shares
nothing with the engine (no GIL, no heap, no JACK), so when it oversleeps, the whole machine
stopped running user code: the hypervisor took the virtual CPUs, or the kernel did. A slow
gesture whose control -> note window overlaps such a stall was delayed by the machine; one that
does not was delayed by the process (a garbage collection, a long step, a lock).

Run by `StallProbe` as `python -m instrument.bench.stall_probe OUT.json`: it writes
{"ready": true} once it runs, then, after SIGTERM, {"stalls": [[start, end], ...]} in
time.monotonic() seconds (the engine's and the receiver's clock). About 1000 wake-ups a second
of ~10 us each: under 2 % of one core.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from instrument.bench.helper_process import HelperProcess

PROBE_PRIORITY = 20  # SCHED_FIFO: above JACK (10) and the engine (8, 7), so the engine cannot delay it
TICK_S = 0.001
THRESHOLD_S = 0.002  # a wake-up this much later than asked for is a stall


def probe(out: Path, threshold_s: float = THRESHOLD_S) -> int:
    """Sleep TICK_S at a time until SIGTERM; write the stalls (intervals with no wake-up) to `out`."""
    gc.disable()  # nothing here needs collecting, and a collection would be a stall of our own
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(PROBE_PRIORITY))
        realtime = True
    except (AttributeError, OSError):
        realtime = False
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    stalls: list[tuple[float, float]] = []
    now, sleep = time.monotonic, time.sleep
    out.write_text(json.dumps({"ready": True, "realtime": realtime}) + "\n")
    last = now()
    while not stop:
        sleep(TICK_S)
        t = now()
        if t - last > TICK_S + threshold_s:
            stalls.append((last, t))
        last = t
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"stalls": stalls, "realtime": realtime, "threshold_s": threshold_s}) + "\n")
    tmp.replace(out)
    return 0


class StallProbe(HelperProcess):
    """This module's probe, as a separate process; `finish()` returns {"stalls": [[start, end], ...], "realtime": bool}."""

    def __init__(self, folder: Path) -> None:
        out = folder / "stall-probe.json"
        super().__init__("instrument.bench.stall_probe", [str(out)], out, "stall probe")


def overlaps(windows_start: np.ndarray, windows_end: np.ndarray, stalls: np.ndarray) -> np.ndarray:
    """(N,) bool: whether each [start, end] window overlaps any stall interval of `stalls` (S, 2)."""
    if not len(stalls):
        return np.zeros(len(windows_start), dtype=bool)
    stalls = stalls[np.argsort(stalls[:, 0])]
    # the last stall that starts before each window ends; stalls do not overlap each other (one probe)
    i = np.searchsorted(stalls[:, 0], windows_end, side="right") - 1
    ok = i >= 0
    hit = np.zeros(len(windows_start), dtype=bool)
    hit[ok] = stalls[i[ok], 1] > windows_start[ok]
    return hit


def stall_summary(stalls: np.ndarray, seconds: float) -> dict:
    """Counts and sizes (ms) of the machine's stalls over a run of `seconds`."""
    lengths = (stalls[:, 1] - stalls[:, 0] - TICK_S) * 1e3 if len(stalls) else np.zeros(0)
    return {"count": int(len(lengths)), "over_5ms": int((lengths > 5).sum()), "over_20ms": int((lengths > 20).sum()),
            "max_ms": round(float(lengths.max()), 3) if len(lengths) else 0.0,
            "total_ms": round(float(lengths.sum()), 1), "per_minute": round(len(lengths) / max(seconds, 1e-9) * 60, 2)}


if __name__ == "__main__":
    sys.exit(probe(Path(sys.argv[1])))
