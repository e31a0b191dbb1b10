"""A playing session: its settings, and the one place where every part is built and wired.

`SessionConfig` holds what `instrument play` was asked for; `Session(config)` builds
voice, sinks, controller, mapping, MIDI clock and MIDI input around one `Engine`, and
records three files side by side:

- `NAME.mid`: what was sent, with the real send times (crash-safe, see FileSink);
- `NAME.controls.jsonl`: the control frames (`ControlFrame.to_json`), for `render`;
- `NAME.log.jsonl`: the session log: start (seed, model, t0), MIDI server lost and
  restored, controller gaps, stop (with the latency statistics).

Where the files go and how they are claimed and written is instrument/recording.py. A
place that cannot be written at start is a usage error; a write that fails later (a full
disk) stops the recording, never the music.
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from instrument.clock import SystemClock
from instrument.engine import Engine, EngineConfig
from instrument.engine_config import GIL_SWITCH_INTERVAL_S
from instrument.errors import MidiUnavailable, UsageError
from instrument.midi_out import MidiSink
from instrument.midi_file import FileSink
from instrument.midi_systems import DEFAULT_PORT_NAME, MIDI_API_CHOICES
from instrument.recording import SessionLog, claim_session_paths, record_problem, session_paths
from instrument.voice_shaping import SHAPED_CONTROLS, shape_voice
from controllers import controller_kind


@dataclass
class SessionConfig:
    """Everything `instrument play` can be asked for (the CLI flags, with their defaults)."""

    controller: str = "auto"
    model: str = "charrnn"  # a registered voice (instrument.voices) or a checkpoint PATH (.pt with its .json)
    device: str = "auto"  # auto | cpu | cuda
    temperature: float = 1.0
    top_p: float = 0.95
    key: str | None = None  # soft key condition, e.g. "C:major"
    scale_lock: bool = False  # only the key's scale (needs key)
    style: str | None = None  # the Char-RNN's default style (a model trained with styles), e.g. "jazz"
    tempo: float = 120.0  # bpm; 120 plays time shifts at their trained length
    seed: int | None = None  # None: a random seed, written to the session log
    port: str = DEFAULT_PORT_NAME  # virtual output port name
    connect: str | None = None  # connect to this existing port instead
    midi_api: str = "auto"  # auto | alsa | jack | coremidi | winmm
    midi: bool = True  # False: record to file only
    clock: str = "none"  # none | internal | follow:PORT
    midi_in: str | None = None  # input port whose CCs drive temperature, tempo, panic
    midi_learn: bool = False
    record: str | None = None  # .mid path or folder; default: the sessions folder
    duration: float | None = None  # seconds; None: until Ctrl-C
    mapping: str | None = None  # mapping TOML; None: the shipped default
    profile: str | None = None  # calibration profile name
    lookahead: float = 0.2
    quantize: bool = False  # int8 dynamic quantization on CPU
    rollback_threshold: float = 0.25
    channel: int = 1  # MIDI channel, 1..16
    realtime: bool = True  # SCHED_FIFO for the engine threads and the CPUs held awake, where permitted
    refine: tuple[str, ...] = ()  # live refiners behind the voice: "velocity" (instrument/refiners.py)
    synth: bool = False  # --synth: also sound through the built-in FluidSynth (instrument/synth.py)
    soundfont: str | None = None  # --soundfont FILE for the synth (implies --synth); None: the packaged GM one
    program: int | None = None  # --program N: GM program 1..128, sent at start to every sink (port, synth, .mid)

    def validate(self) -> None:
        """Raise UsageError (one line, what is accepted) for any impossible value."""
        checks = [
            (20.0 <= self.tempo <= 300.0, f"--tempo must be between 20 and 300 bpm, got {self.tempo:g}"),
            (0.0 < self.temperature <= 5.0, f"--temperature must be in (0, 5], got {self.temperature:g}"),
            (0.0 < self.top_p <= 1.0, f"--top-p must be in (0, 1], got {self.top_p:g}"),
            (0.01 <= self.lookahead <= 2.0, f"--lookahead must be between 0.01 and 2 s, got {self.lookahead:g}"),
            (self.duration is None or self.duration > 0, f"--duration must be > 0 s, got {self.duration}"),
            (1 <= self.channel <= 16, f"--channel must be in 1..16, got {self.channel}"),
            (self.midi_api in MIDI_API_CHOICES, f"--midi-api must be one of {', '.join(MIDI_API_CHOICES)}, got {self.midi_api!r}"),
            (self.device in ("auto", "cpu", "cuda"), f"--device must be auto, cpu or cuda, got {self.device!r}"),
            (self.clock == "none" or self.clock == "internal" or (self.clock.startswith("follow:") and len(self.clock) > 7),
             f"--clock must be internal or follow:PORT, got {self.clock!r}"),
            (not self.scale_lock or self.key is not None, "--scale-lock needs --key (e.g. --key C:major)"),
            (all(name in ("velocity", "duration") for name in self.refine),
             f"--refine: live refiners are: velocity, duration; got {','.join(self.refine)!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)
        if self.program is not None and not 1 <= self.program <= 128:
            raise UsageError(f"--program must be a General MIDI program 1..128 (1 = Acoustic Grand Piano), "
                             f"got {self.program}")
        if self.soundfont is not None:  # missing or not a soundfont: one line, exit 2, before anything starts
            from instrument.soundfont import check_soundfont

            check_soundfont(self.soundfont)
        if self.key is not None:
            from models.keys import parse_key

            try:
                parse_key(self.key)
            except ValueError as err:
                raise UsageError(f"--key: {err}") from None


def open_session_voice(config: SessionConfig, seed: int):
    """The voice `--model` names (a registered voice or a checkpoint of one), through the voice registry."""
    from models.checkpoint import CheckpointError
    from models.errors import ModelError
    from instrument.voices import VoiceOptions, open_voice, resolve, voice_names

    name = config.model
    try:
        voice_name, checkpoint = resolve(name)
    except KeyError:
        raise UsageError(f"--model: unknown voice {name!r} (use {', '.join(voice_names())} or a checkpoint .pt path)") from None
    except FileNotFoundError:
        raise UsageError(f"--model: no such checkpoint {name!r} (use {', '.join(voice_names())} or a .pt path)") from None
    except LookupError:
        raise UsageError(f"--model {name}: no registered voice plays this checkpoint's model class") from None
    except CheckpointError as err:
        raise UsageError(f"--model {name}: {err}") from None
    options = VoiceOptions(checkpoint=checkpoint, device=config.device, seed=seed, temperature=config.temperature,
                           top_p=config.top_p, key=config.key, scale_lock=config.scale_lock, int8=config.quantize,
                           style=config.style)
    try:
        voice = open_voice(voice_name, options)
    except (CheckpointError, ModelError, ValueError, OSError) as err:
        raise UsageError(f"--model {name}: {err}") from None
    if config.style is not None and "style" not in voice.listens:
        raise UsageError(f"--style: {name} has no style condition (a Char-RNN trained with `instrument train charrnn --styles ...` has one)")
    return shape_voice(voice)  # velocity, transpose and temperature for every voice (instrument/voice_shaping.py)


# Which frame axes each kind of controller sends (replay: whatever was recorded, so anything).
KIND_AXES = {
    "camera": {"x", "y", "size", "pose"},
    "xy": {"x", "y", "size"},
    "emg": {f"emg{i}" for i in range(8)} | {"emg", "emg_balance", "pose", "roll", "pitch", "yaw"},
}


def session_mapping(config: SessionConfig, voice, kind: str):
    """`--mapping FILE`, else the voice's default mapping for this kind of controller."""
    from instrument.mapping import Mapping

    if config.mapping:
        mapping = Mapping.from_toml(config.mapping)
        check_styles(mapping, voice)
        return mapping
    name = voice.info.mapping_for(kind)
    if name == "default.toml":  # a voice that names no mapping of its own plays with the shipped default
        return Mapping.default()
    return Mapping.packaged(name)


