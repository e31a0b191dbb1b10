"""`instrument export SESSION.mid`: a recorded session as a piano-roll PNG and a WAV.

With neither --png nor --wav, both are written beside the .mid (SESSION.png,
SESSION.wav). The PNG draws the session's control curves underneath the notes when
its JSONL is found (--controls, default SESSION.controls.jsonl beside the .mid).
The WAV needs fluidsynth and a GM soundfont; without them the message names the
package to install, the PNG is still written, and the exit code is 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from instrument.errors import UsageError

EPILOG = """\
Examples:
  instrument export ~/.local/share/deep-symphony/sessions/session_2025-01-01_20-00-00.mid
  instrument export take.mid --png take.png
  instrument export take.mid --wav take.wav --soundfont /usr/share/sounds/sf2/FluidR3_GM.sf2
"""


def configure(parser: argparse.ArgumentParser) -> None:
    """Flags of `instrument export`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("session", metavar="SESSION.mid", help="a session recorded by `instrument play` (or any .mid)")
    parser.add_argument("--png", metavar="OUT.png", help="write the piano roll here")
    parser.add_argument("--wav", metavar="OUT.wav", help="render the audio here (fluidsynth + GM soundfont)")
    parser.add_argument("--controls", metavar="SESSION.jsonl",
                        help="control frames to draw under the roll (default: SESSION.controls.jsonl beside the .mid)")
    parser.add_argument("--soundfont", metavar="SF2", help="soundfont for the WAV (default: TimGM6mb or FluidR3_GM)")


def default_controls(mid: Path) -> Path:
    """Where `instrument play` wrote the control stream of this session."""
    return mid.with_suffix("").with_name(mid.stem + ".controls.jsonl")


def run(args: argparse.Namespace) -> int:
    """Write the requested renders; 0 when all were written, 1 when the WAV could not be."""
    import mido

    from controllers.errors import ControllerError
    from instrument.ui.render_png import render_png
    from instrument.ui.render_wav import WavUnavailable, render_wav

    mid = Path(args.session).expanduser()
    if not mid.is_file():
        raise UsageError(f"no such session file: {mid}")
    try:
        mido.MidiFile(str(mid), clip=True)
    except (OSError, ValueError, EOFError, KeyError, IndexError) as err:
        raise UsageError(f"{mid} is not a readable MIDI file ({err})") from None
    png, wav = args.png, args.wav
    if png is None and wav is None:
        png, wav = mid.with_suffix(".png"), mid.with_suffix(".wav")
    controls = Path(args.controls).expanduser() if args.controls else default_controls(mid)
    if args.controls and not controls.is_file():
        raise UsageError(f"no such controls file: {controls}")
    if png is not None:
        try:
            roll = render_png(mid, png, controls if controls.is_file() else None)
        except ControllerError as err:
            raise UsageError(str(err)) from None
        except OSError as err:
            raise UsageError(f"cannot write {png}: {err.strerror or err}") from None
        curves = f" with the controls of {controls.name}" if controls.is_file() else " (no controls JSONL found)"
        print(f"instrument export: {png}: {roll.notes} notes over {roll.duration:.1f} s{curves}", file=sys.stderr)
    if wav is not None:
        try:
            render_wav(mid, wav, args.soundfont)
        except WavUnavailable as err:
            print(f"instrument export: no WAV: {err}", file=sys.stderr)
            return 1
        print(f"instrument export: {wav}", file=sys.stderr)
    return 0
