"""Per-bar statistics of piano rolls and the Yang & Lerch (2020) overlap area.

Every feature is computed per bar (a (16, 128) uint8 roll, see ``models.roll``), so real and
generated music are compared bar by bar:

- empty: the bar has no sounding note;
- upc: used pitch classes (MuseGAN, Dong et al. 2018);
- qualified_note_rate: notes lasting >= 2 steps / all notes (MuseGAN's "QN", a 32nd-grid
  version there; one sixteenth here is the shortest note, so >= 2 steps = an eighth or longer);
- polyphony: mean number of keys down over the steps where at least one is down;
- scale_consistency: share of onsets inside the best-fitting major/natural-minor scale
  (Mogren 2016), i.e. the best of the 12 diatonic sets;
- pitch_range: highest minus lowest sounding pitch.

Overlap area: for each feature, the intra-set distances of the real bars and the inter-set
distances between real and generated bars are smoothed with a Gaussian KDE; the area under the
minimum of the two densities is 1 when the generated bars are indistinguishable.
"""

from __future__ import annotations

import numpy as np

from models.roll import OFF, ONSET

FEATURES = ("upc", "qualified_note_rate", "polyphony", "scale_consistency", "pitch_range")
_DIATONIC = np.array([1, 0, 1, 0, 1, 1, 0, 1, 0, 1, 0, 1], dtype=bool)  # C major
SCALES = np.stack([np.roll(_DIATONIC, k) for k in range(12)])  # (12, 12); minor = relative major


def bar_features(bars: np.ndarray) -> dict[str, np.ndarray]:
    """bars (N, 16, 128) uint8 -> {feature: (N,) float}, plus "empty" (N,) bool.

    Features of empty bars are NaN (they are counted by the empty-bar rate instead)."""
    bars = np.asarray(bars)
    on = bars != OFF  # (N, T, P)
    onset = bars == ONSET
    n = bars.shape[0]
    empty = ~on.any(axis=(1, 2))
    pc_on = np.zeros((n, 12), dtype=bool)
    pc_onsets = np.zeros((n, 12))
    per_pitch_on = on.any(axis=1)  # (N, P)
    per_pitch_onsets = onset.sum(axis=1)  # (N, P)
    for pc in range(12):
        pc_on[:, pc] = per_pitch_on[:, pc::12].any(axis=1)
        pc_onsets[:, pc] = per_pitch_onsets[:, pc::12].sum(axis=1)

    # note lengths: a note starts at every ONSET or at a HELD step after OFF / at the bar start
    starts = on & ~np.concatenate([np.zeros_like(on[:, :1]), on[:, :-1]], axis=1) | onset
    n_notes = starts.sum(axis=(1, 2))
    one_step = starts & ~_continues(on, onset)  # notes that end after their first step
    qualified = (n_notes - one_step.sum(axis=(1, 2))) / np.maximum(n_notes, 1)

    active = on.any(axis=2)  # (N, T)
    poly = on.sum(axis=2).sum(axis=1) / np.maximum(active.sum(axis=1), 1)

    total_onsets = pc_onsets.sum(axis=1)
    scale_fit = (pc_onsets @ SCALES.T.astype(float)).max(axis=1) / np.maximum(total_onsets, 1)

    pitches = np.arange(bars.shape[2])
    hi = np.where(per_pitch_on, pitches, -1).max(axis=1)
    lo = np.where(per_pitch_on, pitches, 999).min(axis=1)
    feats = {
        "upc": pc_on.sum(axis=1).astype(float),
        "qualified_note_rate": qualified.astype(float),
        "polyphony": poly.astype(float),
        "scale_consistency": np.where(total_onsets > 0, scale_fit, np.nan),
        "pitch_range": (hi - lo).astype(float),
    }
    for k in feats:
        feats[k] = np.where(empty, np.nan, feats[k])
    feats["empty"] = empty
    return feats


def _continues(on: np.ndarray, onset: np.ndarray) -> np.ndarray:
    """True where the note sounding at step t continues into step t+1 (held, not re-struck)."""
    nxt_on = np.concatenate([on[:, 1:], np.zeros_like(on[:, :1])], axis=1)
    nxt_onset = np.concatenate([onset[:, 1:], np.zeros_like(onset[:, :1])], axis=1)
    return on & nxt_on & ~nxt_onset


def summary(bars: np.ndarray) -> dict[str, float]:
    """Mean and std of each feature over non-empty bars, and the empty-bar rate."""
    f = bar_features(bars)
    out = {"empty_bar_rate": float(f["empty"].mean()) if len(bars) else float("nan")}
    for k in FEATURES:
        v = f[k][~np.isnan(f[k])]
        out[k] = float(v.mean()) if len(v) else float("nan")
        out[f"{k}_std"] = float(v.std()) if len(v) else float("nan")
    return out


def _kde(samples: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Gaussian KDE with Silverman's bandwidth, evaluated on ``grid``."""
    samples = samples[np.isfinite(samples)]
    if len(samples) < 2:
        return np.zeros_like(grid)
    bw = 1.06 * max(samples.std(), 1e-3) * len(samples) ** (-1 / 5)
    z = (grid[:, None] - samples[None, :]) / bw
    return np.exp(-0.5 * z**2).sum(axis=1) / (len(samples) * bw * np.sqrt(2 * np.pi))


def overlap_area(real: np.ndarray, generated: np.ndarray, rng: np.random.Generator, max_pairs: int = 5000) -> float:
    """Yang & Lerch overlap of intra-real vs inter(real, generated) absolute-distance KDEs."""
    real = real[np.isfinite(real)]
    generated = generated[np.isfinite(generated)]
    if len(real) < 2 or len(generated) < 1:
        return float("nan")
    i, j = rng.integers(0, len(real), max_pairs), rng.integers(0, len(real), max_pairs)
    keep = i != j
    intra = np.abs(real[i[keep]] - real[j[keep]])
    inter = np.abs(real[rng.integers(0, len(real), max_pairs)] - generated[rng.integers(0, len(generated), max_pairs)])
    hi = max(intra.max(), inter.max()) * 1.1 + 1e-6
    grid = np.linspace(0, hi, 512)
    a, b = _kde(intra, grid), _kde(inter, grid)
    return float(np.trapezoid(np.minimum(a, b), grid))


def overlap_areas(real_bars: np.ndarray, gen_bars: np.ndarray, seed: int = 0) -> dict[str, float]:
    """Overlap area per feature (non-empty bars)."""
    rng = np.random.default_rng(seed)
    fr, fg = bar_features(real_bars), bar_features(gen_bars)
    return {k: overlap_area(fr[k], fg[k], rng) for k in FEATURES}
