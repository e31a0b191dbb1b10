"""The generated future: voice -> performer -> scheduler, kept ahead of the playhead.

`Generation` runs on its own thread (or inline, for renders and tests). It keeps the
generated-but-unsent future at least `lookahead_s` ahead of the playhead and, after
every model call, a checkpoint (cursor, voice snapshot, performer snapshot).

Steering and rollback. The newest controls reach the voice before its next step, so a
small, continuous move steers what comes next without touching the future already
made (at most `lookahead_s`, 0.2 s by default). A move past `rollback_threshold` on a
knob the voice listens to, and at least `min_rollback_s` after the last one, rolls
back: the newest checkpoint at or before the playhead is restored, the unsent future
is dropped, and generation starts again from the playhead under the new controls.
The ledger says which notes sound there, and the dropped future when each was to end:
the new future continues them (see `Performer.resume`). A move past
`strike_threshold` also *strikes*: the voice's next event is drawn from its own
distribution restricted to note-ons, so the gesture is heard after one model step.

No note is made for a moment already past. A strike's future starts at the playhead:
its first note leaves the moment the model has made it (one model step after the
gesture was polled). Any other regenerated future starts a margin after the playhead
(2 ms, more when a restart or a model step has recently taken longer here, at most
5 ms), so the rhythm it resumes keeps its exact times. The opening of a new future (its
first 30 ms, e.g. the notes of a chord, a model step apart) leaves as it is made, at
most 15 ms after the time the model placed it (counted in `opening_delayed`). When the
future falls further behind the playhead (a machine stall), it *catches up*: a streaming
voice plays the rest from now, its rhythm whole; a grid voice keeps its bar grid and skips
the notes whose time has passed. Each catch-up is counted, with its cause in the session
log; `late` (a message pushed after its deadline all the same) stays 0.

Threads. The sending thread calls `steer()` and reads `epoch`; everything else runs on
the generation thread. Hand-offs: `controls`, `tempo` and `temperature` are immutable
values swapped by reference (atomic in CPython, read once per step); the rollback
request and every scheduler operation are under the engine's lock, held only for list
and dict operations.
"""

from __future__ import annotations

import resource
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from instrument.controls import Controls, control_distance
from instrument.ledger import NoteLedger
from instrument.performer import REFERENCE_TEMPO, Performer
from instrument.scheduler import Scheduler, TimedMessage
from instrument.stages import GestureStages
from instrument.stats import Samples

OPENING_S = 0.030  # the opening of a regenerated future: its messages may leave as they are made ...
OPENING_SPREAD_S = 0.015  # ... up to this long after the time the model placed them at (a chord: a step a note)
MAX_MARGIN_S = 0.005  # never delay a gesture's answer by more than this to avoid lateness
RESTORE_S = 0.0005  # what a restore and the sender's hand-over cost besides the model step
STEP_MAX_DECAY = 0.999  # per step: a slow step stops setting the margin after a few thousand steps (~30 s)
RESTART_COST_DECAY = 0.98  # per rollback: an old slow restart stops setting the margin after ~50 rollbacks
SLOW_STEP_S = 0.020  # a model call this slow is a fault worth a cause in the session log (a step is ~0.4-4 ms)
SLOW_STEPS_KEPT = 32  # the first slow steps are kept for `bench latency`'s report
WARM_UP_STEPS = 8  # model calls made (and undone) before playing: the first calls of a path are slow


