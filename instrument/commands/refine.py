"""`instrument refine IN.mid --out OUT.mid [--velocity] [--duration]`: the Refine nets on a recording.

The Velocity Net gives each note a velocity from the notes around it (background notes
softer than the theme); the Duration Net puts onsets and lengths back in place after a
generator's stretched timing. Both read the whole file. A file already sequenced on its beat grid
(at least 90 % of its onsets on its own 16th ticks: a DCRNN render, a file typed into a
sequencer) keeps its timing: there is no stretch to undo, and the net, which has only ever seen
stretched music, would move its notes off the beat. Live (`play --refine velocity,duration`),
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
    a("--duration", action="store_true",
      help="onsets and lengths restored by the Duration Net (a file already on its beat grid keeps its timing)")
    a("--spread", type=float, default=1.5, help="widen the Velocity Net's dynamics around 64 (default 1.5; 1 = as trained)")


def run(args: argparse.Namespace) -> int:
    """Refine and write; one line on what changed."""
    from models.checkpoint import load_checkpoint, shipped_checkpoint
    from models.events import Note, midi_to_notes, notes_to_midi
    from models.refine.beat_grid import SEQUENCED_SHARE, on_grid_share
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
    on_grid = on_grid_share(args.input) if args.duration else 0.0
    timing_kept = on_grid >= SEQUENCED_SHARE
    if timing_kept:
        print(f"instrument refine: {args.input} is sequenced on its beat grid ({on_grid:.0%} of its onsets on its 16th ticks; "
              f"{SEQUENCED_SHARE:.0%} counts): its timing is kept", file=sys.stderr)
    elif args.duration:
        model, _, _ = load_checkpoint(shipped_checkpoint("duration"), DurationNet)
        rows = refine_durations(rows, model)
    if args.velocity:
        model, _, _ = load_checkpoint(shipped_checkpoint("velocity"), VelocityNet)
        rows = refine_velocities(rows, model, args.spread)
    try:
        notes_to_midi([Note(pitch=p, start=s, end=e, velocity=v) for p, v, s, e in rows]).save(args.out)
    except OSError as err:
        raise UsageError(f"cannot write {args.out}: {err.strerror or err}") from None
    done = " and ".join(name for name, on in (("velocities", args.velocity), ("timing", args.duration and not timing_kept)) if on)
    print(f"instrument refine: {len(rows)} notes, {done or 'nothing'} refined -> {args.out}", file=sys.stderr)
    return 0
