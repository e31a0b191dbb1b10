"""Reading a mapping file: TOML -> `Mapping`, every value checked before anything plays.

Sections are the targets (`[register]`, `[velocity]`, `[tempo]`, ...), plus `[lost]`,
`[response]`, `[noise_slots]`, `[theme]`, `[key]`, `[style]` and one `[cc.N]` per MIDI CC sent out. A target is
driven by one axis (`axis = "x"`) or by several (`sources = [{axis = "x", weight = 0.5},
{axis = "emg", weight = 0.5}]` with `combine = "sum"` or `"max"`). Every number is checked
here: finite, inside what its target can play (mapping.TARGET_LIMITS); a problem is one
line naming the file, the section and the key (a MappingError: exit 2).
"""

from __future__ import annotations

import math
import tomllib

from instrument.mapping import (CC_PREFIX, COMBINES, MAX_GLIDE_S, SANITY_BOUND, SCALAR_AXES, SCALAR_TARGETS,
                                TARGET_LIMITS, AxisMap, KeyMap, LostPolicy, MappingError, ResponsePolicy, StyleMap)

AXIS_KEYS = {"axis", "sources", "combine", "range", "curve", "dead_zone", "invert", "neutral"}
MAX_WEIGHT = 10.0
MAX_SOURCES = 16
# The 12 major keys along the circle of fifths, C in the middle: an axis from left to right goes flatwards to sharpwards.
CIRCLE_OF_FIFTHS = ("Gb:major", "Db:major", "Ab:major", "Eb:major", "Bb:major", "F:major", "C:major", "G:major",
                    "D:major", "A:major", "E:major", "B:major")
CC_FIRST_MODE_MESSAGE = 120  # CC 120..127 are channel mode messages (all sound off, reset, ...): never mapped
DEFAULT_RANGES = {"cc": [0, 127]}


def parse_mapping(cls, text: str, source: str):
    """A `cls` (Mapping) from TOML text; any problem is a one-line MappingError naming `source`."""
    try:
        return _from_dict(cls, tomllib.loads(text), source)
    except tomllib.TOMLDecodeError as err:
        raise MappingError(f"mapping file {source} is not valid TOML: {err}") from None
    except (ValueError, TypeError, KeyError) as err:
        raise MappingError(f"mapping file {source}: {' '.join(str(err).split())}") from None


def response_policy(table: dict) -> ResponsePolicy:
    """`[response]`: strike = a control distance (>= 0), or "never"."""
    strike = _table(table, "response", {"strike"}).get("strike", ResponsePolicy.strike)
    if strike == "never":
        return ResponsePolicy(strike=math.inf)
    if isinstance(strike, str):
        raise ValueError(f"[response] strike must be a control distance (0.5 = half an octave of register) or \"never\", "
                         f"got {strike!r:.40}")
    strike = _number(strike, "[response] strike")
    if not 0.0 <= strike <= SANITY_BOUND:
        raise ValueError(f"[response] strike must be >= 0 (a control distance) or \"never\", got {strike:g}")
    return ResponsePolicy(strike=strike)


