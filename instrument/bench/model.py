"""`instrument bench model [--model VOICE|PATH]`: one model step (or bar), p50 and p99.

Two figures for every registered voice: the model's own benchmark (`models/NAME/bench.py`:
e.g. the Char-RNN in fp32 and int8 on one CPU thread, CUDA where present; the DCRNN's bar)
and the voice's `next_events()` as the engine calls it (sampling and event conversion included).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import time
import warnings

import numpy as np

from instrument.voices.registry import model_help


def configure_model(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument bench model`."""
    parser.add_argument("--model", default="charrnn", help=model_help())
    parser.add_argument("--steps", type=int, default=2000, help="timed steps (or bars) after warm-up (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def time_voice(voice, steps: int) -> dict:
    """p50/p99 of the voice's next_events() on this thread (after 50 warm-up calls)."""
    timings = []
    for i in range(steps + 50):
        started = time.perf_counter()
        voice.next_events()
        if i >= 50:
            timings.append(time.perf_counter() - started)
    ms = np.asarray(timings) * 1e3
    return {"calls": steps, "p50_ms": round(float(np.percentile(ms, 50)), 4), "p99_ms": round(float(np.percentile(ms, 99)), 4)}


def run_model(args: argparse.Namespace) -> int:
    """Print the timings."""
    warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\..*")  # oneDNN/quantization notices
    from instrument.errors import UsageError
    from instrument.session import SessionConfig, open_session_voice
    from instrument.voices import resolve

    if args.steps < 1:
        raise UsageError(f"--steps must be >= 1, got {args.steps}")
    try:
        name, checkpoint = resolve(args.model)
    except (KeyError, FileNotFoundError, LookupError):
        raise UsageError(f"--model: no voice or checkpoint {args.model!r}") from None
    report: dict = {"voice": name}
    module = f"models.{name}.bench"
    if importlib.util.find_spec(f"models.{name}") and importlib.util.find_spec(module):
        report["model"] = importlib.import_module(module).bench_checkpoint(checkpoint, args.steps)
    voice = open_session_voice(SessionConfig(model=args.model, device="cpu"), seed=0)
    report["voice_next_events_cpu"] = time_voice(voice, min(args.steps, 1000 if voice.info.keeps_grid else args.steps))
    if args.json:
        print(json.dumps(report))
    else:
        for key, value in report.items():
            print(f"{key:24s} {value}")
    return 0
