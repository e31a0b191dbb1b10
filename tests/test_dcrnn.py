"""DCRNN: streaming generator, critic, WGAN-GP training step, binarization, form helpers."""

from __future__ import annotations

import argparse
import json

import mido
import pytest
import torch

import models.dcrnn.train as train_dcrnn
from models.dcrnn.model import (
    DCRNNConfig,
    Generator,
    binarize,
    emg_to_slots,
    form_schedule,
    generate_bars,
    hold,
    interpolate,
    load_generator,
    roll_channels,
    roll_hard,
    roll_probs,
    sample_z,
    save_generator,
    z_with_slots,
)
from models.dcrnn.critic import Critic, gradient_penalty
from models.roll import HELD, OFF, ONSET

TINY = dict(rnn_a_hidden=16, rnn_b_hidden=16, level_dim=8, octave_channels=8, critic_channels=8)


@pytest.fixture
def gen() -> Generator:
    torch.manual_seed(0)
    g = Generator(DCRNNConfig(**TINY)).eval()
    with torch.no_grad():  # untrained nets are nearly silent; open them up so rolls can differ
        g.head.pitch_bias.zero_()
    return g


def test_config_names_slots_and_round_trips_json():
    cfg = DCRNNConfig(**TINY)
    assert cfg.slot_names[:8] == tuple(f"emg{i}" for i in range(8)) and len(cfg.slot_names) == 32
    assert cfg.repeats == (4, 2, 1)
    assert DCRNNConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError):
        DCRNNConfig(repeats=(3, 2, 1))


def test_generate_chunk_shapes(gen):
    z = sample_z(3, gen.config, torch.Generator().manual_seed(1))
    logits, state = gen.generate_chunk(z, torch.full((3, 12), 1 / 12), gen.init_state(3))
    assert logits.shape == (3, 16, 128, 2)
    assert state.a.shape == (1, 3, 16) and state.b.shape == (1, 3, 16)
    logits_uncond, _ = gen.generate_chunk(z, None, gen.init_state(3))
    assert logits_uncond.shape == (3, 16, 128, 2)


def test_carried_state_connects_bars_and_restores_exactly(gen):
    z = sample_z(1, gen.config, torch.Generator().manual_seed(2))
    fresh, _ = gen.generate_chunk(z, None, gen.init_state(1))
    _, after_one = gen.generate_chunk(z, None, gen.init_state(1))
    second, _ = gen.generate_chunk(z, None, after_one)
    assert not torch.allclose(fresh, second)  # the second bar knows the first
    again, _ = gen.generate_chunk(z, None, after_one)  # a snapshot replays identically
    assert torch.equal(second, again)


def test_forward_equals_streaming(gen):
    zs = sample_z(4, gen.config, torch.Generator().manual_seed(3)).view(2, 2, -1)
    whole = gen(zs, None)
    state = gen.init_state(2)
    first, state = gen.generate_chunk(zs[:, 0], None, state)
    second, _ = gen.generate_chunk(zs[:, 1], None, state)
    assert torch.allclose(whole, torch.cat([first, second], dim=1))


def test_emg_slot_change_moves_the_roll(gen):
    z = sample_z(1, gen.config, torch.Generator().manual_seed(4))
    moved = z_with_slots(z, emg_to_slots([1.0] * 8))
    a, _ = gen.generate_chunk(z, None, gen.init_state(1))
    b, _ = gen.generate_chunk(moved, None, gen.init_state(1))
    assert (binarize(a) != binarize(b)).any()
    assert torch.equal(moved[0, 8:], z[0, 8:])  # style slots untouched


def test_emg_slots_map_calibrated_values_to_prior_range():
    assert torch.allclose(emg_to_slots([0.0, 0.5, 1.0, 2.0]), torch.tensor([-1.0, 0.0, 1.0, 1.0]))
    z = sample_z(1000, DCRNNConfig(**TINY), torch.Generator().manual_seed(0))
    assert z[:, :8].abs().max() <= 1.0 and z[:, 8:].std() > 0.8


def test_binarize_threshold_restrike_and_bar_line():
    logits = torch.full((1, 3, 128, 2), -10.0)
    logits[0, :, 60, 0] = 10.0  # C4 sounds all three steps
    logits[0, 2, 60, 1] = 10.0  # ... and is re-struck at step 2
    roll = binarize(logits)[0]
    assert list(roll[:, 60]) == [ONSET, HELD, ONSET]
    prev = torch.zeros(1, 128, dtype=torch.uint8)
    prev[0, 60] = HELD  # sounding at the end of the previous bar: continues across the bar line
    assert binarize(logits, prev=prev)[0, 0, 60] == HELD
    assert (roll[:, 61] == OFF).all()


def test_critic_sees_exactly_the_binarized_roll_with_gradients():
    logits = (torch.randn(2, 16, 128, 2, generator=torch.Generator().manual_seed(0)) * 3).requires_grad_(True)
    hard = roll_hard(logits)
    assert torch.equal(hard.detach(), roll_channels(binarize(logits)))
    hard.sum().backward()
    assert logits.grad.abs().sum() > 0  # straight-through: the generator still learns


