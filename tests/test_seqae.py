"""The SeqAE: random walk, theme reset, the autoencoder's losses and decoding, checkpoints, train/eval, and its voice."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.events import CODEC, NOTE_ON_OFFSET, Event, EventType, Note, notes_to_midi
from models.seqae.model import SeqAE, SeqAEConfig, ThemeReset, binarize, bit_flips, decode, seqae_losses, straight_through_sign, walk_step

TINY = SeqAEConfig(seq_len=8, code_dim=16, embed_dim=8, hidden_size=16)
# File names whose crc32 split is train / valid / test (models.data.split_of).
SPLITS = {"train": ["p00", "p01", "p02", "p03"], "valid": ["p04", "p05"], "test": ["p19", "p26"]}


def tiny_model(seed: int = 0) -> SeqAE:
    torch.manual_seed(seed)
    return SeqAE(TINY).eval()


def write_corpus(root: Path, notes_per_piece: int = 160) -> Path:
    """A small MIDI corpus with pieces in all three splits: a melody over chords, top voice louder."""
    root.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(sum(SPLITS.values(), [])):
        rng = np.random.default_rng(index)
        notes, t = [], 0.0
        for _ in range(notes_per_piece // 4):
            root_pitch = int(rng.integers(48, 60))
            chord = [root_pitch, root_pitch + 4, root_pitch + 7]
            for p in chord:
                notes.append(Note(p, t, t + 0.45, int(rng.integers(40, 60))))
            notes.append(Note(int(rng.integers(67, 80)), t + 0.25, t + 0.5, int(rng.integers(70, 95))))
            t += 0.5
        notes_to_midi(sorted(notes, key=lambda n: (n.start, n.pitch))).save(root / f"{name}.mid")
    return root


# ----------------------------------------------------------------------------- the walk
def test_walk_step_flips_floor_or_ceil_of_k_bits_with_mean_k():
    rng = np.random.default_rng(0)
    code = np.ones(16)
    counts = [int((walk_step(code, rng, 2.5, 0.0) != code).sum()) for _ in range(2000)]
    assert set(counts) == {2, 3}
    assert abs(np.mean(counts) - 2.5) < 0.1


def test_walk_step_is_pure_and_deterministic_per_rng():
    code = np.where(np.arange(16) % 2 == 0, 1.0, -1.0)
    before = code.copy()
    a = walk_step(code, np.random.default_rng(7), 2.0, 0.1)
    b = walk_step(code, np.random.default_rng(7), 2.0, 0.1)
    assert np.array_equal(a, b) and np.array_equal(code, before)
    assert set(np.unique(a)) <= {-1.0, 1.0}


def test_walk_step_jumps_and_zero_flips_hold():
    rng = np.random.default_rng(1)
    code = np.ones(16)
    assert np.array_equal(walk_step(code, rng, 0.0, 0.0), code)
    jumps = [walk_step(code, rng, 0.0, 1.0) for _ in range(20)]
    assert any(not np.array_equal(j, code) for j in jumps)
    assert all(set(np.unique(j)) <= {-1.0, 1.0} for j in jumps)


def test_theme_reset_returns_only_at_multiples_of_every_with_probability_p():
    rng = np.random.default_rng(0)
    theme = ThemeReset(every=4, p=1.0).capture(np.array([0.3] * 8 + [-0.2] * 8))
    assert theme.theme == tuple([1.0] * 8 + [-1.0] * 8)  # captured codes are binarized
    other = -np.ones(16)
    assert np.array_equal(theme.apply(other, 8, rng), np.asarray(theme.theme))
    assert np.array_equal(theme.apply(other, 9, rng), other)
    never = ThemeReset(theme=theme.theme, every=4, p=0.0)
    assert all(np.array_equal(never.apply(other, s, rng), other) for s in range(0, 40, 4))
    assert np.array_equal(ThemeReset().apply(other, 0, rng), other)  # no theme stored


def test_bit_flips_counts_differing_signs():
    codes = np.array([[1, 1, -1, -1], [1, -1, -1, -1], [-0.2, 0.5, 0.1, -0.9]], dtype=float)
    assert bit_flips(codes) == pytest.approx((1 + 3) / 2)
    assert np.isnan(bit_flips(codes[:1]))


# ----------------------------------------------------------------------------- the model
def test_forward_shapes_and_codes_in_range():
    model = tiny_model()
    tokens = torch.randint(0, CODEC.size, (3, 4, 8))
    logits_real, logits_bin, code = model(tokens)
    assert logits_real.shape == logits_bin.shape == (3, 4, 8, CODEC.size)
    assert code.shape == (3, 4, 16) and code.abs().max() < 1


def test_straight_through_sign_passes_gradient():
    x = torch.tensor([0.3, -0.2, 0.0], requires_grad=True)
    y = straight_through_sign(x)
    assert torch.equal(y.detach(), torch.tensor([1.0, -1.0, 1.0]))
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(3))


def test_continuity_loss_is_zero_for_identical_saturated_neighbours_and_counts_flips():
    model = tiny_model()
    tokens = torch.randint(0, CODEC.size, (2, 3, 8))
    _, parts = seqae_losses(model, tokens, quantization=0.1, continuity=1.0)
    assert set(parts) == {"rec_real", "rec_bin", "quant", "cont", "flips"}
    assert 0 <= parts["flips"] <= 16
    same = tokens[:, :1].expand(-1, 3, -1).contiguous()  # three identical neighbours: identical codes
    _, parts_same = seqae_losses(model, same, 0.1, 1.0)
    assert parts_same["flips"] == 0


def test_training_steps_lower_the_reconstruction_loss():
    model = tiny_model().train()
    tokens = torch.randint(0, CODEC.size, (4, 2, 8))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss, parts = seqae_losses(model, tokens, 0.1, 0.1)
        first = parts["rec_real"] if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert parts["rec_real"] < first * 0.7


def test_decode_greedy_is_deterministic_and_sampling_follows_the_generator():
    model = tiny_model()
    code = torch.randn(2, 16)
    assert torch.equal(decode(model, code), decode(model, code))
    a = decode(model, code, True, torch.Generator().manual_seed(3), 1.0, 0.95)
    b = decode(model, code, True, torch.Generator().manual_seed(3), 1.0, 0.95)
    assert a.shape == (2, 8) and torch.equal(a, b)
    assert int(a.min()) >= 0 and int(a.max()) < CODEC.size  # never the start token


def test_decode_scale_lock_keeps_note_ons_in_the_scale():
    model = tiny_model()
    c_major = frozenset({0, 2, 4, 5, 7, 9, 11})
    out = decode(model, torch.randn(16, 16), True, torch.Generator().manual_seed(0), 1.5, 1.0, c_major)
    ons = out[(out >= NOTE_ON_OFFSET) & (out < NOTE_ON_OFFSET + 128)] - NOTE_ON_OFFSET
    assert all(int(p) % 12 in c_major for p in ons)


def test_binary_decoder_sees_only_the_sign():
    model = tiny_model()
    code = torch.tensor([[0.2] * 8 + [-0.7] * 8])
    assert torch.equal(decode(model, code), decode(model, binarize(code)))


def test_checkpoint_round_trip(tmp_path):
    model = tiny_model(1)
    save_checkpoint(tmp_path / "seqae", model, model.config, {"metrics": {"x": 1.0}})
    loaded, config, meta = load_checkpoint(tmp_path / "seqae.pt", SeqAE)
    assert config == model.config and meta["model_class"] == "SeqAE"
    code = torch.randn(1, 16)
    assert torch.equal(decode(loaded, code), decode(model, code))


# ----------------------------------------------------------------------------- train and eval
def _train_args(data: Path, out: Path, **overrides) -> argparse.Namespace:
    from models.seqae.train import configure_train

    parser = argparse.ArgumentParser()
    configure_train(parser)
    argv = ["--data", str(data), "--out", str(out), "--epochs", "2", "--steps-per-epoch", "3", "--batch-size", "4",
            "--hidden", "16", "--embed-dim", "8", "--valid-runs", "8", "--loss-delay-steps", "1", "--loss-warmup-steps", "2",
            "--cache-dir", str(out / "cache")]
    for key, value in overrides.items():
        argv += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    return parser.parse_args(argv)


@pytest.mark.slow
def test_train_writes_checkpoint_curves_and_resumes(tmp_path):
    from models.seqae.train import run_train

    data = write_corpus(tmp_path / "corpus")
    out = tmp_path / "run"
    assert run_train(_train_args(data, out)) == 0
    assert (out / "seqae.pt").exists() and (out / "seqae.json").exists() and (out / "seqae_loss.png").exists()
    model, config, meta = load_checkpoint(out / "seqae.pt", SeqAE)
    assert config.hidden_size == 16 and meta["training"]["step"] >= 3
    assert run_train(_train_args(data, out, epochs=3, resume=True)) == 0
    assert torch.load(out / "seqae.resume.pt", weights_only=True)["step"] == 9
    assert run_train(_train_args(data, tmp_path / "warm", init_from=out / "seqae.pt", epochs=4)) == 0


@pytest.mark.slow
def test_eval_reports_reconstruction_flips_copying_and_speed(tmp_path):
    from models.data import Corpus
    from models.seqae.eval import evaluate

    corpus = Corpus.load([write_corpus(tmp_path / "corpus")], cache_dir=tmp_path / "cache", workers=1)
    report = evaluate(tiny_model(), corpus, baseline=tiny_model(1), max_subsequences=64, streams=2, length=64)
    for key in ("real_event_accuracy", "binary_note_accuracy", "bit_flips", "bit_flips_without_continuity",
                "longest_copy_walk", "longest_copy_heldout_p99", "decode_ms_p99"):
        assert key in report
    assert 0 <= report["binary_event_accuracy"] <= 1 and 0 <= report["bit_flips"] <= 16


# ----------------------------------------------------------------------------- the voice
class _Controls:
    """The registry's Controls protocol: get(name) and present."""

    def __init__(self, **values):
        self.values, self.present = values, True

    def get(self, name, default=None):
        return self.values.get(name, default)


