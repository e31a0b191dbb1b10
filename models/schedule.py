"""What every resumable training run shares: its learning-rate schedule and the flags of its budget.

The Char-RNN, SeqAE and Refine trainers run over several sessions (``--resume`` with the optimizer
state beside the run, or ``--init-from`` a finished checkpoint). Their budget is minutes counted
across runs, and the cosine spans that budget, so a warm start late in it carries on at its late,
low rate instead of restarting from the peak.
"""
from __future__ import annotations

import argparse
import math


def learning_rate(progress: float, step: int, base_lr: float, warmup: int, min_ratio: float) -> float:
    """Cosine from base_lr to base_lr*min_ratio as progress goes 0 -> 1, ramped in linearly over ``warmup`` steps.

    ``step`` counts from the optimizer's start (a warm start's fresh optimizer ramps again), and the
    ramp leads to the cosine's value at that point, not to the peak.
    """
    cosine = base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
    return cosine * min(1.0, (step + 1) / warmup) if warmup > 0 else cosine


def add_optimizer_arguments(parser: argparse.ArgumentParser) -> None:
    """--lr, --min-lr-ratio, --warmup-steps, --weight-decay, --grad-clip (AdamW, cosine)."""
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate, AdamW (default: %(default)s)")
    parser.add_argument("--min-lr-ratio", type=float, default=0.05, help="final lr = lr * this, cosine (default: %(default)s)")
    parser.add_argument("--warmup-steps", type=int, default=100, help="linear warmup (default: %(default)s)")
    parser.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default: %(default)s)")
    parser.add_argument("--grad-clip", type=float, default=1.0, help="gradient norm clip (default: %(default)s)")


def add_run_arguments(parser: argparse.ArgumentParser, checkpoint_minutes: float = 2.0,
                      init_from_help: str = "start from a finished checkpoint's weights with a fresh optimizer; "
                                            "its steps, minutes and history carry on") -> None:
    """--max-minutes, --checkpoint-minutes, --resume, --init-from: a run that spans several sessions."""
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="training-time budget in minutes, counted across resumes; the cosine schedule ends with it")
    parser.add_argument("--checkpoint-minutes", type=float, default=checkpoint_minutes,
                        help="save the resume state this often (default: %(default)s)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/NAME.resume.pt")
    parser.add_argument("--init-from", default=None, metavar="CHECKPOINT", help=init_from_help)
