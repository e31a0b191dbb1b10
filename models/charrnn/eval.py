"""Evaluate a Char-RNN: ``instrument eval charrnn [--model PATH] --data DIR... [--json]``.

Four questions, each answered with numbers:
1. How well does it predict held-out music? NLL in nats/event and nats/second, whole pieces,
   state carried through each, under three kinds of condition (``CONDITION_MODES``):
   - honest (the headline): what the live voice plays with when nobody moves: the spec's
     default register and density, and the own-key histogram of the notes heard so far;
   - past-only: register and density measured over the last window of notes heard so far,
     the own-key histogram: a listener who follows the music but cannot see ahead;
   - told the future: the forward windows training used; the model is told what comes next,
     so this figure flatters it.
   ``--all`` scores every piece of the folders given (any collection), not only the test split.
2. Does it obey its controls? Sweep register and density over 5+ levels with the other
   controls at corpus medians, generate 8+ samples per level with fixed seeds, measure
   the music with the same extractor training used (models/conditioning.py), and report
   Spearman rho and MAE; for keys, the Jensen-Shannon divergence of the histograms.
3. Does it stay in key? The in-scale rate of NOTE_ONs under the soft key condition, and
   under the hard scale lock.
4. Does it copy? The longest event run it shares verbatim with the training set, against
   the same statistic for held-out real pieces (their p99).
5. Does it play like the real pieces when left alone? ``--freerun-seconds`` of free-running
   music per seed under the neutral controls: key clarity per 10 s, 8-note interval-pattern
   repetition and the share of notes at the 4-s cap, beside the same figures on excerpts of
   the scored real pieces (models/charrnn/freerun.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from models.charrnn.freerun import FREERUN_SAMPLES, FREERUN_SECONDS, freerun_lines, freerun_report
from models.charrnn.model import CharRNN
from models.checkpoint import load_charrnn, shipped_checkpoint
from models.conditioning import (
    ConditionSpec,
    condition_vector,
    extract_conditions,
    measure,
    neutral_conditions,
    past_conditions,
)
from models.keys import key_histogram, scale_pitch_classes
from models.data import Corpus
from models.events import CODEC, NOTE_ON_OFFSET, TIME_SHIFT_OFFSET, VELOCITY_OFFSET, EventType, Event
from models.metrics import jensen_shannon, longest_copies, spearman
from models.sampling import sample_token

REGISTER_LEVELS = (52.0, 58.0, 64.0, 70.0, 76.0)  # MIDI pitch, around the corpus median 64.6
DENSITY_LEVELS = (3.0, 6.0, 10.0, 15.0, 22.0)  # note-ons per second, around the median 13.7
KEYS = ("C:major", "G:major", "A:minor", "Eb:major", "F#:minor")
PRIMER = Event(EventType.VELOCITY, 16)  # every sample starts from a mezzo-forte velocity event


# ----------------------------------------------------------------------------- likelihood
def input_conditions(events: np.ndarray, spec: ConditionSpec, mode: str) -> np.ndarray:
    """(T, C) the condition given with input event i (which predicts event i+1), for one mode.

    told_future: the forward condition of event i+1, as in training (models/charrnn/windows.py
    split_inputs); honest and past_only: computed from events 0..i only (models/conditioning.py).
    """
    if mode == "told_future":
        cond = extract_conditions(events, spec)
        return np.concatenate([cond[1:], cond[-1:]])  # the last row predicts nothing
    if mode == "honest":
        return neutral_conditions(events, spec)
    if mode == "past_only":
        return past_conditions(events, spec)
    raise ValueError(f"unknown condition mode {mode!r}; known: {', '.join(CONDITION_MODES)}")


CONDITION_MODES = ("honest", "past_only", "told_future")


@torch.no_grad()
def held_out_nll(model: CharRNN, pieces: list[np.ndarray], spec: ConditionSpec | None, segment: int = 2048,
                 max_events: int | None = None, mode: str = "honest") -> tuple[float, float, int]:
    """(nats/event, nats/second, events scored) over whole pieces, state carried through each piece."""
    total_nll, total_events, total_seconds = 0.0, 0, 0.0
    budget = max_events
    for events in pieces:
        events = np.asarray(events, dtype=np.int64)
        if budget is not None:
            if budget <= 1:
                break
            events = events[:budget]
            budget -= len(events)
        if len(events) < 2:
            continue
        cond = torch.from_numpy(input_conditions(events, spec, mode)) if spec is not None else None
        tokens = torch.from_numpy(events)
        state = model.init_state(1)
        for start in range(0, len(events) - 1, segment):
            stop = min(start + segment, len(events) - 1)
            x = tokens[start:stop].unsqueeze(0)  # (1, T)
            y = tokens[start + 1:stop + 1].unsqueeze(0)
            c = cond[start:stop].unsqueeze(0) if cond is not None else None  # (1, T, C)
            logits, state = model.forward_with_state(x, c, state)
            total_nll += torch.nn.functional.cross_entropy(logits[0], y[0], reduction="sum").item()
            total_events += stop - start
        shifts = events[(events >= TIME_SHIFT_OFFSET) & (events < VELOCITY_OFFSET)] - TIME_SHIFT_OFFSET + 1
        total_seconds += shifts.sum() / 100.0
    return total_nll / max(total_events, 1), total_nll / max(total_seconds, 1e-9), total_events


def likelihoods(model: CharRNN, pieces: list[np.ndarray], spec: ConditionSpec | None,
                max_events: int | None = None) -> dict[str, float]:
    """NLL under every condition mode; ``nll_per_event`` / ``nll_per_second`` are the honest (headline) figures."""
    report: dict[str, float] = {}
    for mode in CONDITION_MODES if spec is not None else ("honest",):
        per_event, per_second, scored = held_out_nll(model, pieces, spec, max_events=max_events, mode=mode)
        prefix = "nll" if mode == "honest" else f"nll_{mode}"
        report.update({f"{prefix}_per_event": per_event, f"{prefix}_per_second": per_second})
        report["events_scored"] = scored
    return report


# ----------------------------------------------------------------------------- generation
@torch.no_grad()
def generate(model: CharRNN, cond: np.ndarray | None, seeds: list[int], length: int, temperature: float = 1.0,
             allowed_pitch_classes: frozenset[int] | None = None) -> list[np.ndarray]:
    """One sample of `length` events per seed, all under the same condition, stepped as a batch."""
    batch = len(seeds)
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    state = model.init_state(batch)
    token = torch.full((batch,), CODEC.encode(PRIMER), dtype=torch.long)
    c = torch.from_numpy(np.tile(cond, (batch, 1))) if cond is not None else None  # (B, C)
    out = np.empty((batch, length), dtype=np.int64)
    for t in range(length):
        logits, state = model.step(token, c, state)  # (B, 388)
        token = torch.tensor([
            sample_token(logits[b], generators[b], temperature=temperature, allowed_pitch_classes=allowed_pitch_classes)
            for b in range(batch)
        ])
        out[:, t] = token.numpy()
    return list(out)


def control_fidelity(model: CharRNN, spec: ConditionSpec, samples: int, length: int) -> dict[str, float]:
    """Spearman rho and MAE of requested vs measured register and density; key JSD."""
    report: dict[str, float] = {}
    for control, levels in (("register", REGISTER_LEVELS), ("density", DENSITY_LEVELS)):
        requested, measured = [], []
        for level_index, level in enumerate(levels):
            cond = condition_vector(**{control: level}, spec=spec)
            seeds = [1000 * level_index + s for s in range(samples)]
            for events in generate(model, cond, seeds, length):
                value = measure(events, spec)[control]
                if math.isfinite(value):
                    requested.append(level)
                    measured.append(value)
        report[f"{control}_spearman"] = spearman(np.array(requested), np.array(measured))
        report[f"{control}_mae"] = float(np.mean(np.abs(np.array(requested) - np.array(measured))))
    divergences = []
    for key_index, key in enumerate(KEYS):
        cond = condition_vector(key_histogram=key_histogram(key), spec=spec)
        for events in generate(model, cond, [5000 + 100 * key_index + s for s in range(samples)], length):
            divergences.append(jensen_shannon(np.array(key_histogram(key)), np.array(measure(events, spec)["histogram"])))
    report["key_jsd"] = float(np.mean(divergences))
    return report


def in_scale_rates(model: CharRNN, spec: ConditionSpec, samples: int, length: int) -> dict[str, float]:
    """Share of NOTE_ONs inside the key's scale, with the soft condition and with the hard lock."""
    rates = {}
    for name, lock in (("in_scale_soft", False), ("in_scale_locked", True)):
        inside = total = 0
        for key_index, key in enumerate(KEYS):
            scale = scale_pitch_classes(key)
            cond = condition_vector(key_histogram=key_histogram(key), spec=spec) if spec else None
            seeds = [7000 + 100 * key_index + s for s in range(samples)]
            for events in generate(model, cond, seeds, length, allowed_pitch_classes=scale if lock else None):
                pitches = events[(events >= NOTE_ON_OFFSET) & (events < NOTE_ON_OFFSET + 128)] - NOTE_ON_OFFSET
                inside += int(np.isin(pitches % 12, list(scale)).sum())
                total += len(pitches)
        rates[name] = inside / max(total, 1)
    return rates


