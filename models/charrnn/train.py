"""Train the (Conditional) Char-RNN: ``instrument train charrnn --data DIR... --out DIR``.

One page, nanoGPT style. Each step draws random windows of ``seq_len + 1`` events from
the train split, augmented and labelled with the conditions of the music they hold
(models/charrnn/windows.py, with the ``--conditioning`` spec of models/conditioning.py),
and takes one AdamW step. The learning rate follows a warmup then a cosine over the budget
(steps or minutes, whichever runs out first; a warm start late in its budget warms up to
the late, low rate). Every epoch (a fixed number of steps) it measures validation NLL in
nats/event, keeps the best weights as ``NAME.pt`` + ``NAME.json`` and plots the curves;
``NAME.resume.pt`` lets ``--resume`` continue where it stopped.

Multi-process: launch with ``torchrun --nproc_per_node N -m models.charrnn.train ...``
(gloo on CPU, nccl on CUDA). Each rank draws its own windows; DDP averages gradients;
only rank 0 writes files.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import math
import os
import platform
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from models.charrnn.model import CharRNN, CharRNNConfig
from models.checkpoint import save_checkpoint
from models.schedule import add_optimizer_arguments, add_run_arguments, learning_rate
from models.charrnn.windows import MAX_STRETCH, MAX_TRANSPOSE, WindowSampler, split_inputs, validation_windows
from models.conditioning import DEFAULT_SPEC, SPECS
from models.loss_plots import plot_curves

__all__ = ["WindowSampler", "configure_charrnn", "main", "parse_arch", "run_charrnn", "train"]


# ----------------------------------------------------------------------------- helpers
def parse_arch(text: str) -> tuple[str, int, int]:
    """'lstm:2x256' -> ('lstm', 2, 256); also gru, attn-lstm and transformer (models/charrnn/model.py CORE_CELLS)."""
    try:
        cell, shape = text.lower().split(":")
        layers, hidden = (int(v) for v in shape.split("x"))
        CharRNNConfig(cell=cell, num_layers=layers, hidden_size=hidden)
    except ValueError as err:
        raise ValueError(f"--arch must look like lstm:2x256, gru:2x384, attn-lstm:2x256 or transformer:4x128, got {text!r}") from err
    return cell, layers, hidden


def corpus_provenance(corpus, paths: list[str]) -> dict:
    """What the model was trained on: folders, split sizes and a fingerprint of the file list."""
    digest = hashlib.sha1("\n".join(sorted(f"{p.relpath}:{len(p.events)}" for p in corpus.pieces)).encode()).hexdigest()[:16]
    splits = {s: {"pieces": len(corpus.split(s)), "events": int(sum(len(p.events) for p in corpus.split(s))),
                  "hours": round(sum(p.seconds for p in corpus.split(s)) / 3600, 3)} for s in ("train", "valid", "test")}
    return {"paths": [str(Path(p)) for p in paths], "splits": splits, "skipped": len(corpus.skipped),
            "fingerprint": digest, "split_rule": "crc32(relative path): 80% train / 10% valid / 10% test",
            "augmentation": f"transpose +-{MAX_TRANSPOSE} semitones, stretch +-{MAX_STRETCH:.0%}"}


def warm_start(model: CharRNN, config: CharRNNConfig, path: str, device: torch.device, spec=None) -> dict:
    """Load a finished checkpoint's weights and carry on its step, minutes, best NLL and history (fresh optimizer).

    When ``spec`` (this run's conditioning) differs from the source's, its NLLs measure another task:
    the best score starts afresh, so the first epoch of the new conditioning is kept.
    """
    from models.checkpoint import CheckpointError, load_checkpoint

    try:  # any conditioning this build knows: a run may move the weights to another spec
        source, source_config, meta = load_checkpoint(path, CharRNN)
        source_version = (meta.get("conditioning") or {}).get("version")
        if source_config.cond_dim and source_version not in SPECS:
            raise CheckpointError(f"{path}: conditioning {source_version!r} is none of {', '.join(SPECS)}")
    except (CheckpointError, FileNotFoundError) as err:
        raise _usage_error(f"--init-from: {err}") from None
    added = len(spec.styles) if spec is not None else 0
    source_styles = tuple((meta.get("conditioning") or {}).get("styles", ()))
    widened = dataclasses.replace(source_config, cond_dim=source_config.cond_dim + added) if added and not source_styles else source_config
    if widened.to_dict() != config.to_dict():
        raise _usage_error(f"--init-from: {path} has {source_config.to_dict()}"
                           f"{f' and styles {list(source_styles)}' if source_styles else ''}; "
                           f"pass the same --arch/--embed-dim/--dropout/--unconditioned/--styles")
    model.load_state_dict(_widen_condition(source.state_dict(), model.state_dict(), added))
    model.to(device)
    training, metrics = meta.get("training", {}), meta.get("metrics", {})
    step = int(training.get("step", 0))
    same_task = spec is None or ((meta.get("conditioning") or {}).get("version") == spec.version and source_styles == spec.styles)
    return {"step": step, "best": float(metrics.get("valid_nll_per_event", math.inf)) if same_task else math.inf, "bad_epochs": 0,
            "elapsed_s": float(training.get("minutes", 0.0)) * 60, "history": list(meta.get("history", [])),
            "optimizer_start_step": step}


def _widen_condition(source: dict, target: dict, added: int) -> dict:
    """The source's weights with `added` zero input columns for new style inputs (the condition comes last).

    Zero columns leave every output as it was: at step 0 the widened model plays exactly as the source.
    """
    out = {}
    for name, value in source.items():
        want = target[name].shape
        if value.shape != want:
            if not (added and value.shape[:-1] == want[:-1] and value.shape[-1] + added == want[-1]):
                raise _usage_error(f"--init-from: {name} has shape {tuple(value.shape)}, this model {tuple(want)}")
            value = torch.cat([value, value.new_zeros(*value.shape[:-1], added)], dim=-1)
        out[name] = value
    return out


def piece_styles(pieces, roots: list[str], styles: tuple[str, ...]) -> list[str | None]:
    """Each piece's style: the name given to the --data folder it came from (None without styles)."""
    if not styles:
        return [None] * len(pieces)
    folders = [Path(r) for r in roots]
    return [next(styles[i] for i, f in enumerate(folders) if Path(p.path) == f or Path(p.path).is_relative_to(f))
            for p in pieces]


# ----------------------------------------------------------------------------- the loop
def setup_distributed(device_arg: str) -> tuple[int, int, torch.device]:
    """(rank, world size, device) from torchrun's environment; joins the process group when world > 1."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_arg == "cuda" and not torch.cuda.is_available():
        raise _usage_error("--device cuda: no CUDA device is available")
    use_cuda = device_arg == "cuda" or (device_arg == "auto" and torch.cuda.is_available())
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return rank, world, device


@torch.no_grad()
def evaluate(model: CharRNN, tokens: torch.Tensor, cond: torch.Tensor | None, batch_size: int,
             device: torch.device, autocast, rank: int = 0, world: int = 1) -> float:
    """Mean NLL in nats/event over the windows (sharded over ranks, summed across them)."""
    was_training = model.training
    model.eval()
    total = torch.zeros(2, dtype=torch.float64, device=device)  # (sum of NLL, number of targets)
    for i in range(rank * batch_size, len(tokens), batch_size * world):
        x, c, y = split_inputs(tokens[i:i + batch_size].to(device), None if cond is None else cond[i:i + batch_size].to(device))
        with autocast:
            logits, _ = model(x, c)  # (B, T, V)
        total[0] += torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum")
        total[1] += y.numel()
    if world > 1:
        dist.all_reduce(total)
    model.train(was_training)
    return float(total[0] / total[1])


def train(config: CharRNNConfig, args: argparse.Namespace) -> tuple[int, CharRNN]:
    """Train from args (see configure_charrnn); returns (exit status, this rank's model); only rank 0 writes."""
    rank, world, device = setup_distributed(args.device)
    try:
        return _train(config, args, rank, world, device)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(config: CharRNNConfig, args: argparse.Namespace, rank: int, world: int, device: torch.device) -> tuple[int, CharRNN]:
    from models.data import Corpus

    master = rank == 0
    threads = args.threads or max(1, (os.cpu_count() or 1) // world)
    torch.set_num_threads(threads)
    torch.manual_seed(args.seed)  # the same initial weights on every rank
    spec = training_spec(args) if config.cond_dim else None
    out = Path(args.out)
    best_path, resume_path, plot_path = out / args.name, out / f"{args.name}.resume.pt", out / f"{args.name}_loss.png"
    if master:
        out.mkdir(parents=True, exist_ok=True)

    # ---- data: train windows are drawn at random, validation windows are fixed
    try:
        corpus = Corpus.load(args.data, cache_dir=args.cache_dir)
    except FileNotFoundError as err:
        raise _usage_error(f"--data: {err}") from None
    if not corpus.pieces:
        raise _usage_error(f"--data: no usable MIDI files (.mid/.midi) under {', '.join(map(str, args.data))} "
                           f"({len(corpus.skipped)} skipped)")
    train_pieces = [p.events for p in corpus.split("train")]
    valid_pieces = corpus.split("valid")
    if not train_pieces or not valid_pieces:
        raise _usage_error(f"--data needs pieces in both train and valid splits; found {len(train_pieces)} train, {len(valid_pieces)} valid")
    styles = spec.styles if spec else ()
    val_tokens, val_cond = validation_windows([p.events for p in valid_pieces], args.seq_len, spec, args.valid_windows,
                                              piece_styles(valid_pieces, args.data, styles))
    events_per_second = sum(len(p.events) for p in valid_pieces) / max(sum(p.seconds for p in valid_pieces), 1e-9)
    provenance = corpus_provenance(corpus, args.data)

    # ---- model, optimizer, mixed precision; then the resume state if asked
    model = CharRNN(config).to(device)
    decay = [p for p in model.parameters() if p.dim() >= 2]  # matrices and embeddings; not biases
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.99))
    amp_dtype = None
    if device.type == "cuda" and args.amp != "off":
        amp_dtype = torch.float16 if args.amp == "fp16" or (args.amp == "auto" and not torch.cuda.is_bf16_supported()) else torch.bfloat16
    autocast = torch.autocast("cuda", dtype=amp_dtype) if amp_dtype else nullcontext()
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    st = {"step": 0, "best": math.inf, "bad_epochs": 0, "elapsed_s": 0.0, "history": [], "optimizer_start_step": 0}
    if args.resume:
        saved = torch.load(resume_path, map_location=device, weights_only=True)
        if saved["config"] != config.to_dict():
            raise _usage_error(f"--resume: {resume_path} was trained with {saved['config']}; pass the same --arch/--embed-dim/--dropout/--unconditioned")
        if saved.get("conditioning", DEFAULT_SPEC.version if spec else None) != (spec.version if spec else None):
            raise _usage_error(f"--resume: {resume_path} was trained with conditioning {saved.get('conditioning', DEFAULT_SPEC.version)}; pass the same --conditioning")
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        scaler.load_state_dict(saved["scaler"])
        st.update({k: saved[k] for k in st if k in saved})
    elif args.init_from:
        st = warm_start(model, config, args.init_from, device, spec)
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if world > 1 else model
    # Each rank draws its own windows; re-seeding with the step keeps resumed runs reproducible.
    sampler = WindowSampler(train_pieces, args.seq_len, spec, not args.no_augment, seed=args.seed * 1_000_003 + rank * 7919 + st["step"],
                            styles=piece_styles(corpus.split("train"), args.data, styles))
    total_steps = args.epochs * args.steps_per_epoch
    budget_s = args.max_minutes * 60 if args.max_minutes else None

    def save_resume() -> None:
        tmp = resume_path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
                    "config": config.to_dict(), "conditioning": spec.version if spec else None, **st}, tmp)
        tmp.replace(resume_path)

    def meta() -> dict:
        hardware = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
        settings = {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, list, type(None)))}
        return {"conditioning": spec.to_dict() if spec else None, "data": provenance,
                "training": {"device": device.type, "hardware": hardware, "processes": world, "threads_per_process": threads,
                             "torch": torch.__version__, "amp": str(amp_dtype).replace("torch.", "") if amp_dtype else "off",
                             "step": st["step"], "minutes": round(st["elapsed_s"] / 60, 2), "args": settings,
                             "parameters": model.num_parameters()},
                "metrics": {"valid_nll_per_event": st["best"], "valid_nll_per_second": st["best"] * events_per_second,
                            "valid_windows": len(val_tokens)},
                "history": st["history"]}

    session_start, last_save, elapsed0 = time.monotonic(), time.monotonic(), st["elapsed_s"]
    stop = None
    if master:
        tqdm.write(f"CharRNN {config.cell} {config.num_layers}x{config.hidden_size} ({model.num_parameters():,} parameters), "
                   f"{len(train_pieces)} train / {len(valid_pieces)} valid pieces, {world} process(es) x {threads} thread(s) on {device}")
    try:
        while stop is None and st["step"] < total_steps:
            epoch = st["step"] // args.steps_per_epoch
            epoch_end = min((epoch + 1) * args.steps_per_epoch, total_steps)
            bar = tqdm(total=epoch_end - st["step"], desc=f"epoch {epoch + 1}", disable=not master, leave=False, dynamic_ncols=True)
            losses: list[float] = []
            while st["step"] < epoch_end:
                # ---- set the learning rate from the budget used (steps or minutes, all ranks agree)
                elapsed = elapsed0 + time.monotonic() - session_start
                if world > 1:
                    shared = torch.tensor([elapsed], dtype=torch.float64, device=device)
                    dist.all_reduce(shared, op=dist.ReduceOp.MAX)
                    elapsed = float(shared)
                st["elapsed_s"] = elapsed
                if budget_s and elapsed >= budget_s:
                    stop = f"time budget of {args.max_minutes:g} min reached"
                    break
                progress = max(st["step"] / total_steps, elapsed / budget_s if budget_s else 0.0)
                # Warmup counts from the step the optimizer state was created (a warm start has fresh Adam moments).
                lr = learning_rate(progress, st["step"] - st["optimizer_start_step"], args.lr, args.warmup_steps, args.min_lr_ratio)
                for group in opt.param_groups:
                    group["lr"] = lr
                # ---- forward, backward, clip, step
                tokens, cond = sampler.batch(args.batch_size)
                x, c, y = split_inputs(tokens.to(device, non_blocking=True), None if cond is None else cond.to(device, non_blocking=True))
                with autocast:
                    _, loss = ddp(x, c, y)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
                scaler.step(opt)
                scaler.update()
                st["step"] += 1
                losses.append(loss.item())
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", lr=f"{lr:.1e}")
                # ---- resume state by the clock
                if master and time.monotonic() - last_save >= args.checkpoint_minutes * 60:
                    save_resume()
                    last_save = time.monotonic()
            bar.close()
            if not losses:
                break
            # ---- evaluate; keep the best weights; early stopping
            val = evaluate(model, val_tokens, val_cond, args.batch_size, device, autocast, rank, world)
            improved = val < st["best"] - 1e-4
            st["best"], st["bad_epochs"] = (val, 0) if improved else (st["best"], st["bad_epochs"] + 1)
            st["history"].append({"step": st["step"], "epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                                  "valid_nll": val, "lr": lr, "minutes": round(st["elapsed_s"] / 60, 2),
                                  "conditioning": spec.version if spec else None})
            if master:
                if improved:
                    save_checkpoint(best_path, model, config, meta())
                save_resume()
                last_save = time.monotonic()
                plot_curves(st["history"], plot_path)
                tqdm.write(f"epoch {epoch + 1} step {st['step']}: train {np.mean(losses):.4f} valid {val:.4f} nats/event "
                           f"({val * events_per_second:.2f} nats/s) lr {lr:.2e} {st['elapsed_s'] / 60:.1f} min{' *' if improved else ''}")
            if st["bad_epochs"] >= args.patience:
                stop = f"early stopping: no improvement for {args.patience} epochs"
    except KeyboardInterrupt:
        if master:
            save_resume()
            tqdm.write(f"interrupted at step {st['step']}; continue with --resume")
        return 130, model
    if master:
        save_resume()
        tqdm.write(f"done ({stop or 'all epochs'}): best valid {st['best']:.4f} nats/event -> {best_path}.pt")
    return 0, model


