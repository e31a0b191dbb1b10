"""Training rolls for the DCRNN: corpus MIDI on a sixteenth grid, BL2012 rolls, bar segments.

Only *sequenced* MIDI files make sense on a beat grid: a human performance recorded at a nominal
120 bpm has onsets anywhere, and its tempo map says nothing about the music. A file is kept when at
least ``min_grid_fit`` of its onsets sit on the sixteenth grid of its own tempo map (the
easymusicnotes arrangements score ~0.98, free performances ~0.2); the rest are skipped with a reason.

Rolls are cached (one .npz keyed by the file list, sizes and mtimes) so the second start is instant.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mido
import numpy as np

from models.data import MAX_FILE_BYTES, default_cache_dir, find_midi_files, midi_problem, reading_progress, split_of
from models.roll import (
    DEFAULT_STEPS_PER_BEAT,
    N_PITCHES,
    OFF,
    ONSET,
    grid_fit,
    load_bl2012,
    midi_to_roll,
    pitch_class_histogram,
    upsample,
)

SPLITS = ("train", "valid", "test")
CACHE_VERSION = "dcrnn-rolls-v1"


def load_rolls(
    paths: list[str | Path],
    min_grid_fit: float = 0.85,
    bl2012_steps_per_frame: int = 4,
    cache_dir: Path | None = None,
) -> tuple[dict[str, list[np.ndarray]], list[tuple[str, str]]]:
    """Rolls by split from MIDI folders/files and BL2012 ``.json`` files -> (rolls, skipped)."""
    files: list[tuple[Path, str]] = []  # (file, split or "" for BL2012)
    for root in map(Path, paths):
        if not root.exists():
            raise FileNotFoundError(f"no such data path: {root}")
        if root.suffix.lower() == ".json":
            files.append((root, ""))
            continue
        base = root if root.is_dir() else root.parent
        files += [(f, split_of(str(f.relative_to(base)))) for f in find_midi_files(root)]
    key = _cache_key(files, min_grid_fit, bl2012_steps_per_frame)
    cache = (cache_dir or default_cache_dir().parent / "dcrnn") / f"{key}.npz"
    if cache.exists():
        return _read_cache(cache)

    rolls: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    skipped: list[tuple[str, str]] = []
    for f, split in reading_progress(files, len(files)):  # a bar on a terminal only
        if not split:  # BL2012: frames are quarter notes (JSB) -> repeat onto the sixteenth grid
            for s, pieces in load_bl2012(f).items():
                rolls[s] += [upsample(p, bl2012_steps_per_frame) for p in pieces]
            continue
        try:
            if f.stat().st_size > MAX_FILE_BYTES:
                skipped.append((str(f), f"too large: {f.stat().st_size / 2**20:.0f} MB"))
                continue
            midi = mido.MidiFile(str(f))
        except (OSError, ValueError, EOFError, KeyError, IndexError) as err:
            skipped.append((str(f), f"unreadable: {err}"))
            continue
        problem = midi_problem(midi)  # tempo 0xFFFFFF with huge deltas, ticks_per_beat 0: bounded, or skipped
        if problem is not None:
            skipped.append((str(f), problem))
            continue
        try:
            fit = grid_fit(midi)
            roll = midi_to_roll(midi) if fit >= min_grid_fit else None
        except Exception as err:  # noqa: BLE001 - one hostile file is skipped with its reason, never fatal
            skipped.append((str(f), f"skipped: {type(err).__name__}: {str(err)[:80]}"))
            continue
        if roll is None:
            skipped.append((str(f), f"not on a beat grid (fit {fit:.2f} < {min_grid_fit})"))
            continue
        if not roll.any():
            skipped.append((str(f), "no notes"))
            continue
        rolls[split].append(roll)
    _write_cache(cache, rolls, skipped)
    return rolls, skipped


def segments(
    rolls: list[np.ndarray], length: int, hop: int = 8, beat: int = DEFAULT_STEPS_PER_BEAT, keep_empty: bool = False
) -> np.ndarray:
    """Windows (N, length, 128) uint8 starting on beats every ``hop`` steps; silent ones dropped
    unless ``keep_empty``.

    A window cut mid-note starts with HELD steps; they are made ONSETs, as a player entering there
    would strike them.
    """
    hop = max(beat, hop - hop % beat)
    out = []
    for roll in rolls:
        for start in range(0, roll.shape[0] - length + 1, hop):
            win = roll[start:start + length]
            if keep_empty or win.any():
                out.append(win)
    if not out:
        return np.zeros((0, length, N_PITCHES), dtype=np.uint8)
    seg = np.stack(out).copy()
    first = seg[:, 0]
    first[first != OFF] = ONSET
    return seg


def conditions(seg: np.ndarray) -> np.ndarray:
    """Pitch-class histograms (N, 12) of segments (N, T, 128)."""
    return np.stack([pitch_class_histogram(s) for s in seg]) if len(seg) else np.zeros((0, 12), np.float32)


def transpose_batch(seg: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Transpose each segment (N, T, 128) by its own shift; notes leaving 0..127 are dropped."""
    out = np.zeros_like(seg)
    for i, k in enumerate(shifts):
        k = int(k)
        if k >= 0:
            out[i, :, k:] = seg[i, :, : N_PITCHES - k]
        else:
            out[i, :, :k] = seg[i, :, -k:]
    return out


def _cache_key(files: list[tuple[Path, str]], fit: float, spf: int) -> str:
    h = hashlib.sha256(f"{CACHE_VERSION}|{fit}|{spf}".encode())
    for f, split in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{split}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def _write_cache(path: Path, rolls: dict[str, list[np.ndarray]], skipped: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"{s}_{i}": r for s in SPLITS for i, r in enumerate(rolls[s])}
    arrays["meta"] = np.frombuffer(json.dumps({"counts": {s: len(rolls[s]) for s in SPLITS}, "skipped": skipped}).encode(), dtype=np.uint8)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def _read_cache(path: Path) -> tuple[dict[str, list[np.ndarray]], list[tuple[str, str]]]:
    with np.load(path) as data:
        meta = json.loads(data["meta"].tobytes().decode())
        rolls = {s: [data[f"{s}_{i}"] for i in range(meta["counts"][s])] for s in SPLITS}
    return rolls, [tuple(x) for x in meta["skipped"]]
