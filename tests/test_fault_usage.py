"""Bad user input (issue 7, item 6): one line saying what is wrong and what is accepted, exit 2, no traceback.

Each case runs the real command line (`instrument.cli.main`, as the console script
does); the last tests run real processes, one of them against a real JACK server.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from instrument.cli import main


def assert_one_line_error(code: int, err: str, command: str, *fragments: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"instrument {command}: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("usage")
    (root / "empty").mkdir()
    (root / "junk").mkdir()
    (root / "junk" / "song.mid").write_bytes(b"MThd this is not a MIDI file")
    (root / "junk" / "notes.txt").write_text("no MIDI here")
    (root / "bad_syntax.toml").write_text("[register\naxis = 'y'\n")
    (root / "binary.toml").write_bytes(bytes(range(256)) * 4)
    (root / "bad_schema.toml").write_text("[gestures]\nhand = 'up'\n")
    (root / "bad_value.toml").write_text("[register]\naxis = 'elbow'\n")
    (root / "folder.toml").mkdir()
    return {name: root / name for name in ("empty", "junk", "bad_syntax.toml", "binary.toml", "bad_schema.toml",
                                            "bad_value.toml", "folder.toml")} | {"root": root}


PLAY_CASES = [
    # (extra play flags, fragments the line must hold: what is wrong, what is accepted)
    (["--controller", "theremin"], ["unknown controller 'theremin'", "demo", "jevois[:PORT]", "replay:FILE.jsonl"]),
    (["--controller", "jevois:/dev/ttyNOPE9"], ["/dev/ttyNOPE9", "no such device", "jevois:/dev/ttyACMn"]),
    (["--controller", "myo:/dev/ttyNOPE9"], ["/dev/ttyNOPE9", "no such device", "myo:/dev/ttyACMn"]),
    (["--controller", "replay:{root}/none.jsonl"], ["none.jsonl"]),
    (["--controller", "demo:fast"], ["demo takes no argument"]),
    (["--key", "H:major"], ["--key", "'H:major'", "C:major", "A:minor"]),
    (["--key", "C:dorian"], ["--key", "'C:dorian'", "major", "minor"]),
    (["--key", ""], ["--key"]),
    (["--scale-lock"], ["--scale-lock needs --key"]),
    (["--tempo", "0"], ["--tempo", "between 20 and 300", "got 0"]),
    (["--tempo", "-120"], ["--tempo", "between 20 and 300"]),
    (["--tempo", "100000"], ["--tempo", "between 20 and 300"]),
    (["--tempo", "nan"], ["--tempo", "between 20 and 300", "nan"]),
    (["--tempo", "inf"], ["--tempo", "between 20 and 300"]),
    (["--temperature", "0"], ["--temperature", "(0, 5]"]),
    (["--channel", "17"], ["--channel", "1..16"]),
    (["--clock", "sometimes"], ["--clock", "internal", "follow:PORT"]),
    (["--mapping", "{root}/missing.toml"], ["missing.toml", "cannot read mapping"]),
    (["--mapping", "{root}/bad_syntax.toml"], ["bad_syntax.toml", "not valid TOML"]),
    (["--mapping", "{root}/binary.toml"], ["binary.toml"]),
    (["--mapping", "{root}/bad_schema.toml"], ["bad_schema.toml", "[gestures]", "accepted", "register"]),
    (["--mapping", "{root}/bad_value.toml"], ["bad_value.toml", "elbow"]),
    (["--mapping", "{root}/folder.toml"], ["folder.toml"]),
    (["--model", "{root}/nothing.pt"], ["--model", "nothing.pt", "charrnn", "dcrnn"]),
]


@pytest.mark.parametrize("flags, fragments", PLAY_CASES, ids=[" ".join(c[0]).replace("{root}/", "") for c in PLAY_CASES])
def test_play_rejects_bad_input_in_one_line(files, tiny_charrnn, flags, fragments, capsys):
    flags = [f.replace("{root}", str(files["root"])) for f in flags]
    argv = ["play", "--model", str(tiny_charrnn), "--controller", "demo", "--no-midi", "--duration", "0.5",
            "--record", str(files["root"] / "takes"), *flags]
    code = main(argv)
    assert_one_line_error(code, capsys.readouterr().err, "play", *fragments)


@pytest.mark.parametrize("argv, command, fragments", [
    (["data", "stats", "{empty}"], "data", ["no usable MIDI files", ".mid/.midi", "empty"]),
    (["data", "stats", "{junk}"], "data", ["no usable MIDI files", ".mid/.midi", "1 skipped"]),
    (["data", "stats", "{root}/nowhere"], "data", ["no such file or folder", "nowhere"]),
    (["train", "charrnn", "--data", "{empty}", "--out", "{root}/out"], "train", ["--data", "no usable MIDI files", ".mid/.midi"]),
    (["train", "charrnn", "--data", "{junk}", "--out", "{root}/out"], "train", ["--data", "no usable MIDI files", "1 skipped"]),
    (["train", "charrnn", "--data", "{root}/nowhere", "--out", "{root}/out"], "train", ["--data", "no such file or folder"]),
    (["train", "dcrnn", "--data", "{empty}", "--out", "{root}/out"], "train", ["--data", "no training segments", ".mid"]),
    (["monitor", "--controller", "theremin", "--frames", "1"], "monitor", ["unknown controller", "demo"]),
    (["render", "--controls", "{root}/none.jsonl", "--out", "{root}/o.mid"], "render", ["none.jsonl"]),
], ids=["stats-empty", "stats-junk", "stats-missing", "train-empty", "train-junk", "train-missing", "dcrnn-empty",
        "monitor-spec", "render-controls"])
def test_other_commands_reject_bad_input_in_one_line(files, argv, command, fragments, capsys):
    argv = [a.format(root=files["root"], empty=files["empty"], junk=files["junk"]) for a in argv]
    code = main(argv)
    assert_one_line_error(code, capsys.readouterr().err, command, *fragments)
    assert not (files["root"] / "out").exists() or not any((files["root"] / "out").iterdir())  # nothing half-made


def run_cli(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "instrument", *argv], capture_output=True, text=True,
                          timeout=120, env=env)


def test_a_real_process_prints_one_line_and_exits_2(tiny_charrnn, tmp_path):
    proc = run_cli("play", "--model", str(tiny_charrnn), "--controller", "theremin", "--no-midi", "--duration", "0.5", "--record", str(tmp_path))
    assert_one_line_error(proc.returncode, proc.stderr, "play", "unknown controller 'theremin'", "demo")


@pytest.mark.jack
def test_a_missing_midi_port_is_one_line_naming_it(jack_server, tiny_charrnn, tmp_path):
    proc = run_cli("play", "--model", str(tiny_charrnn), "--controller", "demo", "--midi-api", "jack",
                   "--connect", "NOPE", "--duration", "0.5", "--record", str(tmp_path))
    assert_one_line_error(proc.returncode, proc.stderr, "play", "no MIDI port matching 'NOPE'", "ports available")


# -- issue 19, items 3 and 9: mapping values that used to load, then end the show --------------
HOSTILE_MAPPINGS = {
    "neutral_nan": ("[register]\naxis = 'y'\nrange = [48, 84]\nneutral = nan\n", ["neutral", "finite"]),
    "neutral_inf": ("[register]\naxis = 'y'\nrange = [48, 84]\nneutral = inf\n", ["neutral", "finite"]),
    "huge_range": ("[density]\naxis = 'x'\nrange = [1, 1e300]\n", ["[density] range", "(0, 50]"]),
    "lost_list": ("lost = [1, 2]\n", ["[lost] must be a table"]),
    "theme_string": ("theme = 'x'\n", ["[theme] must be a table"]),
    "poses_all": ("[theme]\nposes = 'all'\n", ["poses must be a table"]),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_MAPPINGS))
def test_hostile_mapping_values_are_refused_at_load_in_one_line(name, tiny_charrnn, tmp_path, capsys):
    text, fragments = HOSTILE_MAPPINGS[name]
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    code = main(["play", "--model", str(tiny_charrnn), "--controller", "demo", "--no-midi", "--duration", "0.5",
                 "--record", str(tmp_path / "takes"), "--mapping", str(path)])
    assert_one_line_error(code, capsys.readouterr().err, "play", f"{name}.toml", *fragments)


def test_a_hostile_midi_in_file_is_one_line_naming_it(tiny_charrnn, tmp_path, monkeypatch, capsys):
    (tmp_path / "deep-symphony").mkdir()
    (tmp_path / "deep-symphony" / "midi_in.json").write_text('{"temperature": 1e400}')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    code = main(["play", "--model", str(tiny_charrnn), "--controller", "demo", "--no-midi", "--duration", "0.5",
                 "--record", str(tmp_path / "takes"), "--midi-in", "keyboard"])
    assert_one_line_error(code, capsys.readouterr().err, "play", "midi_in.json", "temperature", "0..127")


# -- issue 19, items 9 and 11: flags checked where they are parsed, in one line ------------------
@pytest.mark.parametrize("flags, fragments", [
    (["--seed", "1e23"], ["--seed", "0..9223372036854775807", "1e23"]),
    (["--seed", "100000000000000000000000"], ["--seed", "0..9223372036854775807"]),
    (["--seed", "-1"], ["--seed"]),
    (["--port", ""], ["--port needs a port name"]),
    (["--connect", " "], ["--connect needs a port name"]),
    (["--midi-in", ""], ["--midi-in needs a port name"]),
    (["--controller", "jevois:ttyNOPE9"], ["ttyNOPE9", "no such device", "jevois:/dev/ttyACMn"]),
], ids=["seed-float", "seed-huge", "seed-negative", "port-empty", "connect-blank", "midi-in-empty", "jevois-relative"])
def test_flags_are_refused_where_they_are_parsed_in_one_line(tiny_charrnn, tmp_path, flags, fragments, capsys):
    code = main(["play", "--model", str(tiny_charrnn), "--controller", "demo", "--duration", "0.5",
                 "--record", str(tmp_path / "takes"), *flags])
    line = assert_one_line_error(code, capsys.readouterr().err, "play", *fragments)
    assert "--model" not in line  # a huge seed used to be blamed on the model


def test_flag_types_accept_what_they_promise():
    from instrument.cli import MAX_SEED, port_name_arg, seed_arg
    from instrument.errors import UsageError

    assert seed_arg("0") == 0 and seed_arg(str(MAX_SEED)) == MAX_SEED and seed_arg(" 42 ") == 42
    assert port_name_arg("--port")("Deep Symphony") == "Deep Symphony"
    for bad in ("1e23", str(MAX_SEED + 1), "-1", "nan", ""):
        with pytest.raises(UsageError, match="--seed"):
            seed_arg(bad)
    with pytest.raises(UsageError, match="--port needs a port name"):
        port_name_arg("--port")("  ")
