"""`instrument eval dcrnn`: does the DCRNN sound like the real rolls, and do the muscles steer it?

Measures, against the real test bars of the training corpus:
- sample statistics of >= 200 generated bars (streams of bars with their state carried);
- the Yang & Lerch (2020) overlap area per feature (1 = indistinguishable; real vs real ~0.9);
- slot responsiveness: mean roll Hamming distance per unit change of one z slot, for the EMG
  slots and for the other slots (the EMG slots must move the music more);
- copying: the longest run of consecutive non-empty generated bars found verbatim, in the same
  order, in the training rolls.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from models.errors import ModelError
from models.dcrnn.model import DCRNNConfig, Generator, binarize, load_generator, sample_z
from models.dcrnn.data import conditions, load_rolls, segments
from models.roll_metrics import FEATURES, overlap_areas, summary
from models.dcrnn.train import DEFAULT_DATA

TARGET_WITHIN_STD = ("upc", "polyphony", "scale_consistency")


def configure_dcrnn(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument eval dcrnn`."""
    parser.add_argument("--model", type=Path, default=None, help="generator checkpoint (default: the shipped one)")
    parser.add_argument("--data", nargs="+", default=DEFAULT_DATA, help="corpus the model was trained on (default: %(default)s)")
    parser.add_argument("--streams", type=int, default=32, help="independent streams of generated bars")
    parser.add_argument("--bars", type=int, default=8, help="bars per stream (streams x bars >= 200)")
    parser.add_argument("--threshold", type=float, default=None, help="binarization threshold (default: the checkpoint's calibrated one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run_dcrnn(args: argparse.Namespace) -> int:
    """Evaluate and print; returns 0."""
    torch.set_num_threads(max(1, args.threads))
    if args.streams * args.bars < 200:
        raise ModelError(f"--streams x --bars must be >= 200 bars, got {args.streams * args.bars}")
    try:
        gen = load_generator(args.model)
        rolls, _ = load_rolls(args.data)
    except FileNotFoundError as err:
        raise ModelError(str(err)) from err
    threshold = gen.threshold if args.threshold is None else args.threshold
    report = evaluate(gen, rolls, args.streams, args.bars, threshold, args.seed)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)
    return 0


@torch.no_grad()
def generate_streams(
    gen: Generator, n_streams: int, n_bars: int, cond: torch.Tensor | None, threshold: float, seed: int
) -> np.ndarray:
    """n_streams independent streams of n_bars bars (one held code each) -> (S, n_bars, 16, 128) uint8."""
    noise = torch.Generator().manual_seed(seed)
    z = sample_z(n_streams, gen.config, noise)
    state = gen.init_state(n_streams)
    prev, bars = None, []
    for _ in range(n_bars):
        logits, state = gen.generate_chunk(z, cond, state)
        bar = binarize(logits, threshold, prev=prev)
        prev = bar[:, -1]
        bars.append(bar)
    return torch.stack(bars, dim=1).numpy()


@torch.no_grad()
def slot_responsiveness(
    gen: Generator, slots: list[int], n_base: int = 32, delta: float = 0.5, bars: int = 2, seed: int = 1,
    threshold: float | None = None,
) -> float:
    """Mean Hamming distance between binarized rolls (keys x steps) per unit change of one slot."""
    cfg = gen.config
    noise = torch.Generator().manual_seed(seed)
    base = sample_z(n_base, cfg, noise)

    def roll_of(z: torch.Tensor) -> torch.Tensor:
        state, out = gen.init_state(z.shape[0]), []
        for _ in range(bars):
            logits, state = gen.generate_chunk(z, None, state)
            out.append(binarize(logits, gen.threshold if threshold is None else threshold) != 0)
        return torch.cat(out, dim=1)

    ref = roll_of(base)
    dists = []
    for slot in slots:
        moved = base.clone()
        # move towards the centre so EMG slots stay inside their -1..1 prior
        moved[:, slot] -= delta * torch.sign(moved[:, slot]).where(moved[:, slot] != 0, torch.ones(()))
        dists.append((roll_of(moved) != ref).flatten(1).sum(1).float().mean().item() / delta)
    return float(np.mean(dists))


