"""Evaluate the Refine nets: ``instrument eval refine [--velocity PATH] [--duration PATH] --data DIR... [--json]``.

Velocity Net, on every note of the test split: mean absolute error (MIDI velocity units)
and Spearman rho against the real velocities, over all notes and averaged per piece,
beside two baselines fitted on the train split: a constant (the train median) and a
heuristic (the median velocity of lone notes, of chord tops and of the other chord notes).

Duration Net, on the test split stretched two ways (fixed seed each): per note (every
inter-onset interval and every duration by its own random factor in 80-120 %, the study's
stretch; keys without a prefix, as the first net reported them) and per phrase (a tempo
factor per segment of 4-32 onset groups, a legato factor per other segment; keys prefixed
``phrase_``): the timing error before and after restoring (mean absolute error of the
intervals and of the durations, ms), and each version's onset deviation from its beat grid
(intervals against the nearest multiple of the local median interval, ms). Restoring is what
``instrument refine --duration`` runs: the net, then nearby ends given one end
(models/refine/shared_ends.py); ``--no-shared-ends`` scores the net alone.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from models.metrics import spearman
from models.refine.duration import (LOCAL_GROUPS, MIN_IOI_S, STRETCH_KINDS, _local_median, interval_mask, intervals_and_durations,
                                    restore_timing, stretch)
from models.refine.notes import START, VELOCITY, from_piece_array, group_stats, onset_groups
from models.refine.velocity import heuristic_velocities, predict_velocities
from models.report import print_report


def fit_baselines(train_tables: list[np.ndarray]) -> dict[str, float]:
    """Train-split medians: all notes, lone notes, chord tops, other chord notes."""
    velocities, kinds = [], []
    for table in train_tables:
        stats = group_stats(table, onset_groups(table[:, START]))
        velocities.append(table[:, VELOCITY])
        kinds.append(np.where(stats["size"] == 1, 0, np.where(stats["rank"] == 0, 1, 2)))
    v, k = np.concatenate(velocities), np.concatenate(kinds)
    return {"median": float(np.median(v)), "single": float(np.median(v[k == 0])),
            "top": float(np.median(v[k == 1])), "inner": float(np.median(v[k == 2]))}


def velocity_report(model, test_tables: list[np.ndarray], baselines: dict[str, float]) -> dict[str, float]:
    """MAE and Spearman rho of the net and both baselines against the real velocities."""
    real, net, heuristic, per_piece = [], [], [], {"net": [], "heuristic": []}
    for table in test_tables:
        real.append(table[:, VELOCITY])
        net.append(predict_velocities(table, model).astype(np.float64))
        heuristic.append(heuristic_velocities(table, baselines["single"], baselines["top"], baselines["inner"]))
        if len(table) > 10:
            per_piece["net"].append(spearman(net[-1], real[-1]))
            per_piece["heuristic"].append(spearman(heuristic[-1], real[-1]))
    real_all, net_all, heuristic_all = np.concatenate(real), np.concatenate(net), np.concatenate(heuristic)
    report = {"velocity_test_notes": int(len(real_all)), "velocity_train_median": baselines["median"],
              "velocity_mae_net": float(np.abs(net_all - real_all).mean()),
              "velocity_mae_constant": float(np.abs(baselines["median"] - real_all).mean()),
              "velocity_mae_heuristic": float(np.abs(heuristic_all - real_all).mean()),
              "velocity_rho_net": spearman(net_all, real_all),
              "velocity_rho_constant": 0.0,  # a constant ranks nothing (Spearman is undefined; counted as 0)
              "velocity_rho_heuristic": spearman(heuristic_all, real_all),
              "velocity_rho_per_piece_net": float(np.nanmean(per_piece["net"])),
              "velocity_rho_per_piece_heuristic": float(np.nanmean(per_piece["heuristic"])),
              "velocity_std_real": float(real_all.std()), "velocity_std_net": float(net_all.std())}
    return report


def grid_deviation_ms(table: np.ndarray) -> float:
    """Mean distance (ms) of each inter-onset interval from the nearest multiple of its local median interval."""
    groups = onset_groups(table[:, START])
    ioi = np.diff(group_stats(table, groups)["onset"])
    if not len(ioi):
        return float("nan")
    tatum = _local_median(np.where(ioi >= MIN_IOI_S, ioi, np.nan), LOCAL_GROUPS)
    real = ioi >= MIN_IOI_S
    ratio = ioi[real] / tatum[real]
    return float((np.abs(ratio - np.round(ratio)) * tatum[real]).mean() * 1000)


def duration_report(model, test_tables: list[np.ndarray], seed: int = 1234, kind: str = "note",
                    shared_ends: bool = True, restore: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
                    ) -> dict[str, float]:
    """Timing error (ms) of the test pieces stretched by `kind` before and after restoring, and grid deviations.

    Keys of the "note" stretch carry no prefix (the first net's report); others are prefixed with the kind.
    `shared_ends=False` scores the net alone, without putting nearby ends back together. `restore`
    (real table, stretched table) -> restored table replaces the net (the coincidence oracle's ceiling)."""
    rng = np.random.default_rng(seed)
    sums = {"ioi_before": 0.0, "ioi_after": 0.0, "dur_before": 0.0, "dur_after": 0.0}
    counts = {"ioi": 0, "dur": 0}
    grid = {"real": [], "stretched": [], "restored": []}
    for table in test_tables:
        if len(table) < 2:
            continue
        scored = interval_mask(table)  # intervals that are not inside a chord
        stretched, _, _ = stretch(table, rng, kind=kind)
        restored = restore(table, stretched) if restore else restore_timing(stretched, model, shared_ends)
        (ioi, dur), (ioi_s, dur_s), (ioi_r, dur_r) = (intervals_and_durations(t) for t in (table, stretched, restored))
        sums["ioi_before"] += np.abs(ioi_s - ioi)[scored].sum()
        sums["ioi_after"] += np.abs(ioi_r - ioi)[scored].sum()
        sums["dur_before"] += np.abs(dur_s - dur).sum()
        sums["dur_after"] += np.abs(dur_r - dur).sum()
        counts["ioi"] += int(scored.sum())
        counts["dur"] += len(table)
        for name, version in (("real", table), ("stretched", stretched), ("restored", restored)):
            grid[name].append(grid_deviation_ms(version))
    ms = lambda key, count: 1000 * sums[key] / max(counts[count], 1)  # noqa: E731
    before = (sums["ioi_before"] + sums["dur_before"]) / max(counts["ioi"] + counts["dur"], 1) * 1000
    after = (sums["ioi_after"] + sums["dur_after"]) / max(counts["ioi"] + counts["dur"], 1) * 1000
    prefix = "" if kind == "note" else f"{kind}_"
    report = {"duration_scored_intervals": counts["ioi"], "duration_scored_notes": counts["dur"],
              "interval_error_ms_before": ms("ioi_before", "ioi"), "interval_error_ms_after": ms("ioi_after", "ioi"),
              "duration_error_ms_before": ms("dur_before", "dur"), "duration_error_ms_after": ms("dur_after", "dur"),
              "timing_error_ms_before": before, "timing_error_ms_after": after,
              "timing_error_reduction": 1.0 - after / before if before else float("nan"),
              "grid_deviation_ms_real": float(np.nanmean(grid["real"])),
              "grid_deviation_ms_stretched": float(np.nanmean(grid["stretched"])),
              "grid_deviation_ms_restored": float(np.nanmean(grid["restored"]))}
    return {(key if key.startswith("duration_scored") else prefix + key): value for key, value in report.items()}


def live_duration_report(model, test_tables: list[np.ndarray], seed: int = 1234, kind: str = "note") -> dict[str, float]:
    """The live (causal) Duration Net: duration error (ms) of the test pieces stretched by `kind`, before and after.

    The same stretches as `duration_report` (same seed); onsets stay where the stretch put them
    (live, they are already scheduled), so the timing error pools the unchanged interval error
    with the restored durations. Keys are prefixed ``live_`` (and the kind, but for "note")."""
    from models.refine.live_duration import restore_durations

    rng = np.random.default_rng(seed)
    sums = {"ioi": 0.0, "dur_before": 0.0, "dur_after": 0.0}
    counts = {"ioi": 0, "dur": 0}
    for table in test_tables:
        if len(table) < 2:
            continue
        scored = interval_mask(table)
        stretched, _, _ = stretch(table, rng, kind=kind)
        restored = restore_durations(stretched, model)
        (ioi, dur), (ioi_s, dur_s), (_, dur_r) = (intervals_and_durations(t) for t in (table, stretched, restored))
        sums["ioi"] += np.abs(ioi_s - ioi)[scored].sum()
        sums["dur_before"] += np.abs(dur_s - dur).sum()
        sums["dur_after"] += np.abs(dur_r - dur).sum()
        counts["ioi"] += int(scored.sum())
        counts["dur"] += len(table)
    total = max(counts["ioi"] + counts["dur"], 1)
    before = 1000 * (sums["ioi"] + sums["dur_before"]) / total
    after = 1000 * (sums["ioi"] + sums["dur_after"]) / total
    dur_before = 1000 * sums["dur_before"] / max(counts["dur"], 1)
    dur_after = 1000 * sums["dur_after"] / max(counts["dur"], 1)
    prefix = "live_" + ("" if kind == "note" else f"{kind}_")
    return {prefix + "duration_error_ms_before": dur_before, prefix + "duration_error_ms_after": dur_after,
            prefix + "duration_error_reduction": 1.0 - dur_after / dur_before if dur_before else float("nan"),
            prefix + "timing_error_ms_before": before, prefix + "timing_error_ms_after": after,
            prefix + "timing_error_reduction": 1.0 - after / before if before else float("nan")}


def evaluate(corpus, velocity_model=None, duration_model=None, stretches: tuple[str, ...] = STRETCH_KINDS,
             live_duration_model=None, shared_ends: bool = True, seed: int = 1234) -> dict[str, float]:
    """All figures of the nets given, as one flat dict (the Duration Net's for each stretch kind in `stretches`)."""
    test = [from_piece_array(p.note_array) for p in corpus.split("test")]
    if not test:
        raise ValueError("the corpus has no pieces in the test split")
    report: dict[str, float] = {"test_pieces": len(test)}
    if velocity_model is not None:
        train = [from_piece_array(p.note_array) for p in corpus.split("train")]
        report.update(velocity_report(velocity_model, test, fit_baselines(train)))
    if duration_model is not None:
        for kind in stretches:
            report.update(duration_report(duration_model, test, seed=seed, kind=kind, shared_ends=shared_ends))
    if live_duration_model is not None:
        for kind in stretches:
            report.update(live_duration_report(live_duration_model, test, seed=seed, kind=kind))
    return report


# ----------------------------------------------------------------------------- CLI
def configure_eval(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``instrument eval refine``."""
    parser.add_argument("--velocity", type=Path, default=None, help="Velocity Net checkpoint (default: the shipped one)")
    parser.add_argument("--duration", type=Path, default=None, help="Duration Net checkpoint (default: the shipped one)")
    parser.add_argument("--live-duration", type=Path, default=None,
                        help="live (causal) Duration Net checkpoint (default: the shipped one; scored with --only live_duration)")
    parser.add_argument("--only", choices=["velocity", "duration", "live_duration"], default=None,
                        help="evaluate one net only (live_duration: only with --only)")
    parser.add_argument("--stretch", choices=["both", *STRETCH_KINDS], default="both",
                        help="duration: score test pieces stretched per note (the study's), per phrase, or both (default: %(default)s)")
    parser.add_argument("--data", nargs="+", type=Path, required=True, metavar="DIR",
                        help="MIDI folders; the test split is scored (pooled over the folders: give one folder to score it alone)")
    parser.add_argument("--on-grid", action="store_true",
                        help="score only the files sequenced on a beat grid: at least 90 %% of their onsets within 10 ms of "
                             "their 16th-note ticks (models/refine/beat_grid.py)")
    parser.add_argument("--no-shared-ends", action="store_true",
                        help="duration: score the net alone, without giving notes whose restored ends lie close together one "
                             "end (models/refine/shared_ends.py; instrument refine does that)")
    parser.add_argument("--seed", type=int, default=1234, help="duration: the stretches' random seed (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate and print the figures; returns the exit status."""
    import torch

    from models.checkpoint import load_checkpoint, shipped_checkpoint
    from models.data import Corpus
    from models.refine.duration import DurationNet
    from models.refine.velocity import VelocityNet

    torch.set_num_threads(args.threads)
    from models.refine.live_duration import LiveDurationNet

    velocity = duration = live = None
    if args.only in (None, "velocity"):
        velocity = load_checkpoint(args.velocity or shipped_checkpoint("velocity"), VelocityNet)[0]
    if args.only in (None, "duration"):
        duration = load_checkpoint(args.duration or shipped_checkpoint("duration"), DurationNet)[0]
    if args.only == "live_duration" or args.live_duration is not None:
        live = load_checkpoint(args.live_duration or shipped_checkpoint("live_duration"), LiveDurationNet)[0]
    corpus = Corpus.load(args.data, workers=1)
    if args.on_grid:
        from models.refine.beat_grid import is_sequenced

        corpus.pieces = [p for p in corpus.pieces if p.split != "test" or is_sequenced(p.path)]
    started = time.perf_counter()
    report = evaluate(corpus, velocity, duration, STRETCH_KINDS if args.stretch == "both" else (args.stretch,), live,
                      shared_ends=not args.no_shared_ends, seed=args.seed)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print_report(report, args.json)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m models.refine.eval``."""
    parser = argparse.ArgumentParser(prog="eval_refine", description=__doc__.splitlines()[0])
    configure_eval(parser)
    return run_eval(parser.parse_args(argv))


if __name__ == "__main__":
    import sys

    sys.exit(main())
