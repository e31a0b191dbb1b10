"""`instrument play`: controller -> model -> virtual MIDI port, recorded as it is played."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from instrument.cli import port_name_arg, seed_arg
from instrument.midi_systems import DEFAULT_PORT_NAME, MIDI_API_CHOICES
from instrument.presets import load_preset, overlay
from instrument.voices.registry import model_help

EPILOG = """\
Stopping: Ctrl-C (SIGINT) or SIGTERM stops cleanly: every sounding note gets its
note-off, then all-notes-off (CC123) and all-sound-off (CC120); the recording is
completed; the exit code is 0 (pressing Ctrl-C again while it stops changes nothing).
A failing model or device also ends in silence with a complete recording, but exits 1.
Bad flags, and a --record place that cannot be written, exit 2.

MIDI: --midi-api auto uses the platform's own system: on Linux ALSA when /dev/snd/seq
exists, else JACK when a server runs; CoreMIDI on macOS; Windows MM on Windows, which has
no virtual ports (create one with loopMIDI and play with --connect loopMIDI). With no MIDI
system at all it plays into the recording, and connects when a server appears (try
`jackd -S -d dummy`).
If the JACK server dies mid-play, the same happens.

Sound without a DAW: --synth also plays through a built-in General MIDI synth
(FluidSynth, needs libfluidsynth): to JACK where a server runs (connected to the sound
card), else to PipeWire, PulseAudio or ALSA (CoreAudio on macOS, WASAPI on Windows).
--soundfont FILE and --program N choose the sound. With no audio output, one line says
so and the session plays MIDI and records on.

Recording: NAME.mid (what was sent, real times), NAME.controls.jsonl (the gesture, for
`instrument render`) and NAME.log.jsonl (seed, events, latency figures), in
$XDG_DATA_HOME/deep-symphony/sessions/ (default ~/.local/share/...) or --record PATH.
An existing NAME.mid is never overwritten; sessions started together into one folder
get NAME-2, NAME-3, ... If the disk fills up, the recording stops (one line; what was
recorded stays valid) and the music goes on.

Examples:
  instrument play                                   # demo controller, shipped Char-RNN
  instrument play --controller jevois --key A:minor --scale-lock
  instrument play --model dcrnn --controller myo --clock internal
  instrument play --midi-api jack --connect fluidsynth --duration 60
  instrument play --synth --program 12              # hear it at once: a vibraphone, no DAW
  instrument play --key D:minor --tempo 84 --save-preset dark.toml   # keep a setup ...
  instrument play --preset dark.toml --tempo 96     # ... and play it (flags given here win)
