"""Loudness of a rendered WAV, and its peak normalization (`instrument export` writes WAVs peaking at -1 dBFS).

Why peak normalization: a session's WAV straight from fluidsynth is quiet (RMS -39 to -42 dBFS
measured on exported sessions) and how quiet depends on the soundfont and on how many notes
sound at once. Scaling every file so that its loudest sample is at -1 dBFS is what a DAW's
"normalize" does: the result can never clip (1 dB of headroom for the DAC's inter-sample peaks)
and the same take exports the same way on every machine. A piano session then lands near
-20 dBFS RMS. A silent file is left as it is.
"""

from __future__ import annotations

import math
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TARGET_PEAK_DBFS = -1.0


@dataclass(frozen=True)
class Levels:
    """A 16-bit WAV's levels in dBFS (-inf for silence)."""

    peak_dbfs: float
    rms_dbfs: float


def dbfs(fraction: float) -> float:
    """A level as a fraction of full scale, in dB (-inf for 0)."""
    return 20.0 * math.log10(fraction) if fraction > 0 else -math.inf


def _read(path: Path) -> tuple:
    """(wave parameters, int16 samples) of a 16-bit WAV."""
    with wave.open(str(path), "rb") as wav:
        params = wav.getparams()
        if params.sampwidth != 2:
            raise ValueError(f"{path}: expected 16-bit samples, got {8 * params.sampwidth}-bit")
        samples = np.frombuffer(wav.readframes(params.nframes), dtype="<i2")
    return params, samples


def levels_of(samples: np.ndarray) -> Levels:
    """Peak and RMS of 16-bit samples, in dBFS."""
    if samples.size == 0:
        return Levels(-math.inf, -math.inf)
    scaled = samples.astype(np.float64) / 32768.0
    return Levels(dbfs(float(np.max(np.abs(scaled)))), dbfs(float(np.sqrt(np.mean(np.square(scaled))))))


def wav_levels(path: str | Path) -> Levels:
    """Peak and RMS of a 16-bit WAV, in dBFS."""
    return levels_of(_read(Path(path))[1])


def normalize_wav(path: str | Path, peak_dbfs: float = TARGET_PEAK_DBFS) -> tuple[Levels, Levels]:
    """Scale a 16-bit WAV in place so that its peak is `peak_dbfs`; (levels before, levels after)."""
    path = Path(path)
    params, samples = _read(path)
    before = levels_of(samples)
    if before.peak_dbfs == -math.inf:
        return before, before
    gain = 10.0 ** ((peak_dbfs - before.peak_dbfs) / 20.0)
    scaled = np.clip(np.rint(samples.astype(np.float64) * gain), -32768, 32767).astype("<i2")
    partial = path.with_name(path.name + ".partial")
    with wave.open(str(partial), "wb") as wav:
        wav.setparams(params)
        wav.writeframes(scaled.tobytes())
    partial.replace(path)
    return before, levels_of(scaled)
