"""Train the SeqAE: ``instrument train seqae --data DIR... --out DIR [--continuity W]``.

One page, nanoGPT style. Each step draws random runs of N neighbouring L-event
subsequences from the train split (transposed +-6 semitones), and takes one AdamW step on
reconstruction (both decoders) + quantization + continuity (models/seqae/model.py). The
learning rate warms up then follows a cosine over the budget (steps or minutes, whichever
runs out first). Every epoch it measures the same losses and the neighbour bit flips on
fixed validation runs, keeps the best weights as ``NAME.pt`` + ``NAME.json``, plots the
curves, and writes ``NAME.resume.pt`` for ``--resume``.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import save_checkpoint
from models.schedule import add_optimizer_arguments, add_run_arguments, learning_rate
from models.events import TIME_SHIFT_OFFSET
from models.seqae.model import SeqAE, SeqAEConfig, seqae_losses

MAX_TRANSPOSE = 6  # semitones either way


# ----------------------------------------------------------------------------- data
def transpose_indices(tokens: np.ndarray, semitones: int) -> np.ndarray:
    """Codec indices with every NOTE_ON/NOTE_OFF moved by `semitones` (the caller keeps pitches in 0..127)."""
    out = np.array(tokens, dtype=np.int64)
    is_note = out < TIME_SHIFT_OFFSET  # NOTE_ON 0..127 then NOTE_OFF 128..255
    out[is_note] += semitones
    return out


class RunSampler:
    """Random runs of `neighbours` consecutive `seq_len`-event subsequences: (B, N, L) int64."""

    def __init__(self, pieces: list[np.ndarray], seq_len: int, neighbours: int, augment: bool, seed: int):
        self.span = seq_len * neighbours
        self.events = [np.asarray(e, dtype=np.int64) for e in pieces if len(e) >= self.span]
        if not self.events:
            raise ValueError(f"no piece has {self.span} events")
        starts = np.array([len(e) - self.span + 1 for e in self.events], dtype=np.float64)
        self.weights = starts / starts.sum()  # a piece is drawn in proportion to its runs
        self.seq_len, self.neighbours, self.augment = seq_len, neighbours, augment
        self.rng = np.random.default_rng(seed)

    def sample(self) -> np.ndarray:
        """One run (N, L)."""
        events = self.events[self.rng.choice(len(self.events), p=self.weights)]
        start = int(self.rng.integers(0, len(events) - self.span + 1))
        run = events[start:start + self.span]
        if self.augment:
            pitches = run[run < TIME_SHIFT_OFFSET] % 128
            if pitches.size:
                low, high = max(-MAX_TRANSPOSE, -int(pitches.min())), min(MAX_TRANSPOSE, 127 - int(pitches.max()))
                run = transpose_indices(run, int(self.rng.integers(low, high + 1)))
        return run.reshape(self.neighbours, self.seq_len)

    def batch(self, batch_size: int) -> torch.Tensor:
        """(B, N, L) long."""
        return torch.from_numpy(np.stack([self.sample() for _ in range(batch_size)]))


def fixed_runs(pieces: list[np.ndarray], seq_len: int, neighbours: int, max_runs: int) -> torch.Tensor:
    """Non-overlapping runs (R, N, L) spread evenly over the held-out pieces (the same every epoch)."""
    span = seq_len * neighbours
    runs = [np.asarray(e[s:s + span], dtype=np.int64).reshape(neighbours, seq_len)
            for e in pieces for s in range(0, len(e) - span + 1, span)]
    if not runs:
        raise ValueError(f"no held-out piece has {span} events")
    keep = np.unique(np.linspace(0, len(runs) - 1, min(max_runs, len(runs))).round().astype(int))
    return torch.from_numpy(np.stack([runs[i] for i in keep]))


@torch.no_grad()
def evaluate(model: SeqAE, runs: torch.Tensor, quantization: float, continuity: float, batch_size: int = 256) -> dict[str, float]:
    """Mean loss parts over fixed runs (R, N, L), with the training weights' total."""
    was_training = model.training
    model.eval()
    sums: dict[str, float] = {}
    batches = 0
    for i in range(0, len(runs), batch_size):
        total, parts = seqae_losses(model, runs[i:i + batch_size], quantization, continuity)
        for key, value in {"total": total.item(), **parts}.items():
            sums[key] = sums.get(key, 0.0) + value
        batches += 1
    model.train(was_training)
    return {key: value / batches for key, value in sums.items()}