def _voice(**kwargs):
    from instrument.voices.seqae import SeqAEVoice

    return SeqAEVoice(tiny_model(), device="cpu", **kwargs)


def test_voice_returns_events_and_restore_replays_exactly():
    voice = _voice(seed=5)
    first = [voice.next_events() for _ in range(3)]
    assert all(isinstance(e, Event) for chunk in first for e in chunk)
    snap = voice.snapshot()
    ahead = [voice.next_events() for _ in range(4)]
    voice.restore(snap)
    assert [voice.next_events() for _ in range(4)] == ahead


def test_voice_strike_answers_with_one_note_in_one_decoder_step_and_replays_exactly():
    # issue 15: a gesture's answer is one decoder step, not a whole subsequence of 8 events
    voice = _voice(seed=3, temperature=1.0)
    voice.next_events()
    before = voice.snapshot()
    voice.strike()
    struck = voice.next_events()
    assert [e.type for e in struck] == [EventType.NOTE_ON]
    assert voice.snapshot().step == before.step and voice.snapshot().code == before.code  # the walk waits
    assert any(e.type == EventType.TIME_SHIFT for e in voice.next_events())  # then the walk goes on
    voice.restore(before)
    voice.strike()
    assert voice.next_events() == struck  # a restored strike replays exactly (seeded by step)


