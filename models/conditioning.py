"""The condition vector: the one definition used by training, live play and evaluation.

The Conditional Char-RNN sees, at every step, its event embedding concatenated with a
14-d condition vector describing the music *about to be played* (windows look forward
from each event's time, as in Performance RNN, Oore et al. 2018). Because training
labels every event with the properties of the next few seconds, at play time setting
the vector steers what comes next.

Layout (``COND_DIM == 14``)::

    [0]      register_norm  = (mean NOTE_ON pitch in the next W_r s - 60) / 12
    [1]      density_norm   = log1p(NOTE_ONs per second in the next W_d s) / log1p(30)
    [2:14]   pitch-class histogram of the next W_h s, duration-weighted, sums to 1
             (uniform when nothing sounds)
    [14:14+S] the style's one-hot, when the spec names S styles (the piece's folder in training)

A spec may add one-hot **style** columns after the histogram (``ConditionSpec.styles``, e.g.
classical, jazz, easy: one per training folder), so one model plays each corpus's manner and
the mapping picks it (``[14:14+S]``, exactly one 1; ``styles == ()`` adds none).

Two versions of the windows (``SPECS``): cond-v1 (Performance RNN's: W_r = W_h = 5 s,
W_d = 3 s), under which the music glides to a new hand position over 1-2 s, and cond-v2
(W_r = W_d = 1 s, W_h = 5 s), which answers the hand within about half a second. A
checkpoint's JSON carries its spec; the live voice and evaluation read it from there.

Training calls :func:`extract_conditions` on each piece; the engine builds the live
vector with :func:`condition_vector`; evaluation measures generated music with
:func:`measure`. All three go through the same :class:`ConditionSpec`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from models.keys import OwnKey
from models.events import NOTE_OFF_OFFSET, STEPS_PER_SECOND, TIME_SHIFT_OFFSET, VELOCITY_OFFSET

EDGE_S = 1e-6  # windows are [t, t + W) with this tolerance, so float rounding never moves a note across an edge
COND_DIM = 14
REGISTER, DENSITY, HISTOGRAM = 0, 1, slice(2, 14)


@dataclass(frozen=True)
class ConditionSpec:
    """Windows, normalization and neutral defaults of the condition vector."""

    density_window_s: float = 3.0     # Performance RNN's density window
    histogram_window_s: float = 5.0   # Performance RNN's pitch-class histogram window
    register_window_s: float = 5.0    # mean NOTE_ON pitch over the same span as the histogram
    min_window_s: float = 1.0         # near a piece's end windows shrink, but never below this
    register_center: float = 60.0     # middle C maps to 0
    register_scale: float = 12.0      # one octave maps to 1
    density_ref: float = 30.0         # note-ons/s mapped to density_norm 1 (log scale)
    default_register: float = 64.6    # median over classical train events (4.25 M): the neutral register
    default_density: float = 13.7     # median over classical train events: the neutral density (note-ons/s)
    version: str = "cond-v1"          # bump when the meaning of the vector changes
    styles: tuple[str, ...] = ()      # one-hot style columns after the histogram
    default_style: str | None = None  # the style a condition gets when none is named (None: the first of styles)

    @property
    def dim(self) -> int:
        """Length of the condition vector: the music's 14, then one column per style."""
        return COND_DIM + len(self.styles)

    def style_index(self, style: str | None) -> int:
        """Column offset (past the histogram) of a style; None -> the default style."""
        if style is None:
            return self.styles.index(self.default_style) if self.default_style is not None else 0
        try:
            return self.styles.index(style)
        except ValueError:
            known = ", ".join(self.styles) if self.styles else "none: this model has no style condition"
            raise ValueError(f"unknown style {style!r}; this model knows: {known}") from None

    def style_vector(self, style: str | None) -> np.ndarray:
        """(S,) float32 one-hot of a style (empty when the spec has no styles)."""
        out = np.zeros(len(self.styles), dtype=np.float32)
        if self.styles:
            out[self.style_index(style)] = 1.0
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, stored beside checkpoints (a spec without styles writes what it always did)."""
        d = asdict(self)
        d["styles"] = list(self.styles)
        return {k: v for k, v in d.items() if not (k in ("styles", "default_style") and not v)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ConditionSpec":
        """Inverse of :meth:`to_dict` (unknown keys are an error)."""
        return cls(**{**d, "styles": tuple(d.get("styles", ()))})

    # Normalization of the two scalars, vectorized over numpy arrays.
    def norm_register(self, pitch):
        """MIDI pitch (mean) -> register_norm."""
        return (np.asarray(pitch, dtype=np.float64) - self.register_center) / self.register_scale

    def denorm_register(self, value):
        """register_norm -> MIDI pitch."""
        return np.asarray(value, dtype=np.float64) * self.register_scale + self.register_center

    def norm_density(self, notes_per_s):
        """Note-ons per second -> density_norm."""
        return np.log1p(np.maximum(np.asarray(notes_per_s, dtype=np.float64), 0.0)) / math.log1p(self.density_ref)

    def denorm_density(self, value):
        """density_norm -> note-ons per second."""
        return np.expm1(np.asarray(value, dtype=np.float64) * math.log1p(self.density_ref))


DEFAULT_SPEC = ConditionSpec()
# cond-v2: windows short enough that the music answers the hand within half a second (issue 14).
# Register and density look 1 s ahead (0.5 s at the least, near a piece's end); the key histogram
# keeps its 5 s: the key is not played by the hand, and a 5-s histogram is what the live own-key
# condition (past note-ons, see :class:`OwnKey`) resembles best (measured on 60 train pieces: mean Jensen-Shannon divergence
# between the own-key histogram and the forward histogram 0.235 bits for 1 s, 0.198 for 2 s, 0.181 for 3 s,
# 0.164 for 5 s, 0.152 for 8 s; 5 s keeps the warm-started weights' meaning of the key inputs).
COND_V2 = ConditionSpec(density_window_s=1.0, register_window_s=1.0, histogram_window_s=5.0, min_window_s=0.5,
                        default_density=15.0, version="cond-v2")  # median of the 1-s density over train events
SPECS = {spec.version: spec for spec in (DEFAULT_SPEC, COND_V2)}  # every version this build can read


def spec_for(version: str) -> ConditionSpec:
    """The named spec ('cond-v1', 'cond-v2'); raises ValueError listing the known ones."""
    if version not in SPECS:
        raise ValueError(f"unknown conditioning {version!r}; known: {', '.join(SPECS)}")
    return SPECS[version]


# --------------------------------------------------------------------------- decoding
@dataclass(frozen=True)
class _Timeline:
    """Event times and paired notes of one event sequence, as flat arrays (seconds)."""

    times: np.ndarray        # (T,) onset time of each event
    end_time: float          # time after the last event (includes a trailing shift)
    pitch: np.ndarray        # (N,) notes' pitches
    start: np.ndarray        # (N,) note starts
    end: np.ndarray          # (N,) note ends
    has_onset: np.ndarray    # (N,) False for notes already sounding when the sequence began


def _as_indices(events) -> np.ndarray:
    """Codec indices from an int array/sequence or a list of ``Event`` values."""
    if isinstance(events, np.ndarray):
        return events.astype(np.int64, copy=False)
    events = list(events)
    if events and not isinstance(events[0], (int, np.integer)):
        from models.events import CODEC  # Event objects: encode through the one codec
        return np.fromiter((CODEC.encode(e) for e in events), dtype=np.int64, count=len(events))
    return np.asarray(events, dtype=np.int64).reshape(-1)


def event_times(events) -> np.ndarray:
    """(T,) time in seconds at which each event happens (the sum of the TIME_SHIFTs before it)."""
    idx = _as_indices(events)
    is_shift = (idx >= TIME_SHIFT_OFFSET) & (idx < VELOCITY_OFFSET)
    steps = np.where(is_shift, idx - TIME_SHIFT_OFFSET + 1, 0)
    return (np.cumsum(steps) - steps) / STEPS_PER_SECOND  # integer steps first: exact, like the decoder


def _timeline(events) -> _Timeline:
    """Vectorized decode: event times, and each NOTE_ON paired with its NOTE_OFF."""
    idx = _as_indices(events)
    n = idx.size
    is_shift = (idx >= TIME_SHIFT_OFFSET) & (idx < VELOCITY_OFFSET)
    steps = np.where(is_shift, idx - TIME_SHIFT_OFFSET + 1, 0)
    cum = np.cumsum(steps)
    times = (cum - steps) / STEPS_PER_SECOND    # time at which event i happens
    end_time = float(cum[-1]) / STEPS_PER_SECOND if n else 0.0

    on_pos = np.flatnonzero(idx < NOTE_OFF_OFFSET)
    off_pos = np.flatnonzero((idx >= NOTE_OFF_OFFSET) & (idx < TIME_SHIFT_OFFSET))
    on_pitch = idx[on_pos]
    off_pitch = idx[off_pos] - NOTE_OFF_OFFSET
    # Sort keys group by pitch, then by position: each NOTE_ON's NOTE_OFF is the first
    # key after it within the same pitch.
    stride = n + 1
    on_key = on_pitch * stride + on_pos
    off_key = off_pitch * stride + off_pos     # already sorted by position; sort by pitch
    off_key_sorted = np.sort(off_key)
    on_end = np.full(on_pos.size, end_time)   # unterminated notes last to the end
    if off_key_sorted.size:
        j = np.minimum(np.searchsorted(off_key_sorted, on_key), off_key_sorted.size - 1)
        matched = off_key_sorted[j] // stride == on_pitch
        matched &= off_key_sorted[j] > on_key
        on_end[matched] = times[off_key_sorted[j[matched]] % stride]

    # NOTE_OFFs with no earlier NOTE_ON of their pitch (a slice cut a held note): the
    # note sounded from the start; it counts in the histogram but has no onset.
    on_key_sorted = np.sort(on_key)
    orphan = np.ones(off_pos.size, bool)
    if on_key_sorted.size:
        k = np.searchsorted(on_key_sorted, off_key) - 1
        orphan = (k < 0) | (on_key_sorted[np.maximum(k, 0)] // stride != off_pitch)
    t0 = float(times[0]) if n else 0.0
    return _Timeline(
        times=times,
        end_time=end_time,
        pitch=np.concatenate([on_pitch, off_pitch[orphan]]),
        start=np.concatenate([times[on_pos], np.full(int(orphan.sum()), t0)]),
        end=np.concatenate([on_end, times[off_pos[orphan]]]),
        has_onset=np.concatenate([np.ones(on_pos.size, bool), np.zeros(int(orphan.sum()), bool)]),
    )


def _notes_timeline(notes, times: np.ndarray) -> _Timeline:
    """Timeline from ``Note``s (pitch, start, end) aligned to given event times."""
    pitch = np.fromiter((n.pitch for n in notes), dtype=np.int64)
    start = np.fromiter((n.start for n in notes), dtype=np.float64, count=pitch.size)
    end = np.fromiter((n.end for n in notes), dtype=np.float64, count=pitch.size)
    times = np.asarray(times, dtype=np.float64)
    end_time = float(max(end.max(initial=0.0), times.max(initial=0.0)))
    return _Timeline(times, end_time, pitch, start, end, np.ones(pitch.size, bool))


# --------------------------------------------------------------------------- extraction
def _pitch_class_time(tl: _Timeline, x: np.ndarray) -> np.ndarray:
    """(T, 12) time each pitch class has sounded up to x: sum over its notes of clip(x - start, 0, end - start).

    All twelve classes share one sorted array: class c's times are offset by c * stride,
    so one searchsorted answers every (query, class) pair.
    """
    stride = float(max(tl.end_time, x.max(initial=0.0), tl.end.max(initial=0.0))) + 1.0
    base = np.arange(12) * stride                  # (12,)
    offset = (tl.pitch % 12) * stride              # (N,)
    q = x[:, None] + base[None, :]                 # (T, 12)
    total = np.zeros(q.shape)
    for bounds, sign in ((tl.start, 1.0), (tl.end, -1.0)):
        b = np.sort(bounds + offset)
        cum = np.concatenate([[0.0], np.cumsum(b)])
        first = np.searchsorted(b, base, side="left")          # (12,) each class's segment
        upto = np.searchsorted(b, q, side="right")              # (T, 12)
        count = upto - first[None, :]
        total += sign * (count * q - (cum[upto] - cum[first][None, :]))
    return total


def _conditions(tl: _Timeline, spec: ConditionSpec) -> np.ndarray:
    """(T, 14) forward-window conditions for every event of a timeline."""
    t = tl.times
    out = np.empty((t.size, COND_DIM), dtype=np.float64)
    remaining = tl.end_time - t

    onset = np.sort(tl.start[tl.has_onset])
    onset_pitch = tl.pitch[tl.has_onset][np.argsort(tl.start[tl.has_onset], kind="stable")]
    first = np.searchsorted(onset, t - EDGE_S, side="left")

    # (a) register: mean NOTE_ON pitch in [t, t + W); empty windows fall back to the default.
    last = np.searchsorted(onset, t + spec.register_window_s - EDGE_S, side="left")
    cpitch = np.concatenate([[0.0], np.cumsum(onset_pitch, dtype=np.float64)])
    count = last - first
    mean_pitch = np.where(count > 0, (cpitch[last] - cpitch[first]) / np.maximum(count, 1), spec.default_register)
    out[:, REGISTER] = spec.norm_register(mean_pitch)

    # (b) density: NOTE_ONs per second in [t, t + W), the window shrunk at the piece's end.
    last = np.searchsorted(onset, t + spec.density_window_s - EDGE_S, side="left")
    window = np.clip(remaining, spec.min_window_s, spec.density_window_s)
    out[:, DENSITY] = spec.norm_density((last - first) / window)

    # (c) histogram: per pitch class, sounding time overlapping [t, t + W).
    hist = _pitch_class_time(tl, t + spec.histogram_window_s) - _pitch_class_time(tl, t)  # (T, 12)
    hist = np.maximum(hist, 0.0)  # rounding of the offsets may leave -1e-12
    total = hist.sum(axis=1, keepdims=True)
    out[:, HISTOGRAM] = np.where(total > 1e-9, hist / np.maximum(total, 1e-9), 1.0 / 12)
    return out.astype(np.float32)


def extract_conditions(events_or_notes, spec: ConditionSpec = DEFAULT_SPEC, *, times=None,
                       style: str | None = None) -> np.ndarray:
    """(T, spec.dim) float32 condition for each event: codec indices (or ``Event``s), or ``Note``s plus event ``times``.

    `style`: the piece's style, for a spec with style columns (None: its default).
    """
    seq = events_or_notes if isinstance(events_or_notes, np.ndarray) else list(events_or_notes)
    if len(seq) and hasattr(seq[0], "pitch") and hasattr(seq[0], "start"):
        if times is None:
            raise ValueError("extract_conditions(notes) needs times=: the event times to align to")
        return with_style(_conditions(_notes_timeline(seq, times), spec), spec, style)
    if times is not None:
        raise ValueError("times= is only for Note input; event times come from the TIME_SHIFTs")
    return with_style(_conditions(_timeline(seq), spec), spec, style)


def with_style(music: np.ndarray, spec: ConditionSpec, style: str | None) -> np.ndarray:
    """(T, 14) music conditions -> (T, spec.dim): the style's one-hot appended to every row (unchanged without styles)."""
    if not spec.styles:
        return music
    onehot = np.broadcast_to(spec.style_vector(style), (music.shape[0], len(spec.styles)))
    return np.concatenate([music, onehot], axis=1).astype(np.float32, copy=False)


