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