def test_bernoulli_binarization_is_deterministic_for_a_seed():
    logits = torch.randn(2, 16, 128, 2, generator=torch.Generator().manual_seed(0))
    a = binarize(logits, generator=torch.Generator().manual_seed(7))
    b = binarize(logits, generator=torch.Generator().manual_seed(7))
    c = binarize(logits, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_form_helpers():
    a, b, c = torch.zeros(4), torch.ones(4), torch.full((4,), 2.0)
    assert torch.equal(hold(b, 3), torch.ones(3, 4))
    path = interpolate(a, b, 5)
    assert torch.equal(path[0], a) and torch.equal(path[-1], b) and torch.allclose(path[2], torch.full((4,), 0.5))
    song = form_schedule({"A": a, "B": b, "C": c}, "ABCAB", bars_per_section=2)
    assert song.shape == (10, 4)
    assert song[:, 0].tolist() == [0, 0, 1, 1, 2, 2, 0, 0, 1, 1]
    with pytest.raises(ValueError, match="D"):
        form_schedule({"A": a}, "AD")


def test_generate_bars_streams_a_schedule(gen):
    zs = form_schedule({"A": sample_z(1, gen.config)[0], "B": sample_z(1, gen.config)[0]}, "AB", 2)
    roll = generate_bars(gen, zs, generator=torch.Generator().manual_seed(0))
    assert roll.shape == (64, 128) and roll.dtype == torch.uint8


def test_wgan_gp_step_runs_with_finite_penalty():
    cfg = DCRNNConfig(**TINY)
    g, d = Generator(cfg), Critic(cfg)
    real = roll_channels(torch.randint(0, 3, (4, 32, 128), dtype=torch.uint8))
    cond = torch.softmax(torch.randn(4, 12), dim=1)
    fake = roll_probs(g(sample_z(8, cfg).view(4, 2, -1), cond))
    assert fake.shape == real.shape == (4, 2, 32, 128)
    score, q = d(real, cond)
    assert score.shape == (4,) and q.shape == (4, 2, 8)
    gp = gradient_penalty(d, real, fake.detach(), cond)
    loss = d(fake.detach(), cond)[0].mean() - score.mean() + 10 * gp
    loss.backward()
    assert torch.isfinite(gp) and all(torch.isfinite(p.grad).all() for p in d.parameters() if p.grad is not None)


def _tiny_corpus(folder):
    """Three sequenced MIDI files: 8 bars of C-major arpeggios on a sixteenth grid."""
    folder.mkdir()
    for k in range(3):
        mid = mido.MidiFile(ticks_per_beat=96)
        track = mido.MidiTrack()
        mid.tracks.append(track)
        for i in range(64):
            pitch = 60 + [0, 4, 7, 12][(i + k) % 4]
            track.append(mido.Message("note_on", note=pitch, velocity=80, time=0))
            track.append(mido.Message("note_off", note=pitch, velocity=0, time=48))
        mid.save(folder / f"piece{k}.mid")
    return folder


def test_training_draws_fresh_noise_every_step_and_resumes(tmp_path, monkeypatch):
    data = _tiny_corpus(tmp_path / "midi")
    drawn = []
    real_sample_z = train_dcrnn.sample_z

    def recording_sample_z(batch, cfg, generator=None):
        z = real_sample_z(batch, cfg, generator)
        drawn.append(z.clone())
        return z

    monkeypatch.setattr(train_dcrnn, "sample_z", recording_sample_z)
    parser = argparse.ArgumentParser()
    train_dcrnn.configure_dcrnn(parser)
    argv = ["--data", str(data), "--out", str(tmp_path / "out"), "--tiny", "--batch", "4", "--n-critic", "1",
            "--max-steps", "2", "--sample-every", "1000", "--min-grid-fit", "0.5"]
    monkeypatch.setenv("DEEP_SYMPHONY_CACHE", str(tmp_path / "cache" / "corpus"))
    assert train_dcrnn.run_dcrnn(parser.parse_args(argv)) == 0
    assert len(drawn) >= 4
    assert all(not torch.equal(a, b) for i, a in enumerate(drawn) for b in drawn[i + 1:])
    out = tmp_path / "out"
    assert (out / "dcrnn.pt").exists() and (out / "losses.png").exists()
    assert load_generator(out / "dcrnn.pt").config.rnn_b_hidden == 16

    argv[argv.index("--max-steps") + 1] = "3"
    assert train_dcrnn.run_dcrnn(parser.parse_args(argv + ["--resume"])) == 0
    assert json.loads((out / "dcrnn.json").read_text())["meta"]["steps"] == 3


def test_save_and_load_generator_round_trip(tmp_path, gen):
    save_generator(tmp_path / "g.pt", gen, {"note": "x"})
    loaded = load_generator(tmp_path / "g.pt")
    z = sample_z(1, gen.config)
    assert torch.equal(gen.generate_chunk(z, None, gen.init_state(1))[0], loaded.generate_chunk(z, None, loaded.init_state(1))[0])


def test_shipped_generator_plays_notes_and_emg_slots_steer_more():
    from models.dcrnn.eval import slot_responsiveness

    g = load_generator()
    from models.checkpoint import shipped_checkpoint

    assert shipped_checkpoint('dcrnn').stat().st_size < 25 * 2**20
    roll = generate_bars(g, hold(sample_z(1, g.config, torch.Generator().manual_seed(0))[0], 4))
    assert (roll == ONSET).sum() > 0
    emg = slot_responsiveness(g, list(range(8)), n_base=8)
    other = slot_responsiveness(g, list(range(8, 16)), n_base=8)
    assert emg > other
