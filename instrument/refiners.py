"""Refiners behind any voice (`play --refine velocity,duration`): dynamics and note lengths, live.

A refiner sits between the performer and the scheduler on the generation thread: every
note-on the voice makes gets its velocity from the Velocity Net (models/refine/velocity.py),
which reads the notes before it and the notes struck with it. The net was trained with
each note's real duration, which is not known when a note starts live: a note gets the
corpus's median length (0.23 s) as a stand-in.

The Duration Net (models/refine/duration.py) reads the notes after a note, so it runs offline
(`instrument refine --duration`). Live, `duration` is its causal sibling, the Live Duration Net
(models/refine/live_duration.py): it sets a note's length when the voice makes its note-off,
from what is known then (the onsets before its end, the notes that ended before it), by moving
that note-off's deadline, within bounds that keep the instrument's rules:

- shorter: never before now (plus `LATE_MARGIN_S`) or the last rollback's playhead, so
  nothing it moves is late; never shorter than the performer's 30 ms minimum;
- longer: never longer than the engine's `max_note_s`; the note-off is held back (taken out of
  the step's messages) until the performer's cursor passes its new deadline, or until the voice
  strikes the same pitch again, whichever comes first: then it goes out at the earlier of its
  deadline and that note-on, and before it (a sounding key is never struck, a note always ends);
- on a rollback, the note-offs held back belong to the dropped future: the generation takes them
  (`take_held`) with the scheduler's dropped messages, so the carried notes end at their refined
  ends unless the new future ends them (the performer's planned-end rule).

Onsets are never moved: they are already scheduled, and moving them would add latency.

Rollback: the refiners' histories hold the notes made; `rollback(t)` forgets those after
the playhead, as the dropped future is forgotten.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from instrument.voice_shaping import scaled_velocity

PROVISIONAL_LENGTH_S = 0.23  # the corpus's median note length: a live note's duration is not known yet
CONTEXT_NOTES = 32  # notes the GRU reads before the one it predicts (its feature windows need ~16)
REFINERS = ("velocity", "duration")  # what `--refine` accepts live
LATE_MARGIN_S = 0.01  # duration: a note-off is never moved earlier than now + this
STATE_MEMORY = 256  # duration: GRU states kept (per ended note) for rollbacks
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
        self.loudness: float | None = None  # the velocity control (80: the net's dynamics as they are)

    def set_controls(self, controls) -> None:
        """Follow the velocity control: the hand still sets how loud, the net sets the dynamics within it."""
        self.loudness = controls.get("velocity")

    def apply(self, messages: Sequence, now: float | None = None, cursor: float | None = None) -> None:
        """Set the velocity of every note-on among `messages` (TimedMessage, modified in place); `now`, `cursor` unused."""
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
            velocity = scaled_velocity(int(np.clip(round(64.0 + self.spread * (raw - 64.0)), 1, 127)), self.loudness)
            item.message = message.copy(velocity=velocity)
            self.applied += 1

    def rollback(self, t: float) -> None:
        """Forget the notes after session time `t` (they were in the dropped future), and their GRU states."""
        while self._notes and self._notes[-1][2] > t:
            self._notes.pop()
            self._states.pop()


def _deadline(item) -> float:
    return item.deadline


class DurationRefiner:
    """Note-offs -> note-offs at the Live Duration Net's length: one NumPy GRU step per note, when its note-off is made."""

    def __init__(self, model, max_note_s: float = 4.0) -> None:
        from models.refine.live_duration import CausalDurationFeatures, NumpyGRUStep, safe_end

        self._safe_end = safe_end
        self.model = model.eval()
        self.max_note_s = float(max_note_s)
        self._step = NumpyGRUStep(model)
        self._features = CausalDurationFeatures()
        self._state = self._initial = self._step.initial()
        self._states: deque = deque(maxlen=STATE_MEMORY)  # (end, GRU state after that note), in the order notes ended
        self._starts: dict[int, float] = {}  # pitch -> start of the note sounding in the generated stream
        self._held: dict[int, object] = {}  # pitch -> its note-off (TimedMessage), lengthened and held back
        self._caps: dict[int, float] = {}  # pitch -> the latest a held note-off may leave (start + max_note_s)
        self._floor = float("-inf")  # the last rollback's playhead: nothing is moved before it
        self.applied = self.lengthened = self.shortened = 0

    def apply(self, messages: list, now: float | None = None, cursor: float | None = None) -> None:
        """Refine the note-offs among `messages` (the list is edited in place: held note-offs leave it, and return later).

        `now`: session time now (without it no note-off is moved earlier); `cursor`: the performer's
        cursor after this step, up to which the music is made (without it no note-off is held back, so
        none is made longer).
        """
        safe_end = self._safe_end
        earliest = max(now + LATE_MARGIN_S, self._floor) if now is not None else math.inf
        # a held note-off never leaves before this: if generation fell behind (its cursor passed the note's end
        # only now), it leaves a little later rather than late (never after the cursor: no onset comes before it)
        soonest = min(earliest, cursor) if now is not None and cursor is not None else -math.inf
        out = []
        for item in messages:
            message = item.message
            kind = message.type
            if kind == "note_on" and message.velocity > 0:
                pitch = message.note
                held = self._held.pop(pitch, None)
                if held is not None:  # the held note-off goes first, no later than this onset
                    held.deadline = min(max(held.deadline, min(soonest, self._caps.pop(pitch))), item.deadline)
                    out.append(held)
                self._starts[pitch] = item.deadline
                self._features.onset(item.deadline)
            elif kind == "note_off" or kind == "note_on":  # velocity 0: a note-off
                start = self._starts.pop(message.note, None)
                if start is not None and message.note not in self._held:
                    end = item.deadline
                    log_factor, self._state = self._step(self._features.note_end(message.note, start, end), self._state)
                    self._states.append((end, self._state))
                    self.applied += 1
                    new = safe_end(start, end, log_factor, self.max_note_s, earliest=earliest,
                                   latest=end if cursor is None else math.inf)
                    if new > end:
                        item.deadline = new
                        self._held[message.note] = item
                        self._caps[message.note] = start + self.max_note_s - 0.01
                        self.lengthened += 1
                        continue
                    if new < end:
                        item.deadline = new
                        self.shortened += 1
            out.append(item)
        if self._held and cursor is not None:  # the music is made up to the cursor: no onset can come before it now
            for pitch in [p for p, held in self._held.items() if held.deadline <= cursor]:
                held = self._held.pop(pitch)
                held.deadline = max(held.deadline, min(soonest, self._caps.pop(pitch)))
                out.append(held)
        # in time order, as the performer makes them (stable: a note-off stays before an onset at its time): the
        # engine wakes its sender for the first message pushed, so the first must be the earliest
        out.sort(key=_deadline)
        messages[:] = out

    def take_held(self) -> list:
        """The note-offs held back (a rollback drops them with the future: they become the carried notes' planned ends)."""
        held = sorted(self._held.values(), key=lambda item: item.deadline)
        for item in held:
            self._starts.pop(item.message.note, None)  # the performer ends the note now: not refined twice
        self._held.clear()
        self._caps.clear()
        return held

    def delay(self, seconds: float) -> None:
        """The performer plays the rest `seconds` later (`Performer.delay`): the notes it holds move with it."""
        for item in self._held.values():
            item.deadline += seconds
        self._caps = {pitch: cap + seconds for pitch, cap in self._caps.items()}
        self._starts = {pitch: start + seconds for pitch, start in self._starts.items()}

    def rollback(self, t: float) -> None:
        """Forget the onsets after `t` and the notes that ended after it (the dropped future), and their GRU states."""
        self._held.clear()
        self._caps.clear()
        self._features.forget_after(t)
        while self._states and self._states[-1][0] > t:
            self._states.pop()
        self._state = self._states[-1][1] if self._states else self._initial
        self._starts = {p: s for p, s in self._starts.items() if s <= t}
        self._floor = t


def open_refiners(names: Sequence[str], weights_dir: Path | None = None, max_note_s: float = 4.0) -> list:
    """The live refiners `--refine` names (shipped weights), velocity before duration; ValueError for an unknown name."""
    from models.checkpoint import load_checkpoint, shipped_checkpoint
    from models.refine.live_duration import LiveDurationNet
    from models.refine.velocity import VelocityNet

    out = []
    for name in names:
        if name == "velocity":
            path = (weights_dir / "velocity.pt") if weights_dir else shipped_checkpoint("velocity")
            model, _, _ = load_checkpoint(path, VelocityNet)
            out.append(VelocityRefiner(model))
        elif name == "duration":
            path = (weights_dir / "live_duration.pt") if weights_dir else shipped_checkpoint("live_duration")
            model, _, _ = load_checkpoint(path, LiveDurationNet)
            out.append(DurationRefiner(model, max_note_s))
        else:
            raise ValueError(f"unknown refiner {name!r} (live: {', '.join(REFINERS)})")
    return sorted(out, key=lambda refiner: isinstance(refiner, DurationRefiner))  # velocity first
