"""Presets: a whole `instrument play` setup in one TOML file, and settings laid under the command line.

A preset is a flat TOML table whose keys are play's long flag names without the dashes:

    # instrument play --preset dark.toml
    controller = "webcam:0"
    model = "charrnn"
    key = "A:minor"
    scale-lock = true
    tempo = 84.0
    channel = 2
    refine = ["velocity"]
    mapping = "dark-mapping.toml"   # relative paths are relative to the preset's folder

Every play flag may appear (new flags too: the keys come from the parser itself), except
those that describe one take: --record, --duration, --preset, --save-preset. A list is
the flag's comma-separated text. `play --save-preset FILE` writes the settings given.

The same machinery serves `render --session NAME`: `overlay(parser, {dest: loader})`
makes the parser lay the loaded settings under the command line, so a flag given on the
command line always wins (abbreviated or not), and a flag of a mutually exclusive group
given there drops the preset's value for the others (`--no-midi` beats a preset's
`connect`). Bad keys and values are one line naming the key (UsageError: exit 2).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
from collections.abc import Callable, Mapping
from pathlib import Path

from instrument.errors import UsageError

# Flags that describe one take, not a setup: never in a preset.
NOT_IN_PRESETS = frozenset({"help", "version", "preset", "save_preset", "record", "duration"})

Loader = Callable[[object, argparse.ArgumentParser], dict]  # (flag value, parser) -> {dest: value}


# ----------------------------------------------------------------------------- the keys
def preset_keys(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """{key: action} for every flag a preset may set; key = long flag without dashes (aliases too)."""
    keys: dict[str, argparse.Action] = {}
    for action in parser._actions:
        if action.dest in NOT_IN_PRESETS or not action.option_strings:
            continue
        for option in action.option_strings:
            if option.startswith("--"):
                keys.setdefault(option[2:], action)
    return keys


def primary_keys(parser: argparse.ArgumentParser) -> dict[str, str]:
    """{dest: key} the key written for each setting: its first long flag shown in --help."""
    chosen: dict[str, tuple[str, bool]] = {}
    for key, action in preset_keys(parser).items():
        shown = action.help != argparse.SUPPRESS  # `--quantize` is the hidden old name of `--int8`
        if action.dest not in chosen or (shown and not chosen[action.dest][1]):
            chosen[action.dest] = (key, shown)
    return {dest: key for dest, (key, _) in chosen.items()}


# ----------------------------------------------------------------------------- loading
def load_preset(path: object, parser: argparse.ArgumentParser) -> dict:
    """{dest: value} of a preset file, checked against the parser (UsageError naming the key)."""
    import tomllib

    file = Path(str(path)).expanduser()
    where = f"--preset {path}"
    try:
        with open(file, "rb") as handle:
            table = tomllib.load(handle)
    except FileNotFoundError:
        raise UsageError(f"{where}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{where} is a folder (give a .toml preset file)") from None
    except OSError as err:
        raise UsageError(f"{where}: cannot read it: {err.strerror or err}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UsageError(f"{where} is not valid TOML: {err}") from None
    return settings_from_table(table, parser, where, base=file.parent.absolute())


def settings_from_table(table: Mapping, parser: argparse.ArgumentParser, where: str, base: Path | None = None) -> dict:
    """{dest: value} for a flat {key: value} table, each value through its flag's type and choices."""
    keys = preset_keys(parser)
    values: dict = {}
    for raw_key, value in table.items():
        key = str(raw_key).replace("_", "-")
        action = keys.get(key)
        if isinstance(value, dict):
            raise UsageError(f"{where}: [{raw_key}] is a table; a preset is a flat list of key = value")
        if action is None and key.replace("-", "_") in NOT_IN_PRESETS:
            raise UsageError(f"{where}: {raw_key} describes one take, not a setup: give --{key} on the command line")
        if action is None:
            known = sorted(primary_keys(parser).values())
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(known)})"
            raise UsageError(f"{where}: unknown key {raw_key!r}{hint}")
        values[action.dest] = convert(action, key, value, where, base)
    _check_exclusive(parser, values, where)
    return values