def check_styles(mapping, voice) -> None:
    """A mapping's [style] names only styles the voice's model was trained with (else a UsageError, before playing)."""
    from instrument.mapping import MappingError

    if mapping.style is None or "style" not in voice.listens:
        return  # a voice without a style condition: describe_mapping warns that [style] does nothing
    unknown = [s for s in mapping.style.styles if s not in voice.styles]
    if unknown:
        raise MappingError(f"mapping file {mapping.source}: [style] names {unknown[0]!r}; this model's styles are "
                           f"{', '.join(voice.styles)}")


def describe_mapping(mapping, voice, kind: str) -> tuple[str, list[str]]:
    """(what each axis drives, warnings): the start line's second half, and what does nothing."""
    from instrument.mapping import CC_PREFIX, ENGINE_TARGETS

    axes = {name: axis_map.axes for name, axis_map in mapping.scalars.items()}  # several where sources are weighted
    if mapping.key is not None:
        axes["key_histogram"] = mapping.key.position.axes
    if mapping.style is not None:  # a fixed style is driven by no axis
        axes["style"] = mapping.style.position.axes if mapping.style.position else ()
    listens = frozenset(voice.listens) | SHAPED_CONTROLS  # every voice plays these (build_engine shapes it)
    live, warnings = [], []
    sent = KIND_AXES.get(kind)
    for target, axis in mapping.sources().items():
        missing = [a for a in axes.get(target, (axis,)) if sent is not None and a not in sent
                   and not (a == "emg" and target == "noise_slots" and "emg0" in sent)]
        shown = "key" if target == "key_histogram" else target
        if target not in listens and target not in ENGINE_TARGETS and not target.startswith(CC_PREFIX):
            warnings.append(f"{axis} -> {shown} does nothing: {voice.name} does not listen to {shown}")
        elif missing and len(missing) == len(axes.get(target, (axis,))):
            warnings.append(f"{axis} -> {shown} does nothing: a {kind} controller sends no {missing[0]}")
        else:
            live.append(f"{axis} -> {shown}")
    if not live:
        warnings.append(f"no live control: nothing this {kind} controller sends reaches {voice.name} (see --mapping)")
    return ", ".join(live) or "nothing", warnings


