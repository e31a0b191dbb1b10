"""The built-in synth (`play --synth`): FluidSynth inside the process, one more sink of the timed MIDI.

Why FluidSynth through pyfluidsynth (and not tinysoundfont): the audio is rendered and written by
FluidSynth's own C threads through its native drivers (JACK, PipeWire, PulseAudio, ALSA, CoreAudio,
WASAPI), so the engine's Python threads (the sender, the model) never stand between a note and
the sound card, and the buffer is ours to size (2 periods of 256 frames: 10.7 ms at 48 kHz; under
JACK, the server's period). pyfluidsynth is a 24 kB pure-Python ctypes wrapper; it needs the
libfluidsynth system library (apt libfluidsynth3, which `fluidsynth` pulls in; brew fluid-synth).
tinysoundfont's wheel is self-contained, but it only makes samples: its playback is a Python
callback (the GIL, 1024-frame buffers by default) through PyAudio, a hard dependency that has no
Linux or macOS wheel on PyPI (pip compiles it against PortAudio's headers).

The sink plays what the engine sends, after the note ledger: note on/off, control changes (so the
ledger's panic, CC123 and CC120, silences it), program changes and pitch bend. `close()` turns
every sound off and stops the audio thread. Which audio system (`audio_drivers`, pure): JACK where
a JACK server runs (never started by us: libjack would spawn one), else the platform's own. When
none opens, `SynthUnavailable` carries one line and the session plays MIDI and records without it.
A JACK server that dies under the synth is noticed by `maintain` (one line, the session goes on);
its client is left alone, never closed (closing a dead server's client hangs inside libjack).
The libraries' own printing (FluidSynth's log, ALSA's and libjack's complaints while drivers are
tried) is silenced: one line of ours says what happened.
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import mido
import numpy as np

from instrument.errors import UsageError
from instrument.midi_systems import jack_server_running

CLIENT_NAME = "Deep Symphony synth"  # the JACK client (its ports: left, right)
SAMPLE_RATE = 48000  # under JACK the server's rate is used
PERIOD_FRAMES, PERIODS = 256, 2  # the audio buffer: 2 x 256 frames = 10.7 ms at 48 kHz
# Master gain (FluidSynth's own default, 0.2, is quiet on laptop speakers). At 1.0 TimGM6mb's piano, all
# at velocity 127, peaks at -13.6 dBFS for one note, -7.2 for 4 and -5.8 for 8 at once (rendered offline,
# reverb on): the Char-RNN seldom sounds more than 4 notes together, so this is loud and does not clip.
GAIN = 1.0
INSTALL_HINT = ("the synth needs the FluidSynth library: apt install libfluidsynth3 (Debian/Ubuntu), "
                "brew install fluid-synth (macOS), or FluidSynth's Windows release on PATH")


class SynthUnavailable(RuntimeError):
    """The synth cannot sound here (no FluidSynth library, no audio output): one line, the show goes on."""


def audio_drivers(platform: str, jack_running: bool) -> tuple[str, ...]:
    """FluidSynth audio drivers to try, in order, on `platform` (sys.platform) (pure)."""
    if platform == "darwin":
        return ("coreaudio",)
    if platform.startswith(("win", "cygwin", "msys")):
        return ("wasapi", "dsound")
    # JACK only when a server already runs: asked for one that does not, libjack starts a jackd itself
    return (("jack",) if jack_running else ()) + ("pipewire", "pulseaudio", "alsa")


def load_fluidsynth():
    """The pyfluidsynth module with FluidSynth's own log silenced; SynthUnavailable without the library."""
    try:  # pyfluidsynth prints where it found the library when $CI is set
        with _quiet_stderr(), contextlib.redirect_stdout(io.StringIO()):
            import fluidsynth
    except (ImportError, OSError):
        raise SynthUnavailable(INSTALL_HINT) from None
    _silence_fluid_log(fluidsynth)
    return fluidsynth


