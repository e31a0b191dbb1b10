"""`instrument render`: re-play a recorded (or scripted) gesture through a model, offline.

The control stream is replayed on a simulated clock and the real engine runs inline
(generation in the loop, no threads), so a render is much faster than real time and
the same seed always gives the same .mid, byte for byte.
"""

from __future__ import annotations

import argparse
import sys
import time

from instrument.cli import seed_arg
from instrument.commands.play import refine_arg
from instrument.voices.registry import model_help


def configure(parser: argparse.ArgumentParser) -> None:
    """Add render's flags."""
    a = parser.add_argument
    a("--controls", required=True, metavar="FILE.jsonl", help="control frames (a session's .controls.jsonl)")
    a("--out", required=True, metavar="OUT.mid", help="the MIDI file to write")
    a("--model", default="charrnn", metavar="M", help=model_help())
    a("--seed", type=seed_arg, default=0, help="random seed (default 0); same seed, same file")
    a("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    a("--top-p", type=float, default=0.95, help="nucleus sampling mass (default 0.95)")
    a("--key", default=None, metavar="KEY", help="soft key condition, e.g. C:major")
    a("--scale-lock", action="store_true", help="only notes of --key's scale")
    a("--tempo", type=float, default=120.0, metavar="BPM", help="tempo (default 120)")
    a("--refine", type=refine_arg, default=(), metavar="velocity", help="refiners behind the voice: velocity")
    a("--mapping", default=None, metavar="TOML", help="mapping file (default: shipped)")
    a("--lookahead", type=float, default=0.2, metavar="S", help="generated future ahead of the playhead (default 0.2)")
    a("--duration", type=float, default=None, metavar="S", help="seconds to render (default: the recording plus 1 s)")


def render(controls: str, out: str, *, config, duration: float | None = None) -> dict:
    """Render `controls` to `out` with a SessionConfig's model settings; returns the engine stats."""
    from controllers import ControllerError, open_controller
    from instrument.clock import FakeClock
    from instrument.errors import UsageError
    from instrument.midi_file import FileSink
    from instrument.session import build_engine

    config.validate()
    clock = FakeClock(0.0)
    try:
        controller = open_controller(f"replay:{controls}", clock=clock)
    except ControllerError as err:
        raise UsageError(str(err)) from None
    try:
        sink = FileSink(out, tempo_bpm=config.tempo, name=f"render of {controls}")
    except OSError as err:
        raise UsageError(f"cannot write {out}: {err.strerror or err}") from None
    try:
        engine = build_engine(config, clock, controller, [sink], seed=config.seed or 0, threaded=False)
    except BaseException:
        sink.close()
        raise
    engine.run(duration if duration is not None else controller.duration + 1.0)
    return engine.stats()


def run(args: argparse.Namespace) -> int:
    """Render and say how long it took."""
    from instrument.session import SessionConfig

    config = SessionConfig(model=args.model, device="cpu", temperature=args.temperature, top_p=args.top_p,
                           key=args.key, scale_lock=args.scale_lock, tempo=args.tempo, seed=args.seed,
                           mapping=args.mapping, lookahead=args.lookahead, duration=args.duration, refine=args.refine)
    started = time.perf_counter()
    stats = render(args.controls, args.out, config=config, duration=args.duration)
    took = time.perf_counter() - started
    print(f"instrument render: wrote {args.out} ({stats['sent']} messages, seed {args.seed}) in {took:.1f} s",
          file=sys.stderr)
    return 0
