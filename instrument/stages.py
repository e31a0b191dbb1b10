"""Where the time of each gesture goes: one row of stage timestamps per rollback (issue 15).

Written on the hot paths without allocation or locks (a preallocated array, one row per
epoch), read by `instrument bench latency` after the run.
"""

from __future__ import annotations

import numpy as np


STAGE_COLUMNS = ("epoch", "frame_t", "poll_t", "map_s", "request_t", "pickup_t", "restored_t", "steps", "step_s",
                 "pushed_t", "deadline_t", "music_wait", "pitch", "due_t", "send_t", "sent_t", "seq")
_COL = {name: i for i, name in enumerate(STAGE_COLUMNS)}
(S_FRAME, S_POLL, S_MAP, S_REQUEST, S_PICKUP, S_RESTORED, S_STEPS, S_STEP_S, S_PUSHED, S_DEADLINE, S_MUSIC_WAIT,
 S_PITCH, S_DUE, S_SEND, S_SENT, S_SEQ) = range(1, len(STAGE_COLUMNS))


class GestureStages:
    """Where the time of each rollback goes, one row per epoch in a preallocated array (no allocation, no lock).

    `*_t` columns are absolute engine-clock seconds (`SystemClock`: CLOCK_MONOTONIC, comparable across
    processes), `*_s` columns durations. The sending thread writes frame, poll, mapping, request and send;
    the generation thread pickup, restore, the model steps until the epoch's first NOTE_ON, and its push.
    A row is complete once `send_t` is set. Rows are reused every `capacity` epochs.
    """

    def __init__(self, capacity: int = 8192) -> None:
        self.capacity = capacity
        self.rows = np.full((capacity, len(STAGE_COLUMNS)), np.nan)
        # the generation thread's rollback awaiting its first note-on (0: none), its model steps and their time
        self.awaiting, self._steps, self._step_s = 0, 0, 0.0

    def begin(self, epoch: int, request_t: float) -> None:
        """Clear the row of a new epoch before its request is visible to the generation thread."""
        row = self.rows[epoch % self.capacity]
        row.fill(np.nan)
        row[0] = epoch
        row[S_REQUEST] = request_t

    def gesture(self, epoch: int, frame_t: float, poll_t: float, map_s: float) -> None:
        """The sending thread's part at the gesture: the frame's time, when it was polled, how long mapping took."""
        row = self.rows[epoch % self.capacity]
        row[S_FRAME], row[S_POLL], row[S_MAP] = frame_t, poll_t, map_s

    def sent(self, epoch: int, sent_t: float, due_t: float, send_t: float, seq: int) -> None:
        """The sending thread's part at the first note: when it fell due, was sent, and its index among all sent."""
        row = self.rows[epoch % self.capacity]
        row[S_SENT], row[S_DUE], row[S_SEND], row[S_SEQ] = sent_t, due_t, send_t, seq

    def picked_up(self, epoch: int, picked_t: float, restored_t: float) -> None:
        """The generation thread's part at the rollback: when it took the request and when it had restored."""
        row = self.rows[epoch % self.capacity]
        row[S_PICKUP], row[S_RESTORED] = picked_t, restored_t
        self.awaiting, self._steps, self._step_s = epoch, 0, 0.0

    def model_step(self, elapsed: float, messages, t0: float, pushed_at: float) -> bool:
        """One model step's part until the awaited rollback's first note-on; True once it is pushed and due at once.

        `messages`: the step's `TimedMessage`s (session seconds, so `t0` makes them absolute), pushed at `pushed_at`.
        """
        self._steps += 1
        self._step_s += elapsed
        epoch = self.awaiting
        for item in messages:
            message = item.message
            if item.epoch == epoch and message.type == "note_on" and message.velocity > 0:
                row = self.rows[epoch % self.capacity]
                row[S_STEPS], row[S_STEP_S], row[S_PUSHED] = self._steps, self._step_s, t0 + pushed_at
                row[S_DEADLINE], row[S_MUSIC_WAIT], row[S_PITCH] = t0 + item.deadline, item.music_wait, message.note
                self.awaiting = 0
                return item.deadline <= pushed_at
        return False

    def put(self, epoch: int, column: int, value: float) -> None:
        """Write one cell (column: an index of STAGE_COLUMNS)."""
        self.rows[epoch % self.capacity, column] = value

    def samples(self) -> dict[str, np.ndarray]:
        """Complete rows (a gesture frame and a sent first note), oldest first: stage durations in ms.

        Keys: epoch, seq, pitch, steps; frame_t, send_t (s, absolute); frame_age, mapping, decision, handoff,
        restore, model, step_compute, deadline_wait, late_by, sender_wake, admit, send, music_wait, engine (ms).
        `engine` is the in-engine control -> note latency, send_t - frame_t - music_wait: the sum of the stages
        from frame_age to admit (step_compute is part of model, late_by is not a stage) minus music_wait.
        """
        rows = self.rows[~np.isnan(self.rows[:, _COL["frame_t"]]) & ~np.isnan(self.rows[:, _COL["send_t"]])]
        rows = rows[np.argsort(rows[:, 0])]
        c = {name: rows[:, i] for i, name in enumerate(STAGE_COLUMNS)}
        ready = np.maximum(c["pushed_t"], c["deadline_t"])  # the note could leave from here on
        ms = {
            "frame_age": c["poll_t"] - c["frame_t"],
            "mapping": c["map_s"],
            "decision": c["request_t"] - c["poll_t"] - c["map_s"],
            "handoff": c["pickup_t"] - c["request_t"],
            "restore": c["restored_t"] - c["pickup_t"],
            "model": c["pushed_t"] - c["restored_t"],
            "step_compute": c["step_s"],
            "deadline_wait": np.maximum(c["deadline_t"] - c["pushed_t"], 0.0),
            "late_by": np.maximum(c["pushed_t"] - c["deadline_t"], 0.0),  # > 0: the first note itself was late
            "sender_wake": np.maximum(c["due_t"] - ready, 0.0),
            "admit": c["send_t"] - np.maximum(c["due_t"], ready),
            "send": c["sent_t"] - c["send_t"],
            "music_wait": c["music_wait"],
            "engine": c["send_t"] - c["frame_t"] - c["music_wait"],
        }
        out = {name: c[name].astype(np.int64) for name in ("epoch", "seq", "pitch", "steps")}
        out.update(frame_t=c["frame_t"].copy(), send_t=c["send_t"].copy())
        out.update({name: value * 1e3 for name, value in ms.items()})
        return out
