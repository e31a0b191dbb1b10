"""Training loop: runs on a tiny synthetic corpus, resumes, and DDP ranks stay in lockstep."""
import json
import socket

import cv2
import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from models.checkpoint import load_charrnn
from models.data import split_of
from models.events import Note, notes_to_midi
from models.charrnn.train import WindowSampler, configure_charrnn, main, parse_arch, train
from models.conditioning import DEFAULT_SPEC

TINY = ["--arch", "lstm:1x16", "--embed-dim", "8", "--batch-size", "4", "--seq-len", "16", "--steps-per-epoch", "3",
        "--valid-windows", "8", "--threads", "1", "--warmup-steps", "2", "--checkpoint-minutes", "0"]


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory):
    """Sixteen short random-walk melodies, with at least one piece in train and in valid."""
    root = tmp_path_factory.mktemp("midi")
    rng = np.random.default_rng(0)
    names, i = [], 0
    while len(names) < 16 or not {"train", "valid"} <= {split_of(n) for n in names}:
        names.append(f"piece{i:03d}.mid")
        i += 1
    for name in names:
        pitch, t, notes = 60, 0.0, []
        for _ in range(40):
            pitch = int(np.clip(pitch + rng.integers(-3, 4), 40, 90))
            length = float(rng.choice([0.1, 0.2, 0.4]))
            notes.append(Note(pitch, t, t + length, 80))
            t += length
        notes_to_midi(notes).save(root / name)
    return root


def run(corpus_dir, out, cache, *extra):
    return main(["--data", str(corpus_dir), "--out", str(out), "--cache-dir", str(cache), *TINY, *extra])


def test_trains_writes_checkpoint_curves_and_resumes(corpus_dir, tmp_path):
    out = tmp_path / "run"
    assert run(corpus_dir, out, tmp_path / "cache", "--epochs", "2") == 0
    model, config, meta = load_charrnn(out / "charrnn.pt")
    assert config.cond_dim == 14 and config.hidden_size == 16
    assert meta["data"]["splits"]["train"]["pieces"] > 0 and meta["training"]["device"] == "cpu"
    history = meta["history"]
    assert len(history) == 2 and history[-1]["step"] == 6
    assert history[-1]["train_loss"] < history[0]["train_loss"] + 0.5
    assert all(np.isfinite(h["valid_nll"]) for h in history)
    image = cv2.imread(str(out / "charrnn_loss.png"))
    assert image is not None and image.shape[2] == 3
    # --resume continues the same run: steps, history and best score carry over.
    assert run(corpus_dir, out, tmp_path / "cache", "--epochs", "3", "--resume") == 0
    state = torch.load(out / "charrnn.resume.pt", weights_only=True)
    assert state["step"] == 9 and [h["step"] for h in state["history"]] == [3, 6, 9]


def test_init_from_a_finished_checkpoint_carries_on_its_run(corpus_dir, tmp_path):
    """What a later session does when only the shipped weights survive: warm-start, fresh optimizer."""
    from models.errors import ModelError as UsageError  # models/ has its own error type

    first = tmp_path / "first"
    assert run(corpus_dir, first, tmp_path / "cache", "--epochs", "2") == 0
    source, _, source_meta = load_charrnn(first / "charrnn.pt")
    out = tmp_path / "second"
    assert run(corpus_dir, out, tmp_path / "cache", "--epochs", "3", "--init-from", str(first / "charrnn.pt")) == 0
    state = torch.load(out / "charrnn.resume.pt", weights_only=True)
    assert state["step"] == 9 and state["optimizer_start_step"] == 6  # one more epoch, warmup restarted at 6
    assert [h["step"] for h in state["history"]] == [3, 6, 9]
    assert state["elapsed_s"] >= source_meta["training"]["minutes"] * 60
    moved = state["model"]["embed.weight"] - source.state_dict()["embed.weight"]
    assert 0 < moved.abs().max() < 0.5  # trained on from the source weights, not from a fresh init
    with pytest.raises(UsageError, match="same --arch"):
        run(corpus_dir, tmp_path / "third", tmp_path / "cache", "--epochs", "3", "--arch", "gru:1x16",
            "--init-from", str(first / "charrnn.pt"))
    with pytest.raises(UsageError, match="--init-from"):
        run(corpus_dir, tmp_path / "third", tmp_path / "cache", "--epochs", "3", "--init-from", str(tmp_path / "none.pt"))