def engine_config(config: SessionConfig, *, threaded: bool = True) -> EngineConfig:
    """The engine settings a SessionConfig asks for (inline, deterministic engines for renders)."""
    return EngineConfig(lookahead_s=config.lookahead, rollback_threshold=config.rollback_threshold,
                        tempo=config.tempo, channel=config.channel - 1, realtime=config.realtime and threaded,
                        threaded=threaded, poll_s=0.001 if threaded else 0.005)


def build_engine(config: SessionConfig, clock, controller, sinks, *, voice=None, mapping=None, seed: int | None = None,
                 threaded: bool = True, **hooks) -> Engine:
    """The one place an Engine is built: play, render and every benchmark come through here."""
    voice = voice if voice is not None else open_session_voice(config, config.seed if seed is None else seed)
    voice = shape_voice(voice)  # velocity, transpose and temperature for every voice (instrument/voice_shaping.py)
    kind = controller_kind(getattr(controller, "spec", "replay"))
    mapping = mapping if mapping is not None else session_mapping(config, voice, kind)
    refiners = []
    if config.refine:
        from instrument.refiners import open_refiners

        refiners = open_refiners(config.refine)
    if config.program is not None:  # --program: the GM instrument, on every sink before the first note
        import mido

        program = mido.Message("program_change", channel=config.channel - 1, program=config.program - 1)
        for sink in sinks:
            sink.send(program, 0.0)
    settings = replace(engine_config(config, threaded=threaded), strike_threshold=mapping.response.strike)
    engine = Engine(voice, controller, mapping, sinks, clock, settings,
                    listens=voice.listens, grid=voice.info.keeps_grid, refiners=refiners, **hooks)
    if threaded:  # live: the first gesture costs what the thousandth does, and no full garbage collection of
        engine.generation.warm_up()  # the model's objects mid-song (Engine.freeze_heap)
        engine.freeze_heap()
    return engine


