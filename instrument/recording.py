"""A session's files: where they go, claimed together and exclusively, and the session log.

Sessions go to `$XDG_DATA_HOME/deep-symphony/sessions/` (default
`~/.local/share/deep-symphony/sessions/`; macOS `~/Library/Application Support/deep-symphony/
sessions/`, Windows `%LOCALAPPDATA%\\deep-symphony\\sessions\\`, from platformdirs) unless
`--record PATH` says otherwise.
The three files (NAME.mid, NAME.controls.jsonl, NAME.log.jsonl) are created together and
exclusively: a session never writes into another's files (twins started in one second get
NAME-2, NAME-3, ...; an explicit `--record NAME.mid` that exists is refused).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import threading
from pathlib import Path


def sessions_dir() -> Path:
    """Where sessions are recorded by default: the platform's user data folder (on Linux `$XDG_DATA_HOME`)."""
    import platformdirs

    return platformdirs.user_data_path("deep-symphony", appauthor=False) / "sessions"


def session_paths(record: str | None, now: dt.datetime | None = None) -> dict[str, Path]:
    """{'mid', 'controls', 'log'} paths for `--record` (a .mid path or a folder) or the default folder."""
    stamp = (now or dt.datetime.now()).strftime("%Y-%m-%d_%H-%M-%S")
    if record and record.lower().endswith(".mid"):
        mid = Path(record).expanduser()
    else:
        mid = (Path(record).expanduser() if record else sessions_dir()) / f"session_{stamp}.mid"
    stem = mid.with_suffix("")
    return {"mid": mid, "controls": Path(f"{stem}.controls.jsonl"), "log": Path(f"{stem}.log.jsonl")}


MAX_TWINS = 1000  # NAME-2 ... NAME-1000: sessions started in one second into one folder


def claim_session_paths(paths: dict[str, Path], numbered: bool) -> dict[str, Path]:
    """Create the three session files, empty and exclusively (O_EXCL), so no other session can write them.

    `numbered` (a folder was given): when a name is taken, NAME-2, NAME-3, ... are tried, the three
    files always under one name. Otherwise (an explicit .mid) a taken name raises FileExistsError:
    a recording is never overwritten. Any other OSError (read-only, no such folder) is raised.
    """
    mid = paths["mid"]
    stem = mid.with_suffix("")
    for n in range(1, MAX_TWINS + 1 if numbered else 2):
        name = stem if n == 1 else stem.with_name(f"{stem.name}-{n}")
        claim = {"mid": Path(f"{name}{mid.suffix}"), "controls": Path(f"{name}.controls.jsonl"),
                 "log": Path(f"{name}.log.jsonl")}
        made: list[Path] = []
        try:
            for path in claim.values():
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                made.append(path)
            return claim
        except OSError as err:
            for path in made:
                with contextlib.suppress(OSError):
                    path.unlink()
            if not (numbered and isinstance(err, FileExistsError)):
                raise
    raise FileExistsError(errno.EEXIST, f"{MAX_TWINS} sessions of this name already exist", str(mid))


def record_problem(record: str | None, paths: dict[str, Path], err: OSError) -> str:
    """The one line for a place `--record` cannot use (at start: exit 2)."""
    flag = f"--record {record}" if record else f"recording to {paths['mid'].parent} (choose a place with --record)"
    where = Path(err.filename) if err.filename else paths["mid"]
    if isinstance(err, FileExistsError) and where == paths["mid"].parent:
        return f"{flag}: {where} is not a folder (give a folder, or a new .mid file name)"
    if isinstance(err, FileExistsError) and where.is_dir():
        return f"{flag}: {where} is a folder (give a new .mid file name, or a folder to record into)"
    if isinstance(err, FileExistsError):
        return f"{flag}: {where} already exists (a recording is never overwritten: give a new name, or a folder)"
    return f"{flag}: cannot write {where}: {err.strerror or err}"


class SessionLog:
    """JSONL events, one whole line each, safe from any thread.

    Each line is one unbuffered write. One that fails (a full disk) is cut back, so the log
    always ends with a whole line, and the log stops: `on_error(path, err)` is told once or,
    while `on_error` is None (at start), the OSError is raised.
    """

    def __init__(self, path: Path, on_error=None) -> None:
        self.path = path
        self.on_error = on_error
        self._lock = threading.Lock()
        self._file = open(path, "ab", buffering=0)
        self._size = self._file.seek(0, os.SEEK_END)  # bytes of whole lines

    def event(self, kind: str, **fields) -> None:
        """Append one event with the wall-clock time."""
        record = {"time": dt.datetime.now().isoformat(timespec="milliseconds"), "event": kind, **fields}
        line = (json.dumps(record, default=str) + "\n").encode("utf-8")
        with self._lock:
            if self._file.closed:
                return
            try:
                view = memoryview(line)
                while view:
                    written = self._file.write(view)
                    if not written:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
                    view = view[written:]
                self._size += len(line)
                return
            except OSError as err:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._file.fileno(), self._size)
                self._file.close()
                err.filename = err.filename or str(self.path)
                error = err
        if self.on_error is None:
            raise error
        self.on_error(self.path, error)

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            self._file.close()