# ----------------------------------------------------------------------------- the loop
def train(config: SeqAEConfig, args: argparse.Namespace) -> int:
    """Train from args (see configure_train); returns the exit status."""
    from models.data import Corpus
    from models.loss_plots import plot_curves

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    best_path, resume_path, plot_path = out / args.name, out / f"{args.name}.resume.pt", out / f"{args.name}_loss.png"

    # ---- data: random runs from train, fixed runs from valid
    try:
        corpus = Corpus.load(args.data, cache_dir=args.cache_dir, workers=1)
    except FileNotFoundError as err:
        raise _usage_error(f"--data: {err}") from None
    train_pieces, valid_pieces = [p.events for p in corpus.split("train")], [p.events for p in corpus.split("valid")]
    if not train_pieces or not valid_pieces:
        raise _usage_error(f"--data needs pieces in both train and valid splits; found {len(train_pieces)} train, {len(valid_pieces)} valid")
    valid_runs = fixed_runs(valid_pieces, config.seq_len, args.neighbours, args.valid_runs)

    # ---- model, optimizer; then the resume or warm-start state
    model = SeqAE(config)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=args.weight_decay)
    st = {"step": 0, "best": math.inf, "elapsed_s": 0.0, "history": [], "optimizer_start_step": 0}
    if args.resume:
        saved = torch.load(resume_path, map_location="cpu", weights_only=True)
        if saved["config"] != config.to_dict():
            raise _usage_error(f"--resume: {resume_path} was trained with {saved['config']}")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        st.update({k: saved[k] for k in st if k in saved})
    elif args.init_from:
        st = warm_start(model, config, args.init_from)
    sampler = RunSampler(train_pieces, config.seq_len, args.neighbours, not args.no_augment, seed=args.seed * 1_000_003 + st["step"])
    total_steps = args.epochs * args.steps_per_epoch
    budget_s = args.max_minutes * 60 if args.max_minutes else None

    def save_resume() -> None:
        tmp = resume_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "config": config.to_dict(), **st}, tmp)
        tmp.replace(resume_path)

    def meta(valid: dict) -> dict:
        settings = {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, list, type(None)))}
        return {"data": {"paths": [str(p) for p in args.data], "train_pieces": len(train_pieces), "valid_pieces": len(valid_pieces),
                         "split_rule": "crc32(relative path): 80% train / 10% valid / 10% test",
                         "augmentation": f"transpose +-{MAX_TRANSPOSE} semitones"},
                "training": {"hardware": f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                             "threads": args.threads, "torch": torch.__version__, "step": st["step"],
                             "minutes": round(st["elapsed_s"] / 60, 2), "args": settings, "parameters": model.num_parameters(),
                             "losses": {"quantization": args.quantization, "continuity": args.continuity}},
                "metrics": {f"valid_{k}": v for k, v in valid.items()}, "history": st["history"]}

    started, last_save, elapsed0 = time.monotonic(), time.monotonic(), st["elapsed_s"]
    stop = None
    print(f"SeqAE L={config.seq_len} D={config.code_dim} H={config.hidden_size} ({model.num_parameters():,} parameters), "
          f"continuity {args.continuity:g}, {len(train_pieces)} train / {len(valid_pieces)} valid pieces, {args.threads} thread(s)", flush=True)
    model.train()
    while stop is None and st["step"] < total_steps:
        epoch_end = min((st["step"] // args.steps_per_epoch + 1) * args.steps_per_epoch, total_steps)
        parts_sum: dict[str, float] = {}
        count = 0
        while st["step"] < epoch_end:
            # ---- learning rate from the budget used (steps or minutes)
            st["elapsed_s"] = elapsed0 + time.monotonic() - started
            if budget_s and st["elapsed_s"] >= budget_s:
                stop = f"time budget of {args.max_minutes:g} min reached"
                break
            progress = max(st["step"] / total_steps, st["elapsed_s"] / budget_s if budget_s else 0.0)
            lr = learning_rate(progress, st["step"] - st["optimizer_start_step"], args.lr, args.warmup_steps, args.min_lr_ratio)
            for group in opt.param_groups:
                group["lr"] = lr
            # ---- forward, backward, clip, step
            # Quantization and continuity wait, then ramp in: before the decoders use the code, any pull
            # towards sign() saturates tanh at one constant corner, where no gradient can move it again.
            # Counted from this optimizer's first step, so a warm start can add continuity to a trained model.
            ramp = min(1.0, max(0.0, (st["step"] - st["optimizer_start_step"] + 1 - args.loss_delay_steps) / args.loss_warmup_steps))
            loss, parts = seqae_losses(model, sampler.batch(args.batch_size), ramp * args.quantization, ramp * args.continuity)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            opt.step()
            st["step"] += 1
            count += 1
            for key, value in parts.items():
                parts_sum[key] = parts_sum.get(key, 0.0) + value
            # ---- resume state by the clock
            if time.monotonic() - last_save >= args.checkpoint_minutes * 60:
                save_resume()
                last_save = time.monotonic()
        if not count:
            break
        # ---- evaluate; keep the best weights
        valid = evaluate(model, valid_runs, args.quantization, args.continuity)
        train_parts = {k: v / count for k, v in parts_sum.items()}
        improved = valid["total"] < st["best"] - 1e-4
        if improved:
            st["best"] = valid["total"]
        # plot_curves draws train_loss/valid_nll: here the binary decoder's reconstruction (nats/event)
        st["history"].append({"step": st["step"], "train_loss": train_parts["rec_bin"], "valid_nll": valid["rec_bin"],
                              "valid_rec_real": valid["rec_real"], "valid_flips": valid["flips"], "valid_quant": valid["quant"],
                              "valid_total": valid["total"], "lr": lr, "minutes": round(st["elapsed_s"] / 60, 2)})
        if improved:
            save_checkpoint(best_path, model, config, meta(valid))
        save_resume()
        last_save = time.monotonic()
        plot_curves(st["history"], plot_path)
        print(f"step {st['step']}: train rec real {train_parts['rec_real']:.3f} bin {train_parts['rec_bin']:.3f} | valid real "
              f"{valid['rec_real']:.3f} bin {valid['rec_bin']:.3f} quant {valid['quant']:.3f} flips {valid['flips']:.2f} "
              f"lr {lr:.1e} {st['elapsed_s'] / 60:.1f} min{' *' if improved else ''}", flush=True)
    save_resume()
    print(f"done ({stop or 'all epochs'}): best valid total {st['best']:.4f} -> {best_path}.pt", flush=True)
    return 0


def warm_start(model: SeqAE, config: SeqAEConfig, path: str) -> dict:
    """Load a finished checkpoint's weights; its step, minutes and history carry on (fresh optimizer)."""
    from models.checkpoint import CheckpointError, load_checkpoint

    try:
        source, source_config, meta = load_checkpoint(path, SeqAE)
    except (CheckpointError, FileNotFoundError) as err:
        raise _usage_error(f"--init-from: {err}") from None
    if source_config.to_dict() != config.to_dict():
        raise _usage_error(f"--init-from: {path} has {source_config.to_dict()}; pass the same architecture")
    model.load_state_dict(source.state_dict())
    training = meta.get("training", {})
    step = int(training.get("step", 0))
    return {"step": step, "best": math.inf, "elapsed_s": float(training.get("minutes", 0.0)) * 60,
            "history": list(meta.get("history", [])), "optimizer_start_step": step}


# ----------------------------------------------------------------------------- CLI
def configure_train(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``instrument train seqae``."""
    defaults = SeqAEConfig()
    parser.add_argument("--data", nargs="+", required=True, metavar="DIR", help="MIDI folders (searched recursively); the split comes from each file's path")
    parser.add_argument("--out", required=True, metavar="DIR", help="where NAME.pt/.json (best weights), NAME.resume.pt and NAME_loss.png go")
    parser.add_argument("--name", default="seqae", help="checkpoint base name (default: %(default)s)")
    parser.add_argument("--seq-len", type=int, default=defaults.seq_len, help="events per subsequence (default: %(default)s)")
    parser.add_argument("--code-dim", type=int, default=defaults.code_dim, help="bits per code (default: %(default)s)")
    parser.add_argument("--embed-dim", type=int, default=defaults.embed_dim, help="event embedding size (default: %(default)s)")
    parser.add_argument("--hidden", type=int, default=defaults.hidden_size, help="GRU width (default: %(default)s)")
    parser.add_argument("--continuity", type=float, default=0.5, help="weight of the neighbour continuity loss; 0 = the study's baseline (default: %(default)s)")
    parser.add_argument("--quantization", type=float, default=0.1, help="weight of ||c - sign(c)||^2 (default: %(default)s)")
    parser.add_argument("--loss-delay-steps", type=int, default=1500, help="steps of reconstruction alone before quantization and continuity start (default: %(default)s)")
    parser.add_argument("--loss-warmup-steps", type=int, default=1000, help="steps over which quantization and continuity ramp from 0 to full weight (default: %(default)s)")
    parser.add_argument("--neighbours", type=int, default=4, help="consecutive subsequences per training run (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=200, help="maximum epochs (default: %(default)s)")
    parser.add_argument("--steps-per-epoch", type=int, default=250, help="optimizer steps between validations (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="runs per step (default: %(default)s)")
    add_optimizer_arguments(parser)
    parser.add_argument("--valid-runs", type=int, default=1024, help="held-out runs measured each epoch (default: %(default)s)")
    add_run_arguments(parser)
    parser.add_argument("--no-augment", action="store_true", help="train on the pieces as they are")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--cache-dir", default=None, help="corpus cache folder (default: $DEEP_SYMPHONY_CACHE or ~/.cache)")


def _usage_error(message: str) -> Exception:
    """A one-line error the CLI prints with exit status 2."""
    from models.errors import ModelError

    return ModelError(message)


def run_train(args: argparse.Namespace) -> int:
    """Entry point of ``instrument train seqae``; returns the exit status."""
    for name in ("seq_len", "code_dim", "embed_dim", "hidden", "loss_warmup_steps", "neighbours", "epochs", "steps_per_epoch", "batch_size", "valid_runs", "threads"):
        if getattr(args, name) < 1:
            raise _usage_error(f"--{name.replace('_', '-')} must be >= 1")
    if args.continuity > 0 and args.neighbours < 2:
        raise _usage_error("--continuity needs --neighbours >= 2")
    if args.resume and args.init_from:
        raise _usage_error("--resume continues this run and --init-from starts one from a checkpoint: pass one of them")
    if args.resume and not (Path(args.out) / f"{args.name}.resume.pt").exists():
        raise _usage_error(f"--resume: no {Path(args.out) / (args.name + '.resume.pt')} to resume from")
    config = SeqAEConfig(seq_len=args.seq_len, code_dim=args.code_dim, embed_dim=args.embed_dim, hidden_size=args.hidden)
    return train(config, args)


def main(argv: list[str] | None = None) -> int:
    """``python -m models.seqae.train``."""
    parser = argparse.ArgumentParser(prog="train_seqae", description=__doc__.splitlines()[0])
    configure_train(parser)
    return run_train(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