def measure(events, spec: ConditionSpec = DEFAULT_SPEC) -> dict[str, Any]:
    """Register (mean NOTE_ON pitch, NaN if none), density (NOTE_ONs/s) and duration-weighted histogram of a whole piece."""
    tl = _timeline(events)
    onset_pitch = tl.pitch[tl.has_onset]
    register = float(onset_pitch.mean()) if onset_pitch.size else math.nan
    density = float(onset_pitch.size / tl.end_time) if tl.end_time > 0 else 0.0
    hist = np.bincount(tl.pitch % 12, weights=tl.end - tl.start, minlength=12)
    total = hist.sum()
    hist = hist / total if total > 1e-9 else np.full(12, 1.0 / 12)
    return {"register": register, "density": density, "histogram": tuple(float(h) for h in hist)}


# --------------------------------------------------------------------------- live controls
def condition_vector(
    register: float | None = None,
    density: float | None = None,
    key_histogram: Sequence[float] | None = None,
    spec: ConditionSpec = DEFAULT_SPEC,
    out: np.ndarray | None = None,
    style: str | None = None,
) -> np.ndarray:
    """(spec.dim,) float32 vector from live controls (MIDI pitch, note-ons/s, 12 weights, style); None -> defaults.

    `out`: a (spec.dim,) float32 array to write into (a live voice's condition tensor, seen through numpy).
    """
    vec = np.empty(spec.dim, dtype=np.float32) if out is None else out
    if spec.styles:
        vec[COND_DIM:] = spec.style_vector(style)
    if key_histogram is None:
        weights = _UNIFORM_KEY
    else:
        h = np.asarray(key_histogram, dtype=np.float64).reshape(-1)
        if h.size != 12 or (h < 0).any() or not np.isfinite(h).all() or h.sum() <= 0:
            raise ValueError(f"key_histogram must be 12 non-negative finite weights with a positive sum, got {tuple(h)}")
        weights = h / h.sum()
    write_condition(vec, register, density, weights, spec)
    return vec