def test_loss_falls_on_learnable_data(corpus_dir, tmp_path):
    out = tmp_path / "run"
    assert run(corpus_dir, out, tmp_path / "cache", "--epochs", "4", "--lr", "1e-2", "--arch", "gru:1x32") == 0
    history = json.loads((out / "charrnn.json").read_text())["meta"]["history"]
    assert history[-1]["valid_nll"] < history[0]["valid_nll"] < np.log(388) + 0.1


def test_unconditioned_baseline_and_resume_mismatch(corpus_dir, tmp_path):
    from models.errors import ModelError as UsageError  # models/ has its own error type

    out = tmp_path / "base"
    assert run(corpus_dir, out, tmp_path / "cache", "--epochs", "1", "--unconditioned") == 0
    _, config, meta = load_charrnn(out / "charrnn.pt")
    assert config.cond_dim == 0 and meta["conditioning"] is None
    with pytest.raises(UsageError, match="same --arch"):
        run(corpus_dir, out, tmp_path / "cache", "--epochs", "2", "--resume")
    with pytest.raises(UsageError, match="no .* to resume"):
        run(corpus_dir, tmp_path / "empty", tmp_path / "cache", "--epochs", "1", "--resume")
    with pytest.raises(UsageError, match="--arch"):
        run(corpus_dir, out, tmp_path / "cache", "--arch", "lstm-2-256")


def test_windows_carry_the_conditions_of_their_own_events(corpus_dir):
    from models.conditioning import extract_conditions
    from models.data import Corpus

    pieces = [p.events for p in Corpus.load([corpus_dir]).pieces]
    sampler = WindowSampler(pieces, 16, DEFAULT_SPEC, augment=False, seed=0)
    tokens, cond = sampler.batch(8)
    assert tokens.shape == (8, 17) and cond.shape == (8, 17, 14)
    for row, c in zip(tokens.numpy(), cond.numpy()):
        piece = next(p for p in pieces if any((p[i:i + 17] == row).all() for i in range(len(p) - 16)))
        start = next(i for i in range(len(piece) - 16) if (piece[i:i + 17] == row).all())
        np.testing.assert_allclose(c, extract_conditions(piece)[start:start + 17], atol=1e-5)
    augmented = WindowSampler(pieces, 16, DEFAULT_SPEC, augment=True, seed=0).batch(8)[0]
    assert augmented.shape == (8, 17) and int(augmented.max()) < 388


def test_parse_arch():
    assert parse_arch("gru:3x384") == ("gru", 3, 384)
    assert parse_arch("transformer:2x192") == ("transformer", 2, 192)  # the issue-16 candidates are archs too
    for bad in ("mamba:2x256", "lstm:2", "gru:0x256"):
        with pytest.raises(ValueError):
            parse_arch(bad)


def _ddp_worker(rank, world, port, corpus_dir, out, cache):
    import argparse
    import os

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    parser = argparse.ArgumentParser()
    configure_charrnn(parser)
    args = parser.parse_args(["--data", corpus_dir, "--out", out, "--cache-dir", cache, *TINY, "--epochs", "1"])
    from models.charrnn.model import CharRNNConfig

    status, model = train(CharRNNConfig(embed_dim=8, hidden_size=16, num_layers=1), args)
    torch.save({"status": status, "model": model.state_dict()}, f"{out}/rank{rank}.pt")


