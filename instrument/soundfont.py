"""General MIDI soundfonts: which one `play --synth` and `export` use, and whether a file is one.

The default works on a fresh machine: the package depends on pretty_midi, whose wheel ships
TimGM6mb.sf2 (a 6 MB General MIDI soundfont, 128 programs and drums). Its path is found
without importing pretty_midi. The order: `--soundfont FILE`, $DEEP_SYMPHONY_SOUNDFONT, the
packaged TimGM6mb, then the soundfonts Debian/Ubuntu install (timgm6mb-soundfont,
fluid-soundfont-gm). A file given by the user that is missing or is not a soundfont
(SF2/SF3 are RIFF files of form `sfbk`) is a usage error: one line, exit 2.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from instrument.errors import UsageError
from instrument.ui.render_wav import SOUNDFONTS as SYSTEM_SOUNDFONTS

PACKAGED = ("pretty_midi", "TimGM6mb.sf2")  # (package whose wheel ships it, file name in that package)
ENV_VAR = "DEEP_SYMPHONY_SOUNDFONT"
INSTALL_HINT = "pip install pretty_midi (it ships TimGM6mb.sf2), or apt install timgm6mb-soundfont"


def packaged_soundfont() -> Path | None:
    """TimGM6mb.sf2 from the pretty_midi wheel (found without importing pretty_midi), or None."""
    package, name = PACKAGED
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / name
        if path.is_file():
            return path
    return None


def check_soundfont(path: str | Path, flag: str = "--soundfont") -> Path:
    """`path` if it is a readable SF2/SF3 file; UsageError (one line) otherwise."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"{flag}: no such soundfont file: {path}")
    try:
        with open(path, "rb") as file:
            head = file.read(12)
    except OSError as err:
        raise UsageError(f"{flag}: cannot read {path}: {err.strerror or err}") from None
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
        raise UsageError(f"{flag}: {path} is not a SoundFont (.sf2/.sf3 files start with RIFF....sfbk)")
    return path


def default_soundfont() -> Path | None:
    """The soundfont used when none is given: $DEEP_SYMPHONY_SOUNDFONT, the packaged one, a system one."""
    from_env = os.environ.get(ENV_VAR)
    if from_env:
        return Path(from_env).expanduser()
    packaged = packaged_soundfont()
    if packaged is not None:
        return packaged
    for candidate in SYSTEM_SOUNDFONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def resolve_soundfont(explicit: str | Path | None, flag: str = "--soundfont") -> Path:
    """The checked soundfont for `--soundfont explicit` (or the default); UsageError when there is none."""
    if explicit is not None:
        return check_soundfont(explicit, flag)
    found = default_soundfont()
    if found is None:
        raise UsageError(f"no General MIDI soundfont found: {INSTALL_HINT}, or give {flag} FILE")
    return check_soundfont(found, f"${ENV_VAR}" if os.environ.get(ENV_VAR) else flag)
