"""`instrument eval VOICE`: held-out figures of a voice's model; the voices come from the registry (`models/VOICE/eval.py`)."""

from __future__ import annotations

import argparse

from instrument.commands._targets import configure_targets, registry_targets, run_target


def configure(parser: argparse.ArgumentParser) -> None:
    """Add one target per registered voice whose model package has a eval module."""
    configure_targets(parser, "eval_target", registry_targets("eval"))


def run(args: argparse.Namespace) -> int:
    """Run the chosen voice's eval."""
    return run_target(args, "eval_target", registry_targets("eval"))
