"""Small, dependency-free statistics used by evaluation: ranks, divergences, verbatim copying."""

from __future__ import annotations

import numpy as np

_HASH_BASE = np.uint64(1_000_003)


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); NaN when either side is constant."""
    rx, ry = _ranks(np.asarray(x, dtype=np.float64)), _ranks(np.asarray(y, dtype=np.float64))
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    for value in np.unique(values):  # average the ranks of ties
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def jensen_shannon(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (0 = identical, 1 = disjoint) of two histograms."""
    p = np.asarray(p, dtype=np.float64) / np.sum(p)
    q = np.asarray(q, dtype=np.float64) / np.sum(q)
    m = (p + q) / 2

    def kl(a: np.ndarray, b: np.ndarray) -> float:
        mask = a > 0
        return float(np.sum(a[mask] * np.log2(a[mask] / b[mask])))

    return (kl(p, m) + kl(q, m)) / 2


_INVERSE_BASE = np.uint64(pow(1_000_003, -1, 2**64))  # the base is odd, so it is invertible mod 2**64


class _PrefixHash:
    """Polynomial hashes of any window of a token array in O(1) each (uint64, wrapping).

    H[i] = sum_{j<i} (x_j + 1) B^j, so window (i, k) hashes to (H[i+k] - H[i]) * B^-i,
    which is the same value wherever the same tokens occur.
    """

    def __init__(self, tokens: np.ndarray):
        n = len(tokens)
        with np.errstate(over="ignore"):
            powers = np.concatenate([[np.uint64(1)], np.cumprod(np.full(max(n - 1, 0), _HASH_BASE, dtype=np.uint64))])[:n]
            self._prefix = np.concatenate([[np.uint64(0)], np.cumsum((tokens.astype(np.uint64) + np.uint64(1)) * powers)])
            self._inverse = np.concatenate([[np.uint64(1)], np.cumprod(np.full(max(n - 1, 0), _INVERSE_BASE, dtype=np.uint64))])[:n]
        self.size = n

    def windows(self, starts: np.ndarray, k: int) -> np.ndarray:
        """Hashes of tokens[s : s + k] for each start s (all starts must leave room for k)."""
        with np.errstate(over="ignore"):
            return (self._prefix[starts + k] - self._prefix[starts]) * self._inverse[starts]


# Lengths at which copying is tested: exact up to 64 events, then coarser (a lower bound there).
COPY_LENGTHS = tuple(range(1, 65)) + tuple(range(72, 257, 8)) + tuple(range(288, 1025, 32))


def longest_copies(sequences: list[np.ndarray], reference: list[np.ndarray], separator: int = 10_000) -> list[int]:
    """For each sequence, the longest event run found verbatim in `reference` (on the COPY_LENGTHS grid).

    Sharing is monotone (a shared run's sub-runs are shared), so lengths are tried in
    increasing order; a sequence drops out at its first miss, and only reference positions
    that matched at one length are hashed at the next.
    """
    joined = []
    for piece in reference:  # the separator makes windows across pieces unmatched
        joined += [np.asarray(piece, dtype=np.int64), np.array([separator], dtype=np.int64)]
    reference_hash = _PrefixHash(np.concatenate(joined) if joined else np.empty(0, dtype=np.int64))
    sequence_hashes = [_PrefixHash(np.asarray(s, dtype=np.int64)) for s in sequences]
    candidates = np.arange(reference_hash.size, dtype=np.int64)
    answers = [0] * len(sequences)
    active = list(range(len(sequences)))
    for k in COPY_LENGTHS:
        active = [i for i in active if sequence_hashes[i].size >= k]
        candidates = candidates[candidates + k <= reference_hash.size]
        if not active or candidates.size == 0:
            break
        wanted = {i: sequence_hashes[i].windows(np.arange(sequence_hashes[i].size - k + 1), k) for i in active}
        pool = np.unique(np.concatenate(list(wanted.values())))
        found_mask = np.isin(reference_hash.windows(candidates, k), pool)
        found = np.unique(reference_hash.windows(candidates[found_mask], k))
        candidates = candidates[found_mask]
        still = [i for i in active if np.isin(wanted[i], found).any()]
        for i in still:
            answers[i] = k
        active = still
    return answers


