"""Progress bars for the long offline commands: shown only when stderr is a terminal, never in CI logs or pipes.

`terminal_bar(...)` is a tqdm bar that is disabled unless stderr is a terminal;
`growing_file(path, seconds, bytes_per_second)` follows a file another process writes
(fluidsynth's WAV) as seconds of audio. `models/data.py` has its own (models never import
`instrument`).
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from pathlib import Path


def on_terminal() -> bool:
    """True when stderr is a terminal (a person watches it)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stderr
        return False


def terminal_bar(**options):
    """A tqdm bar on stderr, disabled unless stderr is a terminal; it leaves no line behind."""
    from tqdm import tqdm

    return tqdm(disable=not on_terminal(), leave=False, dynamic_ncols=True, **options)


def midi_seconds(path: Path) -> float:
    """How long a MIDI file plays; 0 when that cannot be told (a type-2 file): then no bar."""
    import mido

    try:
        return float(mido.MidiFile(str(path), clip=True).length)
    except (OSError, ValueError, EOFError, KeyError, IndexError):
        return 0.0


@contextlib.contextmanager
def growing_file(path: Path, seconds: float, bytes_per_second: float, label: str) -> Iterator[None]:
    """While the block runs, a bar of the seconds of audio written to `path` so far (polled 5 times a second)."""
    if not on_terminal() or seconds <= 0:
        yield
        return
    bar = terminal_bar(total=round(seconds, 1), desc=label, unit="s",
                       bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total:.1f} s of audio [{elapsed}]")
    done = threading.Event()

    def follow() -> None:
        while not done.wait(0.2):
            with contextlib.suppress(OSError):
                written = min(bar.total, max(0, Path(path).stat().st_size - 44) / bytes_per_second)  # 44: WAV header
                bar.update(written - bar.n)

    watcher = threading.Thread(target=follow, name="progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()
        bar.close()