def _from_dict(cls, data: dict, source: str):
    sections = ("lost", "response", *SCALAR_TARGETS, "noise_slots", "theme", "key", "style", "cc")
    unknown = set(data) - set(sections)
    if unknown:
        raise ValueError(f"unknown section [{sorted(unknown)[0]}] (accepted: {', '.join(sections)})")
    lost = _table(data.get("lost", {}), "lost", {"mode", "glide_s"})
    mode = lost.get("mode", "glide")
    if mode not in ("hold", "glide"):
        raise ValueError(f"[lost] mode must be 'hold' or 'glide', got {mode!r:.40}")
    glide_s = _number(lost.get("glide_s", 2.0), "[lost] glide_s")
    if not 0.0 < glide_s <= MAX_GLIDE_S:
        raise ValueError(f"[lost] glide_s must be > 0 and <= {MAX_GLIDE_S:g} s, got {glide_s:g}")
    mapping = cls(lost=LostPolicy(mode=mode, glide_s=glide_s), response=response_policy(data.get("response", {})),
                  source=source)
    for name in SCALAR_TARGETS:
        if name in data:
            mapping.scalars[name] = axis_map(data[name], name)
    if "cc" in data:
        for number, table in _table(data["cc"], "cc", set(data["cc"]) if isinstance(data["cc"], dict) else set()).items():
            mapping.scalars[f"{CC_PREFIX}{_cc_number(number)}"] = axis_map(table, f"cc.{number}", limits="cc")
    if "noise_slots" in data:
        table = dict(_table(data["noise_slots"], "noise_slots", AXIS_KEYS | {"slots"}))
        slots = table.pop("slots", list(range(8)))
        if table.get("axis", "emg") != "emg" or "sources" in table:
            raise ValueError("[noise_slots] axis must be 'emg' (each EMG channel drives its slot)")
        table["axis"] = "emg0"  # each channel in turn; validated as a scalar axis
        mapping.noise = axis_map(table, "noise_slots")
        if not (isinstance(slots, list) and 0 < len(slots) <= 8 and all(isinstance(s, int) and 0 <= s < 64 for s in slots)):
            raise ValueError("[noise_slots] slots must list up to 8 slot numbers in 0..63")
        mapping.noise_slots = tuple(slots)
    if "theme" in data:
        theme = _table(data["theme"], "theme", {"axis", "poses"})
        if theme.get("axis", "pose") != "pose":
            raise ValueError("[theme] axis must be 'pose'")
        poses = theme.get("poses", {})
        if not (isinstance(poses, dict) and all(isinstance(v, str) for v in poses.values())):
            raise ValueError(f"[theme] poses must be a table of pose = \"theme\" names, got {poses!r:.60}")
        mapping.poses = dict(poses)
    if "key" in data:
        mapping.key = key_map(data["key"])
    if "style" in data:
        mapping.style = style_map(data["style"])
    return mapping


def _cc_number(text: str) -> int:
    """`[cc.N]`: N as a CC number a DAW can automate (0..119)."""
    if not (text.isdigit() and 0 <= int(text) < CC_FIRST_MODE_MESSAGE):
        raise ValueError(f"[cc.{text}] names no CC number: use 0..119 (120..127 are channel mode messages), "
                         f"e.g. [cc.74]")
    return int(text)


def key_map(table: object) -> KeyMap:
    """`[key]`: an axis (or sources) choosing among `keys` (default: the major keys, circle of fifths)."""
    from models.keys import key_histogram, parse_key

    table = dict(_table(table, "key", (AXIS_KEYS - {"range", "neutral"}) | {"keys"}))
    keys = table.pop("keys", list(CIRCLE_OF_FIFTHS))
    if not (isinstance(keys, list) and 0 < len(keys) <= 48 and all(isinstance(k, str) for k in keys)):
        raise ValueError(f"[key] keys must list 1 to 48 key names, e.g. [\"C:major\", \"A:minor\"], got {keys!r:.60}")
    for name in keys:
        try:
            parse_key(name)
        except ValueError as err:
            raise ValueError(f"[key] keys: {err}") from None
    table["range"] = [0.0, 1.0]
    position = axis_map(table, "key", limits=None)
    return KeyMap(position, tuple(keys), tuple(key_histogram(name) for name in keys))


def style_map(table: object) -> StyleMap:
    """`[style]`: `styles = ["jazz"]` plays one style; with an axis (or sources), the axis chooses among them."""
    table = dict(_table(table, "style", (AXIS_KEYS - {"range", "neutral"}) | {"styles"}))
    styles = table.pop("styles", None)
    if not (isinstance(styles, list) and 0 < len(styles) <= 16 and all(isinstance(s, str) and s for s in styles)):
        raise ValueError(f"[style] styles must list 1 to 16 style names of the model, e.g. [\"classical\", \"jazz\"], "
                         f"got {styles!r:.60}")
    if not table:
        return StyleMap(None, tuple(styles))
    table["range"] = [0.0, 1.0]
    return StyleMap(axis_map(table, "style", limits=None), tuple(styles))


def _table(value: object, section: str, keys: set[str]) -> dict:
    """`value` as a TOML table with only `keys` (a list or string where a table belongs is named)."""
    if not isinstance(value, dict):
        raise ValueError(f"[{section}] must be a table, got {type(value).__name__} {value!r:.40}")
    unknown = set(value) - keys
    if unknown:
        raise ValueError(f"[{section}] unknown key {sorted(unknown)[0]!r} (accepted: {', '.join(sorted(keys))})")
    return value


