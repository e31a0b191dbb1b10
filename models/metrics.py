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