_UNIFORM_KEY = np.full(12, 1.0 / 12)  # (12,) no key asked for


def write_condition(out: np.ndarray, register: float | None, density: float | None, weights: np.ndarray,
                    spec: ConditionSpec = DEFAULT_SPEC) -> None:
    """Write the music's (14,) part of the condition into `out` (style columns untouched): scalar math, `weights` trusted (12, summing to 1); None -> corpus medians.

    A voice's own key histogram goes straight here on a gesture's path; any other goes through
    `condition_vector`, which checks it first.
    """
    pitch = spec.default_register if register is None else float(register)
    rate = spec.default_density if density is None else float(density)
    out[REGISTER] = (pitch - spec.register_center) / spec.register_scale
    out[DENSITY] = math.log1p(rate if rate > 0.0 else 0.0) / math.log1p(spec.density_ref)
    out[HISTOGRAM] = weights


# --------------------------------------------------------------------------- augmentation
def transpose_conditions(cond: np.ndarray, semitones: int, spec: ConditionSpec = DEFAULT_SPEC) -> np.ndarray:
    """Conditions of the music transposed by ``semitones``: histogram rolled, register shifted."""
    out = np.array(cond, dtype=np.float32, copy=True)
    out[..., HISTOGRAM] = np.roll(out[..., HISTOGRAM], semitones, axis=-1)
    out[..., REGISTER] += semitones / spec.register_scale
    return out