# ----------------------------------------------------------------------------- CLI
def configure_charrnn(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``instrument train charrnn``."""
    parser.add_argument("--data", nargs="+", required=True, metavar="DIR", help="MIDI folders (searched recursively); the split comes from each file's path")
    parser.add_argument("--out", required=True, metavar="DIR", help="where NAME.pt/.json (best weights), NAME.resume.pt and NAME_loss.png go")
    parser.add_argument("--name", default="charrnn", help="checkpoint base name (default: %(default)s)")
    parser.add_argument("--arch", default="lstm:2x256", help="cell:LAYERSxHIDDEN: lstm, gru, attn-lstm (attention over the last 32 top-layer states) or "
                        "transformer (windowed to 64 positions, ALiBi; HIDDEN is its width) (default: %(default)s)")
    parser.add_argument("--embed-dim", type=int, default=CharRNNConfig.embed_dim, help="event embedding size (default: %(default)s)")
    parser.add_argument("--dropout", type=float, default=CharRNNConfig.dropout, help="dropout (default: %(default)s)")
    parser.add_argument("--unconditioned", action="store_true", help="no condition vector: the plain Char-RNN baseline")
    parser.add_argument("--conditioning", default=DEFAULT_SPEC.version, choices=sorted(SPECS),
                        help="condition windows (models/conditioning.py): cond-v2 looks 1 s ahead for register and density, "
                             "cond-v1 3-5 s (default: %(default)s)")
    parser.add_argument("--styles", nargs="+", default=None, metavar="NAME",
                        help="one style name per --data folder (e.g. classical jazz easy): adds a style condition, one-hot, "
                             "that the mapping's [style] section or play --style sets (default: no style condition)")
    parser.add_argument("--epochs", type=int, default=100, help="maximum epochs (default: %(default)s)")
    parser.add_argument("--steps-per-epoch", type=int, default=250, help="optimizer steps between validations (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=64, help="windows per step and process (default: %(default)s)")
    parser.add_argument("--seq-len", type=int, default=128, help="events per window (default: %(default)s)")
    add_optimizer_arguments(parser)
    parser.add_argument("--valid-windows", type=int, default=512, help="held-out windows measured each epoch (default: %(default)s)")
    parser.add_argument("--patience", type=int, default=6, help="stop after this many epochs without a better validation NLL (default: %(default)s)")
    add_run_arguments(parser, checkpoint_minutes=5.0,
                      init_from_help="start from a finished checkpoint's weights (e.g. the shipped one) with a fresh optimizer; its steps, minutes and history carry on")
    parser.add_argument("--no-augment", action="store_true", help="train on the pieces as they are")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads per process (default: all cores / processes)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="(default: %(default)s)")
    parser.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"], help="mixed precision on CUDA (default: bf16 where supported)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--cache-dir", default=None, help="corpus cache folder (default: $DEEP_SYMPHONY_CACHE or ~/.cache)")


def training_spec(args: argparse.Namespace):
    """The run's conditioning: the --conditioning windows, with a style column per --styles name."""
    return dataclasses.replace(SPECS[args.conditioning], styles=tuple(args.styles or ()))


def _usage_error(message: str) -> Exception:
    from models.errors import ModelError

    return ModelError(message)


def run_charrnn(args: argparse.Namespace) -> int:
    """Entry point of ``instrument train charrnn``; returns the exit status."""
    try:
        cell, layers, hidden = parse_arch(args.arch)
    except ValueError as err:
        raise _usage_error(str(err)) from err
    for name in ("epochs", "steps_per_epoch", "batch_size", "seq_len", "valid_windows"):
        if getattr(args, name) < 1:
            raise _usage_error(f"--{name.replace('_', '-')} must be >= 1")
    if args.styles is not None:
        if args.unconditioned:
            raise _usage_error("--styles is a condition: drop --unconditioned")
        if len(args.styles) != len(args.data) or len(set(args.styles)) != len(args.styles):
            raise _usage_error(f"--styles needs one distinct name per --data folder: {len(args.data)} folders, got {args.styles}")
    config = CharRNNConfig(embed_dim=args.embed_dim, hidden_size=hidden, num_layers=layers, cell=cell,
                           cond_dim=0 if args.unconditioned else training_spec(args).dim, dropout=args.dropout)
    out = Path(args.out)
    if args.resume and args.init_from:
        raise _usage_error("--resume continues this run and --init-from starts one from a checkpoint: pass one of them")
    if args.resume and not (out / f"{args.name}.resume.pt").exists():
        raise _usage_error(f"--resume: no {out / (args.name + '.resume.pt')} to resume from")
    return train(config, args)[0]


def main(argv: list[str] | None = None) -> int:
    """``python -m models.charrnn.train`` (and ``torchrun -m models.charrnn.train``)."""
    parser = argparse.ArgumentParser(prog="train_charrnn", description=__doc__.splitlines()[0])
    configure_charrnn(parser)
    return run_charrnn(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