def test_ddp_two_gloo_ranks_end_with_identical_weights(corpus_dir, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "ddp"
    out.mkdir()
    from models.data import Corpus

    Corpus.load([corpus_dir], cache_dir=tmp_path / "cache")  # fill the corpus cache once, before the ranks race
    mp.spawn(_ddp_worker, args=(2, port, str(corpus_dir), str(out), str(tmp_path / "cache")), nprocs=2, join=True)
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert [r["status"] for r in ranks] == [0, 0]
    for name, weight in ranks[0]["model"].items():
        torch.testing.assert_close(weight, ranks[1]["model"][name], atol=0, rtol=0)
    torch.manual_seed(0)
    from models.charrnn.model import CharRNN, CharRNNConfig

    initial = CharRNN(CharRNNConfig(embed_dim=8, hidden_size=16, num_layers=1)).state_dict()
    assert not torch.equal(initial["head.weight"], ranks[0]["model"]["head.weight"])  # they trained
    assert (out / "charrnn.pt").exists() and not (out / "charrnn.rank1.pt").exists()


def test_learning_rate_warms_up_to_the_schedule_not_to_the_peak():
    from models.schedule import learning_rate

    assert learning_rate(0.0, 0, 1e-3, 10, 0.05) == pytest.approx(1e-4)
    assert learning_rate(0.0, 20, 1e-3, 10, 0.05) == pytest.approx(1e-3)
    assert learning_rate(1.0, 20, 1e-3, 10, 0.05) == pytest.approx(5e-5)
    late = learning_rate(0.75, 20, 1e-3, 10, 0.05)  # a warm start three quarters into its budget
    assert learning_rate(0.75, 0, 1e-3, 10, 0.05) == pytest.approx(late / 10) and late < 0.2e-3
    assert learning_rate(0.5, 3, 1e-3, 0, 0.05) == pytest.approx(0.525e-3)


def test_cond_v2_run_records_its_spec_and_warm_starts_from_v1(corpus_dir, tmp_path):
    """Training with the short cond-v2 windows, warm-started from a cond-v1 checkpoint: its best score starts afresh."""
    from models.conditioning import COND_V2

    first = tmp_path / "v1"
    assert run(corpus_dir, first, tmp_path / "cache", "--epochs", "2", "--conditioning", "cond-v1") == 0
    out = tmp_path / "v2"
    assert run(corpus_dir, out, tmp_path / "cache", "--epochs", "3", "--conditioning", "cond-v2",
               "--init-from", str(first / "charrnn.pt")) == 0
    record = json.loads((out / "charrnn.json").read_text())
    assert record["meta"]["conditioning"] == COND_V2.to_dict()
    history = record["meta"]["history"]
    assert [h["conditioning"] for h in history] == ["cond-v1", "cond-v1", "cond-v2"]
    assert record["meta"]["metrics"]["valid_nll_per_event"] == history[-1]["valid_nll"]  # kept, whatever v1 scored
    from models.errors import ModelError as UsageError

    with pytest.raises(UsageError, match="--conditioning"):
        run(corpus_dir, out, tmp_path / "cache", "--epochs", "4", "--resume", "--conditioning", "cond-v1")  # the run was cond-v2
    assert run(corpus_dir, out, tmp_path / "cache", "--epochs", "4", "--resume", "--conditioning", "cond-v2") == 0


def test_window_sampler_labels_with_the_spec_it_is_given(corpus_dir):
    from models.conditioning import COND_V2, extract_conditions
    from models.data import Corpus

    pieces = [p.events for p in Corpus.load([corpus_dir]).pieces]
    sampler = WindowSampler(pieces, 16, COND_V2, augment=False, seed=1)
    assert sampler.lookahead_s == pytest.approx(5.0 * 1.05 + 0.5)
    tokens, cond = sampler.batch(4)
    for row, c in zip(tokens.numpy(), cond.numpy()):
        piece = next(p for p in pieces if any((p[i:i + 17] == row).all() for i in range(len(p) - 16)))
        start = next(i for i in range(len(piece) - 16) if (piece[i:i + 17] == row).all())
        np.testing.assert_allclose(c, extract_conditions(piece, COND_V2)[start:start + 17], atol=1e-5)
