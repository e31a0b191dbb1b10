"""Presets: `play --save-preset` writes a setup, `play --preset` loads it, the command line wins."""

from __future__ import annotations

import argparse
import json
import tomllib

import pytest

from instrument.cli import build_parser, main
from instrument.commands import play
from instrument.presets import NOT_IN_PRESETS, primary_keys

# A setup that moves many flags off their defaults, of every kind (text, number, switch, list, choice).
SETUP = ["--controller", "demo", "--model", "dcrnn", "--temperature", "0.8", "--top-p", "0.9", "--key", "A:minor",
         "--scale-lock", "--tempo", "96", "--seed", "42", "--connect", "fluidsynth", "--midi-api", "jack",
         "--channel", "3", "--refine", "velocity", "--int8", "--lookahead", "0.3", "--no-realtime"]


def play_args(*argv: str):
    """The parsed namespace of `instrument play ARGV`."""
    return build_parser("play").parse_args(["play", *argv])


def settings(namespace) -> dict:
    """What a preset carries: every play setting but the per-take ones."""
    return {k: v for k, v in vars(namespace).items() if k not in NOT_IN_PRESETS and k != "command"}


def test_a_saved_preset_loads_back_to_identical_settings(tmp_path, capsys):
    preset = tmp_path / "dark.toml"
    assert main(["play", *SETUP, "--save-preset", str(preset)]) == 0
    assert "saved preset" in capsys.readouterr().err
    loaded = play_args("--preset", str(preset))
    assert settings(loaded) == settings(play_args(*SETUP))
    assert loaded.refine == ("velocity",) and loaded.quantize is True and loaded.connect == "fluidsynth"
    # every play flag is carried, a flag added by another module (--program, --synth) as much as --tempo
    table = tomllib.loads(preset.read_text())
    parser = argparse.ArgumentParser()
    play.configure(parser)
    expected = {key for dest, key in primary_keys(parser).items() if getattr(loaded, dest) is not None}
    assert set(table) == expected and {"tempo", "scale-lock", "int8", "controller", "channel"} <= expected
    assert not {"record", "duration", "preset", "save-preset"} & set(table)  # they describe one take


def test_flags_on_the_command_line_win_over_the_preset(tmp_path):
    preset = tmp_path / "p.toml"
    preset.write_text('tempo = 90\nkey = "A:minor"\nconnect = "fluidsynth"\ntemperature = 0.7\nrefine = ["velocity"]\n')
    plain = play_args("--preset", str(preset))
    assert (plain.tempo, plain.key, plain.connect, plain.temperature, plain.refine) == (90.0, "A:minor", "fluidsynth",
                                                                                          0.7, ("velocity",))
    # the default value given explicitly wins too, and so does an abbreviated flag
    over = play_args("--preset", str(preset), "--tempo", "120", "--temperat", "1.5", "--no-midi")
    assert (over.tempo, over.temperature, over.key) == (120.0, 1.5, "A:minor")
    # --no-midi excludes --connect: the preset's connect gives way instead of fighting the command line
    assert over.no_midi is True and over.connect is None
    assert play_args("--preset", str(preset), "--port", "Mine").connect is None
    # a preset of its own, given first, is overridden by flags given after it as well as before
    assert play_args("--tempo", "70", "--preset", str(preset)).tempo == 70.0


def test_relative_paths_in_a_preset_are_next_to_it(tmp_path, monkeypatch):
    folder = tmp_path / "setups"
    folder.mkdir()
    (folder / "dark-mapping.toml").write_text("# a mapping\n")
    (folder / "dark.toml").write_text('mapping = "dark-mapping.toml"\n')
    monkeypatch.chdir(tmp_path)
    assert play_args("--preset", "setups/dark.toml").mapping == str(folder / "dark-mapping.toml")


@pytest.mark.parametrize("text, named", [
    ("tempoo = 90\n", "'tempoo' (did you mean 'tempo'?)"),
    ('tempo = "fast"\n', "tempo = 'fast': --tempo takes a number"),
    ("scale-lock = 1\n", "scale-lock = 1: must be true or false"),
    ('midi-api = "pulse"\n', "midi-api = 'pulse': must be one of auto, alsa, jack, coremidi, winmm"),
    ("seed = -4\n", "seed = -4: --seed must be a whole number"),
    ('connect = "x"\nno-midi = true\n', "connect and no-midi exclude each other"),
    ('record = "take.mid"\n', "record describes one take"),
    ("[voice]\nmodel = 'dcrnn'\n", "[voice] is a table"),
    ("tempo = \n", "is not valid TOML"),
    ("tempo = 500\n", "--tempo must be between 20 and 300 bpm, got 500"),
    ("channel = 17\n", "--channel must be in 1..16, got 17"),
])
def test_a_bad_preset_is_one_line_naming_the_key_exit_2(tmp_path, capsys, text, named):
    preset = tmp_path / "bad.toml"
    preset.write_text(text)
    assert main(["play", "--preset", str(preset), "--no-midi", "--record", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and named in err, err
    assert not list(tmp_path.glob("*.mid"))  # nothing started


def test_a_missing_preset_and_bad_settings_to_save(tmp_path, capsys):
    assert main(["play", "--preset", str(tmp_path / "none.toml")]) == 2
    assert "--preset" in capsys.readouterr().err
    out = tmp_path / "out.toml"
    assert main(["play", "--tempo", "900", "--save-preset", str(out)]) == 2  # a preset that cannot play is not saved
    assert "--tempo" in capsys.readouterr().err and not out.exists()
    assert main(["play", "--save-preset", str(tmp_path / "out.txt")]) == 2
    assert ".toml" in capsys.readouterr().err


def test_a_preset_plays_with_its_settings(tmp_path, tiny_charrnn, capsys):
    """End to end: the session log records the preset's settings, with the command line's on top."""
    preset = tmp_path / "p.toml"
    assert main(["play", "--model", str(tiny_charrnn), "--key", "D:minor", "--tempo", "84", "--channel", "5",
                 "--controller", "demo", "--save-preset", str(preset)]) == 0
    record = tmp_path / "takes"
    record.mkdir()
    assert main(["play", "--preset", str(preset), "--tempo", "132", "--no-midi", "--no-realtime",
                 "--duration", "0.5", "--record", str(record)]) == 0
    config = json.loads(next(record.glob("*.log.jsonl")).read_text().splitlines()[0])
    assert config["event"] == "config"
    assert (config["key"], config["tempo"], config["channel"], config["controller"]) == ("D:minor", 132.0, 5, "demo")
    assert config["model"] == str(tiny_charrnn)