def test_first_note_on_logits_are_the_decoders_first_step_over_the_note_ons():
    from models.events import NOTE_OFF_OFFSET
    from models.seqae.model import first_note_on_logits

    model = tiny_model().eval()
    code = torch.randn(3, TINY.code_dim)
    bits = binarize(code)
    decoder = model.dec_bin
    start = model.embed.weight[torch.full((3,), model.start_token)]  # (3, E)
    logits, _ = decoder.step(bits, start, decoder.start(bits)[0])  # (3, V): what `decode` draws its first event from
    torch.testing.assert_close(first_note_on_logits(model, code), logits[:, NOTE_ON_OFFSET:NOTE_OFF_OFFSET])


def test_voice_strike_draws_from_the_kept_distribution_without_a_model_call(monkeypatch):
    # issue 15: the answer to a gesture costs a 128-way draw; the model ran when the code was decoded
    import models.seqae.model as seqae_model

    voice = _voice(seed=5, temperature=1.0, key="C", scale_lock=True)
    voice.next_events()

    def no_model_call(*args, **kwargs):
        raise AssertionError("a strike on a decoded code must not run the model")

    monkeypatch.setattr(seqae_model, "first_note_on_logits", no_model_call)
    before = voice.snapshot()
    pitches = set()
    for _ in range(20):
        voice.restore(before)
        voice.set_controls(_Controls(register=float(48 + len(pitches))))
        voice.strike()
        (event,) = voice.next_events()
        assert event.type == EventType.NOTE_ON
        pitches.add(event.value)
    assert all(p % 12 in {0, 2, 4, 5, 7, 9, 11} for p in pitches)  # the scale lock holds for strikes too


