"""`instrument export`: a recorded session -> piano-roll PNG (OpenCV) and WAV (fluidsynth, peak-normalized).

The session is recorded the way `instrument play` records one: the real engine (on a
fake clock) with the demo controller, its notes through the FileSink to NAME.mid and
its control frames through the FrameRecorder to NAME.controls.jsonl.
"""

from __future__ import annotations

import shutil
import wave

import cv2
import numpy as np
import pytest

from controllers.replay import DemoController, FrameRecorder, demo_frame
from instrument.cli import main
from instrument.clock import FakeClock
from instrument.engine import Engine, EngineConfig
from instrument.mapping import Mapping
from instrument.midi_file import FileSink
from instrument.ui.loudness import TARGET_PEAK_DBFS, wav_levels
from instrument.ui.pianoroll import velocity_color
from instrument.ui.render_png import AXIS_COLORS, render_png
from instrument.ui.render_wav import render_wav, wav_rms
from models.events import midi_to_notes
from tests.scripted_voice import ScriptedVoice
from tests.required import missing

ARPEGGIO = [(60, 40), (64, 70), (67, 100), (72, 127)]  # (pitch, velocity)
SESSION_S = 6.0


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """A recorded session: (NAME.mid, NAME.controls.jsonl)."""
    folder = tmp_path_factory.mktemp("session")
    mid, controls = folder / "take.mid", folder / "take.controls.jsonl"
    clock = FakeClock(0.0)  # (from 0: session times are exact; see the report on FakeClock float drift)
    recorder: list[FrameRecorder] = []

    def record(frames) -> None:
        if not recorder:
            recorder.append(FrameRecorder(controls, engine.t0))
        for frame in frames:
            recorder[0].write(frame)

    engine = Engine(ScriptedVoice(ARPEGGIO, on=25, gap=5), DemoController(clock), Mapping.default(), [FileSink(mid, tempo_bpm=100.0)],
                    clock, EngineConfig(threaded=False, tempo=100.0), on_frames=record)
    engine.run(duration=SESSION_S)
    recorder[0].close()
    return mid, controls


