"""Sub-subcommands (`train charrnn`, `bench latency`, ...) that live in other modules."""

from __future__ import annotations

import argparse
import importlib
import importlib.util

# target name -> (module, configure function, run function, one-line help)
Target = tuple[str, str, str, str]


def registry_targets(kind: str) -> dict[str, Target]:
    """`train` or `eval` targets of the registered voices: models/NAME/KIND.py with configure_NAME/run_NAME
    (or configure/run); the help is the first line of that module's docstring."""
    from instrument.voices.registry import SHIPPED, model_target

    targets: dict[str, Target] = {}
    for name, summary in SHIPPED.items():
        module = model_target(name, kind)
        if module is not None:
            targets[name] = (module, f"configure_{name}", f"run_{name}", f"{kind} the {summary.split(':')[0]}")
    return targets


def configure_targets(parser: argparse.ArgumentParser, dest: str, targets: dict[str, Target]) -> None:
    """Add one subparser per target whose module is installed."""
    sub = parser.add_subparsers(dest=dest, metavar="WHAT", required=True)
    for name, (module, configure, _, help_text) in targets.items():
        if importlib.util.find_spec(module) is None:
            continue
        target_parser = sub.add_parser(name, help=help_text, description=help_text)
        _function(importlib.import_module(module), configure, "configure")(target_parser)


def run_target(args: argparse.Namespace, dest: str, targets: dict[str, Target]) -> int:
    """Run the chosen target's function."""
    module, _, run, _ = targets[getattr(args, dest)]
    return int(_function(importlib.import_module(module), run, "run")(args) or 0)


def _function(module, preferred: str, verb: str):
    """`preferred` (configure_NAME), else configure_train / configure_eval, else configure (same for run)."""
    for name in (preferred, f"{verb}_train", f"{verb}_eval", verb):
        function = getattr(module, name, None)
        if callable(function):
            return function
    raise AttributeError(f"{module.__name__} has no {preferred}() or {verb}()")
