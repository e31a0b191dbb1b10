"""The MIDI corpus: recursive loading, deterministic splits, an on-disk cache, augmentation.

A piece is cached as its codec indices and its notes, keyed by the file's content
hash and the codec version, so a second load reads a few small .npz files instead
of parsing MIDI. Files that cannot be used are skipped with a reason; they never
abort the corpus. Any file may be hostile: its size, message count, ticks per beat and
length are checked before anything that grows with its length is built (a 44-byte file
can claim a note nine million seconds long).
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import mido
import numpy as np

from models.events import (
    CODEC_VERSION,
    MAX_SHIFT_STEPS,
    NOTE_ON_OFFSET,
    TIME_SHIFT_OFFSET,
    VELOCITY_OFFSET,
    Note,
    encode_all,
    midi_to_notes,
    notes_to_events,
)

MIDI_SUFFIXES = (".mid", ".midi")
SPLIT_FRACTIONS = {"train": 0.8, "valid": 0.1, "test": 0.1}
CACHE_FORMAT = "2"  # bump when the cached arrays change for a same codec version (e.g. a rounding fix)
MAX_FILE_BYTES = 32 * 2**20  # the corpus's largest file is well under 1 MB
MAX_MESSAGES = 2_000_000  # per file; mido holds each one as an object
MAX_SECONDS = 2 * 3600.0  # per piece: its time shifts (one per second at most) grow with its length


def default_cache_dir() -> Path:
    """Where encoded pieces are cached ($DEEP_SYMPHONY_CACHE, else the XDG cache)."""
    if os.environ.get("DEEP_SYMPHONY_CACHE"):
        return Path(os.environ["DEEP_SYMPHONY_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "deep-symphony" / "corpus"


def split_of(relative_path: str) -> str:
    """The split (train/valid/test) of a file, from a hash of its path relative to the corpus root."""
    fraction = zlib.crc32(relative_path.replace(os.sep, "/").encode("utf-8")) / 2**32
    if fraction < SPLIT_FRACTIONS["train"]:
        return "train"
    if fraction < SPLIT_FRACTIONS["train"] + SPLIT_FRACTIONS["valid"]:
        return "valid"
    return "test"


@dataclass
class Piece:
    """One encoded MIDI file."""

    path: Path
    relpath: str
    split: str
    events: np.ndarray  # (T,) int16 codec indices
    note_array: np.ndarray  # (N, 4) float64: pitch, start s, end s, velocity

    @property
    def notes(self) -> list[Note]:
        """The notes as `Note` values."""
        return [Note(int(p), float(s), float(e), int(v)) for p, s, e, v in self.note_array]

    @property
    def seconds(self) -> float:
        """Length of the piece: the end of its last note."""
        return float(self.note_array[:, 2].max()) if len(self.note_array) else 0.0


@dataclass
class Corpus:
    """A set of pieces with their splits, and the files that were skipped and why."""

    pieces: list[Piece] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    @classmethod
    def load(cls, paths: list[str | Path], cache_dir: Path | None = None, workers: int | None = None) -> "Corpus":
        """Load every MIDI file under `paths` (recursively, any case of .mid/.midi)."""
        cache_dir = default_cache_dir() if cache_dir is None else Path(cache_dir)
        jobs = []
        for root in map(Path, paths):
            if not root.exists():
                raise FileNotFoundError(f"no such file or folder: {root}")
            for path in find_midi_files(root):
                relpath = path.name if root.is_file() else path.relative_to(root).as_posix()
                jobs.append((path, relpath, cache_dir))
        workers = workers or min(len(jobs), os.cpu_count() or 1, 4) or 1
        if workers > 1 and len(jobs) > 8:
            with ProcessPoolExecutor(workers) as pool:
                results = list(reading_progress(pool.map(_load_piece, jobs, chunksize=4), len(jobs)))
        else:
            results = [_load_piece(job) for job in reading_progress(jobs, len(jobs))]
        corpus = cls()
        for (path, _, _), result in zip(jobs, results):
            if isinstance(result, Piece):
                corpus.pieces.append(result)
            else:
                corpus.skipped.append((path, result))
        return corpus

    def split(self, name: str) -> list[Piece]:
        """The pieces of one split."""
        return [p for p in self.pieces if p.split == name]


def reading_progress(items, total: int):
    """`items` behind a tqdm bar of the files read: on a terminal only, never in CI logs or pipes."""
    from tqdm import tqdm

    return tqdm(items, total=total, desc="reading MIDI", unit="file", leave=False, dynamic_ncols=True,
                disable=not sys.stderr.isatty() or total < 2)


def find_midi_files(root: Path) -> list[Path]:
    """MIDI files under `root` (or `root` itself), sorted."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MIDI_SUFFIXES)