def stretch_conditions(cond: np.ndarray, factor: float, spec: ConditionSpec = DEFAULT_SPEC) -> np.ndarray:
    """Conditions of the music with time stretched by ``factor`` (durations x factor): density / factor."""
    out = np.array(cond, dtype=np.float32, copy=True)
    out[..., DENSITY] = spec.norm_density(spec.denorm_density(out[..., DENSITY]) / factor)
    return out


def own_key_histograms(events) -> np.ndarray:
    """(T, 12) the :class:`OwnKey` histogram after each event (note-ons up to and including it), from an empty count."""
    idx = _as_indices(events)
    prior = OwnKey.PRIOR / OwnKey.PRIOR.sum() * OwnKey.PRIOR_WEIGHT
    on_pos = np.flatnonzero(idx < NOTE_OFF_OFFSET)
    after = np.empty((on_pos.size + 1, 12))  # row k: counts after k note-ons
    after[0] = 0.0
    counts = np.zeros(12)
    for k, pitch in enumerate(idx[on_pos] % 12, start=1):
        counts = counts * OwnKey.DECAY
        counts[pitch] += 1.0
        after[k] = counts
    seen = np.searchsorted(on_pos, np.arange(idx.size), side="right")  # note-ons at positions <= i
    h = after[seen] + prior
    return (h / h.sum(axis=1, keepdims=True)).astype(np.float32)


