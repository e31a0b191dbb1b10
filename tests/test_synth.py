"""`play --synth`: the built-in FluidSynth as one more sink of the engine's timed MIDI.

Real components: FluidSynth (libfluidsynth through pyfluidsynth) with the GM soundfont the package
installs, the real engine and note ledger, and for the end-to-end test a real JACK server (dummy
driver), the `instrument play` process, a separate MIDI receiver and `jack_rec` capturing the
synth's audio ports. Offline, the synth is rendered in session time: before each message it is
sent, the audio up to that message's time is pulled (`Timeline`), so the samples line up with
the engine's send times exactly as an audio driver would hear them.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import time
import wave

import mido
import numpy as np
import pytest

from controllers.replay import DemoController
from instrument.cli import main
from instrument.clock import FakeClock
from instrument.engine import Engine, EngineConfig
from instrument.mapping import Mapping
from instrument.midi_out import ListSink
from instrument.soundfont import default_soundfont, packaged_soundfont
from instrument.synth import SynthSink, SynthUnavailable, audio_drivers
from tests.conftest import wait_until
from tests.required import missing
from tests.scripted_voice import ScriptedVoice

RATE = 48000
ARPEGGIO = [(48, 60), (60, 90), (67, 110), (72, 127)]  # (pitch, velocity)


def offline_synth() -> SynthSink:
    """A real FluidSynth with the default soundfont and no audio driver (fails in CI without the library)."""
    try:
        return SynthSink(default_soundfont(), audio=False, sample_rate=RATE)
    except SynthUnavailable as err:
        missing(str(err))


class Timeline:
    """A sink in front of an offline synth: renders it up to each message's session time first."""

    wants_clock = False

    def __init__(self, synth: SynthSink, tail_s: float = 0.6) -> None:
        self.synth, self.tail_s = synth, tail_s
        self.chunks: list[np.ndarray] = []
        self.frames = 0
        self.sent: list[tuple[float, mido.Message]] = []

    def _render_to(self, t: float) -> None:
        due = round(t * RATE) - self.frames
        if due > 0:
            self.chunks.append(self.synth.render(due))
            self.frames += due

    def send(self, message: mido.Message, t: float) -> None:
        self._render_to(t)
        self.sent.append((t, message))
        self.synth.send(message, t)

    def maintain(self, now: float) -> None:
        pass

    def close(self, t: float = 0.0) -> None:
        self.stopped_at = t
        self._render_to(t + self.tail_s)  # what sounds after the ledger's panic, before the synth is freed
        self.synth.close(t)

    def audio(self) -> np.ndarray:
        """Left channel, from session time 0."""
        return np.concatenate(self.chunks)[:, 0]


def seconds(audio: np.ndarray, start: float, end: float) -> np.ndarray:
    return audio[round(start * RATE):round(end * RATE)]


def dbfs(samples: np.ndarray, kind: str = "rms") -> float:
    level = np.sqrt(np.mean(np.square(samples))) if kind == "rms" else np.max(np.abs(samples))
    return 20 * math.log10(level) if level > 0 else -math.inf


def test_the_default_soundfont_is_a_general_midi_one_that_the_package_installs(monkeypatch):
    monkeypatch.delenv("DEEP_SYMPHONY_SOUNDFONT", raising=False)
    packaged = packaged_soundfont()
    assert packaged is not None and packaged.name == "TimGM6mb.sf2", "pretty_midi ships TimGM6mb.sf2 in its wheel"
    assert default_soundfont() == packaged
    synth = offline_synth()
    try:  # General MIDI: an instrument for every program 1..128, and a drum kit on bank 128
        assert all(synth.preset_name(program) for program in range(128))
        assert synth.preset_name(0) and synth.preset_name(0, bank=128)
    finally:
        synth.close()


def test_the_synth_sounds_each_note_the_engine_sends_at_its_pitch_and_falls_silent_at_stop():
    clock = FakeClock(0.0)
    timeline = Timeline(offline_synth())
    engine = Engine(ScriptedVoice(ARPEGGIO, on=30, gap=10), DemoController(clock), Mapping.default(), [timeline],
                    clock, EngineConfig(threaded=False))
    engine.run(duration=3.0)
    audio = timeline.audio()
    ons = [(t, m.note) for t, m in timeline.sent if m.type == "note_on" and m.velocity > 0]
    offs = {m.note: t for t, m in timeline.sent if m.type == "note_off"}
    assert len(ons) >= 8
    assert dbfs(seconds(audio, ons[0][0], timeline.stopped_at)) > -40, "the notes are audible"
    for start, pitch in ons[:-1]:  # each note sounds at the pitch that was sent (no octave slip)
        window = seconds(audio, start + 0.02, start + 0.22)
        spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window))))
        freqs = np.fft.rfftfreq(len(window), 1 / RATE)
        f0 = 440.0 * 2 ** ((pitch - 69) / 12)
        at_f0 = spectrum[(freqs > f0 * 0.96) & (freqs < f0 * 1.04)].max()
        below = spectrum[(freqs > 30) & (freqs < f0 * 0.9)].max()
        assert at_f0 > 0.5 * spectrum.max() and below < 0.2 * spectrum.max(), f"pitch {pitch} at {start:.2f} s"
    assert offs, "notes were ended"
    # the stop: the ledger's panic (note-offs, CC123, CC120) reached the synth, and the sound is gone
    panic = [m for t, m in timeline.sent if t >= timeline.stopped_at]
    assert [(m.control) for m in panic if m.type == "control_change"] == [123, 120]
    playing = dbfs(seconds(audio, ons[0][0], timeline.stopped_at), "peak")
    tail = seconds(audio, timeline.stopped_at + 0.3, timeline.stopped_at + timeline.tail_s)
    assert dbfs(tail, "peak") < playing - 40, f"still sounding after stop: {dbfs(tail, 'peak'):.1f} dBFS"


