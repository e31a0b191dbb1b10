"""A session's .mid rendered to WAV by fluidsynth with a General MIDI soundfont.

fluidsynth runs as a separate process in its fast file-rendering mode (`-F`), so a
session renders in a fraction of its length. The soundfont is `--soundfont`, else
$DEEP_SYMPHONY_SOUNDFONT, else the first GM soundfont that Debian/Ubuntu packages
install (timgm6mb-soundfont, fluid-soundfont-gm). Without fluidsynth or a
soundfont, `WavUnavailable` says exactly which package to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np

SOUNDFONTS = (
    "/usr/share/sounds/sf2/TimGM6mb.sf2",  # apt timgm6mb-soundfont (6 MB)
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",  # apt fluid-soundfont-gm (140 MB)
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
)
INSTALL_HINT = "apt install fluidsynth timgm6mb-soundfont"
SAMPLE_RATE = 44100


class WavUnavailable(RuntimeError):
    """The WAV cannot be rendered here (the message names what to install or what failed)."""


def find_soundfont(explicit: str | Path | None = None) -> Path:
    """The GM soundfont to use (raises WavUnavailable naming the package when there is none)."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WavUnavailable(f"no soundfont at {path}")
        return path
    from_env = os.environ.get("DEEP_SYMPHONY_SOUNDFONT")
    for candidate in ([from_env] if from_env else []) + list(SOUNDFONTS):
        if Path(candidate).is_file():
            return Path(candidate)
    raise WavUnavailable(f"no General MIDI soundfont found (looked in {', '.join(SOUNDFONTS[:2])}): {INSTALL_HINT}")


def render_wav(mid_path: str | Path, out_path: str | Path, soundfont: str | Path | None = None,
               sample_rate: int = SAMPLE_RATE, timeout_s: float = 600.0) -> Path:
    """Render `mid_path` to a 16-bit stereo WAV at `out_path` through fluidsynth; returns the WAV path."""
    fluidsynth = shutil.which("fluidsynth")
    if fluidsynth is None:
        raise WavUnavailable(f"fluidsynth is not installed: {INSTALL_HINT}")
    font = find_soundfont(soundfont)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")
    # -n no MIDI input, -i no shell, -q quiet, -F file output; options must precede the soundfont and .mid
    command = [fluidsynth, "-n", "-i", "-q", "-F", str(partial), "-T", "wav", "-O", "s16", "-r", str(sample_rate),
               "-g", "0.6", str(font), str(mid_path)]
    try:
        result = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        partial.unlink(missing_ok=True)
        raise WavUnavailable(f"fluidsynth did not finish within {timeout_s:g} s") from None
    if result.returncode != 0 or not partial.exists() or partial.stat().st_size <= 44:
        partial.unlink(missing_ok=True)
        detail = (result.stderr or result.stdout).strip().splitlines()
        raise WavUnavailable(f"fluidsynth failed (exit {result.returncode})" + (f": {detail[-1]}" if detail else ""))
    partial.replace(out_path)
    return out_path


def wav_rms(path: str | Path) -> float:
    """Root mean square of a 16-bit WAV's samples, as a fraction of full scale (0 = silence)."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit samples, got {8 * wav.getsampwidth()}-bit")
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(np.square(samples)))) / 32768.0 if samples.size else 0.0
