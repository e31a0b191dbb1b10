"""Keys: names ('F#:minor'), Krumhansl-Kessler profiles, scales, and a voice's own key.

`key_histogram` turns a key name into the 12 pitch-class weights the key condition
expects; `scale_pitch_classes` gives the scale a scale lock keeps; `OwnKey` follows the
pitch classes of a voice's own recent notes, the live key condition when nobody sets a
key (a flat histogram lies outside the training data: there it means silence).
"""

from __future__ import annotations

import re

import numpy as np


_TONICS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
_MODES = {"major": "major", "maj": "major", "": "major", "minor": "minor", "min": "minor", "m": "minor", "M": "major"}
_KEY_RE = re.compile(r"^\s*([A-Ga-g])([#♯b♭]?)\s*[: ]?\s*([A-Za-z]*)\s*$")
# Krumhansl-Kessler key profiles: how much each scale degree sounds in real music in
# that key, so a key condition looks like the histograms the model was trained on.
_KK_MAJOR = (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88)
_KK_MINOR = (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17)
# Major scale; minor is natural minor plus the raised leading tone of classical usage.
_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10, 11)}
KEY_FORMS = "'C:major', 'A:minor', 'F#:minor', 'Bb:major', 'C major', 'Am', 'Eb' (tonic A-G, optional # or b; mode major|maj|minor|min|m, default major)"


def parse_key(name: str) -> tuple[int, str]:
    """'F#:minor' -> (6, 'minor'); raises ValueError listing the accepted forms."""
    m = _KEY_RE.match(name) if isinstance(name, str) else None
    raw = m.group(3) if m else "?"
    mode = _MODES.get(raw if raw in ("m", "M") else raw.lower())
    if m is None or mode is None:
        raise ValueError(f"unknown key {name!r}; accepted forms: {KEY_FORMS}")
    tonic = _TONICS[m.group(1).upper()] + {"#": 1, "♯": 1, "b": -1, "♭": -1, "": 0}[m.group(2)]
    return tonic % 12, mode


def key_histogram(name: str) -> tuple[float, ...]:
    """12 weights (sum 1) for a key name like 'A:minor': the Krumhansl-Kessler profile rotated to the tonic."""
    tonic, mode = parse_key(name)
    profile = np.asarray(_KK_MAJOR if mode == "major" else _KK_MINOR)
    hist = np.roll(profile / profile.sum(), tonic)
    return tuple(float(h) for h in hist)


def scale_pitch_classes(name: str) -> frozenset[int]:
    """Pitch classes of a key's scale, e.g. 'C:major' -> {0, 2, 4, 5, 7, 9, 11}."""
    tonic, mode = parse_key(name)
    return frozenset((tonic + d) % 12 for d in _SCALES[mode])


class OwnKey:
    """An immutable decaying pitch-class count of a voice's own note-ons, over a C-major prior.

    The live key condition when nobody sets a key: a flat histogram lies outside the training
    data (there it means silence), so the voice asks for the key of what it has just played.
    """

    DECAY = 0.97  # per note-on: about the last 30 notes (~5 s at the corpus's density) count
    PRIOR = np.asarray(key_histogram("C:major")) ** 2  # sharpened: training histograms are peaked (median 2.9 bits)
    PRIOR_WEIGHT = 3.0  # the prior is worth three notes

    __slots__ = ("counts", "count", "_histogram")

    def __init__(self, counts: np.ndarray | None = None, count: int = 0) -> None:
        self.counts = np.zeros(12) if counts is None else counts  # (12,)
        self.count = count
        self._histogram: np.ndarray | None = None  # computed once: a restored state's is ready for a gesture

    def add(self, pitch: int) -> "OwnKey":
        """A new count with one more note-on of `pitch`."""
        counts = self.counts * self.DECAY
        counts[pitch % 12] += 1.0
        return OwnKey(counts, self.count + 1)

    def histogram(self) -> np.ndarray:
        """(12,) weights summing to 1: the prior until the notes outweigh it (one array per count: never modify it)."""
        if self._histogram is None:
            h = self.counts + self.PRIOR / self.PRIOR.sum() * self.PRIOR_WEIGHT
            self._histogram = h / h.sum()
            self._histogram.flags.writeable = False
        return self._histogram

    def key_profile(self) -> np.ndarray:
        """(12,) the Krumhansl-Kessler profile of the key its notes fit best (C major before any note).

        A whole key, never a few pitch classes: a prior built on it cannot collapse onto the
        notes just played, as a raw count fed back into the music can.
        """
        if self.count < 4:
            return KEY_PROFILES[0]
        centred = self.counts - self.counts.mean()
        return KEY_PROFILES[int(np.argmax(_KEY_PROFILES_CENTRED @ centred))]


KEY_NAMES = tuple(f"{tonic}:{mode}" for mode in ("major", "minor")
                  for tonic in ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"))
KEY_PROFILES = np.asarray([key_histogram(name) for name in KEY_NAMES])  # (24, 12), rows sum to 1
_KEY_PROFILES_CENTRED = KEY_PROFILES - KEY_PROFILES.mean(axis=1, keepdims=True)
_KEY_PROFILES_CENTRED /= np.linalg.norm(_KEY_PROFILES_CENTRED, axis=1, keepdims=True)
