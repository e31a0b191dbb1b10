"""Refiners behind any voice (`play --refine velocity`): the Velocity Net gives notes their dynamics live.

A refiner sits between the performer and the scheduler on the generation thread: every
note-on the voice makes gets its velocity from the Velocity Net (models/refine/velocity.py),
which reads the notes before it and the notes struck with it. The net was trained with
each note's real duration, which is not known when a note starts live: a note gets the
corpus's median length (0.23 s) as a stand-in. The Duration Net needs the notes after a
note, so it only runs offline (`instrument refine --duration`).

Rollback: the refiner's history holds the notes made; `rollback(t)` forgets those after
the playhead, as the dropped future is forgotten.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np

PROVISIONAL_LENGTH_S = 0.23  # the corpus's median note length: a live note's duration is not known yet
CONTEXT_NOTES = 32  # notes the GRU reads before the one it predicts (its feature windows need ~16)
REFINERS = ("velocity",)  # what `--refine` accepts live
DEFAULT_SPREAD = 1.5  # the net predicts a median, flatter than playing (std 13 vs 18): widen it this much


class VelocityRefiner:
    """Note-ons -> note-ons with the Velocity Net's velocity: one GRU step per note, its state kept per note."""

    def __init__(self, model, spread: float = DEFAULT_SPREAD) -> None:
        self.model = model.eval()
        self.spread = float(spread)
        # (pitch, velocity, start, end) of the notes made, oldest first, and the GRU state after each
        self._notes: deque[tuple[int, int, float, float]] = deque(maxlen=CONTEXT_NOTES)
        self._states: deque = deque(maxlen=CONTEXT_NOTES)
        self.applied = 0

    def apply(self, messages: Sequence) -> None:
        """Set the velocity of every note-on among `messages` (TimedMessage, modified in place)."""
        import torch

        from models.refine.velocity import velocity_features

        model = self.model
        for item in messages:
            message = item.message
            if message.type != "note_on" or message.velocity == 0:
                continue
            self._notes.append((message.note, message.velocity, item.deadline, item.deadline + PROVISIONAL_LENGTH_S))
            features = velocity_features(np.asarray(self._notes, dtype=np.float64))[-1]  # (F,) the new note's, causal
            with torch.inference_mode():
                x = torch.from_numpy(features).view(1, 1, -1)  # (1, 1, F)
                out, state = model.rnn(torch.relu(model.inp(x)), self._states[-1] if self._states else None)
                raw = 64.0 + 32.0 * float(model.head(torch.cat([out, x], dim=-1)))  # as VelocityNet.forward
            self._states.append(state)
            velocity = int(np.clip(round(64.0 + self.spread * (raw - 64.0)), 1, 127))
            item.message = message.copy(velocity=velocity)
            self.applied += 1

    def rollback(self, t: float) -> None:
        """Forget the notes after session time `t` (they were in the dropped future), and their GRU states."""
        while self._notes and self._notes[-1][2] > t:
            self._notes.pop()
            self._states.pop()


def open_refiners(names: Sequence[str], weights_dir: Path | None = None) -> list[VelocityRefiner]:
    """The live refiners `--refine` names (shipped weights); ValueError for a name that cannot run live."""
    from models.checkpoint import load_checkpoint, shipped_checkpoint
    from models.refine.velocity import VelocityNet

    out = []
    for name in names:
        if name == "velocity":
            path = (weights_dir / "velocity.pt") if weights_dir else shipped_checkpoint("velocity")
            model, _, _ = load_checkpoint(path, VelocityNet)
            out.append(VelocityRefiner(model))
        elif name == "duration":
            raise ValueError("--refine duration needs the notes after each note: use `instrument refine --duration` "
                             "on a recording")
        else:
            raise ValueError(f"unknown refiner {name!r} (live: {', '.join(REFINERS)})")
    return out
