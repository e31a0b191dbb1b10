"""Calibration profiles: a performer's EMG rest/max and comfortable reach box, as TOML.

Profiles live in the user config directory (platformdirs): on Linux
`$XDG_CONFIG_HOME/deep-symphony/profiles/NAME.toml` (`~/.config/...` by default), on
macOS `~/Library/Application Support/deep-symphony/profiles/`, on Windows
`%LOCALAPPDATA%\\deep-symphony\\profiles\\`. They are read with the stdlib `tomllib` and
written with `tomli_w` (values kept to 6 significant digits). Example:

    [emg]
    rest = [0.02, 0.03, ...]   # 8 mean-absolute-value envelopes at rest
    max = [0.41, 0.38, ...]    # 8 envelopes at a strong, comfortable squeeze

    [reach]
    x = [0.12, 0.91]           # comfortable left..right, in camera [0, 1] units
    y = [0.20, 0.85]           # comfortable low..high

    [poses]
    rest = [[0.01, ...], ...]  # example envelopes for the kNN pose classifier
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from controllers.errors import ProfileError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
EMG_CHANNELS = 8


def _clip01(v: float) -> float:
    return 0.0 if v < 0.0 else 1.0 if v > 1.0 else v


@dataclass(frozen=True, slots=True)
class EmgCalibration:
    """Per-channel rest and max envelope: `clip((env - rest) / (max - rest), 0, 1)`."""

    rest: tuple[float, ...] = (0.02,) * EMG_CHANNELS  # uncalibrated guess: a relaxed arm
    max: tuple[float, ...] = (0.40,) * EMG_CHANNELS  # uncalibrated guess: a firm squeeze

    def __post_init__(self) -> None:
        if len(self.rest) != EMG_CHANNELS or len(self.max) != EMG_CHANNELS:
            raise ValueError(f"EMG calibration needs {EMG_CHANNELS} rest and max values")
        if any(hi <= lo for lo, hi in zip(self.rest, self.max)):
            raise ValueError("EMG calibration needs max > rest on every channel")

    def apply(self, envelope: tuple[float, ...]) -> tuple[float, ...]:
        """Normalize 8 raw envelopes to [0, 1]."""
        return tuple(_clip01((e - lo) / (hi - lo)) for e, lo, hi in zip(envelope, self.rest, self.max))


@dataclass(frozen=True, slots=True)
class ReachBox:
    """The performer's comfortable reach in camera units; stretched to fill [0, 1]."""

    x: tuple[float, float] = (0.0, 1.0)
    y: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self) -> None:
        for lo, hi in (self.x, self.y):
            if not (0.0 <= lo < hi <= 1.0):
                raise ValueError(f"reach box edges must satisfy 0 <= low < high <= 1, got {lo}, {hi}")

    def apply(self, x: float, y: float) -> tuple[float, float]:
        """Map a camera position into the reach box, clipped to [0, 1]."""
        return (
            _clip01((x - self.x[0]) / (self.x[1] - self.x[0])),
            _clip01((y - self.y[0]) / (self.y[1] - self.y[0])),
        )


@dataclass(frozen=True, slots=True)
class Profile:
    """One performer's calibration; any part may be missing."""

    name: str
    emg: EmgCalibration | None = None
    reach: ReachBox | None = None
    poses: dict[str, list[tuple[float, ...]]] = field(default_factory=dict)


def profiles_dir() -> Path:
    """The folder holding profiles: the platform's user config folder (on Linux `$XDG_CONFIG_HOME`)."""
    import platformdirs

    return platformdirs.user_config_path("deep-symphony", appauthor=False) / "profiles"


def profile_path(name: str) -> Path:
    """Where profile `name` lives; rejects names that are not plain file names."""
    if not _NAME.match(name):
        raise ProfileError(f"invalid profile name {name!r}: use letters, digits, '_', '-' and '.'")
    return profiles_dir() / f"{name}.toml"


def _floats(value: object, n: int | None, where: str) -> tuple[float, ...]:
    if not isinstance(value, list) or (n is not None and len(value) != n):
        raise ValueError(f"{where} must be a list of {n or 'some'} numbers")
    out = tuple(float(v) for v in value)
    if not all(math.isfinite(v) for v in out):
        raise ValueError(f"{where} must hold finite numbers")
    return out


def _profile_from_dict(name: str, data: dict) -> Profile:
    emg = reach = None
    if "emg" in data:
        emg = EmgCalibration(
            rest=_floats(data["emg"].get("rest"), EMG_CHANNELS, "emg.rest"),
            max=_floats(data["emg"].get("max"), EMG_CHANNELS, "emg.max"),
        )
    if "reach" in data:
        reach = ReachBox(
            x=_floats(data["reach"].get("x"), 2, "reach.x"),  # type: ignore[arg-type]
            y=_floats(data["reach"].get("y"), 2, "reach.y"),  # type: ignore[arg-type]
        )
    poses = {
        str(label): [_floats(s, EMG_CHANNELS, f"poses.{label}[]") for s in samples]
        for label, samples in data.get("poses", {}).items()
    }
    return Profile(name=name, emg=emg, reach=reach, poses=poses)


def load_profile(name_or_path: str | Path) -> Profile:
    """Load a profile by name (from `profiles_dir()`) or by a path ending in .toml."""
    text = str(name_or_path)
    path = Path(text) if text.endswith(".toml") else profile_path(text)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
        return _profile_from_dict(path.stem, data)
    except FileNotFoundError:
        raise ProfileError(
            f"no calibration profile {path}: run `instrument calibrate --profile {path.stem}` first"
        ) from None
    except (OSError, tomllib.TOMLDecodeError, ValueError, TypeError, AttributeError) as err:
        raise ProfileError(f"cannot read calibration profile {path}: {err}") from None


def _figures(values) -> list[float]:
    return [float(f"{float(v):.6g}") for v in values]  # a calibration is not more precise than that


def to_toml(profile: Profile) -> str:
    """The TOML text of a profile."""
    import tomli_w

    table: dict = {}
    if profile.emg is not None:
        table["emg"] = {"rest": _figures(profile.emg.rest), "max": _figures(profile.emg.max)}
    if profile.reach is not None:
        table["reach"] = {"x": _figures(profile.reach.x), "y": _figures(profile.reach.y)}
    if profile.poses:
        table["poses"] = {str(label): [_figures(s) for s in samples] for label, samples in profile.poses.items()}
    return f"# Deep Symphony Live calibration profile {profile.name!r}\n\n" + tomli_w.dumps(table)


def save_profile(profile: Profile, path: Path | None = None) -> Path:
    """Write a profile (atomically) and return its path."""
    path = path or profile_path(profile.name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".toml.tmp")
        tmp.write_text(to_toml(profile), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        raise ProfileError(f"cannot write calibration profile {path}: {err}") from None
    return path