def test_png_draws_each_sent_note_in_its_pitch_lane_coloured_by_velocity(session, tmp_path):
    mid, controls = session
    notes = midi_to_notes(mid)
    assert len(notes) >= 16 and {n.pitch for n in notes} == {p for p, _ in ARPEGGIO}
    roll = render_png(mid, tmp_path / "take.png", controls)
    image = cv2.imread(str(tmp_path / "take.png"))
    assert image is not None and image.shape == roll.image.shape
    area = roll.area
    assert area.lo <= 60 and area.hi >= 72
    for note in notes:
        top, bottom = area.lane(note.pitch)
        row = (top + bottom) // 2
        cols = slice(area.x_of(note.start) + 1, area.x_of(note.end) - 2)
        assert np.all(image[row, cols] == velocity_color(note.velocity)), f"{note} not drawn"
        assert not np.any(np.all(image[sum(area.lane(61)) // 2, cols] == velocity_color(note.velocity), axis=1))
    # the gesture underneath, on the same time axis: the demo's hand height (y) at its height in the strip
    hand = roll.strips[0]
    assert hand.y > area.y + area.h and hand.x_of(3.0) == area.x_of(3.0)
    for t in (0.5, 1.5, 2.5, 3.5, 4.5, 5.5):
        column = image[hand.y:hand.y + hand.h, hand.x_of(t)].astype(int)
        near = np.abs(column - AXIS_COLORS["y"]).sum(axis=1) < 60  # the curve is anti-aliased
        expected = (1.0 - demo_frame(t).y) * (hand.h - 1)
        assert near.any() and abs(np.flatnonzero(near).mean() - expected) <= 2, f"y curve wrong at {t} s"


def test_export_writes_a_png_and_a_non_silent_wav(session, tmp_path, capsys):
    if shutil.which("fluidsynth") is None:
        missing("fluidsynth is not installed (apt install fluidsynth timgm6mb-soundfont)")
    mid, _ = session
    png, wav = tmp_path / "out.png", tmp_path / "out.wav"
    assert main(["export", str(mid), "--png", str(png), "--wav", str(wav)]) == 0
    err = capsys.readouterr().err
    assert "with the controls of take.controls.jsonl" in err  # found beside the .mid
    levels = wav_levels(wav)
    assert f"{wav}: normalized to a -1.0 dBFS peak" in err and f"RMS {levels.rms_dbfs:.1f} dBFS" in err
    assert cv2.imread(str(png)) is not None
    with wave.open(str(wav), "rb") as w:
        seconds = w.getnframes() / w.getframerate()
        assert w.getnchannels() == 2 and w.getsampwidth() == 2
    last_end = max(n.end for n in midi_to_notes(mid))
    assert seconds >= last_end - 0.05
    assert wav_rms(wav) > 0.005  # non-silent: a GM piano at these velocities is far above this


def test_export_wavs_are_normalized_to_a_minus_1_dbfs_peak_far_louder_than_fluidsynth_alone(session, tmp_path):
    if shutil.which("fluidsynth") is None:
        missing("fluidsynth is not installed (apt install fluidsynth timgm6mb-soundfont)")
    mid, _ = session
    raw, wav = tmp_path / "raw.wav", tmp_path / "out.wav"
    render_wav(mid, raw)  # fluidsynth alone, as export rendered before
    assert main(["export", str(mid), "--wav", str(wav)]) == 0
    before, after = wav_levels(raw), wav_levels(wav)
    assert abs(after.peak_dbfs - TARGET_PEAK_DBFS) < 0.05  # the loudest sample at -1 dBFS: loud, never clipped
    gain = after.peak_dbfs - before.peak_dbfs
    assert gain > 6, f"fluidsynth alone peaked at {before.peak_dbfs:.1f} dBFS"
    assert abs(after.rms_dbfs - (before.rms_dbfs + gain)) < 0.1  # one gain for the whole file: the dynamics kept
    assert after.rms_dbfs > -30


def test_a_bad_soundfont_for_export_is_one_line_and_exit_2(session, tmp_path, capsys):
    mid, _ = session
    text = tmp_path / "notes.sf2"
    text.write_text("not a soundfont")
    assert main(["export", str(mid), "--wav", str(tmp_path / "a.wav"), "--soundfont", str(tmp_path / "none.sf2")]) == 2
    assert main(["export", str(mid), "--wav", str(tmp_path / "b.wav"), "--soundfont", str(text)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "no such soundfont file" in err[0] and "is not a SoundFont" in err[1]
    assert not (tmp_path / "a.wav").exists() and not (tmp_path / "b.wav").exists()


def test_without_flags_both_renders_go_beside_the_session(session, tmp_path):
    if shutil.which("fluidsynth") is None:
        missing("fluidsynth is not installed (apt install fluidsynth timgm6mb-soundfont)")
    mid, controls = session
    copy = tmp_path / "copy.mid"
    shutil.copy(mid, copy)
    assert main(["export", str(copy)]) == 0
    assert (tmp_path / "copy.png").stat().st_size > 1000 and (tmp_path / "copy.wav").stat().st_size > 1000


def test_without_fluidsynth_the_message_names_the_package_and_the_png_is_still_written(session, tmp_path,
                                                                                      monkeypatch, capsys):
    import instrument.ui.render_wav as render_wav

    monkeypatch.setattr(render_wav.shutil, "which", lambda name: None)
    mid, _ = session
    png = tmp_path / "out.png"
    assert main(["export", str(mid), "--png", str(png), "--wav", str(tmp_path / "out.wav")]) == 1
    err = capsys.readouterr().err
    assert "instrument export: no WAV: fluidsynth is not installed: apt install fluidsynth timgm6mb-soundfont" in err
    assert png.exists() and not (tmp_path / "out.wav").exists()


def test_bad_inputs_are_one_line_errors(tmp_path, capsys):
    junk = tmp_path / "junk.mid"
    junk.write_bytes(b"not midi at all")
    assert main(["export", str(junk), "--png", str(tmp_path / "x.png")]) == 2
    assert main(["export", str(tmp_path / "missing.mid")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "not a readable MIDI file" in err[0] and "no such session file" in err[1]
