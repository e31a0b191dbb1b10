"""Sub-subcommands (`train charrnn`, `bench latency`, ...) that live in other modules."""

from __future__ import annotations

import argparse
import importlib
import importlib.machinery
import importlib.util
from collections.abc import Callable
from functools import partial

# target name -> (module, configure function, run function, one-line help)
Target = tuple[str, str, str, str]


def registry_targets(kind: str) -> dict[str, Target]:
    """`train` or `eval` targets of the registered voices: models/NAME/KIND.py with configure_NAME/run_NAME
    (or configure/run); the help is the first line of that module's docstring."""
    from instrument.voices.registry import SHIPPED

    targets: dict[str, Target] = {}
    for name, summary in SHIPPED.items():
        module = f"models.{name}.{kind}"  # as registry.model_target, which imports the package to look
        if module_installed(module):
            targets[name] = (module, f"configure_{name}", f"run_{name}", f"{kind} the {summary.split(':')[0]}")
    for name, summary in MODELS_BEHIND_VOICES.items():
        module = f"models.{name}.{kind}"
        if module_installed(module):
            targets[name] = (module, f"configure_{name}", f"run_{name}", f"{kind} {summary}")
    return targets


# Models that are not voices but work behind any of them (play --refine, instrument refine).
MODELS_BEHIND_VOICES = {"refine": "the Refine nets (Velocity Net, Duration Net)"}


def module_installed(name: str) -> bool:
    """True when module `name` exists, found without importing its package (a model package's
    `__init__` may import torch, which would cost `--help` 2 s)."""
    parent, _, _ = name.rpartition(".")
    if not parent:
        return importlib.util.find_spec(name) is not None
    parent_spec = importlib.util.find_spec(parent)  # imports the packages above `parent`, not `parent`
    if parent_spec is None or parent_spec.submodule_search_locations is None:
        return False
    return importlib.machinery.PathFinder.find_spec(name, list(parent_spec.submodule_search_locations)) is not None


class LazyTargetParser(argparse.ArgumentParser):
    """A target's parser that gets its flags only when it is used (parsed, or its help shown).

    Building it costs nothing: `instrument train --help` lists the targets without importing
    their modules (and torch with them); `instrument train charrnn ...` imports only charrnn's.
    """

    configure_with: Callable[[argparse.ArgumentParser], None] | None = None

    def _configure(self) -> None:
        configure, self.configure_with = self.configure_with, None
        if configure is not None:
            configure(self)

    def parse_known_args(self, args=None, namespace=None):
        """Add the flags, then parse (the subparsers action calls this for the chosen target only)."""
        self._configure()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        """Add the flags, then describe them."""
        self._configure()
        return super().format_help()

    def format_usage(self) -> str:
        """Add the flags, then the usage line."""
        self._configure()
        return super().format_usage()


def configure_targets(parser: argparse.ArgumentParser, dest: str, targets: dict[str, Target]) -> None:
    """Add one subparser per target whose module is installed; its module is imported only when it is chosen."""
    sub = parser.add_subparsers(dest=dest, metavar="WHAT", required=True, parser_class=LazyTargetParser)
    for name, (module, configure, _, help_text) in targets.items():
        if not module_installed(module):
            continue
        target_parser = sub.add_parser(name, help=help_text, description=help_text)
        target_parser.configure_with = partial(_configure_from, module, configure)


def _configure_from(module: str, configure: str, parser: argparse.ArgumentParser) -> None:
    _function(importlib.import_module(module), configure, "configure")(parser)


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