class Session:
    """Everything `play` runs, built from a SessionConfig; `run()` plays, `stop()` ends it."""

    def __init__(self, config: SessionConfig, *, clock=None, controller=None, echo=None) -> None:
        config.validate()
        self.config = config
        self.clock = clock or SystemClock()
        self.echo = echo or (lambda line: print(f"instrument play: {line}", file=sys.stderr, flush=True))
        self.seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
        self.paths = session_paths(config.record)
        self.recording_error: str | None = None  # why the recording stopped early (a full disk), if it did
        self._record_lock = threading.Lock()
        self._claimed: list[Path] = []
        self._closers: list = []
        try:
            self._build(controller)
        except BaseException:
            self.close()
            for path in self._claimed:  # a session that never started leaves no empty files behind
                with contextlib.suppress(OSError):
                    path.unlink()
            raise

    def _build(self, controller) -> None:
        from controllers import ControllerError, open_controller

        config = self.config
        # first what can fail on user input (model, controller, mapping), then the session files
        self.voice = open_session_voice(config, self.seed)
        if controller is None:
            try:
                controller = open_controller(config.controller, clock=self.clock, profile=config.profile)
            except ControllerError as err:
                raise UsageError(str(err)) from None
            self._closers.append(controller.close)
        self.controller = controller
        self.kind = controller_kind(getattr(controller, "spec", config.controller))
        mapping = session_mapping(config, self.voice, self.kind)
        self.drives, self.mapping_warnings = describe_mapping(mapping, self.voice, self.kind)
        numbered = not (config.record and config.record.lower().endswith(".mid"))
        try:
            self.paths["mid"].parent.mkdir(parents=True, exist_ok=True)
            self.paths = claim_session_paths(self.paths, numbered)
            self._claimed = list(self.paths.values())
            self.log = SessionLog(self.paths["log"])  # raises while starting: a place we cannot write is exit 2
            self._closers.append(self.log.close)
            # cwd: `render --session` finds a relative --model or --mapping path from where play ran
            self.log.event("config", seed=self.seed, **{k: v for k, v in asdict(self.config).items() if k != "seed"},
                           cwd=os.getcwd())
            self.log.event("wiring", controller=getattr(controller, "spec", config.controller),
                           controller_kind=self.kind, voice=self.voice.name, mapping=mapping.source,
                           drives=self.drives, warnings=self.mapping_warnings)
            self.file_sink = FileSink(self.paths["mid"], tempo_bpm=config.tempo, on_error=self._recording_failed)
        except OSError as err:
            raise UsageError(record_problem(config.record, self.paths, err)) from None
        self.log.on_error = self._recording_failed  # from now on a failing write stops the recording, not play
        sinks: list = []
        # the synth before the MIDI port: its audio drivers are tried while no other thread prints
        self.synth_sink = self._open_synth() if config.synth or config.soundfont is not None else None
        self.midi_sink = None
        if config.midi:
            self.midi_sink = MidiSink(config.port, config.connect, config.midi_api, on_status=self._midi_status)
            self._closers.append(self.midi_sink.close)
            sinks.append(self.midi_sink)
        if self.synth_sink is not None:
            sinks.append(self.synth_sink)
        sinks.append(self.file_sink)
        self._closers.append(self.file_sink.close)
        midi_clock = tempo_source = midi_in = None
        api = self.midi_sink.api if self.midi_sink is not None and self.midi_sink.api else config.midi_api
        try:
            if config.clock == "internal":
                from instrument.midi_clock import MidiClockOut

                midi_clock = MidiClockOut(config.tempo)
            elif config.clock.startswith("follow:"):
                from instrument.midi_clock import FollowClock

                tempo_source = FollowClock(config.clock[len("follow:"):], api, on_event=self.log.event)
                self._closers.append(tempo_source.close)
            if config.midi_in:
                from instrument.midi_in import MidiInput

                midi_in = MidiInput(config.midi_in, api)
                self._closers.append(midi_in.close)
                if config.midi_learn:
                    midi_in.learn(prompt=self.echo)
        except MidiUnavailable as err:
            raise UsageError(str(err)) from None
        self._frames = None
        self.engine = build_engine(config, self.clock, controller, sinks, voice=self.voice, mapping=mapping,
                                   midi_clock=midi_clock, tempo_source=tempo_source, midi_in=midi_in,
                                   on_frames=self._record_frames, on_event=self.log.event, midi_status=self.midi_status)

    # ------------------------------------------------------------------ wiring
    def _open_synth(self):
        """The built-in synth (--synth); None, after one line, where it cannot sound (the show goes on)."""
        from instrument.soundfont import resolve_soundfont
        from instrument.synth import SynthSink, SynthUnavailable

        try:
            synth = SynthSink(resolve_soundfont(self.config.soundfont), on_status=self._midi_status)
        except SynthUnavailable as err:
            self.echo(f"no sound from --synth: {err}; playing MIDI and recording on")
            self.log.event("synth_unavailable", message=str(err))
            return None
        self._closers.append(synth.close)
        self.log.event("synth", soundfont=str(synth.soundfont), driver=synth.driver)
        return synth

    def _midi_status(self, kind: str, message: str) -> None:
        self.echo(message)
        self.log.event(kind, message=message)

    def midi_status(self) -> str:
        """One line for a monitor: API and port, or why there is none."""
        return self.midi_sink.status if self.midi_sink is not None else "MIDI off (recording only)"

    def _record_frames(self, frames) -> None:
        from controllers import ControllerError

        if self.recording_error is not None:
            if self._frames is not None:
                self._frames.close()
            return
        try:
            if self._frames is None:
                from controllers.replay import FrameRecorder

                self._frames = FrameRecorder(self.paths["controls"], self.engine.t0)
                self._closers.insert(0, self._frames.close)
            for frame in frames:
                self._frames.write(frame)
        except (OSError, ControllerError) as err:
            if self._frames is not None:
                self._frames.close()
            self._recording_failed(self.paths["controls"], err)

    def _recording_failed(self, path: Path, err: Exception) -> None:
        """A session file could not be written (a full disk): stop all recording, say so once. Any thread."""
        why = f"cannot write {path}: {err.strerror}" if isinstance(err, OSError) and err.strerror else str(err)
        with self._record_lock:
            if self.recording_error is not None:
                return
            self.recording_error = why
        file_sink = getattr(self, "file_sink", None)
        if file_sink is not None:
            file_sink.stop_recording()  # the .mid keeps what its last flush wrote: a valid file
        self.echo(f"recording stopped: {why}; the music goes on ({self.paths['mid'].name} keeps the take up to now)")
        self.log.event("recording_stopped", path=str(path), error=why)  # nothing if the log is what failed

    # ------------------------------------------------------------------ running
    def run(self) -> None:
        """Play until the duration, `stop()` or an error (EngineError); always ends silent and recorded."""
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)  # a due note waits at most this for the GIL
        self.engine.run(self.config.duration)
        if self.config.realtime and not self.engine.realtime:
            self.log.event("realtime_unavailable", message="SCHED_FIFO not permitted; running at normal priority")

    def stop(self) -> None:
        """Ask the engine to stop (signal-safe)."""
        self.engine.request_stop()

    def close(self) -> None:
        """Release everything that was opened (idempotent; the engine already closed its sinks)."""
        closers, self._closers = self._closers, []
        for close in closers:
            try:
                close()
            except Exception:  # noqa: BLE001 - closing must go on for the others
                pass