"""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add play's flags."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    a = parser.add_argument
    a("--controller", default="auto", metavar="SPEC",
      help="auto|demo|jevois[:PORT]|myo[:PORT]|webcam[:N]|osc[:PORT]|replay:FILE.jsonl|mouse (default auto: "
           "the first device found, else the built-in demo)")
    a("--model", default="charrnn", metavar="M", help=model_help())
    a("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where the model runs (default auto)")
    a("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0; lower = safer)")
    a("--top-p", type=float, default=0.95, help="nucleus sampling mass for the Char-RNN (default 0.95)")
    a("--key", default=None, metavar="KEY", help="soft key condition, e.g. C:major, F#:minor, Bb")
    a("--scale-lock", action="store_true", help="play only notes of --key's scale")
    a("--style", default=None, metavar="NAME", help="the Char-RNN's style when the mapping picks none, for a model "
      "trained with styles (e.g. classical, jazz, easy; a mapping's [style] section can choose it live)")
    a("--tempo", type=float, default=120.0, metavar="BPM", help="tempo (default 120; scales time, and the DCRNN's bars)")
    a("--seed", type=seed_arg, default=None, help="random seed (default: random, written to the session log)")
    port = parser.add_mutually_exclusive_group()
    port.add_argument("--port", type=port_name_arg("--port"), default=DEFAULT_PORT_NAME, metavar="NAME",
                      help=f"name of the virtual output port (default {DEFAULT_PORT_NAME!r})")
    port.add_argument("--connect", type=port_name_arg("--connect"), default=None, metavar="NAME",
                      help="connect to an existing input port (name or part of it) instead")
    port.add_argument("--no-midi", action="store_true", help="no MIDI port at all: only record to file")
    a("--midi-api", default="auto", choices=MIDI_API_CHOICES,
      help="MIDI system: auto (default: ALSA, else JACK on Linux; CoreMIDI on macOS; Windows MM on Windows), "
           "alsa, jack, coremidi, winmm")
    a("--clock", default="none", metavar="MODE",
      help="internal: send 24-ppqn MIDI clock + start/stop; follow:PORT: take the tempo from a DAW's clock")
    a("--midi-in", type=port_name_arg("--midi-in"), default=None, metavar="PORT", help="MIDI input whose knobs (CCs) set temperature (CC 21) and tempo (CC 22) by default; "
      "--midi-learn adds panic, velocity, transpose, key and any mapped target (no panic by default: CC 64 is "
      "the sustain pedal); tempo and key changes go into the .mid and the log")
    a("--midi-learn", action="store_true", help="with --midi-in: learn which knob drives each action (a key press skips one), then play; saved for next time")
    a("--record", default=None, metavar="PATH", help="a .mid file or a folder for the session files")
    a("--duration", type=float, default=None, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    a("--mapping", default=None, metavar="TOML", help="gesture -> control mapping file (default: shipped)")
    a("--profile", default=None, metavar="NAME", help="calibration profile of the performer")
    a("--lookahead", type=float, default=0.2, metavar="S",
      help="generated future kept ahead of the playhead (default 0.2 s; gestures roll it back anyway)")
    a("--refine", type=refine_arg, default=(), metavar="velocity[,duration]",
      help="refiners behind the voice: velocity (the Velocity Net gives the notes their dynamics), duration (the Live "
           "Duration Net sets each note's length as its note-off is made)")
    a("--int8", dest="quantize", action="store_true", help="int8 dynamic quantization of the model's weights on CPU")
    a("--quantize", dest="quantize", action="store_true", help=argparse.SUPPRESS)  # the old name of --int8
    a("--channel", type=int, default=1, help="MIDI channel 1..16 (default 1)")
    a("--monitor", action="store_true", help="live monitor window: camera or XY pad, control bars, piano roll "
      "of the notes sent, status (never slows the engine; headless: says so and plays on)")
    a("--no-realtime", action="store_true",
      help="do not ask for real-time (SCHED_FIFO) scheduling of the engine threads, nor hold the CPUs "
           "awake (a 0-us wake-up latency request: idle cores poll, drawing more power, so gestures find them awake)")
    # sound without a DAW (instrument/synth.py): a General MIDI synth inside the process
    a("--synth", action="store_true",
      help="also play through the built-in synth (FluidSynth, General MIDI) to the audio system: JACK where "
           "a JACK server runs, else PipeWire/PulseAudio/ALSA, CoreAudio, WASAPI; without audio output one "
           "line says so and the session plays MIDI and records on")
    a("--soundfont", default=None, metavar="FILE.sf2",
      help="the synth's soundfont (implies --synth; default: the TimGM6mb GM soundfont that pretty_midi installs)")
    a("--program", type=int, default=None, metavar="N",
      help="General MIDI program 1..128 as the GM table numbers them (1 piano, 25 nylon guitar, 41 violin, "
           "74 flute), sent at start to the MIDI port, the synth and the recording")
    # presets (instrument/presets.py): every flag above (and any added later) may be set in one
    a("--preset", default=None, metavar="FILE.toml",
      help="settings from a preset file (keys are these flags without dashes); flags given here win")
    a("--save-preset", default=None, metavar="FILE.toml",
      help="write the settings given (with --preset's) to a preset file and exit without playing")
    overlay(parser, {"preset": load_preset})


def refine_arg(text: str) -> tuple[str, ...]:
    """`--refine velocity[,duration]` -> ("velocity", ...)."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def config_from_args(args: argparse.Namespace):
    """The SessionConfig for parsed play/render-style arguments (flags named like its fields)."""
    from dataclasses import fields

    from instrument.session import SessionConfig

    given = {f.name: getattr(args, f.name) for f in fields(SessionConfig) if hasattr(args, f.name)}
    return SessionConfig(**given, midi=not getattr(args, "no_midi", False),
                         realtime=not getattr(args, "no_realtime", False))