class SynthSink:
    """A FluidSynth playing a General MIDI soundfont: the engine's messages in, audio to the system out.

    `audio=False`: no audio driver at all; `render(frames)` then pulls the samples (tests, offline).
    Raises UsageError when the soundfont cannot be loaded, SynthUnavailable when there is no sound.
    """

    wants_clock = False

    WATCH_S = 0.5  # how often `maintain` checks that JACK is still there (a socket probe)

    def __init__(self, soundfont: str | Path, *, audio: bool = True, sample_rate: int = SAMPLE_RATE,
                 gain: float = GAIN, drivers: tuple[str, ...] | None = None,
                 on_status: Callable[[str, str], None] | None = None) -> None:
        fl = load_fluidsynth()
        self._fl = fl
        self.on_status = on_status or (lambda kind, message: None)
        self._watched_at = 0.0
        self._server_lost = False  # the JACK server died under the synth: its client is never closed
        self.soundfont = Path(soundfont)
        self.driver: str | None = None  # the audio system that plays, None offline
        self.status = "synth closed"
        self._lock = threading.Lock()
        self._closed = False
        self._driver_handle = None
        self._synth = fl.Synth(gain=gain, samplerate=sample_rate)
        try:
            with _quiet_stderr():  # libinstpatch prints glib criticals for a broken file
                # 1: every channel takes its GM default (program 1; channel 10 the drum kit)
                sfid = self._synth.sfload(str(self.soundfont), 1)
            if sfid < 0:
                raise UsageError(f"--soundfont: FluidSynth cannot load {self.soundfont} (a damaged SoundFont?)")
            self.sfid = sfid
            if audio:
                self._open_audio(drivers if drivers is not None else
                                 audio_drivers(sys.platform, jack_server_running()))
            else:
                self.status = f"synth {self.soundfont.name} (offline)"
        except BaseException:
            self._synth.delete()
            raise

    def _open_audio(self, drivers: tuple[str, ...]) -> None:
        fl, synth = self._fl, self._synth
        synth.setting("audio.period-size", PERIOD_FRAMES)
        synth.setting("audio.periods", PERIODS)
        synth.setting("audio.jack.id", CLIENT_NAME)
        synth.setting("audio.jack.autoconnect", 1)  # to the sound card's playback ports
        _quiet_system_libjack()
        for name in drivers:
            synth.setting("audio.driver", name)
            with _quiet_stderr():  # ALSA and libjack print their own errors while drivers are tried
                handle = fl.new_fluid_audio_driver(synth.settings, synth.synth)
            if handle:
                self._driver_handle, self.driver = handle, name
                self.status = f"synth {self.soundfont.name} through {DRIVER_NAMES.get(name, name)}"
                return
        tried = ", ".join(DRIVER_NAMES.get(name, name) for name in drivers) or "none"
        raise SynthUnavailable(f"no audio output for --synth (tried {tried})")

    # -- the sink -----------------------------------------------------------------
    def send(self, message: mido.Message, t: float) -> None:
        """Play one message now (ignored after close)."""
        with self._lock:
            if self._closed:
                return
            synth, kind = self._synth, message.type
            if kind == "note_on":
                synth.noteon(message.channel, message.note, message.velocity)
            elif kind == "note_off":
                synth.noteoff(message.channel, message.note)
            elif kind == "control_change":
                synth.cc(message.channel, message.control, message.value)
            elif kind == "program_change":
                synth.program_change(message.channel, message.program)
            elif kind == "pitchwheel":
                synth.pitch_bend(message.channel, message.pitch)

    def maintain(self, now: float) -> None:
        """Notice (once) that the JACK server playing the synth died: one line; MIDI and recording go on."""
        if self.driver != "jack" or self._server_lost or now - self._watched_at < self.WATCH_S:
            return
        self._watched_at = now
        if not jack_server_running():
            self._server_lost = True
            self.status = "synth silent: the JACK server went away"
            self.on_status("synth_lost", "the JACK server went away: no more sound from --synth; "
                           "still playing MIDI and recording")

    def close(self, t: float = 0.0) -> None:
        """Every sound off, the audio thread stopped, the synth freed (idempotent; the ledger panicked first)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._fl.fluid_synth_all_sounds_off(self._synth.synth, -1)  # -1: every channel
            handle, self._driver_handle = self._driver_handle, None
        if handle and not (self.driver == "jack" and (self._server_lost or not jack_server_running())):
            self._fl.delete_fluid_audio_driver(handle)  # a client of a dead JACK server is left, never closed
        self._synth.delete()
        self.status = "synth closed"

    # -- offline --------------------------------------------------------------------
    def render(self, frames: int) -> np.ndarray:
        """The next `frames` stereo samples, float32 of shape (frames, 2) (only with audio=False)."""
        if self._driver_handle is not None:
            raise RuntimeError("render() is for a synth without an audio driver (audio=False)")
        out = np.zeros((frames, 2), dtype=np.float32)
        with self._lock:
            if not self._closed and frames > 0:
                address = out.ctypes.data  # interleaved: left at offset 0, right at 1, stride 2
                _write_float(self._fl)(self._synth.synth, frames, address, 0, 2, address, 1, 2)
        return out

    def preset_name(self, program: int, bank: int = 0) -> str | None:
        """The soundfont's name for GM `program` (0..127) in `bank` (128: drum kits), None where it has none."""
        with self._lock:
            return self._synth.sfpreset_name(self.sfid, bank, program)

    def program(self, channel: int) -> int:
        """The GM program (0..127) now selected on `channel` (0-based)."""
        with self._lock:
            return self._synth.program_info(channel)[2]


DRIVER_NAMES = {"jack": "JACK", "pipewire": "PipeWire", "pulseaudio": "PulseAudio", "alsa": "ALSA",
                "coreaudio": "CoreAudio", "wasapi": "WASAPI", "dsound": "DirectSound"}


def _write_float(fl):
    """fluid_synth_write_float with its argument types (pyfluidsynth declares only the s16 variant)."""
    function = fl._fl.fluid_synth_write_float
    function.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                         ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


def _silence_fluid_log(fl) -> None:
    """FluidSynth logs through a function per level; NULL turns a level off (panic .. debug: 0..4)."""
    setter = fl._fl.fluid_set_log_function
    setter.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    setter.restype = ctypes.c_void_p
    for level in range(5):
        setter(level, None, None)


_system_libjack_quiet = False


def _quiet_system_libjack() -> None:
    """Route the system libjack's error/info printing (FluidSynth's JACK driver uses it) to a C no-op."""
    global _system_libjack_quiet
    if _system_libjack_quiet or sys.platform.startswith("win"):
        return
    _system_libjack_quiet = True
    try:
        lib = ctypes.CDLL("libjack.so.0" if sys.platform != "darwin" else "libjack.dylib")
    except OSError:
        return
    noop = ctypes.cast(ctypes.CDLL(None).strlen, ctypes.c_void_p)  # a C function: safe on JACK's threads
    for setter in ("jack_set_error_function", "jack_set_info_function"):
        function = getattr(lib, setter)
        function.argtypes = [ctypes.c_void_p]
        function(noop)


@contextlib.contextmanager
def _quiet_stderr():
    """Send file descriptor 2 to /dev/null for a moment: C libraries print there, not to sys.stderr."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