def longest_copied_run(gen_streams: np.ndarray, train_rolls: list[np.ndarray], steps: int = 16) -> int:
    """Longest run of consecutive non-empty generated bars equal, in order, to consecutive training bars
    (training bars taken at every beat offset)."""
    where: dict[bytes, list[tuple[int, int]]] = {}
    for p, roll in enumerate(train_rolls):
        on = roll != 0
        for start in range(0, roll.shape[0] - steps + 1, 4):
            win = on[start:start + steps]
            if win.any():
                where.setdefault(np.packbits(win).tobytes(), []).append((p, start))
    best = 0
    for stream in gen_streams:
        runs: dict[tuple[int, int], int] = {}  # (piece, start of the matched bar) -> run length ending here
        for bar in stream:
            new = {}
            for p, start in where.get(np.packbits(bar != 0).tobytes(), []):
                new[(p, start)] = runs.get((p, start - steps), 0) + 1
            runs = new
            best = max(best, max(runs.values(), default=0))
    return best


def evaluate(
    gen: Generator, rolls: dict[str, list[np.ndarray]], n_streams: int = 32, n_bars: int = 8, threshold: float = 0.5, seed: int = 0
) -> dict:
    """The whole report as a JSON-ready dict."""
    cfg: DCRNNConfig = gen.config
    real = segments(rolls["test"] or rolls["valid"], cfg.steps_per_bar, hop=cfg.steps_per_bar, keep_empty=True)
    rng = np.random.default_rng(seed)
    nonempty = real[real.any(axis=(1, 2))]
    # key-labelled: each stream is conditioned on the pitch-class histogram of a random real test bar
    cond = torch.from_numpy(conditions(nonempty[rng.integers(0, len(nonempty), n_streams)])) if cfg.cond_dim else None
    streams = generate_streams(gen, n_streams, n_bars, cond, threshold, seed)
    fake = streams.reshape(-1, cfg.steps_per_bar, streams.shape[-1])
    uncond = generate_streams(gen, n_streams, n_bars, None, threshold, seed + 1).reshape(fake.shape)

    real_stats, gen_stats = summary(real), summary(fake)
    overlaps = overlap_areas(real, fake, seed)
    half = len(real) // 2
    perm = rng.permutation(len(real))
    real_vs_real = overlap_areas(real[perm[:half]], real[perm[half:]], seed)
    emg = list(range(cfg.n_emg_slots))
    others = list(range(cfg.n_emg_slots, cfg.z_dim))
    others = [others[i] for i in rng.choice(len(others), min(len(others), len(emg)), replace=False)]
    report = {
        "bars_generated": int(len(fake)),
        "bars_real": int(len(real)),
        **{k: gen_stats[k] for k in ("empty_bar_rate", *FEATURES)},
        "real": real_stats,
        "generated": gen_stats,
        "unconditional": summary(uncond),
        "overlap_area": overlaps,
        "overlap_area_mean": float(np.nanmean(list(overlaps.values()))),
        "overlap_area_real_vs_real_mean": float(np.nanmean(list(real_vs_real.values()))),
        "threshold": threshold,
        "emg_slot_responsiveness": slot_responsiveness(gen, emg, threshold=threshold),
        "other_slot_responsiveness": slot_responsiveness(gen, others, threshold=threshold),
        "copying_longest_run_bars": longest_copied_run(streams, rolls["train"]),
        "within_one_std": {
            k: bool(abs(gen_stats[k] - real_stats[k]) <= real_stats[f"{k}_std"]) for k in TARGET_WITHIN_STD
        },
    }
    return report


def print_report(r: dict) -> None:
    """A readable table of the report."""
    print(f"DCRNN evaluation: {r['bars_generated']} generated bars vs {r['bars_real']} real test bars")
    print(f"{'feature':22s} {'generated':>10s} {'real (mean±std)':>18s} {'overlap':>8s}")
    print(f"{'empty_bar_rate':22s} {r['empty_bar_rate']:10.3f} {r['real']['empty_bar_rate']:10.3f}")
    for k in FEATURES:
        g, m, s = r["generated"][k], r["real"][k], r["real"][f"{k}_std"]
        print(f"{k:22s} {g:10.3f} {m:10.3f} ± {s:5.3f} {r['overlap_area'][k]:8.3f}")
    print(f"overlap area mean {r['overlap_area_mean']:.3f} (real vs real {r['overlap_area_real_vs_real_mean']:.3f})")
    print(f"slot responsiveness (Hamming per unit z): EMG {r['emg_slot_responsiveness']:.1f}, other {r['other_slot_responsiveness']:.1f}")
    print(f"longest copied run: {r['copying_longest_run_bars']} bars")
    print("within one std of real: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in r["within_one_std"].items()))