def save_preset(args: argparse.Namespace) -> int:
    """`--save-preset FILE`: write the (already validated) settings and say how to play them."""
    from instrument.presets import save_preset as write_preset

    parser = argparse.ArgumentParser(prog="instrument play")
    configure(parser)
    path = write_preset(args.save_preset, args, parser, "play")
    print(f"instrument play: saved preset {path}; play it with `instrument play --preset {path}`", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    """Play until --duration, Ctrl-C or SIGTERM; 0 on a clean stop, 1 if the model or a device failed."""
    from instrument.engine import EngineError
    from instrument.session import Session

    config = config_from_args(args)
    config.validate()
    if getattr(args, "save_preset", None):
        return save_preset(args)
    session = Session(config)
    stopped_by: list[int] = []

    def on_signal(signum, frame) -> None:
        stopped_by.append(signum)
        if len(stopped_by) > 1:
            return  # already stopping: a second Ctrl-C changes nothing (not the exit code either)
        # Not session.stop() here: the handler runs on the main thread, which may at this instant hold
        # the lock inside the engine's wake-up Event (it waits on it every tick); Event.set() from the
        # handler would then wait for that lock forever. A helper thread can simply wait its turn.
        threading.Thread(target=session.stop, name="stop-on-signal", daemon=True).start()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    where = session.midi_sink.status if session.midi_sink is not None and session.midi_sink.connected else "no MIDI port"
    synth = getattr(session, "synth_sink", None)
    if synth is not None:
        program = config.program or 1
        where += f"; {synth.status}, program {program} ({synth.preset_name(program - 1) or 'not in this soundfont'})"
    controller = getattr(session.controller, "spec", config.controller)
    picked = f" (auto picked {controller})" if config.controller == "auto" else ""
    print(f"instrument play: {session.voice.name} on {session.voice.device}, seed {session.seed}; "
          f"controller {controller}{picked}: {session.drives}; {where}; recording to {session.paths['mid']}; "
          "Ctrl-C stops", file=sys.stderr, flush=True)
    for warning in session.mapping_warnings:
        print(f"instrument play: note: {warning}", file=sys.stderr, flush=True)
    monitor = None
    if getattr(args, "monitor", False):
        from instrument.ui.monitor_window import open_play_monitor

        monitor = open_play_monitor(session)
    # The handler stays until the last line is printed: a signal while stopping only stops again.
    try:
        try:
            session.run()
        except EngineError as err:
            print(f"instrument play: error: {err}; stopped with all notes off, recording saved to "
                  f"{session.paths['mid']}", file=sys.stderr)
            return 1
        finally:
            if monitor is not None:
                monitor.close()
            session.close()
        stats = session.engine.stats()
        saved = (f"saved {session.paths['mid']}" if session.recording_error is None else
                 f"{session.paths['mid']} holds the take until a write failed")
        p99 = stats["control_to_note_p99_ms"]
        latency = f"control->note p99 {p99} ms" if p99 is not None else "control->note p99 - (no gesture measured)"
        print(f"instrument play: stopped{' by ' + signal.Signals(stopped_by[0]).name if stopped_by else ''}; "
              f"{stats['sent']} messages sent, underruns {stats['underruns']}, late {stats['late']}, "
              f"caught up after stalls {stats['caught_up']}, "
              f"{latency}; {saved}", file=sys.stderr)
        return 0
    finally:
        for sig, handler in previous.items():
            # After a stop by signal, more of them until the process has exited are ignored: the
            # default handlers would turn a complete, saved session into exit code 130 or 143.
            signal.signal(sig, signal.SIG_IGN if stopped_by else handler)
