"""The command line: help, version, every subcommand explaining itself, progress on a terminal only."""

import fcntl
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
import threading

import mido
import pytest

from instrument import __version__
from instrument.cli import COMMANDS, main
from tests.required import missing


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


# -- progress bars: on a terminal only, never in CI logs or pipes
def run_on_terminal(argv: list[str], timeout: float = 120.0) -> tuple[int, str]:
    """Run `instrument ARGV` with stderr on a pseudo-terminal; (exit code, what the terminal showed)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new pty is 0x0: no room for a bar
    proc = subprocess.Popen([sys.executable, "-m", "instrument", *argv], stdout=subprocess.DEVNULL, stderr=slave,
                            stdin=subprocess.DEVNULL)
    os.close(slave)
    shown = bytearray()

    def drain() -> None:  # a full terminal buffer would block the child
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child's end closed
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    code = proc.wait(timeout=timeout)
    reader.join(timeout=5)
    os.close(master)
    return code, shown.decode("utf-8", "replace")


def write_midi_files(folder, count: int) -> None:
    folder.mkdir()
    for n in range(count):
        track = mido.MidiTrack()
        for k in range(40):
            track += [mido.Message("note_on", note=48 + (n + k) % 24, velocity=80, time=0 if k == 0 else 120),
                      mido.Message("note_off", note=48 + (n + k) % 24, velocity=0, time=120)]
        midi = mido.MidiFile(ticks_per_beat=480)
        midi.tracks.append(track)
        midi.save(folder / f"piece{n}.mid")


def test_data_stats_shows_progress_on_a_terminal_only(tmp_path):
    write_midi_files(tmp_path / "corpus", 3)
    argv = ["data", "stats", str(tmp_path / "corpus"), "--cache", str(tmp_path / "cache")]
    code, shown = run_on_terminal(argv)
    assert code == 0 and "reading MIDI" in shown and "/3 [" in shown, shown  # of the 3 files
    piped = subprocess.run([sys.executable, "-m", "instrument", *argv], capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and "reading MIDI" not in piped.stderr and "%|" not in piped.stderr


def test_render_shows_progress_on_a_terminal_only(tmp_path, tiny_charrnn):
    from controllers.replay import FrameRecorder, demo_frame

    controls = tmp_path / "take.controls.jsonl"
    with FrameRecorder(controls, 0.0) as recorder:
        for k in range(3 * 60):
            recorder.write(demo_frame(k / 60.0))
    argv = ["render", "--controls", str(controls), "--model", str(tiny_charrnn), "--out", str(tmp_path / "a.mid")]
    code, shown = run_on_terminal(argv)
    assert code == 0 and "s of music" in shown and "render a.mid" in shown, shown
    piped = subprocess.run([sys.executable, "-m", "instrument", *argv[:-1], str(tmp_path / "b.mid")],
                           capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and "s of music" not in piped.stderr
    assert piped.stderr.count("\n") == 1  # only the summary line


def test_export_shows_the_wav_progress_on_a_terminal_only(tmp_path):
    if shutil.which("fluidsynth") is None:
        missing("fluidsynth is not installed (apt install fluidsynth)")
    write_midi_files(tmp_path / "takes", 1)
    mid = tmp_path / "takes" / "piece0.mid"
    code, shown = run_on_terminal(["export", str(mid), "--wav", str(tmp_path / "a.wav")])
    assert code == 0 and "export a.wav" in shown and "s of audio" in shown, shown
    piped = subprocess.run([sys.executable, "-m", "instrument", "export", str(mid), "--wav", str(tmp_path / "b.wav")],
                           capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and "s of audio" not in piped.stderr, piped.stderr
