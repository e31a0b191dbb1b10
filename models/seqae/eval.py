"""Evaluate a SeqAE: ``instrument eval seqae [--model PATH] [--baseline PATH] --data DIR... [--json]``.

Four questions, each answered with numbers on the test split:
1. How well do the codes keep the music? Every test piece is cut into consecutive L-event
   subsequences; each is encoded and decoded greedily (free-running, as the voice does) by
   the decoder from the real code and by the one from the binary code. Accuracy per event,
   per NOTE_ON (the notes), and per whole subsequence; teacher-forced accuracy beside it.
2. Are neighbours close in code space? The mean number of bits that flip between the
   binary codes of neighbouring subsequences, for this model and for the baseline trained
   without the continuity loss (``--baseline``, else the figure recorded in the model's meta).
3. Does the random walk copy? The longest event run of walk-generated streams found
   verbatim in the training set, against the same statistic for held-out real pieces (p99).
4. Is it fast enough? Decode time of one subsequence at batch 1 on one CPU thread.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from models.checkpoint import load_checkpoint, shipped_checkpoint
from models.events import NOTE_ON_OFFSET, NOTE_OFF_OFFSET
from models.metrics import longest_copies
from models.report import print_report
from models.seqae.model import SeqAE, binarize, bit_flips, decode, walk_step


def subsequences(pieces: list[np.ndarray], seq_len: int) -> list[np.ndarray]:
    """Each piece cut into consecutive subsequences: a list of (S, L) int64 arrays (pieces shorter than L dropped)."""
    out = []
    for events in pieces:
        usable = len(events) // seq_len * seq_len
        if usable:
            out.append(np.asarray(events[:usable], dtype=np.int64).reshape(-1, seq_len))
    return out


@torch.no_grad()
def encode_all(model: SeqAE, chunks: np.ndarray, batch_size: int = 2048) -> np.ndarray:
    """Real codes (S, D) of subsequences (S, L)."""
    return torch.cat([model.encode(torch.from_numpy(chunks[i:i + batch_size])) for i in range(0, len(chunks), batch_size)]).numpy()


@torch.no_grad()
def reconstruction(model: SeqAE, chunks: np.ndarray, batch_size: int = 1024) -> dict[str, float]:
    """Greedy and teacher-forced accuracies of both decoders over subsequences (S, L)."""
    report: dict[str, float] = {}
    target = torch.from_numpy(chunks)
    is_note = (target >= NOTE_ON_OFFSET) & (target < NOTE_OFF_OFFSET)  # (S, L) NOTE_ON positions
    for name, binary in (("real", False), ("binary", True)):
        greedy, forced = [], []
        for i in range(0, len(chunks), batch_size):
            x = target[i:i + batch_size]
            code = model.encode(x)  # (B, D)
            greedy.append(decode(model, code, binary=binary))
            decoder = model.dec_bin if binary else model.dec_real
            forced.append(decoder(binarize(code) if binary else code, model._shifted(x)).argmax(-1))  # (B, L)
        greedy_hit, forced_hit = torch.cat(greedy) == target, torch.cat(forced) == target
        report[f"{name}_event_accuracy"] = greedy_hit.float().mean().item()
        report[f"{name}_note_accuracy"] = greedy_hit[is_note].float().mean().item()
        report[f"{name}_subsequence_exact"] = greedy_hit.all(dim=1).float().mean().item()
        report[f"{name}_event_accuracy_teacher_forced"] = forced_hit.float().mean().item()
    return report


def neighbour_flips(model: SeqAE, pieces: list[np.ndarray]) -> float:
    """Mean bits flipped between neighbouring subsequences' binary codes, over all test pieces."""
    flips, pairs = 0.0, 0
    for chunks in subsequences(pieces, model.config.seq_len):
        if len(chunks) > 1:
            flips += bit_flips(encode_all(model, chunks)) * (len(chunks) - 1)
            pairs += len(chunks) - 1
    return flips / max(pairs, 1)


@torch.no_grad()
def walk_streams(model: SeqAE, streams: int, steps: int, flip_k: float = 2.0, jump_p: float = 0.05,
                 temperature: float = 1.0, top_p: float = 0.95, seed: int = 0) -> list[np.ndarray]:
    """Event streams (steps * L,) made by the random walk from random starting codes, decoded by the binary decoder."""
    out = []
    for s in range(streams):
        rng = np.random.default_rng([seed, s])
        generator = torch.Generator().manual_seed(seed * 7919 + s)
        code = rng.choice(np.array([-1.0, 1.0]), size=model.config.code_dim)
        events = []
        for _ in range(steps):
            events.append(decode(model, torch.tensor(code, dtype=torch.float32)[None], True, generator, temperature, top_p)[0].numpy())
            code = walk_step(code, rng, flip_k, jump_p)
        out.append(np.concatenate(events))
    return out


