"""Pure sampling of the next event from logits, with an explicit RNG.

``sample_token`` knows nothing about models or I/O (nanochat's engine does the same):
it takes logits over the 388 events and a ``torch.Generator`` and returns an index, so
the same seed always gives the same music. Two hard constraints act on NOTE_ONs only
(NOTE_OFFs stay free, so held notes can always be released):

- a scale lock: NOTE_ONs whose pitch class is outside ``allowed_pitch_classes`` get -inf;
- a pitch-range clamp: NOTE_ONs outside ``pitch_range`` (inclusive MIDI pitches) get -inf.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from models.events import NOTE_OFF_OFFSET, NOTE_ON_OFFSET


@lru_cache(maxsize=64)
def forbidden_pitches(allowed_pitch_classes: frozenset[int] | None, pitch_range: tuple[int, int] | None) -> np.ndarray | None:
    """(128,) bool mask of the pitches the constraints forbid (read-only), or None when nothing is forbidden."""
    if allowed_pitch_classes is None and pitch_range is None:
        return None
    pitches = np.arange(NOTE_OFF_OFFSET - NOTE_ON_OFFSET)  # (128,)
    bad = np.zeros(128, dtype=bool)
    if allowed_pitch_classes is not None:
        if not all(isinstance(pc, int) and 0 <= pc < 12 for pc in allowed_pitch_classes):
            raise ValueError(f"allowed_pitch_classes must be integers 0..11, got {sorted(allowed_pitch_classes)}")
        allowed = np.zeros(12, dtype=bool)
        allowed[list(allowed_pitch_classes)] = True
        bad |= ~allowed[pitches % 12]
    if pitch_range is not None:
        low, high = pitch_range
        if not 0 <= low <= high <= 127:
            raise ValueError(f"pitch_range must be (low, high) with 0 <= low <= high <= 127, got {pitch_range}")
        bad |= (pitches < low) | (pitches > high)
    bad.flags.writeable = False  # shared through the cache
    return bad


@lru_cache(maxsize=64)
def forbidden_note_ons(vocab_size: int, allowed_pitch_classes: frozenset[int] | None, pitch_range: tuple[int, int] | None) -> torch.Tensor | None:
    """(V,) bool mask of the NOTE_ON events the constraints forbid, or None when nothing is forbidden."""
    bad = forbidden_pitches(allowed_pitch_classes, pitch_range)
    if bad is None:
        return None
    mask = torch.zeros(vocab_size, dtype=torch.bool)
    mask[NOTE_ON_OFFSET:NOTE_OFF_OFFSET] = torch.from_numpy(bad.copy())
    return mask


def sample_token(
    logits: torch.Tensor,
    generator: torch.Generator,
    temperature: float = 1.0,
    top_p: float = 1.0,
    allowed_pitch_classes: frozenset[int] | None = None,
    pitch_range: tuple[int, int] | None = None,
) -> int:
    """Draw one event index from logits (V,); temperature 0 is argmax; deterministic for a given generator state."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    logits = logits.detach().reshape(-1).float()  # (V,)
    mask = forbidden_note_ons(logits.numel(), None if allowed_pitch_classes is None else frozenset(allowed_pitch_classes),
                              None if pitch_range is None else (int(pitch_range[0]), int(pitch_range[1])))
    if mask is not None:
        logits = logits.masked_fill(mask.to(logits.device), float("-inf"))
    if temperature == 0:
        return int(torch.argmax(logits))
    probs = torch.softmax(logits / temperature, dim=-1)  # (V,)
    if top_p < 1.0:
        # Nucleus: keep the most likely events until their mass reaches top_p (always at least one).
        sorted_probs, order = torch.sort(probs, descending=True)
        outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= top_p  # mass before this one already enough
        sorted_probs = sorted_probs.masked_fill(outside, 0.0)
        choice = torch.multinomial(sorted_probs.cpu(), 1, generator=generator)
        return int(order[choice.to(order.device)])
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))


def sample_pitch(
    note_on_logits: np.ndarray,
    uniform: float,
    temperature: float = 1.0,
    top_p: float = 1.0,
    forbidden: np.ndarray | None = None,
) -> int:
    """Draw a pitch from NOTE_ON logits (128,) with one uniform in [0, 1): `sample_token`'s rule restricted to note-ons.

    A gesture's strike needs only which pitch: a 128-way draw in numpy costs a tenth of a 388-way
    torch sample on a cold thread. Same temperature and nucleus (top-p) as `sample_token`.
    """
    scores = np.asarray(note_on_logits, dtype=np.float64)  # (128,), a copy when it was float32
    if forbidden is not None:
        scores = np.where(forbidden, -np.inf, scores)
    if temperature == 0:
        return int(np.argmax(scores))
    top = scores.max()
    if not np.isfinite(top):
        raise ValueError("no pitch is allowed: every note-on logit is -inf")
    probs = np.exp((scores - top) / temperature)  # (128,) unnormalized
    order = np.argsort(-probs, kind="stable")
    mass = np.cumsum(probs[order])  # (128,)
    if top_p < 1.0:  # nucleus: keep the likeliest until the mass before one already reaches top_p
        kept = int(np.count_nonzero(mass - probs[order] < top_p * mass[-1]))
    else:
        kept = int(np.count_nonzero(probs))
    choice = int(np.searchsorted(mass[:kept], uniform * mass[kept - 1], side="right"))
    return int(order[min(choice, kept - 1)])
