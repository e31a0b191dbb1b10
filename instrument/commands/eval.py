"""`instrument eval charrnn|dcrnn`: held-out likelihood, control fidelity, sample statistics."""

from __future__ import annotations

import argparse

from instrument.commands._targets import configure_targets, run_target

TARGETS = {
    "charrnn": ("models.eval_charrnn", "configure_charrnn", "run_charrnn",
                "NLL, control fidelity, in-scale rate and copying of a Char-RNN"),
    "dcrnn": ("models.eval_dcrnn", "configure_dcrnn", "run_dcrnn",
              "sample statistics, overlap area, slot responsiveness and copying of a DCRNN"),
}


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the evaluation targets."""
    configure_targets(parser, "eval_target", TARGETS)


def run(args: argparse.Namespace) -> int:
    """Evaluate the chosen model."""
    return run_target(args, "eval_target", TARGETS)