def convert(action: argparse.Action, key: str, value: object, where: str, base: Path | None = None) -> object:
    """The value argparse would store for `--key VALUE`; UsageError naming the key when it cannot."""
    shown = f"{where}: {key} = {_short(value)}"
    if action.nargs == 0:  # store_true / store_false / store_const: the flag given (true) or not (false)
        if not isinstance(value, bool):
            raise UsageError(f"{shown}: must be true or false")
        return action.const if value else action.default
    if action.nargs not in (None, "?"):
        raise UsageError(f"{where}: {key} cannot be set in a preset (give --{key} on the command line)")
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
        text = ",".join(str(v) for v in value)
    elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = str(value)
    else:
        raise UsageError(f"{shown}: must be {'a number' if action.type in (int, float) else 'text'}")
    if action.type is not None:
        try:
            result = action.type(text)
        except UsageError as err:
            raise UsageError(f"{shown}: {err}") from None
        except (ValueError, TypeError, argparse.ArgumentTypeError):
            kind = {int: "a whole number", float: "a number"}.get(action.type, "a valid value")
            raise UsageError(f"{shown}: --{key} takes {kind}") from None
    else:
        result = text
    if action.choices is not None and result not in action.choices:
        raise UsageError(f"{shown}: must be one of {', '.join(map(str, action.choices))}")
    if isinstance(result, str) and base is not None:
        result = _beside(result, base)
    return result


def _beside(text: str, base: Path) -> str:
    """A relative path of a file next to the preset is taken from there (a preset folder travels whole)."""
    path = Path(text).expanduser()
    if path.is_absolute() or not text.strip():
        return text
    candidate = base / path
    return str(candidate) if candidate.is_file() else text


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_exclusive(parser: argparse.ArgumentParser, values: dict, where: str) -> None:
    """Two settings of one mutually exclusive group (`connect` and `no-midi`) cannot both be set."""
    keys = primary_keys(parser)
    for group in parser._mutually_exclusive_groups:
        set_here = [a.dest for a in group._group_actions if a.dest in values and values[a.dest] != a.default]
        if len(set_here) > 1:
            names = " and ".join(keys.get(dest, dest) for dest in set_here)
            raise UsageError(f"{where}: {names} exclude each other (set one)")


# ----------------------------------------------------------------------------- laying settings under the command line
def given_on_command_line(parser: argparse.ArgumentParser, parse: Callable, args: list[str]) -> set[str]:
    """The dests the command line set itself (parsed once more with every default suppressed)."""
    saved = [(action, action.default) for action in parser._actions]
    saved_defaults = dict(parser._defaults)
    try:
        for action, _ in saved:
            action.default = argparse.SUPPRESS
        parser._defaults.clear()
        namespace, _ = parse(list(args), None)
    finally:
        for action, default in saved:
            action.default = default
        parser._defaults.update(saved_defaults)
    return set(vars(namespace))


def apply(parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: dict, given: set[str]) -> None:
    """Set `values` on `namespace` where the command line did not (nor another of the flag's exclusive group)."""
    blocked = set(given)
    for group in parser._mutually_exclusive_groups:
        dests = {a.dest for a in group._group_actions}
        if dests & given:
            blocked |= dests
    for dest, value in values.items():
        if dest not in blocked:
            setattr(namespace, dest, value)


def overlay(parser: argparse.ArgumentParser, loaders: dict[str, Loader]) -> None:
    """Make `parser` lay the settings `loaders[dest](value, parser)` loads under its command line."""
    plain = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        parsed, extras = plain(args, namespace)
        chosen = {dest: getattr(parsed, dest) for dest in loaders if getattr(parsed, dest, None)}
        if chosen:
            given = given_on_command_line(parser, plain, list(args) if args is not None else [])
            for dest, value in chosen.items():
                apply(parser, parsed, loaders[dest](value, parser), given)
        return parsed, extras

    parser.parse_known_args = parse_known_args  # the subcommand's parser only (the subparsers action calls it)


# ----------------------------------------------------------------------------- saving
def preset_values(namespace: argparse.Namespace, parser: argparse.ArgumentParser) -> dict:
    """{key: TOML value} of the parsed settings a preset carries (None, i.e. unset, left out)."""
    table: dict = {}
    for dest, key in primary_keys(parser).items():
        value = getattr(namespace, dest, None)
        if value is None:
            continue
        if isinstance(value, (tuple, list)):
            value = [str(v) for v in value]
        elif isinstance(value, Path):
            value = str(value)
        if isinstance(value, str) and value and Path(value).is_file():
            value = str(Path(value).resolve())  # a preset is used from anywhere
        table[key] = value
    return table


def save_preset(path: str | Path, namespace: argparse.Namespace, parser: argparse.ArgumentParser, command: str) -> Path:
    """Write the preset (atomically) and return its path; UsageError when it cannot be written."""
    import tomli_w

    file = Path(path).expanduser()
    if file.suffix.lower() != ".toml":
        raise UsageError(f"--save-preset {path}: give a .toml file name")
    text = (f"# Deep Symphony Live preset: `instrument {command} --preset {file.name}`\n"
            "# Keys are the command's flags without dashes; flags given on the command line win.\n\n"
            + tomli_w.dumps(preset_values(namespace, parser)))
    temporary = file.with_name(f".{file.name}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, file)
    except OSError as err:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise UsageError(f"--save-preset {path}: cannot write it: {err.strerror or err}") from None
    return file

