"""`instrument export SESSION.mid`: a recorded session as a piano-roll PNG and a WAV.

With neither --png nor --wav, both are written beside the .mid (SESSION.png,
SESSION.wav). The PNG draws the session's control curves underneath the notes when
its JSONL is found (--controls, default SESSION.controls.jsonl beside the .mid).
The WAV needs fluidsynth and a GM soundfont (default: the TimGM6mb that pretty_midi
installs, see instrument/soundfont.py); without fluidsynth the message names the package
to install, the PNG is still written, and the exit code is 1. A --soundfont that is
missing or not a soundfont is a usage error (exit 2). Every WAV is peak-normalized to
-1 dBFS (instrument/ui/loudness.py): fluidsynth alone leaves sessions near -40 dBFS RMS.
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
    parser.add_argument("--wav", metavar="OUT.wav",
                        help="render the audio here (fluidsynth + GM soundfont), normalized to a -1 dBFS peak")
    parser.add_argument("--controls", metavar="SESSION.jsonl",
                        help="control frames to draw under the roll (default: SESSION.controls.jsonl beside the .mid)")
    parser.add_argument("--soundfont", metavar="SF2",
                        help="soundfont for the WAV (default: $DEEP_SYMPHONY_SOUNDFONT, else the TimGM6mb GM "
                             "soundfont that pretty_midi installs, else a system one)")


def default_controls(mid: Path) -> Path:
    """Where `instrument play` wrote the control stream of this session."""
    return mid.with_suffix("").with_name(mid.stem + ".controls.jsonl")


def run(args: argparse.Namespace) -> int:
    """Write the requested renders; 0 when all were written, 1 when the WAV could not be."""
    import mido

    from controllers.errors import ControllerError
    from instrument.soundfont import default_soundfont, resolve_soundfont
    from instrument.ui.render_png import render_png
    from instrument.ui.loudness import TARGET_PEAK_DBFS, normalize_wav
    from instrument.progress import growing_file, midi_seconds
    from instrument.ui.render_wav import SAMPLE_RATE, WavUnavailable, render_wav

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
    # a --soundfont that is missing or no soundfont: exit 2 before anything is written
    soundfont = resolve_soundfont(args.soundfont) if args.soundfont else default_soundfont()
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
            with growing_file(Path(f"{wav}.partial"), midi_seconds(mid), 4 * SAMPLE_RATE,
                              f"export {Path(wav).name}"):  # a bar on a terminal only (instrument/progress.py)
                render_wav(mid, wav, soundfont)
        except WavUnavailable as err:
            print(f"instrument export: no WAV: {err}", file=sys.stderr)
            return 1
        before, after = normalize_wav(wav, TARGET_PEAK_DBFS)
        if after.peak_dbfs == float("-inf"):
            print(f"instrument export: {wav} (silent: no notes sound in {mid.name})", file=sys.stderr)
        else:
            print(f"instrument export: {wav}: normalized to a {after.peak_dbfs:.1f} dBFS peak "
                  f"({after.peak_dbfs - before.peak_dbfs:+.1f} dB), RMS {after.rms_dbfs:.1f} dBFS", file=sys.stderr)
    return 0
