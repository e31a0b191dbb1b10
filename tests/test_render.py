"""`instrument render`: a control stream re-rendered offline, deterministic per seed, faster than real time."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import wave

import mido
import numpy as np
import pytest

from controllers.replay import FrameRecorder, demo_frame
from instrument.cli import main
from instrument.recording import sessions_dir
from tests.required import missing


@pytest.fixture(scope="module")
def controls(tmp_path_factory):
    """12 s of the demo gesture at 60 frames/s, as a session's .controls.jsonl."""
    path = tmp_path_factory.mktemp("controls") / "demo.controls.jsonl"
    with FrameRecorder(path, 0.0) as recorder:
        for k in range(12 * 60):
            recorder.write(demo_frame(k / 60.0))
    return path


def render(controls, model, out, seed: int, *extra: str) -> bytes:
    assert main(["render", "--controls", str(controls), "--model", str(model), "--seed", str(seed),
                 "--out", str(out), *extra]) == 0
    return out.read_bytes()


def test_render_is_deterministic_per_seed_and_faster_than_real_time(controls, tiny_charrnn, tmp_path):
    started = time.perf_counter()
    a = render(controls, tiny_charrnn, tmp_path / "a.mid", 7)
    took = time.perf_counter() - started
    b = render(controls, tiny_charrnn, tmp_path / "b.mid", 7)
    c = render(controls, tiny_charrnn, tmp_path / "c.mid", 8)
    assert a == b and a != c
    assert took < 12.0 / 2  # 12 s of music in well under real time
    midi = mido.MidiFile(tmp_path / "a.mid")
    ons = [m for m in midi if m.type == "note_on" and m.velocity > 0]
    assert ons and 11.0 <= midi.length <= 14.0


def test_render_rejects_a_missing_control_file_in_one_line(tiny_charrnn, tmp_path, capsys):
    code = main(["render", "--controls", str(tmp_path / "nope.jsonl"), "--model", str(tiny_charrnn),
                 "--out", str(tmp_path / "x.mid")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "nope.jsonl" in err


def test_fluidsynth_renders_a_recorded_session_to_audible_audio(controls, tiny_charrnn, tmp_path):
    fluidsynth = shutil.which("fluidsynth")
    soundfont = "/usr/share/sounds/sf2/TimGM6mb.sf2"
    if fluidsynth is None or not os.path.exists(soundfont):
        missing("fluidsynth or the TimGM6mb soundfont is not installed (apt install fluidsynth timgm6mb-soundfont)")
    mid = tmp_path / "session.mid"
    render(controls, tiny_charrnn, mid, 3)
    wav = tmp_path / "session.wav"
    subprocess.run([fluidsynth, "-ni", "-g", "1.0", "-r", "22050", "-F", str(wav), soundfont, str(mid)],
                   check=True, capture_output=True, timeout=120)
    with wave.open(str(wav)) as w:
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)
    rms = np.sqrt(np.mean(samples ** 2)) / 32768.0
    assert samples.size > 22050 * 5 and rms > 1e-3, f"RMS {rms:.2e}: silent"


def record_session(controls, model, record, *extra: str) -> str:
    """A short `play --no-midi --controller replay:...` session; the stem of its files."""
    assert main(["play", "--model", str(model), "--controller", f"replay:{controls}", "--no-midi", "--no-realtime",
                 "--duration", "1.5", *(["--record", str(record)] if record else []), *extra]) == 0
    folder = record or sessions_dir()
    (log,) = folder.glob("*.log.jsonl")
    return str(log)[: -len(".log.jsonl")]


def test_render_session_reproduces_the_sessions_settings(controls, tiny_charrnn, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # the default sessions folder
    stem = record_session(controls, tiny_charrnn, None, "--seed", "11", "--key", "A:minor", "--scale-lock",
                          "--tempo", "100", "--channel", "3", "--temperature", "0.9")
    name = stem.rsplit("/", 1)[1]
    assert stem.startswith(str(tmp_path / "data" / "deep-symphony" / "sessions"))
    assert main(["render", "--session", name, "--out", str(tmp_path / "by-name.mid")]) == 0  # a name: the folder's
    session = (tmp_path / "by-name.mid").read_bytes()
    explicit = render(f"{stem}.controls.jsonl", tiny_charrnn, tmp_path / "explicit.mid", 11, "--key", "A:minor",
                      "--scale-lock", "--tempo", "100", "--channel", "3", "--temperature", "0.9")
    assert session == explicit  # the same notes as the session's settings given by hand
    assert {m.channel for m in mido.MidiFile(tmp_path / "explicit.mid") if m.type == "note_on"} == {2}
    # by a path to any of its files, too; and flags given on the command line win over the session's
    assert main(["render", "--session", f"{stem}.mid", "--out", str(tmp_path / "by-path.mid")]) == 0
    assert (tmp_path / "by-path.mid").read_bytes() == explicit
    assert main(["render", "--session", f"{stem}.log.jsonl", "--seed", "12", "--out", str(tmp_path / "12.mid")]) == 0
    other_seed = render(f"{stem}.controls.jsonl", tiny_charrnn, tmp_path / "explicit-12.mid", 12, "--key", "A:minor",
                        "--scale-lock", "--tempo", "100", "--channel", "3", "--temperature", "0.9")
    assert (tmp_path / "12.mid").read_bytes() == other_seed != explicit
    defaults = render(f"{stem}.controls.jsonl", tiny_charrnn, tmp_path / "defaults.mid", 0)
    assert defaults != explicit  # the session's settings were used, not render's defaults


def test_render_session_problems_are_one_line(tmp_path, capsys):
    assert main(["render", "--session", str(tmp_path / "nope"), "--out", str(tmp_path / "x.mid")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no recorded session" in err
    (tmp_path / "old.log.jsonl").write_text('{"event": "start"}\n')
    assert main(["render", "--session", str(tmp_path / "old"), "--out", str(tmp_path / "x.mid")]) == 2
    assert "does not start with the session's settings" in capsys.readouterr().err
    assert main(["render", "--out", str(tmp_path / "x.mid")]) == 2
    assert "--controls" in capsys.readouterr().err and not (tmp_path / "x.mid").exists()
