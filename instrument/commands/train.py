"""`instrument train charrnn|dcrnn`: train a model and write a checkpoint (weights + JSON config)."""

from __future__ import annotations

import argparse

from instrument.commands._targets import configure_targets, run_target

TARGETS = {
    "charrnn": ("models.train_charrnn", "configure_charrnn", "run_charrnn",
                "train the conditional Char-RNN on MIDI folders (resumable; torchrun for DDP)"),
    "dcrnn": ("models.train_dcrnn", "configure_dcrnn", "run_dcrnn",
              "train the DCRNN piano-roll GAN (WGAN-GP; resumable)"),
}


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the training targets."""
    configure_targets(parser, "train_target", TARGETS)


def run(args: argparse.Namespace) -> int:
    """Train the chosen model."""
    return run_target(args, "train_target", TARGETS)
