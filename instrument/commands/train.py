"""`instrument train VOICE`: train a voice's model and write a checkpoint (weights + JSON config); the voices come from the registry (`models/VOICE/train.py`)."""

from __future__ import annotations

import argparse

from instrument.commands._targets import configure_targets, registry_targets, run_target


def configure(parser: argparse.ArgumentParser) -> None:
    """Add one target per registered voice whose model package has a train module."""
    configure_targets(parser, "train_target", registry_targets("train"))


def run(args: argparse.Namespace) -> int:
    """Run the chosen voice's train."""
    return run_target(args, "train_target", registry_targets("train"))
