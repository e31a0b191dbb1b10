"""The real-music side of `instrument bench music`: statistics of a MIDI folder, cached as JSON.

By default the folder is the test split of the Char-RNN's training corpus
(`../shared/data/deepsymphony/classical` beside the repository), split exactly as
training splits it (`models.data.split_of`) and parsed as training parses it
(`models.events.midi_to_notes`: sustain pedal applied, a re-struck key ends its note).
An installed package may not have that folder: the bench then says so and compares
against nothing. The statistics are cached under the XDG cache, keyed by the folder,
the split, every file's size and mtime, and the statistics' version.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from instrument.bench import music_stats

STATS_VERSION = "1"  # bump when a statistic's definition changes: old cached references are then recomputed
DEFAULT_REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "data" / "deepsymphony" / "classical"


def cache_dir() -> Path:
    """Where reference statistics are cached (the XDG cache's deep-symphony folder)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "deep-symphony"


def reference_files(folder: Path, split: str) -> list[tuple[Path, str]]:
    """(path, path relative to the folder) of the MIDI files of one split ("all": every file)."""
    from models.data import find_midi_files, split_of

    files = []
    for path in find_midi_files(folder):
        relpath = path.relative_to(folder).as_posix() if folder.is_dir() else path.name
        if split == "all" or split_of(relpath) == split:
            files.append((path, relpath))
    return files


def _cache_key(folder: Path, split: str, files: list[tuple[Path, str]], seed: int) -> str:
    digest = hashlib.sha1(f"{folder.resolve()}|{split}|{seed}|{STATS_VERSION}".encode())
    for path, relpath in files:
        stat = path.stat()
        digest.update(f"|{relpath}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def piece_notes(path: Path) -> np.ndarray | None:
    """The notes of one MIDI file as a music_stats array, or None if it cannot be read."""
    from models.events import midi_to_notes

    try:
        notes = midi_to_notes(path)
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError):
        return None
    return music_stats.as_notes([(n.pitch, n.velocity, n.start, n.end) for n in notes])


def reference_summary(folder: Path, split: str, seed: int = 0, use_cache: bool = True) -> dict | None:
    """music_stats.summarize over the folder's pieces (cached), or None (with one line on stderr) if there are none."""
    folder = Path(folder)
    if not folder.exists():
        print(f"instrument bench music: no reference folder {folder}; comparing against nothing "
              "(give one with --reference DIR)", file=sys.stderr)
        return None
    files = reference_files(folder, split)
    if not files:
        print(f"instrument bench music: no MIDI files in the {split} split of {folder}; comparing against nothing",
              file=sys.stderr)
        return None
    cached = cache_dir() / f"music-reference-{_cache_key(folder, split, files, seed)}.json"
    if use_cache and cached.exists():
        try:
            return json.loads(cached.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pass  # a damaged cache entry is recomputed below
    recordings, skipped = [], 0
    for path, _ in files:
        notes = piece_notes(path)
        if notes is None or not len(notes):
            skipped += 1
            continue
        recordings.append((notes, float(notes[:, music_stats.END].max())))  # a piece starts at 0 s
    summary = music_stats.summarize(recordings, seed=seed)
    summary.update(folder=str(folder), split=split, skipped=skipped)
    if use_cache:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_suffix(".tmp")
            tmp.write_text(json.dumps(summary), encoding="utf-8")
            os.replace(tmp, cached)  # atomic: a concurrent reader never sees half a file
        except OSError:
            pass  # no writable cache: the statistics are still returned
    return summary
