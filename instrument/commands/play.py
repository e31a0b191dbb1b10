"""`instrument play`: controller -> model -> virtual MIDI port, recorded as it is played."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from instrument.cli import port_name_arg, seed_arg
from instrument.midi_systems import DEFAULT_PORT_NAME, MIDI_API_CHOICES
from instrument.voices.registry import model_help

EPILOG = """\
Stopping: Ctrl-C (SIGINT) or SIGTERM stops cleanly: every sounding note gets its
note-off, then all-notes-off (CC123) and all-sound-off (CC120); the recording is
completed; the exit code is 0 (pressing Ctrl-C again while it stops changes nothing).
A failing model or device also ends in silence with a complete recording, but exits 1.
Bad flags, and a --record place that cannot be written, exit 2.

MIDI: --midi-api auto uses the platform's own system: on Linux ALSA when /dev/snd/seq
exists, else JACK when a server runs; CoreMIDI on macOS; Windows MM on Windows, which has
no virtual ports (create one with loopMIDI and play with --connect loopMIDI).
into the recording, and connects when a server appears (try `jackd -S -d dummy`).
If the JACK server dies mid-play, the same happens.

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
    a("--midi-in", type=port_name_arg("--midi-in"), default=None, metavar="PORT", help="MIDI input whose CCs set temperature, tempo and panic")
    a("--midi-learn", action="store_true", help="with --midi-in: learn which CCs to use, then play")
    a("--record", default=None, metavar="PATH", help="a .mid file or a folder for the session files")
    a("--duration", type=float, default=None, metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    a("--mapping", default=None, metavar="TOML", help="gesture -> control mapping file (default: shipped)")
    a("--profile", default=None, metavar="NAME", help="calibration profile of the performer")
    a("--lookahead", type=float, default=0.2, metavar="S",
      help="generated future kept ahead of the playhead (default 0.2 s; gestures roll it back anyway)")
    a("--refine", type=refine_arg, default=(), metavar="velocity",
      help="refiners behind the voice: velocity (the Velocity Net gives the notes their dynamics)")
    a("--int8", dest="quantize", action="store_true", help="int8 dynamic quantization of the model's weights on CPU")
    a("--quantize", dest="quantize", action="store_true", help=argparse.SUPPRESS)  # the old name of --int8
    a("--channel", type=int, default=1, help="MIDI channel 1..16 (default 1)")
    a("--monitor", action="store_true", help="live monitor window: camera or XY pad, control bars, piano roll "
      "of the notes sent, status (never slows the engine; headless: says so and plays on)")
    a("--no-realtime", action="store_true",
      help="do not ask for real-time (SCHED_FIFO) scheduling of the engine threads")


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


def run(args: argparse.Namespace) -> int:
    """Play until --duration, Ctrl-C or SIGTERM; 0 on a clean stop, 1 if the model or a device failed."""
    from instrument.engine import EngineError
    from instrument.session import Session

    config = config_from_args(args)
    config.validate()
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
              f"{latency}; {saved}", file=sys.stderr)
        return 0
    finally:
        for sig, handler in previous.items():
            # After a stop by signal, more of them until the process has exited are ignored: the
            # default handlers would turn a complete, saved session into exit code 130 or 143.
            signal.signal(sig, signal.SIG_IGN if stopped_by else handler)