# ----------------------------------------------------------------------------- music statistics of a note list
# Pure numpy, shared with `instrument bench music` (instrument/bench/music_stats.py re-exports them), so the
# Char-RNN's free-running samples (models/charrnn/freerun.py) and the engine's renders are measured alike.
# A note list is an (N, 4) float array with columns pitch, velocity, start_s, end_s, sorted by start then pitch.
# Key clarity follows Krumhansl & Kessler (1982) / Krumhansl-Schmuckler key finding: the correlation of a
# duration-weighted pitch-class histogram with the 24 rotated major/minor key profiles.

PITCH, VELOCITY, START, END = range(4)

# Krumhansl-Kessler probe-tone profiles, tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
KEY_PROFILES = np.stack([np.roll(p, k) for p in (KK_MAJOR, KK_MINOR) for k in range(12)])  # (24, 12)

CAP_S = 3.99  # the engine ends a note after 4 s; 10 ms of slack for the codec's grid
CHORD_S = 0.03  # onsets within 30 ms of a group's first onset are one chord


def capped_fraction(notes: np.ndarray, cap: float = CAP_S) -> float:
    """Fraction of notes lasting `cap` seconds or more (they ran into the engine's 4-s cap)."""
    return float(np.mean(notes[:, END] - notes[:, START] >= cap)) if len(notes) else 0.0


def chord_groups(notes: np.ndarray, window: float = CHORD_S) -> np.ndarray:
    """Group number of each note: a group is every onset within `window` s of the group's first."""
    groups = np.zeros(len(notes), dtype=np.int64)
    first, group = -np.inf, -1
    for i, start in enumerate(notes[:, START]):  # anchored at the first onset, so groups never chain
        if start - first > window + 1e-9:
            first, group = start, group + 1
        groups[i] = group
    return groups


def melody(notes: np.ndarray) -> np.ndarray:
    """The melody-order pitches: the highest note of each onset group (the skyline)."""
    if not len(notes):
        return np.zeros(0)
    groups = chord_groups(notes)
    top = np.full(int(groups.max()) + 1, -1.0)
    np.maximum.at(top, groups, notes[:, PITCH])
    return top


def pattern_repetition(notes: np.ndarray, length: int = 8, exclude_unison: bool = False) -> float:
    """Fraction of `length`-note melody windows whose interval pattern occurred earlier in the piece.

    `exclude_unison` leaves out windows that strike one pitch `length` times (all intervals 0):
    a generator stuck on one key repeats that "pattern" without playing a motif.
    """
    intervals = np.diff(melody(notes)).astype(np.int64)
    k = length - 1  # an 8-note pattern is 7 intervals, so it is the same shape in any transposition
    if len(intervals) < k:
        return 0.0
    seen: set[bytes] = set()
    repeats = windows = 0
    for i in range(len(intervals) - k + 1):
        window = intervals[i:i + k]
        if exclude_unison and not window.any():
            continue
        key = window.tobytes()
        repeats += key in seen
        windows += 1
        seen.add(key)
    return repeats / windows if windows else 0.0


def key_clarity(notes: np.ndarray, window_s: float = 10.0, shuffle_seed: int | None = None) -> float:
    """Mean over `window_s` windows of the best Pearson r with the 24 key profiles (0 if nothing sounds).

    With `shuffle_seed`, each window's histogram is first put through a random pitch-class
    permutation: the chance level a piece's clarity should beat.
    """
    if not len(notes):
        return 0.0
    rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
    profiles = KEY_PROFILES - KEY_PROFILES.mean(axis=1, keepdims=True)
    profiles /= np.linalg.norm(profiles, axis=1, keepdims=True)
    pcs = notes[:, PITCH].astype(np.int64) % 12
    scores = []
    for k in range(int(np.ceil(notes[:, END].max() / window_s))):
        lo, hi = k * window_s, (k + 1) * window_s
        overlap = np.clip(np.minimum(notes[:, END], hi) - np.maximum(notes[:, START], lo), 0.0, None)
        hist = np.bincount(pcs, weights=overlap, minlength=12)
        if rng is not None:
            hist = hist[rng.permutation(12)]
        centred = hist - hist.mean()
        norm = np.linalg.norm(centred)
        if norm == 0.0:  # silent (or perfectly flat) window: no key to find
            continue
        scores.append(float((profiles @ (centred / norm)).max()))
    return float(np.mean(scores)) if scores else 0.0
