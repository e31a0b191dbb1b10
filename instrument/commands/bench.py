"""`instrument bench model|latency|controllers|soak`: benchmarks that print numbers."""

from __future__ import annotations

import argparse

from instrument.commands._targets import configure_targets, run_target

TARGETS = {
    "model": ("instrument.bench.model", "configure_model", "run_model",
              "model step / bar time, p50 and p99, on CPU (1 thread) and CUDA if present"),
    "latency": ("instrument.bench.latency", "configure_latency", "run_latency",
                "control->note latency, schedule jitter, step time and underruns of the real engine"),
    "controllers": ("instrument.bench.controllers", "configure_controllers", "run_controllers",
                    "adapter overhead (bytes -> frame) for the JeVois and Myo fakes, webcam tracker time"),
    "soak": ("instrument.bench.soak", "configure_soak", "run_soak",
             "long run through JACK: memory growth, lateness, underruns, stuck notes"),
    "music": ("instrument.bench.music", "configure_music", "run_music",
              "renders shipped gesture takes per voice; music statistics and control fidelity vs real music"),
}


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark targets."""
    configure_targets(parser, "bench_target", TARGETS)


def run(args: argparse.Namespace) -> int:
    """Run the chosen benchmark."""
    return run_target(args, "bench_target", TARGETS)
