"""`instrument render`: re-play a recorded (or scripted) gesture through a model, offline.

The control stream is replayed on a simulated clock and the real engine runs inline
(generation in the loop, no threads), so a render is much faster than real time and
the same seed always gives the same .mid, byte for byte.

`--session NAME` takes a session recorded by `instrument play`: its control stream and
the settings its log starts with (seed, voice, key, scale lock, tempo, mapping, channel,
program, refiners, and the controller kind whose mapping the voice played with). Flags given on
the command line win over the session's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from instrument.cli import seed_arg
from instrument.commands.play import refine_arg
from instrument.errors import UsageError
from instrument.presets import convert, overlay
from instrument.voices.registry import model_help

EPILOG = """\
Examples:
  instrument render --controls take.controls.jsonl --out take.mid --seed 3
  instrument render --session session_2025-01-01_20-00-00 --out again.mid     # the session's settings
  instrument render --session ~/takes/solo.mid --out solo-cmajor.mid --key C:major   # ... but in C major

A session's tempo changes made live (MIDI CC, --clock follow) are not replayed: the render
plays at the session's starting tempo.
"""

KINDS = ("camera", "emg", "xy", "replay")


def configure(parser: argparse.ArgumentParser) -> None:
    """Add render's flags."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    a = parser.add_argument
    a("--controls", default=None, metavar="FILE.jsonl", help="control frames (a session's .controls.jsonl)")
    a("--session", default=None, metavar="NAME",
      help="a session recorded by `play` (a name in the sessions folder, or a path to any of its files): "
           "its controls and settings; flags given here win")
    a("--out", required=True, metavar="OUT.mid", help="the MIDI file to write")
    a("--model", default="charrnn", metavar="M", help=model_help())
    a("--seed", type=seed_arg, default=0, help="random seed (default 0); same seed, same file")
    a("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    a("--top-p", type=float, default=0.95, help="nucleus sampling mass (default 0.95)")
    a("--key", default=None, metavar="KEY", help="soft key condition, e.g. C:major")
    a("--scale-lock", action="store_true", help="only notes of --key's scale")
    a("--style", default=None, metavar="NAME", help="the Char-RNN's style when the mapping picks none (a model with styles)")
    a("--tempo", type=float, default=120.0, metavar="BPM", help="tempo (default 120)")
    a("--refine", type=refine_arg, default=(), metavar="velocity[,duration]",
      help="refiners behind the voice: velocity, duration")
    a("--mapping", default=None, metavar="TOML", help="mapping file (default: the voice's for --controller-kind)")
    a("--controller-kind", default="replay", choices=KINDS,
      help="whose default mapping the voice plays with when no --mapping is given (default: the session's, else "
           "replay)")
    a("--channel", type=int, default=1, help="MIDI channel 1..16 (default 1)")
    a("--program", type=int, default=None, metavar="N", help="General MIDI program 1..128, sent at the start")
    a("--lookahead", type=float, default=0.2, metavar="S", help="generated future ahead of the playhead (default 0.2)")
    a("--duration", type=float, default=None, metavar="S", help="seconds to render (default: the recording plus 1 s)")
    overlay(parser, {"session": load_session})


# ----------------------------------------------------------------------------- a recorded session's settings
SESSION_FIELDS = ("model", "seed", "temperature", "top_p", "key", "scale_lock", "style", "tempo", "refine", "mapping",
                  "lookahead", "channel", "program")  # SessionConfig fields (in the log's first line) that are render flags
SUFFIXES = (".log.jsonl", ".controls.jsonl", ".mid")


def session_stem(name: str) -> Path:
    """The path without suffix of session `name`: a path to one of its files or its stem, or a name in the sessions folder."""
    from instrument.recording import sessions_dir

    text = str(Path(name).expanduser())
    for suffix in SUFFIXES:
        if text.lower().endswith(suffix):
            text = text[: -len(suffix)]
            break
    for stem in (Path(text), sessions_dir() / text):
        if Path(f"{stem}.log.jsonl").is_file():
            return stem
    raise UsageError(f"--session {name}: no recorded session there (looked for {text}.log.jsonl, here and in "
                     f"{sessions_dir()})")


def read_session_log(stem: Path, name: str) -> tuple[dict, dict]:
    """(config, wiring): the first two events of a session log, as `instrument play` writes them."""
    log = Path(f"{stem}.log.jsonl")
    events: dict[str, dict] = {}
    try:
        with open(log, encoding="utf-8") as lines:
            for _, line in zip(range(2), lines):
                record = json.loads(line)
                events[record.get("event")] = record
    except (OSError, ValueError, AttributeError) as err:
        raise UsageError(f"--session {name}: cannot read {log}: {getattr(err, 'strerror', None) or err}") from None
    if "config" not in events:
        raise UsageError(f"--session {name}: {log} does not start with the session's settings (a `config` line)")
    return events["config"], events.get("wiring", {})


def load_session(name: object, parser: argparse.ArgumentParser) -> dict:
    """{dest: value}: the controls and the settings of a recorded session, for the render flags."""
    stem = session_stem(str(name))
    config, wiring = read_session_log(stem, str(name))
    where = f"--session {name}: {stem}.log.jsonl"
    actions = {action.dest: action for action in parser._actions}
    played_in = Path(config["cwd"]) if isinstance(config.get("cwd"), str) else stem.parent
    values: dict = {"controls": f"{stem}.controls.jsonl", "quantize": bool(config.get("quantize", False))}
    for dest in SESSION_FIELDS:
        value = config.get(dest)
        if value is None:
            continue
        values[dest] = convert(actions[dest], dest.replace("_", "-"), value, where)
        if dest in ("model", "mapping"):  # a relative path was relative to where `play` ran
            path = Path(values[dest]).expanduser()
            if not path.is_absolute() and (played_in / path).exists():
                values[dest] = str(played_in / path)
    if wiring.get("controller_kind") in KINDS:
        values["controller_kind"] = wiring["controller_kind"]
    return values


# ----------------------------------------------------------------------------- rendering
class ProgressSink:
    """A sink that only moves a tqdm bar along the session time (a terminal only: never in CI logs)."""

    wants_clock = False

    def __init__(self, seconds: float, label: str) -> None:
        from instrument.progress import terminal_bar

        self.bar = terminal_bar(total=round(seconds, 1), unit="s", desc=label,
                                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s of music [{elapsed}]")

    def send(self, message, t: float) -> None:
        """Messages are the FileSink's business."""

    def maintain(self, now: float) -> None:
        """Move the bar to the session time `now`."""
        self.bar.update(max(0.0, min(now, self.bar.total) - self.bar.n))

    def close(self, t: float | None = None) -> None:
        """Remove the bar."""
        self.bar.close()


def render(controls: str, out: str, *, config, duration: float | None = None, kind: str | None = None,
           progress: bool = False) -> dict:
    """Render `controls` to `out` with a SessionConfig's model settings; returns the engine stats.

    `kind`: the controller kind whose default mapping the voice plays with (default: replay's);
    `progress`: a tqdm bar on stderr.
    """
    from controllers import ControllerError, controller_kind, open_controller
    from instrument.clock import FakeClock
    from instrument.midi_file import FileSink
    from instrument.session import build_engine, open_session_voice, session_mapping

    config.validate()
    clock = FakeClock(0.0)
    try:
        controller = open_controller(f"replay:{controls}", clock=clock)
    except ControllerError as err:
        raise UsageError(str(err)) from None
    seed = config.seed or 0
    voice = open_session_voice(config, seed)
    mapping = session_mapping(config, voice, kind or controller_kind(controller.spec))
    seconds = duration if duration is not None else controller.duration + 1.0
    try:
        sink = FileSink(out, tempo_bpm=config.tempo, name=f"render of {controls}")
    except OSError as err:
        raise UsageError(f"cannot write {out}: {err.strerror or err}") from None
    sinks: list = [sink]
    try:
        if progress:
            sinks.append(ProgressSink(seconds, f"render {Path(out).name}"))
        engine = build_engine(config, clock, controller, sinks, voice=voice, mapping=mapping, seed=seed,
                              threaded=False)
    except BaseException:
        for opened in sinks:
            opened.close()
        raise
    engine.run(seconds)
    return engine.stats()


def run(args: argparse.Namespace) -> int:
    """Render and say how long it took."""
    from instrument.progress import on_terminal
    from instrument.session import SessionConfig

    if not args.controls:
        raise UsageError("give --controls FILE.jsonl (a control stream) or --session NAME (a recorded session)")
    config = SessionConfig(model=args.model, device="cpu", temperature=args.temperature, top_p=args.top_p,
                           key=args.key, scale_lock=args.scale_lock, style=args.style, tempo=args.tempo, seed=args.seed,
                           mapping=args.mapping, lookahead=args.lookahead, duration=args.duration, refine=args.refine,
                           channel=args.channel, program=args.program, quantize=getattr(args, "quantize", False))
    started = time.perf_counter()
    stats = render(args.controls, args.out, config=config, duration=args.duration, kind=args.controller_kind,
                   progress=on_terminal())
    took = time.perf_counter() - started
    settings = f", the settings of session {args.session}" if args.session else ""
    print(f"instrument render: wrote {args.out} ({stats['sent']} messages, seed {args.seed}{settings}) in {took:.1f} s",
          file=sys.stderr)
    return 0