def midi_problem(midi: mido.MidiFile) -> str | None:
    """Why a parsed MIDI file must not be encoded (None when it may): checked in time linear in its messages."""
    if midi.ticks_per_beat <= 0:
        return f"ticks_per_beat {midi.ticks_per_beat} (must be > 0)"
    messages = sum(len(track) for track in midi.tracks)
    if messages > MAX_MESSAGES:
        return f"{messages:,} messages (at most {MAX_MESSAGES:,})"
    seconds = 0.0
    for message in midi:  # merged tracks, tempo honoured: the length the notes would have
        seconds += message.time
        if seconds > MAX_SECONDS:
            return f"too long: more than {MAX_SECONDS / 3600:g} h (tempo or delta times out of bounds)"
    return None


def _load_piece(job: tuple[Path, str, Path]) -> Piece | str:
    """Encode one file through the cache; returns the piece or the reason it was skipped (never raises)."""
    try:
        return _load_piece_unchecked(job)
    except Exception as err:  # one hostile file is skipped and counted; it never ends the corpus
        return f"skipped: {type(err).__name__}: {str(err)[:80]}"


def _load_piece_unchecked(job: tuple[Path, str, Path]) -> Piece | str:
    path, relpath, cache_dir = job
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return f"too large: {path.stat().st_size / 2**20:.0f} MB (at most {MAX_FILE_BYTES // 2**20} MB)"
        content = path.read_bytes()
    except OSError as err:
        return f"unreadable: {err.strerror or err}"
    key = hashlib.sha1(content + f"{CODEC_VERSION}/{CACHE_FORMAT}".encode()).hexdigest()
    cached = cache_dir / f"{key}.npz"
    if cached.exists():
        try:
            with np.load(cached) as data:
                events, note_array = data["events"], data["notes"]
        except (OSError, ValueError, KeyError):
            cached.unlink(missing_ok=True)  # a damaged cache entry is rebuilt below
        else:
            return _piece(path, relpath, events, note_array)
    try:
        midi = mido.MidiFile(file=io.BytesIO(content), clip=True)  # the bytes hashed above, not a second read
        problem = midi_problem(midi)
        if problem:
            return problem
        notes = midi_to_notes(midi)
    except (OSError, EOFError, ValueError, KeyError, IndexError, TypeError, ZeroDivisionError) as err:
        return f"not a readable MIDI file: {type(err).__name__}: {str(err)[:80]}"
    if not notes:
        return "no notes (outside the drum channel)"
    events = np.asarray(encode_all(notes_to_events(notes)), dtype=np.int16)
    note_array = np.asarray(notes, dtype=np.float64).reshape(-1, 4)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        temporary = cached.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(temporary, events=events, notes=note_array)
        temporary.replace(cached)  # atomic: a concurrent reader never sees half a file
    except OSError:
        pass  # the cache is an optimization; a read-only disk must not stop training
    return _piece(path, relpath, events, note_array)


def _piece(path: Path, relpath: str, events: np.ndarray, note_array: np.ndarray) -> Piece:
    return Piece(path=path, relpath=relpath, split=split_of(relpath), events=events, note_array=note_array)


# ---------------------------------------------------------------- augmentation


def augment(events: np.ndarray, transpose: int = 0, stretch: float = 1.0) -> np.ndarray | None:
    """Transpose pitches by `transpose` semitones and scale time by `stretch` (codec indices in and out).

    Returns None when the transposition would push a pitch outside 0..127. Stretched
    shifts are recomputed from absolute times, so rounding does not accumulate.
    """
    events = np.asarray(events, dtype=np.int64)
    is_note = (events >= NOTE_ON_OFFSET) & (events < TIME_SHIFT_OFFSET)
    if transpose:
        pitches = (events[is_note] - NOTE_ON_OFFSET) % 128 + transpose
        if pitches.size and (pitches.min() < 0 or pitches.max() > 127):
            return None
        events = events.copy()
        events[is_note] += transpose
    if stretch == 1.0:
        return events
    is_shift = (events >= TIME_SHIFT_OFFSET) & (events < VELOCITY_OFFSET)
    steps = np.where(is_shift, events - TIME_SHIFT_OFFSET + 1, 0)
    old_times = np.cumsum(steps)  # (T,) absolute step after each event
    new_times = np.floor(old_times * stretch + 1e-9).astype(np.int64)
    out: list[int] = []
    current = 0
    for position, (index, is_shift_event) in enumerate(zip(events.tolist(), is_shift.tolist())):
        if is_shift_event:
            continue  # a non-shift event happens at the stretched time of the shifts before it
        gap = int(new_times[position]) - current
        while gap > 0:
            shift = min(gap, MAX_SHIFT_STEPS)
            out.append(TIME_SHIFT_OFFSET + shift - 1)
            gap -= shift
        current = int(new_times[position])
        out.append(index)
    gap = int(new_times[-1]) - current if len(events) else 0
    while gap > 0:
        shift = min(gap, MAX_SHIFT_STEPS)
        out.append(TIME_SHIFT_OFFSET + shift - 1)
        gap -= shift
    return np.asarray(out, dtype=np.int64)

