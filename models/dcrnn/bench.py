"""`instrument bench model --model dcrnn`: time to generate one bar on one CPU thread.

A "bar" is what the engine pays when the performer's slots change: one ``generate_chunk`` call
(batch 1, state carried), thresholding into a roll, and the roll -> notes conversion.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from models.dcrnn.model import Generator, binarize, load_generator, sample_z
from models.roll import roll_to_notes, step_seconds

BUDGET_MS = 5.0  # the limit per bar


def configure_dcrnn(parser: argparse.ArgumentParser) -> None:
    """Arguments of the DCRNN model benchmark."""
    parser.add_argument("--weights", type=Path, default=None, help="generator checkpoint (default: the shipped one)")
    parser.add_argument("--bars", type=int, default=500, help="bars to time (after 20 warm-up bars)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")


def bench_dcrnn(gen: Generator, bars: int = 500, threads: int = 1, bpm: float = 120.0) -> dict:
    """Time ``bars`` bar generations -> {"bar_p50_ms", "bar_p99_ms", "bar_max_ms", "to_notes_p50_ms", ...}."""
    torch.set_num_threads(threads)
    noise = torch.Generator().manual_seed(0)
    zs = sample_z(bars + 20, gen.config, noise)
    cond = torch.full((1, gen.config.cond_dim), 1 / 12) if gen.config.cond_dim else None
    step_s = step_seconds(bpm)
    gen_ms, notes_ms = [], []
    with torch.inference_mode():
        state, prev = gen.init_state(1), None
        for i, z in enumerate(zs):
            t0 = time.perf_counter()
            logits, state = gen.generate_chunk(z.view(1, -1), cond, state)
            bar = binarize(logits, gen.threshold, prev=prev)
            t1 = time.perf_counter()
            roll_to_notes(bar[0].numpy(), step_s)
            t2 = time.perf_counter()
            prev = bar[:, -1]
            if i >= 20:
                gen_ms.append((t1 - t0) * 1e3)
                notes_ms.append((t2 - t1) * 1e3)
    g, n = np.array(gen_ms), np.array(notes_ms)
    total = g + n
    return {
        "model": "dcrnn",
        "device": "cpu",
        "threads": threads,
        "bars": bars,
        "bar_p50_ms": float(np.percentile(g, 50)),
        "bar_p99_ms": float(np.percentile(g, 99)),
        "bar_max_ms": float(g.max()),
        "to_notes_p50_ms": float(np.percentile(n, 50)),
        "total_p99_ms": float(np.percentile(total, 99)),
        "budget_ms": BUDGET_MS,
        "within_budget": bool(np.percentile(total, 99) <= BUDGET_MS),
    }


def bench_checkpoint(path: Path | None, steps: int) -> dict:
    """The registry's entry point: a checkpoint (None: the shipped one) -> its bar timings."""
    return bench_dcrnn(load_generator(path), bars=min(steps, 1000))


def run_dcrnn(args: argparse.Namespace) -> int:
    """Run the benchmark and print its figures; returns 0."""
    result = bench_dcrnn(load_generator(getattr(args, "weights", None)), args.bars, args.threads)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"dcrnn bar generation on CPU ({result['threads']} thread), {result['bars']} bars: "
            f"p50 {result['bar_p50_ms']:.2f} ms, p99 {result['bar_p99_ms']:.2f} ms, max {result['bar_max_ms']:.2f} ms; "
            f"roll->notes p50 {result['to_notes_p50_ms']:.2f} ms; total p99 {result['total_p99_ms']:.2f} ms "
            f"(budget {BUDGET_MS:.0f} ms: {'ok' if result['within_budget'] else 'OVER'})"
        )
    return 0
