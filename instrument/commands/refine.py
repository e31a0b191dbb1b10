"""`instrument refine IN.mid --out OUT.mid [--velocity] [--duration]`: the Refine nets on a recording.

The Velocity Net gives each note a velocity from the notes around it (background notes
softer than the theme); the Duration Net puts onsets and lengths back in place after a
generator's stretched timing. Both read the whole file. Live (`play --refine velocity,duration`),
the Velocity Net runs as it is and the Duration Net's causal sibling, the Live Duration Net,
sets note lengths only (instrument/refiners.py).
"""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    """Add refine's flags."""
    a = parser.add_argument
    a("input", metavar="IN.mid", help="a recording (a session's .mid, a render, any MIDI file)")
    a("--out", required=True, metavar="OUT.mid", help="the refined MIDI file to write")
    a("--velocity", action="store_true", help="velocities from the Velocity Net")
    a("--duration", action="store_true", help="onsets and lengths restored by the Duration Net")
    a("--spread", type=float, default=1.5, help="widen the Velocity Net's dynamics around 64 (default 1.5; 1 = as trained)")


def run(args: argparse.Namespace) -> int:
    """Refine and write; one line on what changed."""
    from models.checkpoint import load_checkpoint, shipped_checkpoint
    from models.events import Note, midi_to_notes, notes_to_midi
    from models.refine.duration import DurationNet, refine_durations
    from models.refine.velocity import VelocityNet, refine_velocities

    from instrument.errors import UsageError

    if not (args.velocity or args.duration):
        raise UsageError("say what to refine: --velocity, --duration or both")
    if not 0.0 < args.spread <= 4.0:
        raise UsageError(f"--spread must be in (0, 4], got {args.spread:g}")
    try:
        notes = midi_to_notes(args.input)
    except (OSError, ValueError, EOFError) as err:
        raise UsageError(f"cannot read {args.input}: {err}") from None
    if not notes:
        raise UsageError(f"{args.input} holds no notes")
    rows = [(n.pitch, n.velocity, n.start, n.end) for n in notes]
    if args.duration:
        model, _, _ = load_checkpoint(shipped_checkpoint("duration"), DurationNet)
        rows = refine_durations(rows, model)
    if args.velocity:
        model, _, _ = load_checkpoint(shipped_checkpoint("velocity"), VelocityNet)
        rows = refine_velocities(rows, model, args.spread)
    try:
        notes_to_midi([Note(pitch=p, start=s, end=e, velocity=v) for p, v, s, e in rows]).save(args.out)
    except OSError as err:
        raise UsageError(f"cannot write {args.out}: {err.strerror or err}") from None
    done = " and ".join(name for name, on in (("velocities", args.velocity), ("timing", args.duration)) if on)
    print(f"instrument refine: {len(rows)} notes, {done} refined -> {args.out}", file=sys.stderr)
    return 0