@torch.no_grad()
def decode_time_ms(model: SeqAE, repeats: int = 300, temperature: float = 1.0, top_p: float = 0.95) -> dict[str, float]:
    """p50 and p99 milliseconds to decode one sampled subsequence at batch 1 (call with one thread set)."""
    generator = torch.Generator().manual_seed(0)
    code = torch.ones(1, model.config.code_dim)
    mkldnn = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False  # as the voice runs (instrument/voices/base.prepare_cpu)
    times = []
    for i in range(repeats + 20):
        started = time.perf_counter()
        decode(model, code, True, generator, temperature, top_p)
        if i >= 20:  # the first calls warm the allocator
            times.append((time.perf_counter() - started) * 1000)
    torch.backends.mkldnn.enabled = mkldnn
    return {"decode_ms_p50": float(np.percentile(times, 50)), "decode_ms_p99": float(np.percentile(times, 99))}


def evaluate(model: SeqAE, corpus, baseline: SeqAE | None = None, max_subsequences: int = 20_000, streams: int = 16,
             length: int = 512) -> dict[str, float]:
    """All figures, as one flat dict."""
    model.eval()
    test = [p.events for p in corpus.split("test")]
    train = [p.events for p in corpus.split("train")]
    if not test or not train:
        raise ValueError("the corpus needs pieces in both the train and the test split")
    chunks = np.concatenate(subsequences(test, model.config.seq_len))
    keep = np.unique(np.linspace(0, len(chunks) - 1, min(max_subsequences, len(chunks))).round().astype(int))
    report: dict[str, float] = {"test_subsequences": int(len(keep))}
    report.update(reconstruction(model, chunks[keep]))
    report["bit_flips"] = neighbour_flips(model, test)
    if baseline is not None:
        report["bit_flips_without_continuity"] = neighbour_flips(baseline.eval(), test)
        report.update({f"baseline_{k}": v for k, v in reconstruction(baseline, chunks[keep]).items() if "teacher" not in k})
    steps = max(1, length // model.config.seq_len)
    report["longest_copy_walk"] = max(longest_copies(walk_streams(model, streams, steps), train))
    report["longest_copy_walk_greedy"] = max(longest_copies(walk_streams(model, streams, steps, temperature=0.0), train))
    held_out = [events[i:i + length] for events in test for i in range(0, len(events) - length, 4 * length)]
    report["longest_copy_heldout_p99"] = float(np.percentile(longest_copies(held_out, train), 99))
    report.update(decode_time_ms(model))
    return report


# ----------------------------------------------------------------------------- CLI
def configure_eval(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``instrument eval seqae``."""
    parser.add_argument("--model", type=Path, default=None, help="checkpoint .pt (default: the shipped model)")
    parser.add_argument("--baseline", type=Path, default=None, help="a SeqAE trained without the continuity loss, for the bit-flip comparison")
    parser.add_argument("--data", nargs="+", type=Path, required=True, metavar="DIR", help="MIDI folders; the test split is scored")
    parser.add_argument("--max-subsequences", type=int, default=20_000, help="test subsequences decoded for reconstruction (default: %(default)s)")
    parser.add_argument("--streams", type=int, default=16, help="random-walk streams for the copying test (default: %(default)s)")
    parser.add_argument("--length", type=int, default=512, help="events per stream and per held-out window (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate and print the figures; returns the exit status."""
    from models.data import Corpus

    torch.set_num_threads(args.threads)
    path = args.model or shipped_checkpoint("seqae")
    model, _, meta = load_checkpoint(path, SeqAE)
    baseline = load_checkpoint(args.baseline, SeqAE)[0] if args.baseline else None
    corpus = Corpus.load(args.data, workers=1)
    if not corpus.pieces:
        from models.errors import ModelError

        raise ModelError(f"no usable MIDI files under {', '.join(map(str, args.data))}")
    started = time.perf_counter()
    report = evaluate(model, corpus, baseline, args.max_subsequences, args.streams, args.length)
    if baseline is None:  # the ablation measured when the model was made, if it was recorded
        recorded = meta.get("ablation", {}).get("bit_flips_without_continuity")
        if recorded is not None:
            report["bit_flips_without_continuity (recorded)"] = recorded
    report["model"] = str(path)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print_report(report, args.json)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m models.seqae.eval``."""
    parser = argparse.ArgumentParser(prog="eval_seqae", description=__doc__.splitlines()[0])
    configure_eval(parser)
    return run_eval(parser.parse_args(argv))


if __name__ == "__main__":
    import sys

    sys.exit(main())
