"""Sampling: pure, seeded, and the scale lock and pitch clamp are hard constraints."""
import numpy as np
import pytest
import torch

from models.keys import scale_pitch_classes
from models.events import CODEC, Event, EventType
from models.sampling import forbidden_pitches, sample_pitch, sample_token

NOTE_OFF_60 = CODEC.encode(Event(EventType.NOTE_OFF, 60))


def random_logits(seed=0):
    return torch.randn(388, generator=torch.Generator().manual_seed(seed)) * 3


def draws(logits, seed, n=200, **kw):
    g = torch.Generator().manual_seed(seed)
    return [sample_token(logits, g, **kw) for _ in range(n)]


def test_same_seed_same_tokens_different_seed_different_tokens():
    logits = random_logits()
    assert draws(logits, 7, temperature=1.2, top_p=0.9) == draws(logits, 7, temperature=1.2, top_p=0.9)
    assert draws(logits, 7) != draws(logits, 8)


def test_temperature_zero_is_argmax():
    logits = random_logits(3)
    assert set(draws(logits, 0, n=20, temperature=0)) == {int(torch.argmax(logits))}


def test_scale_lock_masks_every_out_of_scale_note_on():
    allowed = scale_pitch_classes("C:major")
    logits = torch.full((388,), -10.0)
    logits[:128] = torch.tensor([8.0 if p % 12 not in allowed else 2.0 for p in range(128)])  # the model wants C#, D#...
    logits[NOTE_OFF_60] = 1.0
    tokens = draws(logits, 1, n=2000, allowed_pitch_classes=allowed)
    note_ons = [t for t in tokens if t < 128]
    assert note_ons and all(p % 12 in allowed for p in note_ons)
    assert NOTE_OFF_60 in tokens  # NOTE_OFFs are never masked: held notes can always end
    assert sample_token(logits, torch.Generator(), temperature=0, allowed_pitch_classes=allowed) % 12 in allowed


def test_pitch_range_clamps_note_ons():
    logits = torch.zeros(388)
    tokens = draws(logits, 2, n=3000, pitch_range=(48, 72))
    note_ons = [t for t in tokens if t < 128]
    assert note_ons and min(note_ons) >= 48 and max(note_ons) <= 72
    assert {t for t in tokens if 128 <= t < 256}  # other event types are untouched


def test_top_p_keeps_only_the_nucleus():
    logits = torch.full((388,), -30.0)
    logits[[10, 20, 30]] = torch.log(torch.tensor([0.5, 0.3, 0.2]))
    assert set(draws(logits, 3, n=500, top_p=0.7)) == {10, 20}
    assert set(draws(logits, 3, n=100, top_p=0.01)) == {10}
    assert set(draws(logits, 3, n=500)) == {10, 20, 30}


def test_invalid_arguments():
    g = torch.Generator()
    for kw in ({"temperature": -1}, {"top_p": 0.0}, {"top_p": 1.5}, {"pitch_range": (80, 40)}, {"allowed_pitch_classes": frozenset({12})}):
        with pytest.raises(ValueError):
            sample_token(torch.zeros(388), g, **kw)


def test_sample_pitch_draws_what_sample_token_draws_restricted_to_note_ons():
    """A strike's 128-way numpy draw is `sample_token`'s distribution with every other event masked."""
    rng = np.random.default_rng(0)
    note_ons = rng.normal(size=128).astype(np.float32) * 2.5
    logits = torch.full((388,), float("-inf"))
    logits[:128] = torch.from_numpy(note_ons)
    n = 20000
    for temperature, top_p in ((1.0, 0.95), (0.7, 0.8), (1.3, 1.0)):
        ours = np.bincount([sample_pitch(note_ons, rng.random(), temperature, top_p) for _ in range(n)], minlength=128)
        theirs = np.bincount(draws(logits, 5, n=n, temperature=temperature, top_p=top_p), minlength=388)[:128]
        probs = np.exp(note_ons.astype(np.float64) / temperature)
        order = np.argsort(-probs)
        mass = np.cumsum(probs[order]) / probs.sum()
        nucleus = set(order[: int(np.searchsorted(mass, top_p)) + 1]) if top_p < 1 else set(range(128))
        assert set(np.flatnonzero(ours)) <= nucleus and set(np.flatnonzero(theirs)) <= nucleus
        assert np.abs(ours / n - theirs / n).max() < 0.015  # ~5 standard errors of the largest share


def test_sample_pitch_keeps_the_nucleus_the_forbidden_pitches_and_argmax():
    note_ons = np.full(128, -30.0, dtype=np.float32)
    note_ons[[60, 64, 67]] = np.log([0.5, 0.3, 0.2])
    assert {sample_pitch(note_ons, u, top_p=0.7) for u in np.linspace(0, 0.999999, 200)} == {60, 64}
    assert {sample_pitch(note_ons, u) for u in np.linspace(0, 0.999999, 200)} >= {60, 64, 67}
    forbidden = forbidden_pitches(scale_pitch_classes("C:major"), (62, 66))
    drawn = {sample_pitch(np.zeros(128, np.float32), u, forbidden=forbidden) for u in np.linspace(0, 0.999999, 500)}
    assert drawn == {62, 64, 65}  # D, E, F: in C major and in the range
    assert sample_pitch(note_ons, 0.3, temperature=0) == 60
    with pytest.raises(ValueError):
        sample_pitch(np.full(128, -np.inf), 0.5)