def past_conditions(events, spec: ConditionSpec = DEFAULT_SPEC, style: str | None = None) -> np.ndarray:
    """(T, spec.dim) what a listener who only hears the past would set after each event.

    Register: mean NOTE_ON pitch of the events up to and including i in the last register
    window (default register when none); density: their count per second over the density
    window (shrunk at a piece's start, never below ``min_window_s``); histogram: the live
    own-key condition (:func:`own_key_histograms`).
    """
    tl = _timeline(events)
    idx = _as_indices(events)
    t = tl.times
    out = np.empty((t.size, COND_DIM), dtype=np.float64)
    on_pos = np.flatnonzero(idx < NOTE_OFF_OFFSET)
    on_t, on_pitch = t[on_pos], idx[on_pos].astype(np.float64)
    last = np.searchsorted(on_pos, np.arange(t.size), side="right")  # onsets at positions <= i
    cpitch = np.concatenate([[0.0], np.cumsum(on_pitch)])
    first = np.minimum(np.searchsorted(on_t, t - spec.register_window_s + EDGE_S, side="left"), last)
    count = last - first
    mean_pitch = np.where(count > 0, (cpitch[last] - cpitch[first]) / np.maximum(count, 1), spec.default_register)
    out[:, REGISTER] = spec.norm_register(mean_pitch)
    first = np.minimum(np.searchsorted(on_t, t - spec.density_window_s + EDGE_S, side="left"), last)
    window = np.clip(t - (t[0] if t.size else 0.0), spec.min_window_s, spec.density_window_s)
    out[:, DENSITY] = spec.norm_density((last - first) / window)
    out[:, HISTOGRAM] = own_key_histograms(idx)
    return with_style(out.astype(np.float32), spec, style)


def neutral_conditions(events, spec: ConditionSpec = DEFAULT_SPEC, style: str | None = None) -> np.ndarray:
    """(T, spec.dim) what the live voice plays with when nobody moves: default register and density, own-key histogram."""
    hist = own_key_histograms(events)
    out = np.empty((hist.shape[0], COND_DIM), dtype=np.float32)
    out[:, :HISTOGRAM.start] = condition_vector(spec=spec)[:HISTOGRAM.start]
    out[:, HISTOGRAM] = hist
    return with_style(out, spec, style)