def test_voice_jump_and_theme_capture_act_once_per_rise():
    voice = _voice(seed=2)
    voice.set_controls(_Controls(flip_rate=0.0))
    voice.next_events()
    code = voice.snapshot().code
    voice.next_events()
    assert voice.snapshot().code == code  # k = 0: the walk holds (no theme return changes a held code either)
    voice.set_controls(_Controls(flip_rate=0.0, jump=1.0))
    voice.next_events()
    jumped = voice.snapshot().code
    voice.next_events()
    assert voice.snapshot().code == jumped  # still held high: no second jump
    voice.set_controls(_Controls(flip_rate=0.0, jump=1.0, theme_capture=1.0))
    voice.next_events()
    assert voice.theme.theme == jumped


def test_voice_theme_reset_returns_to_the_captured_theme():
    voice = _voice(seed=3)
    voice.next_events()
    theme = voice.snapshot().code
    voice.set_controls(_Controls(theme_capture=1.0, flip_rate=4.0, reset_p=1.0))
    voice.next_events()
    codes = {}
    for _ in range(20):
        step = voice.snapshot().step
        voice.next_events()
        codes[step] = voice.snapshot().code
    assert voice.theme.theme is not None
    assert all(codes[s] == voice.theme.theme for s in codes if s % voice.theme.every == 0)
    assert theme is not None


def test_voice_restore_replays_a_jump_that_only_the_dropped_future_heard():
    voice = _voice(seed=4)
    voice.set_controls(_Controls(flip_rate=0.0))
    voice.next_events()
    snap = voice.snapshot()
    voice.set_controls(_Controls(flip_rate=0.0, jump=1.0))
    voice.next_events()
    jumped = voice.snapshot().code
    voice.restore(snap)
    voice.next_events()
    assert voice.snapshot().code == jumped


def test_voice_register_transposes_and_note_offs_follow_their_note_ons():
    voice = _voice(seed=1)
    voice.set_controls(_Controls(register=100.0))
    sounding: set[int] = set()
    pitches = []
    for _ in range(30):
        for event in voice.next_events():
            if event.type == EventType.NOTE_ON:
                sounding.add(event.value)
                pitches.append(event.value)
            elif event.type == EventType.NOTE_OFF:
                assert event.value in sounding  # never an off for a pitch it did not send
                sounding.discard(event.value)
    if pitches:
        assert np.mean(pitches) > 70


def test_voice_density_scales_time_shifts():
    slow, fast = _voice(seed=6), _voice(seed=6)
    slow.set_controls(_Controls(density=0.5))
    fast.set_controls(_Controls(density=200.0))

    def seconds(voice):
        return sum(e.value for _ in range(20) for e in voice.next_events() if e.type == EventType.TIME_SHIFT)

    assert seconds(slow) >= seconds(fast)


def test_voice_ends_every_note_within_the_hold_limit():
    from instrument.voices.seqae import MAX_HOLD_STEPS

    voice = _voice(seed=8)
    voice.set_controls(_Controls(flip_rate=3.0))
    clock, onsets, longest = 0, {}, 0
    for _ in range(60):
        for event in voice.next_events():
            if event.type == EventType.TIME_SHIFT:
                clock += event.value
            elif event.type == EventType.NOTE_ON:
                onsets[event.value] = clock
            elif event.type == EventType.NOTE_OFF and event.value in onsets:
                longest = max(longest, clock - onsets.pop(event.value))
    assert longest <= MAX_HOLD_STEPS
    assert all(clock - onset <= MAX_HOLD_STEPS for onset in onsets.values())


def test_step_decoding_matches_the_teacher_forced_decoder():
    model = tiny_model(2)
    code = torch.randn(3, 16)
    tokens = decode(model, code)  # greedy, one fused GRU cell per event
    forced = model.dec_bin(binarize(code), model._shifted(tokens)).argmax(-1)  # the training path (nn.GRU)
    assert torch.equal(forced, tokens)


def test_train_usage_errors_are_one_line_model_errors(tmp_path):
    from models.errors import ModelError
    from models.seqae.train import run_train

    with pytest.raises(ModelError, match="pass one of them"):
        run_train(_train_args(tmp_path, tmp_path / "run", resume=True, init_from=tmp_path / "x.pt"))
    with pytest.raises(ModelError, match="--data"):
        run_train(_train_args(tmp_path / "missing", tmp_path / "run"))
