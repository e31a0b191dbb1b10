"""Train a Refine net: ``instrument train refine --net velocity|duration|live_duration --data DIR... --out DIR``.

One page, nanoGPT style. The corpus's notes are turned into per-note features and targets
once (velocity: the real velocities; duration: the log factors of ``STRETCHED_COPIES``
random 80-120 % stretches of every piece, per note, per phrase or half of each: ``--stretch``). Each step draws random windows of notes and
takes one AdamW step on the L1 loss; the learning rate warms up then follows a cosine over
the budget (steps or minutes). Every epoch it scores the whole validation pieces, keeps
the best weights as ``NAME.pt`` + ``NAME.json``, plots the curves and writes
``NAME.resume.pt`` for ``--resume``.

``live_duration`` is the causal Duration Net that runs behind a voice (models/refine/live_duration.py):
the same stretches, durations only, its features in the order notes end. ``--data-weight`` gives each
``--data`` folder a weight: its notes are drawn that many times as often (a duration net also gets that
many times the stretched copies of its pieces), so a small beat-aligned folder counts beside a large one.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import save_checkpoint
from models.schedule import add_optimizer_arguments, add_run_arguments, learning_rate
from models.refine.duration import (FEATURE_SETS, STRETCH_KINDS, DurationNet, DurationNetConfig, duration_features, interval_mask,
                                    intervals_and_durations, stretch)
from models.refine.live_duration import LiveDurationNet, LiveDurationNetConfig, causal_features
from models.refine.notes import VELOCITY, from_piece_array, random_windows
from models.refine.velocity import VelocityNet, VelocityNetConfig, velocity_features

STRETCHED_COPIES = 4  # duration: differently stretched copies of each train piece
MAX_WEIGHT_S = 4.0  # duration, --loss-weight seconds: a held note counts as at most this long


@dataclass
class NoteSet:
    """Per-piece arrays: features (N, F), targets (N, T) and a mask (N, T) of the targets that count."""

    features: list[np.ndarray]
    targets: list[np.ndarray]
    masks: list[np.ndarray]

    def windows(self, spans: list[tuple[int, int]], length: int) -> tuple[torch.Tensor, ...]:
        """(features (B, W, F), targets (B, W, T), masks (B, W, T)) of the (piece, start) spans."""
        pick = lambda arrays: torch.from_numpy(np.stack([arrays[p][s:s + length] for p, s in spans]))  # noqa: E731
        return pick(self.features), pick(self.targets), pick(self.masks)


def stretch_kinds(stretch_arg: str) -> tuple[str, ...]:
    """The stretch kinds a --stretch value trains on, in the order copies cycle through them."""
    return STRETCH_KINDS if stretch_arg == "both" else (stretch_arg,)


def build_set(net: str, tables: list[np.ndarray], copies: int, seed: int, kinds: tuple[str, ...] = ("note",),
              feature_set: str = "local", weight_by_seconds: bool = False, copies_per_table=None) -> NoteSet:
    """Features and targets of note tables for `net` ("velocity" or "duration"); duration copies cycle through `kinds`.

    Duration targets count 1 each, or with `weight_by_seconds` their real length in seconds (capped at
    MAX_WEIGHT_S): an error in a log factor costs its length times as many ms, as the eval counts it.
    """
    features, targets, masks = [], [], []
    rng = np.random.default_rng(seed)
    for index, table in enumerate(tables):
        if net == "velocity":
            features.append(velocity_features(table))
            targets.append(table[:, VELOCITY:VELOCITY + 1].astype(np.float32))
            masks.append(np.ones((len(table), 1), dtype=np.float32))
            continue
        if net == "live_duration":  # durations only, in the order the notes end, each target its real length in s
            weight = (np.minimum(intervals_and_durations(table)[1], MAX_WEIGHT_S) if weight_by_seconds
                      else np.ones(len(table))).astype(np.float32)
            for copy in range(copies if copies_per_table is None else int(copies_per_table[index])):
                stretched, _, log_g = stretch(table, rng, kind=kinds[copy % len(kinds)])
                feats, order = causal_features(stretched)
                features.append(feats)
                targets.append(log_g[order, None].astype(np.float32))
                masks.append(weight[order, None])
            continue
        scored = np.stack([interval_mask(table), np.ones(len(table), dtype=bool)], axis=1).astype(np.float32)  # (N, 2)
        if weight_by_seconds:
            scored = scored * np.minimum(np.stack(intervals_and_durations(table), axis=1), MAX_WEIGHT_S).astype(np.float32)
        for copy in range(copies if copies_per_table is None else int(copies_per_table[index])):
            stretched, log_f, log_g = stretch(table, rng, kind=kinds[copy % len(kinds)])
            features.append(duration_features(stretched, feature_set))
            targets.append(np.stack([log_f, log_g], axis=1).astype(np.float32))
            masks.append(scored)
    return NoteSet(features, targets, masks)


def folder_weights(pieces: list, folders: list, weights: list[float] | None) -> np.ndarray:
    """(P,) the --data-weight of the --data folder each piece came from (1 each without --data-weight)."""
    if not weights:
        return np.ones(len(pieces))
    if len(weights) != len(folders):
        raise _usage_error(f"--data-weight needs one weight per --data folder: {len(folders)} folders, {len(weights)} weights")
    if any(w <= 0 for w in weights):
        raise _usage_error("--data-weight: weights must be > 0")
    roots = [Path(folder).resolve() for folder in folders]
    out = np.ones(len(pieces))
    for i, piece in enumerate(pieces):
        path = Path(piece.path).resolve()
        for root, weight in zip(roots, weights):
            if path == root or root in path.parents:
                out[i] = weight
                break
    return out


def sequenced_weights(pieces: list, weight: float) -> np.ndarray:
    """(P,) `weight` for the pieces sequenced on their beat grid (>= 90 % of onsets on their 16ths), 1 for the others.

    Reads each MIDI file again for its ticks (models/refine/beat_grid.py): about 0.4 s a piece.
    """
    from models.refine.beat_grid import is_sequenced

    if weight <= 0:
        raise _usage_error("--grid-weight must be > 0")
    return np.array([weight if is_sequenced(Path(piece.path)) else 1.0 for piece in pieces])


def loss_of(model: torch.nn.Module, features: torch.Tensor, targets: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The net's L1 loss (velocity units, or log factor) on a batch."""
    if isinstance(model, VelocityNet):
        return model(features, targets[..., 0])[1]
    return model(features, targets, masks)[1]