def test_a_program_change_selects_the_general_midi_instrument_heard():
    synth = offline_synth()
    try:
        def spectrum_of(program: int) -> np.ndarray:
            synth.send(mido.Message("program_change", program=program), 0.0)
            synth.send(mido.Message("note_on", note=72, velocity=100), 0.0)
            audio = synth.render(RATE // 2)[:, 0]
            synth.send(mido.Message("note_off", note=72), 0.0)
            synth.render(RATE)  # let it ring out
            spectrum = np.abs(np.fft.rfft(audio))
            return spectrum / np.linalg.norm(spectrum)

        piano, flute, piano_again = spectrum_of(0), spectrum_of(73), spectrum_of(0)
        assert synth.program(0) == 0
        assert float(piano @ piano_again) > 0.99  # the same program sounds the same
        assert float(piano @ flute) < 0.9  # program 74 (flute) is another instrument
    finally:
        synth.close()


def test_program_reaches_every_sink_as_a_program_change_before_the_first_note(tiny_charrnn):
    from instrument.session import SessionConfig, build_engine

    clock = FakeClock(0.0)
    sink, synth = ListSink(), offline_synth()
    config = SessionConfig(model=str(tiny_charrnn), program=41, channel=3, seed=5)
    engine = build_engine(config, clock, DemoController(clock), [sink, Timeline(synth)], threaded=False)
    assert synth.program(2) == 40 and synth.program(0) == 0  # the synth plays a violin on channel 3 only
    engine.run(duration=2.0)
    first = sink.sent[0][1]
    assert (first.type, first.channel, first.program) == ("program_change", 2, 40)  # GM 41 (violin) = byte 40
    assert sink.notes() and sink.notes()[0][0] >= sink.sent[0][0]
    assert [m.type for _, m in sink.sent].count("program_change") == 1


def test_play_without_audio_output_says_so_in_one_line_and_records(tiny_charrnn, tmp_path, capfd, monkeypatch):
    import instrument.synth as synth_module

    offline_synth().close()  # the library is there: what is missing is the audio output
    monkeypatch.setattr(synth_module, "audio_drivers", lambda platform, jack: ("no-such-driver",))
    mid = tmp_path / "take.mid"
    code = main(["play", "--synth", "--no-midi", "--controller", "demo", "--model", str(tiny_charrnn), "--seed", "1",
                 "--duration", "1.5", "--record", str(mid), "--no-realtime"])
    err = capfd.readouterr().err  # file descriptor 2: what the C libraries print lands here too
    assert code == 0, err
    lines = [line for line in err.splitlines() if "--synth" in line]
    assert lines == ["instrument play: no sound from --synth: no audio output for --synth (tried no-such-driver); "
                     "playing MIDI and recording on"]
    assert "Traceback" not in err and "fluidsynth:" not in err
    notes = [m for m in mido.MidiFile(mid) if m.type == "note_on"]
    assert notes, "the session recorded its notes"


@pytest.mark.parametrize("content", [None, b"just some text, not a soundfont\n",
                                     b"RIFF\x00\x10\x00\x00sfbkLIST" + bytes(64)])
def test_a_bad_soundfont_is_one_line_and_exit_2(content, tiny_charrnn, tmp_path, capfd):
    font = tmp_path / "font.sf2"
    if content is not None:
        font.write_bytes(content)
    if content is not None and content.startswith(b"RIFF"):
        offline_synth().close()  # this one is only found bad by FluidSynth itself
    record = tmp_path / "take.mid"
    code = main(["play", "--soundfont", str(font), "--no-midi", "--controller", "demo", "--duration", "1",
                 "--model", str(tiny_charrnn), "--record", str(record)])
    err = capfd.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert str(font) in err[0] and "soundfont" in err[0].lower()
    assert not record.exists(), "a session that never started leaves no files"


def test_program_outside_the_general_midi_range_is_one_line_and_exit_2(capsys):
    assert main(["play", "--program", "0", "--no-midi", "--duration", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--program must be a General MIDI program 1..128" in err[0]


def test_audio_driver_order_per_platform():
    assert audio_drivers("linux", jack_running=True) == ("jack", "pipewire", "pulseaudio", "alsa")
    assert audio_drivers("linux", jack_running=False) == ("pipewire", "pulseaudio", "alsa")  # never starts a jackd
    assert audio_drivers("darwin", jack_running=True) == ("coreaudio",)
    assert audio_drivers("win32", jack_running=False) == ("wasapi", "dsound")


# ------------------------------------------------------------------ end to end, through JACK
def jack_audio_ports(client: str) -> list[str]:
    listed = subprocess.run(["jack_lsp"], capture_output=True, text=True, timeout=10).stdout.splitlines()
    return [port for port in listed if port.startswith(f"{client}:")]


@pytest.mark.jack
@pytest.mark.slow
def test_play_synth_sounds_through_jack_and_the_program_reaches_the_port(jack_server, jack_receiver, tiny_charrnn,
                                                                         tmp_path):
    for tool in ("jack_rec", "jack_lsp"):
        if shutil.which(tool) is None:
            missing(f"{tool} is not installed (apt install jackd2)")
    offline_synth().close()
    receiver = jack_receiver(name="ds-synth-test")
    receiver.wait_ready()
    mid = tmp_path / "take.mid"
    play = subprocess.Popen([sys.executable, "-m", "instrument", "play", "--synth", "--program", "12",
                             "--midi-api", "jack", "--connect", "ds-synth-test", "--controller", "demo",
                             "--model", str(tiny_charrnn), "--seed", "3", "--duration", "6", "--record", str(mid),
                             "--no-realtime"], stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: len(jack_audio_ports("Deep Symphony synth")) == 2, timeout=40), \
            "the synth's JACK ports did not appear"
        ports = jack_audio_ports("Deep Symphony synth")
        wav = tmp_path / "heard.wav"
        time.sleep(0.5)  # the engine starts right after the synth: let notes flow
        capture = subprocess.run(["jack_rec", "-f", str(wav), "-d", "3", *ports], capture_output=True, text=True,
                                 timeout=30)
        assert capture.returncode == 0, capture.stderr
        _, err = play.communicate(timeout=60)
    finally:
        if play.poll() is None:
            play.kill()
            play.communicate()
    assert play.returncode == 0, err
    assert "through JACK" in err and "Traceback" not in err
    with wave.open(str(wav), "rb") as heard:
        samples = np.frombuffer(heard.readframes(heard.getnframes()), dtype="<i2").astype(np.float64) / 32768
    assert samples.size > 2 * RATE and dbfs(samples) > -50, f"the synth was silent: {dbfs(samples):.1f} dBFS"
    received = [tuple(r["bytes"]) for r in receiver.stop()]
    assert received[0] == (0xC0, 11), "GM program 12 (vibraphone) is program byte 11, sent before any note"
    assert any(b[0] & 0xF0 == 0x90 for b in received)
    played = [m for m in mido.MidiFile(mid) if not m.is_meta]
    assert played[0].type == "program_change" and played[0].program == 11  # the recording starts with it too


@pytest.mark.jack
@pytest.mark.slow
def test_a_killed_jack_server_silences_the_synth_with_one_line_and_the_session_goes_on(jack_server, tmp_path):
    import signal

    from tests.play_helpers import busy_charrnn, recording, session_log, start_play, stop_with, wait_for

    offline_synth().close()
    mid = tmp_path / "outage.mid"
    play = start_play(busy_charrnn(tmp_path), mid, "--synth", "--no-midi", "--lookahead", "0.3")
    try:
        wait_for(lambda: len(jack_audio_ports("Deep Symphony synth")) == 2, 60, "the synth's JACK ports", play)
        wait_for(lambda: any(e["event"] == "start" for e in session_log(mid)), 30, "the engine to start", play)
        jack_server.stop(signal.SIGKILL)  # the audio server crashes under the synth
        killed = time.monotonic()
        wait_for(lambda: any(e["event"] == "synth_lost" for e in session_log(mid)), 5, "the synth to notice", play)
        time.sleep(1.5)
        assert play.poll() is None, "the session must go on without its sound"
        err = stop_with(play, signal.SIGINT)
    finally:
        if play.poll() is None:
            play.kill()
            play.communicate()
        if jack_server.proc is None:
            jack_server.start()  # the other JACK tests share this server
    assert play.returncode == 0, err
    assert all(line.startswith("instrument play: ") for line in err.splitlines()), err  # no library noise
    assert [line for line in err.splitlines() if "--synth" in line] == [
        "instrument play: the JACK server went away: no more sound from --synth; still playing MIDI and recording"]
    t0, messages = recording(mid)
    assert any(t > killed - t0 and b[0] & 0xF0 == 0x90 for t, b in messages), "notes recorded after the outage"