def evaluate(model: CharRNN, spec: ConditionSpec | None, corpus: Corpus, samples: int = 8, length: int = 512,
             max_events: int | None = None, all_pieces: bool = False, nll_only: bool = False,
             freerun_samples: int = FREERUN_SAMPLES, freerun_seconds: float = FREERUN_SECONDS) -> dict[str, float]:
    """All figures of the evaluation, as one flat dict (``all_pieces``: score every piece, not the test split).

    ``freerun_seconds`` 0 (or ``nll_only``) leaves the free-running statistics out.
    """
    model.eval()
    scored_pieces = corpus.pieces if all_pieces else corpus.split("test")
    scored = [p.events for p in scored_pieces]
    test = [p.events for p in corpus.split("test")]
    train = [p.events for p in corpus.split("train")]
    if not scored:
        raise ValueError("no piece to score: the test split is empty (pass --all to score every piece)")
    touched = len(scored) if max_events is None else min(len(scored), int(np.searchsorted(
        np.cumsum([len(e) for e in scored]), max_events, side="left")) + 1)  # --max-events may stop inside a piece
    report: dict[str, float] = {"pieces_scored": touched, **likelihoods(model, scored, spec, max_events)}
    if nll_only:
        return report
    if spec is not None:
        report.update(control_fidelity(model, spec, samples, length))
    report.update(in_scale_rates(model, spec, samples, length))
    if freerun_seconds > 0 and freerun_samples > 0:
        report.update(freerun_report(model, spec, scored_pieces, freerun_samples, freerun_seconds))
    if not (train and test):
        return report  # copying is measured against the train split, with the test split as the baseline
    generated = generate(model, condition_vector(spec=spec) if spec else None, list(range(2 * samples)), length)
    report["longest_copy_generated"] = max(longest_copies(generated, train))
    held_out_windows = [events[i:i + length] for events in test for i in range(0, len(events) - length, 4 * length)]
    report["longest_copy_heldout_p99"] = float(np.percentile(longest_copies(held_out_windows, train), 99))
    return report


