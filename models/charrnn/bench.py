"""Char-RNN step timing the way the engine runs it live: batch 1, one CPU thread,
`torch.backends.mkldnn` off (3-5x faster for a single LSTM step), in fp32 and with
int8 dynamic quantization; on CUDA, eager, where a GPU exists.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import torch


def _percentiles(samples_s: list[float]) -> dict[str, float]:
    ms = np.asarray(samples_s) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 4), "p99_ms": round(float(np.percentile(ms, 99)), 4)}


@torch.no_grad()
def time_cuda_steps(model, steps: int) -> dict[str, float]:
    """p50/p99 of one batch-1 CUDA step, synchronized (what the engine waits per event)."""
    token = torch.zeros(1, dtype=torch.long, device="cuda")
    cond = torch.zeros(1, model.config.cond_dim, device="cuda") if model.config.cond_dim else None
    state = model.init_state(1, device="cuda")
    timings = []
    for i in range(steps + 200):
        started = time.perf_counter()
        logits, state = model.step(token, cond, state)
        token = logits.argmax(-1)
        torch.cuda.synchronize()
        if i >= 200:  # warm-up: allocator, caches, lazy init
            timings.append(time.perf_counter() - started)
    return _percentiles(timings)


def bench_charrnn(path: Path, steps: int) -> dict:
    """Step times of a Char-RNN checkpoint on CPU (fp32, int8) and CUDA when present."""
    from models.charrnn.model import quantize_for_cpu, time_steps
    from models.checkpoint import load_charrnn

    model, config, meta = load_charrnn(path)
    model.eval()
    report = {"model": str(path), "arch": f"{config.cell}:{config.num_layers}x{config.hidden_size}",
              "parameters": sum(p.numel() for p in model.parameters()),
              "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "threads": 1}
    report["cpu_fp32"] = time_steps(model, steps, threads=1)
    report["cpu_int8"] = time_steps(quantize_for_cpu(model), steps, threads=1)
    if torch.cuda.is_available():
        report["cuda_eager"] = time_cuda_steps(model.to("cuda"), steps)
        report["cuda_device"] = torch.cuda.get_device_name()
    return report


def bench_checkpoint(path: Path | None, steps: int) -> dict:
    """The registry's entry point: a checkpoint (None: the shipped one) -> its step timings."""
    from models.checkpoint import shipped_checkpoint

    return bench_charrnn(path or shipped_checkpoint("charrnn"), steps)
