"""Sub-subcommands (`train charrnn`, `bench latency`, ...) that live in other modules."""

from __future__ import annotations

import argparse
import importlib
import importlib.util

# target name -> (module, configure function, run function, one-line help)
Target = tuple[str, str, str, str]


def configure_targets(parser: argparse.ArgumentParser, dest: str, targets: dict[str, Target]) -> None:
    """Add one subparser per target whose module is installed."""
    sub = parser.add_subparsers(dest=dest, metavar="WHAT", required=True)
    for name, (module, configure, _, help_text) in targets.items():
        if importlib.util.find_spec(module) is None:
            continue
        target_parser = sub.add_parser(name, help=help_text, description=help_text)
        getattr(importlib.import_module(module), configure)(target_parser)


def run_target(args: argparse.Namespace, dest: str, targets: dict[str, Target]) -> int:
    """Run the chosen target's function."""
    module, _, run, _ = targets[getattr(args, dest)]
    return int(getattr(importlib.import_module(module), run)(args) or 0)