# ----------------------------------------------------------------------------- CLI
def headline(report: dict) -> str:
    """One line: the honest NLL first, the others beside it."""
    line = f"honest NLL {report['nll_per_event']:.3f} nats/event ({report['nll_per_second']:.1f} nats/s)"
    if "nll_past_only_per_event" in report:
        line += f"; past-only {report['nll_past_only_per_event']:.3f}; told the future {report['nll_told_future_per_event']:.3f}"
    return line + f" over {report['events_scored']:,} events of {report['pieces_scored']} pieces"


def configure_charrnn(parser: argparse.ArgumentParser) -> None:
    """Arguments of `instrument eval charrnn`."""
    parser.add_argument("--model", type=Path, default=None, help="checkpoint .pt (default: the shipped model)")
    parser.add_argument("--data", nargs="+", type=Path, required=True, metavar="DIR", help="MIDI folders; the test split is scored")
    parser.add_argument("--all", action="store_true", help="score every piece of --data (any collection), not only its test split")
    parser.add_argument("--style", default=None, metavar="NAME",
                        help="the style condition every figure is measured under, for a model trained with styles "
                             "(default: its first, e.g. classical)")
    parser.add_argument("--nll-only", action="store_true", help="only the likelihoods: no sampling, control sweeps or copy check")
    parser.add_argument("--samples", type=int, default=8, help="samples per control level (default: %(default)s)")
    parser.add_argument("--length", type=int, default=512, help="events per generated sample (default: %(default)s)")
    parser.add_argument("--freerun-seconds", type=float, default=FREERUN_SECONDS,
                        help="seconds of free-running music per sample for key clarity, motif repetition and the 4-s cap "
                             "beside the real pieces' (0: off; default: %(default)s)")
    parser.add_argument("--freerun-samples", type=int, default=FREERUN_SAMPLES, help="free-running samples, seeds 0.. (default: %(default)s)")
    parser.add_argument("--max-events", type=int, default=None, help="score at most this many held-out events (quick checks)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run_charrnn(args: argparse.Namespace) -> int:
    """Evaluate and print the figures."""
    from models.errors import ModelError

    if args.threads:
        torch.set_num_threads(args.threads)
    path = args.model or shipped_checkpoint("charrnn")
    model, config, meta = load_charrnn(path)
    spec = ConditionSpec.from_dict(meta["conditioning"]) if config.cond_dim else None
    if args.style is not None:
        try:
            (spec or ConditionSpec()).style_index(args.style)
        except ValueError as err:
            raise ModelError(f"--style: {err}") from None
        spec = dataclasses.replace(spec, default_style=args.style)  # every condition below is built in this style
    corpus = Corpus.load(args.data)
    if not corpus.pieces:
        raise ModelError(f"no usable MIDI files under {', '.join(map(str, args.data))}")
    started = time.perf_counter()
    try:
        report = evaluate(model, spec, corpus, samples=args.samples, length=args.length, max_events=args.max_events,
                          all_pieces=args.all, nll_only=args.nll_only,
                          freerun_samples=args.freerun_samples, freerun_seconds=args.freerun_seconds)
    except ValueError as err:
        raise ModelError(str(err)) from None
    report["model"] = str(path)
    report["conditioning"] = spec.version if spec else "none"
    if spec is not None and spec.styles:
        report["style"] = spec.styles[spec.style_index(None)]
    report["seconds"] = round(time.perf_counter() - started, 1)
    report.setdefault("freerun_seconds", 0.0 if args.nll_only else float(args.freerun_seconds))  # --json says what ran
    if args.json:
        print(json.dumps(report))
    else:
        print(headline(report))
        for line in freerun_lines(report):
            print(line)
        for key, value in report.items():
            print(f"{key:28s} {value:.4f}" if isinstance(value, float) else f"{key:28s} {value}")
    return 0


if __name__ == "__main__":  # `python -m models.charrnn.eval ...`, the same as `instrument eval charrnn ...`
    _parser = argparse.ArgumentParser(prog="eval_charrnn", description=__doc__.splitlines()[0])
    configure_charrnn(_parser)
    raise SystemExit(run_charrnn(_parser.parse_args()))