@dataclass(frozen=True, slots=True)
class Rollback:
    """A request from the sending thread: regenerate from the playhead under `controls`."""

    epoch: int
    controls: Controls
    strike: bool


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where generation can restart: the cursor after a model call and both states there."""

    cursor: float
    voice_state: object
    performer_state: object


class Generation:
    """The future ahead of the playhead, its checkpoints, and the rollback rule."""

    def __init__(self, voice, listens: frozenset[str] | None, config, clock, scheduler: Scheduler, ledger: NoteLedger,
                 lock: threading.Lock, *, grid: bool = False,
                 on_pushed: Callable[[float], None] = lambda first_deadline: None,
                 on_answer_pushed: Callable[[], None] = lambda: None,
                 on_event: Callable[..., None] = lambda kind, **fields: None) -> None:
        self.voice, self.listens, self.config, self.clock = voice, listens, config, clock
        self.scheduler, self.ledger, self.lock = scheduler, ledger, lock
        self.on_pushed, self.on_answer_pushed, self.on_event = on_pushed, on_answer_pushed, on_event
        self.refiners: list = []  # between the performer and the scheduler (instrument/refiners.py)
        self.performer = Performer(config.channel, config.max_note_s, tempo=config.tempo, grid=grid)
        self.t0 = 0.0
        # hand-offs from the sending thread (immutable values, swapped by reference)
        self.controls = Controls()
        self.tempo = float(config.tempo)
        self.temperature: float | None = None
        self.epoch = 0  # written by the sending thread only
        # the sending thread's rollback decision (hysteresis: distance from the controls of the last rollback)
        self._reference = Controls()
        self._last_rollback_t = float("-inf")
        self._request: Rollback | None = None  # under lock
        self.deferred = False  # a rollback is due but waits for min_rollback_s (the sender asks again)
        # generation thread only
        self._voice_controls: Controls | None = None
        self._checkpoints: deque[Checkpoint] = deque()
        self._in_underrun = True  # the first fill starts from nothing: not an underrun
        self._first_after_rollback = False
        self._restart_cost = 0.0  # recent worst time from a rollback's pickup to its first push (decays)
        self._step_max = 0.0  # recent worst model step (decays)
        self._slowest_since_restart = 0.0  # the slowest model call since the last rollback, on the engine's clock
        self._margin = config.restart_margin_s  # the margin of the last restart
        self._late_logged_at = float("-inf")
        self.horizon = 0.0
        self.step_time = Samples()
        self.rollbacks = self.strikes = self.underruns = self.opening_delayed = self.caught_up = self.late = 0
        self.skipped_late = 0  # a grid voice's note-ons whose time passed during a stall (not played)
        self.caught_up_max_s = 0.0  # the furthest a future fell behind the playhead
        self.stages = GestureStages()  # gesture stage timing (issue 15)
        self.slow_steps: list[dict] = []  # the first SLOW_STEPS_KEPT model calls over SLOW_STEP_S, with their cause
        self.slow_step_count = 0
        self.catch_up_causes: dict[str, int] = {}  # catch-ups by cause (the session log says when)
        self._usage = resource.getrusage(resource.RUSAGE_THREAD)  # this thread's counters at the end of the last fill

    # ------------------------------------------------------------------ sending thread
    def start(self, t0: float, controls: Controls, offset: float = 0.0) -> None:
        """The first controls (no rollback) and the first checkpoint; the music starts `offset` s into the session.

        A threaded engine starts its music a little after its clock (its first model steps take time:
        at 0 they would be late); an inline engine, whose clock waits for it, at 0.
        """
        self.t0 = t0
        self.controls = self._reference = controls
        self.performer.cursor = self.performer.floor = offset  # the session's start is its first opening
        self._checkpoints.append(Checkpoint(offset, self.voice.snapshot(), self.performer.snapshot()))

    def steer(self, controls: Controls, now: float) -> int | None:
        """Hand over new controls; if they ask for a rollback, request it and return its epoch."""
        self.controls = controls
        distance = control_distance(controls, self._reference, self.listens)
        self.deferred = False
        if distance <= self.config.rollback_threshold:
            return None
        if now - self._last_rollback_t < self.config.min_rollback_s:
            self.deferred = True
            return None
        return self.request_rollback(controls, now, strike=distance >= self.config.strike_threshold)

    def request_rollback(self, controls: Controls, now: float, strike: bool = False) -> int:
        """Ask for a rollback under `controls` (also the MIDI-in panic); returns the new epoch."""
        self._reference = controls
        self._last_rollback_t = now
        self.stages.begin(self.epoch + 1, self.clock.now())  # gesture stage timing
        with self.lock:
            self.epoch += 1
            self._request = Rollback(self.epoch, controls, strike)
        return self.epoch

    # ------------------------------------------------------------------ generation thread
    def fill(self, now: float, stop: threading.Event) -> None:
        """Generate until the future reaches now + lookahead (or a new rollback is requested)."""
        with self.lock:
            request, self._request = self._request, None
        if request is not None:
            picked = self.clock.now()  # gesture stage timing
            self._rollback(request)
            self.stages.picked_up(request.epoch, picked, self.clock.now())  # gesture stage timing
        performer, voice = self.performer, self.voice
        if performer.horizon < now and not self._in_underrun:
            self.underruns += 1
            self._in_underrun = True
        target = now + self.config.lookahead_s
        while performer.cursor < target and not stop.is_set():
            if self._request is not None:
                return
            controls = self.controls
            if controls is not self._voice_controls:
                self._set_controls(controls)
            if self.temperature is not None:
                voice.temperature, self.temperature = self.temperature, None
            performer.tempo = self.tempo
            started, on_clock = time.perf_counter(), self.clock.now()
            events = voice.next_events()
            elapsed = time.perf_counter() - started
            self.step_time.add(elapsed)
            if elapsed > SLOW_STEP_S:
                self._slow_step(elapsed, on_clock - self.t0)
            # a recent slow step sets the margin, measured on the engine's clock: a render's fake clock never
            # moves during a step, so a render stays the same for a seed whatever the machine's speed
            call = self.clock.now() - on_clock
            self._step_max = max(call, self._step_max * STEP_MAX_DECAY)
            self._slowest_since_restart = max(call, self._slowest_since_restart)
            messages: list[TimedMessage] = []
            for event in events:
                messages += performer.perform(event, voice.seconds_per_shift)
            if self.refiners:  # the Velocity Net (note-on velocities), the Live Duration Net (note-off deadlines)
                gen_now = self.clock.now() - self.t0
                for refiner in self.refiners:
                    refiner.apply(messages, gen_now, performer.cursor)
            pushed_at = self._push(messages, voice.snapshot())
            if self.stages.awaiting and self.stages.model_step(elapsed, messages, self.t0, pushed_at):
                # a gesture's first note is due now: let the sending thread take the GIL and send it before the
                # next model steps (at most 2 ms), instead of competing with them for it
                self.on_answer_pushed()
        self._in_underrun = False
        checkpoints = self._checkpoints
        while len(checkpoints) > 1 and checkpoints[1].cursor <= now:
            checkpoints.popleft()
        self._usage = resource.getrusage(resource.RUSAGE_THREAD)  # the future is full: off the gesture's path

    def warm_up(self) -> None:
        """Run each model path a few times before playing, then undo it: the first calls of a path are slow.

        A live engine calls this once after loading (`build_engine`): the first strike of a session must
        cost what the thousandth does. The voice is restored, so the music starts where it would have.
        """
        voice = self.voice
        state = voice.snapshot()
        for _ in range(WARM_UP_STEPS):
            voice.next_events()
            if hasattr(voice, "strike"):
                voice.strike(0.0)
                voice.next_events()
        voice.restore(state)
        self.step_time = Samples()  # the warm-up's steps are not the performance's

    def _slow_step(self, elapsed: float, at: float) -> None:
        """A model call took over SLOW_STEP_S: say why, from this thread's counters since its last fill ended.

        CPU time close to the step's wall time: the model itself (or the hypervisor slowing the CPU);
        much less: the thread waited (the GIL held by another thread, or preempted: `preempted` counts
        involuntary context switches); page faults: memory the step touched had to be (re)mapped.
        """
        usage, before = resource.getrusage(resource.RUSAGE_THREAD), self._usage
        self.slow_step_count += 1
        cause = {"t": round(at, 3), "ms": round(elapsed * 1e3, 2),
                 "cpu_ms_since_fill": round((usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime) * 1e3, 2),
                 "preempted": usage.ru_nivcsw - before.ru_nivcsw, "waits": usage.ru_nvcsw - before.ru_nvcsw,
                 "minor_faults": usage.ru_minflt - before.ru_minflt, "major_faults": usage.ru_majflt - before.ru_majflt,
                 "first_after_rollback": self._first_after_rollback}
        if len(self.slow_steps) < SLOW_STEPS_KEPT:
            self.slow_steps.append(cause)
        self.on_event("slow_step", **cause)

    def _set_controls(self, controls) -> None:
        """New controls for the voice, and for the refiners that follow one (the Velocity Net: loudness)."""
        self.voice.set_controls(controls)
        self._voice_controls = controls
        for refiner in self.refiners:
            if hasattr(refiner, "set_controls"):
                refiner.set_controls(controls)

    def _push(self, messages: list[TimedMessage], voice_state) -> float:
        """Schedule one step's messages (the opening rule, catching up) and its checkpoint; returns the push time."""
        gen_now = self.clock.now() - self.t0
        late = 0
        restart = self.performer.floor
        if messages:
            first = min(item.deadline for item in messages)
            if first < gen_now and not (first - restart <= OPENING_S and gen_now - first <= OPENING_SPREAD_S):
                self._catch_up(messages, gen_now - first, gen_now, opening=first - restart <= OPENING_S)
        checkpoint = Checkpoint(self.performer.cursor, voice_state, self.performer.snapshot())
        with self.lock:
            for item in messages:
                if item.deadline < gen_now:
                    if item.deadline - restart <= OPENING_S and gen_now - item.deadline <= OPENING_SPREAD_S:
                        # the opening of a regenerated future (its first OPENING_S): each message leaves as it
                        # is made, a model step or two after the model placed it, never later than
                        # OPENING_SPREAD_S; counted in `opening_delayed`.
                        item.deadline = gen_now
                        self.opening_delayed += 1
                    elif self.performer.grid:  # its bar grid stays: a note whose time has passed is not played
                        if item.message.type == "note_on" and item.message.velocity > 0:
                            self.skipped_late += 1
                            continue
                        item.deadline = gen_now  # its note-off: the note ends now
                    else:  # `_catch_up` leaves none: a fault if it ever happens (a refiner moved a message back)
                        item.late = True
                        late += 1
                self.scheduler.push(item)
            self._checkpoints.append(checkpoint)
            self.horizon = self.performer.horizon
        if late:
            self.late += late
            self.on_event("late_notes", t=round(gen_now, 3), count=self.late)
        if messages:
            if self._first_after_rollback:  # how long a restart takes here: the next margin covers it
                cost = gen_now - (restart - self._margin)
                self._restart_cost = max(cost, self._restart_cost * RESTART_COST_DECAY)
            self._first_after_rollback = False
            self.on_pushed(messages[0].deadline)
        return gen_now

    def _catch_up(self, messages: list[TimedMessage], behind: float, now: float, opening: bool) -> None:
        """The future fell behind the playhead (a stall): nothing is made for a moment already past.

        A streaming voice plays the rest `behind` later, from now, its rhythm whole (`Performer.delay`);
        a grid voice keeps its bar grid and skips the notes whose time has passed (`_push`). Each time is
        counted in `caught_up`, and its cause goes to the session log (at most once a second).
        """
        if not self.performer.grid:
            for item in messages:
                item.deadline += behind
            self.performer.delay(behind)
            for refiner in self.refiners:
                if hasattr(refiner, "delay"):
                    refiner.delay(behind)
        self.caught_up += 1
        self.caught_up_max_s = max(self.caught_up_max_s, behind)
        if self._first_after_rollback:
            cause = "the first model step after a rollback took longer than its margin"
        elif self._slowest_since_restart > OPENING_SPREAD_S:
            cause = f"slow model calls (over {OPENING_SPREAD_S * 1e3:g} ms since the last restart; see slow_step)"
        else:  # no model call was slow: the thread itself did not run for a while
            cause = "the generation thread did not run (a machine stall or preemption)"
        cause = ("the opening of a regenerated future: " if opening else "the running future: ") + cause
        self.catch_up_causes[cause] = self.catch_up_causes.get(cause, 0) + 1
        if now - self._late_logged_at >= 1.0:
            self._late_logged_at = now
            self.on_event("caught_up", t=round(now, 3), behind_ms=round(behind * 1e3, 2), count=self.caught_up,
                          voice_grid=self.performer.grid, cause=cause)

    def _rollback(self, request: Rollback) -> None:
        """Restore the newest checkpoint at or before the playhead; the ledger's notes carry over."""
        channel = self.performer.channel
        with self.lock:
            now = self.clock.now() - self.t0
            checkpoints = self._checkpoints
            while len(checkpoints) > 1 and checkpoints[-1].cursor > now:
                checkpoints.pop()
            checkpoint = checkpoints[-1]
            dropped = self.scheduler.drop_after(now)
            for refiner in self.refiners:  # note-offs a refiner holds back (a lengthened note) are dropped future too
                if hasattr(refiner, "take_held"):
                    dropped = sorted(dropped + refiner.take_held(), key=lambda item: item.deadline)
            sounding = self.ledger.sounding(channel)
            for item in self.scheduler.items():  # due but not yet sent: they sound at the playhead too
                message = item.message
                if message.type == "note_on" and message.velocity > 0:
                    sounding[message.note] = item.deadline
                elif message.type in ("note_off", "note_on"):
                    sounding.pop(message.note, None)
            planned_end: dict[int, float] = {}
            for item in dropped:  # the end the old future had planned for each sounding note
                message = item.message
                if message.type in ("note_off", "note_on") and message.note in sounding:
                    planned_end.setdefault(message.note, item.deadline)
            # A strike is answered at once: its future starts at the playhead, and its first note leaves the
            # moment the model has made it (the opening rule in `_push`). Any other restart costs a restore and
            # a model step (~1-2 ms, more on a busy machine): its future starts that far after the playhead, so
            # the rhythm it resumes keeps its exact times and nothing is made for a moment already past.
            strikes = request.strike and hasattr(self.voice, "strike")
            margin = self._margin = 0.0 if strikes and not self.performer.grid else min(
                MAX_MARGIN_S, max(self.config.restart_margin_s, 1.25 * self._restart_cost, RESTORE_S + 1.5 * self._step_max))
            self.performer.resume(checkpoint.performer_state, now, sounding, planned_end, margin)
            self.performer.begin_epoch(request.epoch, now + margin)
            self.scheduler.extend(self.performer.end_due())  # ends already due: with the restart, not a step later
            self.horizon = self.performer.horizon
        self.voice.restore(checkpoint.voice_state)
        for refiner in self.refiners:
            refiner.rollback(self.performer.floor)
        self._set_controls(request.controls)
        if strikes:
            # how far into the restored state's time the new future starts, at the voice's reference tempo
            # (a grid voice strikes on the first grid step from there; a streaming voice at once)
            into = max(0.0, self.performer.floor - checkpoint.cursor) * self.performer.tempo / REFERENCE_TEMPO
            self.voice.strike(into)
            self.strikes += 1
        self._first_after_rollback = True
        self._slowest_since_restart = 0.0
        self.rollbacks += 1

    def run_forever(self, stop: threading.Event, wake: threading.Event,
                    on_error: Callable[[BaseException], None]) -> None:
        """The generation thread: fill, then sleep until the future runs short or a rollback is asked for."""
        self._usage = resource.getrusage(resource.RUSAGE_THREAD)  # this thread's counters, not the constructor's
        while not stop.is_set():
            wake.clear()
            now = self.clock.now() - self.t0
            try:
                self.fill(now, stop)
            except Exception as err:  # noqa: BLE001 - reported by the engine once it is silent
                on_error(err)
                return
            wake_at = min(self.performer.horizon - self.config.lookahead_s / 2, now + 0.05)
            self.clock.wait(wake, self.t0 + max(wake_at, now + 0.0005))
