"""The command line: help, version, and every subcommand explaining itself."""

import subprocess
import sys

import pytest

from instrument import __version__
from instrument.cli import COMMANDS, main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_every_command(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: instrument " + command in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["train", "charrnn", "--help"], ["eval", "charrnn", "--help"],
                                  ["train", "dcrnn", "--help"], ["eval", "dcrnn", "--help"],
                                  ["bench", "model", "--help"], ["bench", "latency", "--help"],
                                  ["bench", "controllers", "--help"], ["bench", "soak", "--help"]])
def test_every_target_has_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "usage: instrument " + " ".join(argv[:2]) in capsys.readouterr().out


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "instrument", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "play" in result.stdout