@torch.no_grad()
def evaluate(model: torch.nn.Module, notes: NoteSet) -> float:
    """L1 loss over whole held-out pieces, weighted by their scored targets."""
    was_training = model.training
    model.eval()
    total = weight = 0.0
    for f, t, m in zip(notes.features, notes.targets, notes.masks):
        count = float(m.sum())
        if count:
            total += loss_of(model, torch.from_numpy(f)[None], torch.from_numpy(t)[None], torch.from_numpy(m)[None]).item() * count
            weight += count
    model.train(was_training)
    return total / max(weight, 1.0)


def new_model(net: str, hidden: int, features: str = "piece", stretch_arg: str = "both") -> torch.nn.Module:
    """A fresh Velocity or Duration Net of the given width (a Duration Net with its feature set and stretch)."""
    if net == "velocity":
        return VelocityNet(VelocityNetConfig(hidden_size=hidden))
    if net == "live_duration":
        return LiveDurationNet(LiveDurationNetConfig(hidden_size=hidden, stretch=stretch_arg))
    return DurationNet(DurationNetConfig(hidden_size=hidden, num_features=FEATURE_SETS[features], features=features, stretch=stretch_arg))


# ----------------------------------------------------------------------------- the loop
def train(args: argparse.Namespace) -> int:
    """Train from args (see configure_train); returns the exit status."""
    from models.data import Corpus
    from models.loss_plots import plot_curves

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = args.name or args.net
    best_path, resume_path, plot_path = out / name, out / f"{name}.resume.pt", out / f"{name}_loss.png"

    # ---- data: per-note features and targets, computed once
    try:
        corpus = Corpus.load(args.data, cache_dir=args.cache_dir, workers=1)
    except FileNotFoundError as err:
        raise _usage_error(f"--data: {err}") from None
    train_pieces, valid_pieces = corpus.split("train"), corpus.split("valid")
    train_tables = [from_piece_array(p.note_array) for p in train_pieces]
    valid_tables = [from_piece_array(p.note_array) for p in valid_pieces]
    if not train_tables or not valid_tables:
        raise _usage_error(f"--data needs pieces in both train and valid splits; found {len(train_tables)} train, {len(valid_tables)} valid")
    kinds = stretch_kinds(args.stretch)
    by_seconds = args.loss_weight == "seconds"
    piece_weights = folder_weights(train_pieces, args.data, args.data_weight)  # (P,) how often each piece's notes are drawn
    if args.grid_weight:
        piece_weights = np.maximum(piece_weights, sequenced_weights(train_pieces, args.grid_weight))
    if args.net in ("duration", "live_duration"):
        # a weighted folder gets more stretched copies (as many times STRETCHED_COPIES as its rounded weight), so that
        # drawing it more often shows new stretches rather than the same ones again; the rest of the weight samples
        copies = np.maximum(np.round(piece_weights), 1).astype(int)
        train_set = build_set(args.net, train_tables, STRETCHED_COPIES, args.seed, kinds, args.features, by_seconds,
                              copies_per_table=STRETCHED_COPIES * copies)
        row_weights = np.repeat(piece_weights / copies, STRETCHED_COPIES * copies)
    else:
        train_set = build_set(args.net, train_tables, STRETCHED_COPIES, args.seed, kinds, args.features, by_seconds)
        row_weights = piece_weights
    valid_set = build_set(args.net, valid_tables, len(kinds), 10_000 + args.seed, kinds, args.features, by_seconds)
    lengths = np.array([len(f) for f in train_set.features])
    window = int(min(args.window, lengths.max()))

    # ---- model, optimizer; then the resume or warm-start state
    model = new_model(args.net, args.hidden, args.features, args.stretch)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=args.weight_decay)
    st = {"step": 0, "best": math.inf, "elapsed_s": 0.0, "history": [], "optimizer_start_step": 0}
    if args.resume:
        saved = torch.load(resume_path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        st.update({k: saved[k] for k in st if k in saved})
    elif args.init_from:
        st = warm_start(model, args.init_from)
    rng = np.random.default_rng(args.seed * 1_000_003 + st["step"])
    total_steps = args.epochs * args.steps_per_epoch
    budget_s = args.max_minutes * 60 if args.max_minutes else None

    def save_resume() -> None:
        tmp = resume_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), **st}, tmp)
        tmp.replace(resume_path)

    def meta() -> dict:
        settings = {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, list, type(None)))}
        return {"data": {"paths": [str(p) for p in args.data], "train_pieces": len(train_tables), "valid_pieces": len(valid_tables),
                         "train_notes": int(sum(len(t) for t in train_tables)),
                         "split_rule": "crc32(relative path): 80% train / 10% valid / 10% test"},
                "training": {"hardware": f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                             "threads": args.threads, "torch": torch.__version__, "step": st["step"],
                             "minutes": round(st["elapsed_s"] / 60, 2), "args": settings, "parameters": model.num_parameters()},
                "metrics": {"valid_l1": st["best"], "units": "velocity" if args.net == "velocity" else "log factor"},
                "history": st["history"]}

    started, last_save, elapsed0 = time.monotonic(), time.monotonic(), st["elapsed_s"]
    stop = None
    print(f"{type(model).__name__} ({model.num_parameters():,} parameters), {len(train_tables)} train / {len(valid_tables)} valid pieces, "
          f"{int(lengths.sum()):,} train rows, window {window}, {args.threads} thread(s)", flush=True)
    model.train()
    while stop is None and st["step"] < total_steps:
        epoch_end = min((st["step"] // args.steps_per_epoch + 1) * args.steps_per_epoch, total_steps)
        losses: list[float] = []
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
            loss = loss_of(model, *train_set.windows(random_windows(lengths, window, args.batch_size, rng, row_weights), window))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
            opt.step()
            st["step"] += 1
            losses.append(loss.item())
            if time.monotonic() - last_save >= args.checkpoint_minutes * 60:
                save_resume()
                last_save = time.monotonic()
        if not losses:
            break
        # ---- evaluate; keep the best weights
        valid = evaluate(model, valid_set)
        improved = valid < st["best"] - 1e-5
        st["best"] = min(st["best"], valid)
        st["history"].append({"step": st["step"], "train_loss": float(np.mean(losses)), "valid_nll": valid, "lr": lr,
                              "minutes": round(st["elapsed_s"] / 60, 2)})
        if improved:
            save_checkpoint(best_path, model, model.config, meta())
        save_resume()
        last_save = time.monotonic()
        plot_curves(st["history"], plot_path)
        print(f"step {st['step']}: train {np.mean(losses):.4f} valid {valid:.4f} lr {lr:.1e} {st['elapsed_s'] / 60:.1f} min"
              f"{' *' if improved else ''}", flush=True)
    save_resume()
    print(f"done ({stop or 'all epochs'}): best valid L1 {st['best']:.4f} -> {best_path}.pt", flush=True)
    return 0


def warm_start(model: torch.nn.Module, path: str) -> dict:
    """Load a finished checkpoint's weights; its step, minutes and history carry on (fresh optimizer)."""
    from models.checkpoint import CheckpointError, load_checkpoint

    try:
        source, _, meta = load_checkpoint(path, type(model))
    except (CheckpointError, FileNotFoundError) as err:
        raise _usage_error(f"--init-from: {err}") from None
    try:
        model.load_state_dict(widened(source.state_dict(), model.state_dict()))
    except RuntimeError as err:
        raise _usage_error(f"--init-from: {path} does not match --hidden (or --features)") from err
    training = meta.get("training", {})
    step = int(training.get("step", 0))
    return {"step": step, "best": math.inf, "elapsed_s": float(training.get("minutes", 0.0)) * 60,
            "history": list(meta.get("history", [])), "optimizer_start_step": step}


def widened(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """source's weights in target's shapes: a tensor narrower in its last dim gets zero columns after its own.

    A Duration Net's feature sets extend each other and the features are the last inputs of both
    layers that read them (inp: (H, F); head: (M, 2H + F)), so zero columns for the new features
    give the same net, which then learns to use them. Any other mismatch is left to load_state_dict.
    """
    out = {}
    for key, value in source.items():
        want = target.get(key)
        if (want is not None and value.dim() == 2 and want.dim() == 2 and value.shape[0] == want.shape[0]
                and value.shape[1] < want.shape[1]):
            value = torch.cat([value, value.new_zeros(value.shape[0], want.shape[1] - value.shape[1])], dim=1)
        out[key] = value
    return out


# ----------------------------------------------------------------------------- CLI
def configure_train(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``instrument train refine``."""
    parser.add_argument("--net", required=True, choices=["velocity", "duration", "live_duration"],
                        help="which Refine net (live_duration: the causal Duration Net behind `play --refine duration`)")
    parser.add_argument("--data", nargs="+", required=True, metavar="DIR", help="MIDI folders (searched recursively); the split comes from each file's path")
    parser.add_argument("--data-weight", nargs="+", type=float, default=None, metavar="W",
                        help="one per --data folder: how many times as often its notes are drawn (duration: also that many "
                             "times the stretched copies); e.g. to give a small beat-aligned folder weight beside a large one")
    parser.add_argument("--grid-weight", type=float, default=None, metavar="W",
                        help="duration: a train piece sequenced on its beat grid (>= 90 %% of its onsets on its 16ths) counts at "
                             "least W (as --data-weight), whatever its folder: the sequenced files of a played folder")
    parser.add_argument("--out", required=True, metavar="DIR", help="where NAME.pt/.json (best weights), NAME.resume.pt and NAME_loss.png go")
    parser.add_argument("--name", default=None, help="checkpoint base name (default: the net's name)")
    parser.add_argument("--hidden", type=int, default=None, help="GRU width (default: 96 velocity, 64 duration)")
    parser.add_argument("--stretch", choices=["note", "phrase", "both"], default="both",
                        help="duration: the stretches to learn to undo: a factor per interval and duration (the study's), "
                             "per phrase of 4-32 onset groups, or half of each (default: %(default)s)")
    parser.add_argument("--features", choices=list(FEATURE_SETS), default="piece",
                        help="duration: the first net's 11 local features, 19 with cues against the whole piece, or 29 with the "
                             "phases against the piece's beat (default: %(default)s; --init-from a net of a smaller set widens it)")
    parser.add_argument("--loss-weight", choices=["count", "seconds"], default="seconds",
                        help="duration: every interval and duration counts 1, or its length in seconds, as the eval's ms error "
                             "counts it (default: %(default)s)")
    parser.add_argument("--window", type=int, default=256, help="notes per training window (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=200, help="maximum epochs (default: %(default)s)")
    parser.add_argument("--steps-per-epoch", type=int, default=200, help="optimizer steps between validations (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per step (default: %(default)s)")
    add_optimizer_arguments(parser)
    add_run_arguments(parser,
                      init_from_help="start from a finished checkpoint's weights with a fresh optimizer")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--cache-dir", default=None, help="corpus cache folder (default: $DEEP_SYMPHONY_CACHE or ~/.cache)")


def _usage_error(message: str) -> Exception:
    """A one-line error the CLI prints with exit status 2."""
    from models.errors import ModelError

    return ModelError(message)


def run_train(args: argparse.Namespace) -> int:
    """Entry point of ``instrument train refine``; returns the exit status."""
    if args.hidden is None:
        args.hidden = {"velocity": VelocityNetConfig.hidden_size, "duration": DurationNetConfig.hidden_size,
                       "live_duration": LiveDurationNetConfig.hidden_size}[args.net]
    for name in ("hidden", "window", "epochs", "steps_per_epoch", "batch_size", "threads"):
        if getattr(args, name) < 1:
            raise _usage_error(f"--{name.replace('_', '-')} must be >= 1")
    if args.resume and args.init_from:
        raise _usage_error("--resume continues this run and --init-from starts one from a checkpoint: pass one of them")
    if args.resume and not (Path(args.out) / f"{args.name or args.net}.resume.pt").exists():
        raise _usage_error(f"--resume: no {Path(args.out) / ((args.name or args.net) + '.resume.pt')} to resume from")
    return train(args)


def main(argv: list[str] | None = None) -> int:
    """``python -m models.refine.train``."""
    parser = argparse.ArgumentParser(prog="train_refine", description=__doc__.splitlines()[0])
    configure_train(parser)
    return run_train(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
