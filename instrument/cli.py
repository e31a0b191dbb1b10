"""The `instrument` command line: one entry point, one module per subcommand.

Each subcommand module in `instrument.commands` exposes `configure(parser)` and
`run(args) -> int`. Modules are imported only when their command runs, so
`instrument --help` stays fast and does not load torch.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable

from instrument import __version__
from instrument.errors import UsageError

# name -> (module, one-line help). Order is the order shown by --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "play": ("instrument.commands.play", "play live: controller -> model -> virtual MIDI port"),
    "render": ("instrument.commands.render", "re-render a recorded control stream offline to a .mid"),
    "ports": ("instrument.commands.ports", "list MIDI APIs and their ports"),
    "monitor": ("instrument.commands.monitor", "print (or record) a controller's live frames"),
    "calibrate": ("instrument.commands.calibrate", "record a performer's rest/max EMG and reach box"),
    "export": ("instrument.commands.export", "render a recorded session to PNG and WAV"),
    "refine": ("instrument.commands.refine", "the Refine nets on a recording: velocities, timing"),
    "train": ("instrument.commands.train", "train a model (a voice, or refine)"),
    "eval": ("instrument.commands.eval", "evaluate a model (a voice, or refine)"),
    "bench": ("instrument.commands.bench", "benchmarks: model, latency, music, controllers, soak"),
    "data": ("instrument.commands.data", "corpus tools: stats"),
}


def _available() -> dict[str, tuple[str, str]]:
    """Commands whose module is installed (lets the CLI grow one module at a time)."""
    found = {}
    for name, (module, help_text) in COMMANDS.items():
        if importlib.util.find_spec(module) is not None:
            found[name] = (module, help_text)
    return found


def build_parser(selected: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; only the selected subcommand's module is imported."""
    parser = argparse.ArgumentParser(
        prog="instrument",
        description=(
            "Deep Symphony Live: a gesture-played neural music instrument.\n"
            "Move a hand in front of a JeVois camera (or flex under a Myo armband, or use\n"
            "the webcam, the mouse, or the built-in demo) and neural generators play notes\n"
            "through a virtual MIDI port that your DAW or synth listens to."
        ),
        epilog="Start with `instrument play` (demo controller, shipped model). "
        "`instrument COMMAND --help` explains each command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in _available().items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == selected:
            importlib.import_module(module).configure(sub_parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the `instrument` command line; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    selected = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(selected if selected in COMMANDS else None)
    try:
        args = parser.parse_args(argv)
    except UsageError as err:  # raised by the flag types below: one line, as from the commands
        print(f"instrument {selected}: error: {err}", file=sys.stderr)
        return 2
    if args.command is None:
        parser.print_help()
        return 0
    module = importlib.import_module(_available()[args.command][0])
    try:
        return int(module.run(args) or 0)
    except UsageError as err:
        print(f"instrument {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        if not _is_domain_error(err):
            raise
        print(f"instrument {args.command}: error: {_one_line(err)}", file=sys.stderr)
        return 2


# -- flag types: argparse `type=` helpers whose errors are one line (UsageError), not usage + error
MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed's range; a larger one used to be blamed on --model


def seed_arg(text: str) -> int:
    """`--seed`: a whole number in 0..2**63-1."""
    try:
        seed = int(text.strip())
    except ValueError:
        seed = -1
    if not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed must be a whole number in 0..{MAX_SEED}, got {text!r:.40}")
    return seed


def port_name_arg(flag: str) -> Callable[[str], str]:
    """A type for a MIDI port flag (`--port`, `--connect`, `--midi-in`): a name that is not empty."""

    def parse(text: str) -> str:
        if not text.strip():
            raise UsageError(f"{flag} needs a port name, got {text!r} (`instrument ports` lists them)")
        return text

    return parse


# Errors the user can fix, raised below the command modules: (module, class). Their messages are
# one line naming the file or device. Looked up only in modules already imported (no torch at --help).
DOMAIN_ERRORS = (("models.checkpoint", "CheckpointError"), ("models.errors", "ModelError"),
                 ("controllers.errors", "ControllerError"))


def _is_domain_error(err: Exception) -> bool:
    """True when `err` is one of DOMAIN_ERRORS (a broken checkpoint, a missing device, ...)."""
    for module_name, class_name in DOMAIN_ERRORS:
        cls = getattr(sys.modules.get(module_name), class_name, None)
        if cls is not None and isinstance(err, cls):
            return True
    return False


def _one_line(err: Exception) -> str:
    return " ".join(str(err).split()) or type(err).__name__


if __name__ == "__main__":
    sys.exit(main())