def _number(value: object, key: str) -> float:
    """`value` as a finite float; `key` names it in the error (bools and strings are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key} must be a number, got {value!r:.40}")
    if not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    return float(value)


def _check_limits(section: str, limits: str | None, key: str, value: float) -> None:
    """Refuse a value outside what its target can play (TARGET_LIMITS) or the sanity bound."""
    lo, hi, lo_inclusive, units = TARGET_LIMITS.get(limits or "", (-SANITY_BOUND, SANITY_BOUND, True, "units"))
    if not ((lo <= value if lo_inclusive else lo < value) and value <= hi):
        bounds = f"{'[' if lo_inclusive else '('}{lo:g}, {hi:g}]"
        raise ValueError(f"[{section}] {key} must lie in {bounds} ({units}), got {value:g}")


def _axis_name(value: object, key: str) -> str:
    if not isinstance(value, str) or value not in SCALAR_AXES:
        raise ValueError(f"{key} must be one of {', '.join(SCALAR_AXES)}; got {value!r:.40}")
    return value


def _sources(table: dict, section: str) -> tuple[str, tuple[tuple[str, float], ...], str]:
    """(first axis, sources, combine) from `axis = ...` or `sources = [...]` (exactly one of the two)."""
    combine = table.get("combine", "sum")
    if combine not in COMBINES:
        raise ValueError(f"[{section}] combine must be one of {', '.join(COMBINES)}, got {combine!r:.40}")
    if "sources" not in table:
        if "combine" in table:
            raise ValueError(f"[{section}] combine needs sources = [{{axis = ..., weight = ...}}, ...]")
        return _axis_name(table.get("axis"), f"[{section}] axis"), (), combine
    if "axis" in table:
        raise ValueError(f"[{section}] give either axis or sources, not both")
    listed = table["sources"]
    if not (isinstance(listed, list) and 0 < len(listed) <= MAX_SOURCES):
        raise ValueError(f"[{section}] sources must list 1 to {MAX_SOURCES} tables like {{axis = \"x\", weight = 0.5}}, "
                         f"got {listed!r:.40}")
    sources = []
    for i, entry in enumerate(listed):
        entry = _table(entry, f"{section}] sources[{i}", {"axis", "weight"})
        axis = _axis_name(entry.get("axis"), f"[{section}] sources[{i}] axis")
        weight = _number(entry.get("weight", 1.0), f"[{section}] sources[{i}] weight")
        if not 0.0 <= weight <= MAX_WEIGHT:
            raise ValueError(f"[{section}] sources[{i}] weight must lie in [0, {MAX_WEIGHT:g}], got {weight:g}")
        sources.append((axis, weight))
    return sources[0][0], tuple(sources), combine


def axis_map(table: object, section: str, limits: str | None = "") -> AxisMap:
    """One target's axis map from its table; `limits` names its TARGET_LIMITS entry ("" : the section's own)."""
    limits = section if limits == "" else limits
    table = _table(table, section, AXIS_KEYS)
    axis, sources, combine = _sources(table, section)
    rng = table.get("range", DEFAULT_RANGES.get(limits or ""))
    if not (isinstance(rng, list) and len(rng) == 2):
        raise ValueError(f"[{section}] range must be two numbers, e.g. [48, 84]")
    lo, hi = (_number(v, f"[{section}] range") for v in rng)
    for value in (lo, hi):
        _check_limits(section, limits, "range", value)
    neutral = table.get("neutral")
    if neutral is not None:
        neutral = _number(neutral, f"[{section}] neutral")
        if not min(lo, hi) <= neutral <= max(lo, hi):
            raise ValueError(f"[{section}] neutral must lie inside range [{lo:g}, {hi:g}], got {neutral:g}")
    curve, invert = table.get("curve", "linear"), table.get("invert", False)
    if not isinstance(curve, str):
        raise ValueError(f"[{section}] curve must be a string (linear, smooth, exp, power:G), got {curve!r:.40}")
    if not isinstance(invert, bool):
        raise ValueError(f"[{section}] invert must be true or false, got {invert!r:.40}")
    try:
        return AxisMap(
            axis=axis, lo=lo, hi=hi, curve=curve,
            dead_zone=_number(table.get("dead_zone", 0.0), f"[{section}] dead_zone"), invert=invert, neutral=neutral,
            sources=sources, combine=combine,
        )
    except ValueError as err:
        raise ValueError(f"[{section}] {err}") from None
