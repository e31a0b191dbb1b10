"""The engine: the instrument's only loop, and its generation thread.

Every tick (the sending loop, on the caller's thread):
  1. poll the controller's latest frame;
  2. map it to Controls; if they moved past `rollback_threshold` since the controls
     the future was generated under, ask for a ROLLBACK;
  3. (generation thread) keep the generated-but-unsent future at least `lookahead_s`
     ahead of the playhead;
  4. send every message whose deadline has come, to every sink.

Deadlines are absolute session seconds (from `t0`), so nothing accumulates and the
loop never drifts. The clock is injected: with `threaded=False` and a FakeClock the
whole engine is deterministic (tests, `instrument render`).

Rollback: after each model call the generator keeps a checkpoint (cursor, voice
snapshot, performer snapshot). On a gesture it restores the newest checkpoint at or
before the playhead, drops every unsent message after the playhead, and generates
again under the new controls from "now": the change is heard after one model step
instead of after the lookahead.

Sending never waits for the model: generation runs on its own thread and hands
messages over through the scheduler under a lock held only for list operations.
`snapshot()` gives a monitor a cheap read-only view; the engine never waits for it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from controllers.frame import ControlFrame
from instrument.clock import make_realtime
from instrument.controls import Controls
from instrument.performer import HeldNotes, Performer
from instrument.scheduler import Scheduler, TimedMessage
from instrument.stats import Samples


RT_PRIORITY = 8  # SCHED_FIFO priority of the sending thread (JACK's own runs at 10)


class EngineError(RuntimeError):
    """The model (or another engine part) failed during play; the engine stopped cleanly."""


@dataclass
class EngineConfig:
    """Timing and behaviour of the loop."""

    lookahead_s: float = 0.2  # generated future kept ahead of the playhead
    poll_s: float = 0.001  # controller poll period (bounds the control -> note delay)
    rollback_threshold: float = 0.25  # control_distance that triggers a rollback (inf: never)
    tempo: float = 120.0  # bpm; time shifts are scaled by 120 / tempo
    channel: int = 0  # MIDI channel of the notes (0-based)
    max_note_s: float = 4.0  # no note sounds longer
    threaded: bool = True  # generation on its own thread (False: inline, deterministic)
    record_frame_s: float = 0.01  # at most 100 control frames per second are recorded
    keep_notes_s: float = 10.0  # sent notes kept for the monitor's roll
    realtime: bool = False  # ask for SCHED_FIFO (sender above generator, both below JACK's 10)


@dataclass(frozen=True)
class EngineSnapshot:
    """A read-only view of the engine for a monitor (built on the caller's thread)."""

    t: float  # session seconds now (the playhead)
    horizon: float  # end of the generated future
    frame: ControlFrame | None
    controls: Controls
    notes: tuple[tuple[int, int, float, float | None], ...]  # (pitch, velocity, start, end or None)
    tempo: float
    model: str
    device: str
    midi: str  # MIDI status line
    stats: dict = field(default_factory=dict)
    controller: dict = field(default_factory=dict)


def control_distance(a: Controls, b: Controls) -> float:
    """How different two controls sound: 1 = an octave, a doubled density, a new key, theme or EMG range."""

    def term(x, y, f) -> float:
        if x is None or y is None:
            return 0.0 if x is y else 1.0
        return f(x, y)

    return max(
        term(a.register, b.register, lambda x, y: abs(x - y) / 12.0),
        term(a.density, b.density, lambda x, y: abs(math.log2(max(x, 1e-3) / max(y, 1e-3)))),
        term(a.key_histogram, b.key_histogram, lambda x, y: 0.5 * sum(abs(p - q) for p, q in zip(x, y))),
        term(a.noise_slots, b.noise_slots, lambda x, y: max((abs(p - q) for p, q in zip(x, y)), default=0.0) / 2.0),
        0.0 if a.theme == b.theme else 1.0,
    )


class Engine:
    """Controller -> mapping -> voice -> performer -> scheduler -> sinks, on one clock."""

    def __init__(self, voice, controller, mapping, sinks: Sequence, clock, config: EngineConfig | None = None,
                 *, midi_clock=None, tempo_source=None, midi_in=None,
                 on_frames: Callable[[list[ControlFrame]], None] | None = None,
                 on_event: Callable[..., None] | None = None, midi_status: Callable[[], str] | None = None) -> None:
        self.voice, self.controller, self.mapping = voice, controller, mapping
        self.sinks = list(sinks)
        self.clock = clock
        self.config = config = config or EngineConfig()
        self.midi_clock, self.tempo_source, self.midi_in = midi_clock, tempo_source, midi_in
        self.on_frames = on_frames
        self.on_event = on_event or (lambda kind, **fields: None)
        self.midi_status = midi_status or (lambda: "")
        self.performer = Performer(config.channel, config.max_note_s, tempo=config.tempo)
        # a chunk voice regenerates whole bars: after a rollback, keep its grid rather than squash the past
        self.performer.skip_late_onsets = bool(getattr(voice, "keeps_grid", False))
        self.scheduler = Scheduler()
        self.held = HeldNotes()
        self.t0 = 0.0
        self.horizon = 0.0
        self.error: BaseException | None = None
        # statistics (seconds)
        self.jitter, self.step_time, self.latency = Samples(), Samples(), Samples()
        self.underruns = self.rollbacks = self.sent = self.late = 0
        # hand-over between the sending loop and the generator
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_sender, self._wake_gen = threading.Event(), threading.Event()
        self._sender_wake_at = 0.0
        self._frame: ControlFrame | None = None
        self._controls = Controls()  # newest mapped controls
        self._gen_controls = Controls()  # controls at the last rollback (rollback hysteresis)
        self._voice_controls: Controls | None = None
        self._rollback_request: tuple[int, Controls] | None = None
        self._epoch = 0
        self._pending_frame_t: float | None = None  # session time of the gesture awaiting its first note
        self._checkpoints: deque = deque()
        self._in_underrun = True  # the first fill starts from nothing: not an underrun
        self._thread: threading.Thread | None = None
        # for the monitor and the recorder
        self._notes: deque[list] = deque(maxlen=4096)
        self._sounding: dict[tuple[int, int], list] = {}
        self._frames_to_record: list[ControlFrame] = []
        self._recorded_t = -math.inf
        self._recorded_present: bool | None = None
        self._last_maintain = 0.0
        self._controller_connected: int | None = None
        self._stats_cache: tuple[float, dict] = (-1.0, {})
        self.realtime = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Fix the session start, take the first frame, start the generator thread."""
        self.t0 = self.clock.now()
        self._stats_cache = (-1.0, {})  # a snapshot taken before start measured from another origin
        self._checkpoints.append((0.0, self.voice.snapshot(), self.performer.snapshot()))
        self._gen_controls = self.mapping.map(self.controller.latest())  # the first controls: no rollback
        self._poll(0.0)
        self.on_event("start", t0_monotonic=self.t0, model=self.voice.name, device=self.voice.device)
        self.realtime = self.config.realtime and make_realtime(RT_PRIORITY)
        if self.config.threaded:
            self._thread = threading.Thread(target=self._generate_forever, name="generator", daemon=True)
            self._thread.start()

    def run(self, duration: float | None = None) -> None:
        """Play until `duration` seconds, `request_stop()` or an error; always ends in silence."""
        self.start()
        try:
            while not self._stop.is_set():
                now = self.tick()
                if duration is not None and now >= duration:
                    break
                self._sleep(now)
            if self.error is not None:
                raise EngineError(f"the model failed: {type(self.error).__name__}: {self.error}") from self.error
        finally:
            self.shutdown()

    def request_stop(self) -> None:
        """Ask the loop to stop (safe from signal handlers and other threads)."""
        self._stop.set()
        self._wake_sender.set()
        self._wake_gen.set()

    def shutdown(self) -> None:
        """Stop generating, silence every note sent (note-offs, CC123, CC120), close the sinks."""
        self._stop.set()
        self._wake_gen.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        t = self.clock.now() - self.t0
        self._broadcast(self.held.panic(), t)
        if self.midi_clock is not None:
            self._broadcast(self.midi_clock.stop(), t, clock_only=True)
        for sink in self.sinks:
            try:
                sink.close(t)
            except Exception as err:  # noqa: BLE001 - one failing sink must not keep the others sounding
                self.on_event("sink_error", sink=type(sink).__name__, error=str(err))
        self._flush_frames()
        self.on_event("stop", t=round(t, 6), **self.stats())

    # ------------------------------------------------------------------ the tick
    def tick(self) -> float:
        """One pass: poll, map, (inline: generate), send what is due. Returns the session time."""
        now = self.clock.now() - self.t0
        self._poll(now)
        if self.midi_in is not None:
            self._midi_in(self.midi_in.poll())
        if self.tempo_source is not None:
            self._follow_tempo(self.tempo_source.tempo())
        if not self.config.threaded:
            self._fill_safely(now)
        self._send_due()
        if self.midi_clock is not None:
            self._broadcast(self.midi_clock.due(self.clock.now() - self.t0), now, clock_only=True)
        if now - self._last_maintain >= 0.05:
            self._maintain(now)
        return now

    def _sleep(self, now: float) -> None:
        wake = now + self.config.poll_s
        with self._lock:
            first = self.scheduler.next_deadline()
        if first is not None and first < wake:
            wake = first
        if self.midi_clock is not None:
            wake = min(wake, self.midi_clock.next_at)
        self._sender_wake_at = wake
        self.clock.wait(self._wake_sender, self.t0 + wake)
        self._wake_sender.clear()

    def _poll(self, now: float) -> None:
        frame = self.controller.latest()
        if self._frame is not None and frame.t == self._frame.t:
            return
        self._frame = frame
        controls = self.mapping.map(frame)
        self._controls = controls
        if frame.t - self._recorded_t >= self.config.record_frame_s or frame.present != self._recorded_present:
            self._recorded_t, self._recorded_present = frame.t, frame.present  # a hand lost/found is never thinned out
            self._frames_to_record.append(frame)
        if control_distance(controls, self._gen_controls) > self.config.rollback_threshold:
            self._gen_controls = controls
            with self._lock:
                self._epoch += 1
                self._rollback_request = (self._epoch, controls)
            self._pending_frame_t = frame.t - self.t0
            self._wake_gen.set()

    def _send_due(self) -> None:
        with self._lock:
            due = self.scheduler.due(self.clock.now() - self.t0)
        for item in due:
            self._send(item)

    def _send(self, item: TimedMessage) -> None:
        message = item.message
        t = self.clock.now() - self.t0
        for sink in self.sinks:
            sink.send(message, t)
        self.sent += 1
        if item.late:
            self.late += 1
        else:
            self.jitter.add(t - item.deadline)
        if message.type == "note_on" and item.epoch == self._epoch and self._pending_frame_t is not None:
            self.latency.add(t - self._pending_frame_t - item.music_wait)
            self._pending_frame_t = None
        self._account(message, t)

    def _account(self, message, t: float) -> None:
        """Track what is sounding (for panic) and the notes sent (for the monitor's roll)."""
        self.held.update(message)
        if message.type == "note_on" and message.velocity > 0:
            record = [message.note, message.velocity, t, None]
            self._sounding[(message.channel, message.note)] = record
            self._notes.append(record)
        elif message.type in ("note_off", "note_on"):
            record = self._sounding.pop((message.channel, message.note), None)
            if record is not None:
                record[3] = t

    def _broadcast(self, messages, t: float, clock_only: bool = False) -> None:
        for message in messages:
            for sink in self.sinks:
                if not clock_only or sink.wants_clock:
                    sink.send(message, t)
            if not clock_only:
                self._account(message, t)

    def _maintain(self, now: float) -> None:
        self._last_maintain = now
        for sink in self.sinks:
            sink.maintain(now)
        self._flush_frames()
        connected = self.controller.stats().get("connected")
        if connected is not None and connected != self._controller_connected:
            if self._controller_connected is not None:
                self.on_event("controller_connected" if connected else "controller_gap", t=round(now, 3))
            self._controller_connected = connected

    def _flush_frames(self) -> None:
        if self._frames_to_record and self.on_frames is not None:
            frames, self._frames_to_record = self._frames_to_record, []
            self.on_frames(frames)

    def _midi_in(self, actions: list[tuple[str, float]]) -> None:
        for action, value in actions:
            if action == "temperature":
                self.voice.temperature = value
            elif action == "tempo":
                self._follow_tempo(value)
            elif action == "panic":
                self.panic()

    def _follow_tempo(self, bpm: float | None) -> None:
        if bpm and abs(bpm - self.performer.tempo) > 0.5:
            self.performer.tempo = bpm
            if self.midi_clock is not None:
                self.midi_clock.set_tempo(bpm)

    def panic(self) -> None:
        """Silence now and regenerate from the playhead (MIDI-in panic button)."""
        self._broadcast(self.held.panic(), self.clock.now() - self.t0)
        with self._lock:
            self._epoch += 1
            self._rollback_request = (self._epoch, self._controls)
        self._wake_gen.set()

    # ------------------------------------------------------------------ generation
    def _generate_forever(self) -> None:
        if self.realtime:
            make_realtime(RT_PRIORITY - 1)
        while not self._stop.is_set():
            self._wake_gen.clear()
            now = self.clock.now() - self.t0
            if not self._fill_safely(now):
                return
            # sleep until the future runs short, or a gesture asks for a rollback
            wake = min(self.performer.horizon - self.config.lookahead_s / 2, now + 0.05)
            self.clock.wait(self._wake_gen, self.t0 + max(wake, now + 0.0005))

    def _fill_safely(self, now: float) -> bool:
        """`_fill`, turning a model exception into a clean stop (run() raises it as EngineError)."""
        try:
            self._fill(now)
            return True
        except Exception as err:  # noqa: BLE001 - reported by run() once the engine is silent
            self.error = err
            self.request_stop()
            return False

    def _fill(self, now: float) -> None:
        """Generate until the future reaches now + lookahead (or a new gesture arrives)."""
        with self._lock:
            request, self._rollback_request = self._rollback_request, None
        if request is not None:
            self._rollback(*request)
        performer, voice = self.performer, self.voice
        if performer.horizon < now:
            if not self._in_underrun:
                self.underruns += 1
                self._in_underrun = True
        target = now + self.config.lookahead_s
        while performer.cursor < target and not self._stop.is_set():
            if self._rollback_request is not None:
                return
            controls = self._controls
            if controls is not self._voice_controls:
                voice.set_controls(controls)
                self._voice_controls = controls
            started = time.perf_counter()
            events = voice.next_events()
            self.step_time.add(time.perf_counter() - started)
            messages: list[TimedMessage] = []
            for event in events:
                messages += performer.perform(event, voice.seconds_per_shift)
            gen_now = self.clock.now() - self.t0
            with self._lock:
                for item in messages:
                    item.late = item.deadline < gen_now
                    self.scheduler.push(item)
                self._checkpoints.append((performer.cursor, voice.snapshot(), performer.snapshot()))
                self.horizon = performer.horizon
            if messages and messages[0].deadline < self._sender_wake_at:
                self._wake_sender.set()
        self._in_underrun = False
        checkpoints = self._checkpoints
        while len(checkpoints) > 1 and checkpoints[1][0] <= now:
            checkpoints.popleft()

    def _rollback(self, epoch: int, controls: Controls) -> None:
        """Restore the newest checkpoint at or before the playhead; drop the unsent future."""
        with self._lock:
            now = self.clock.now() - self.t0
            checkpoints = self._checkpoints
            while len(checkpoints) > 1 and checkpoints[-1][0] > now:
                checkpoints.pop()
            _, voice_state, performer_state = checkpoints[-1]
            self.scheduler.drop_after(now)
            self.performer.restore(performer_state, not_before=now)
            self.performer.begin_epoch(epoch, now)
            self.horizon = self.performer.horizon
        self.voice.restore(voice_state)
        self.voice.set_controls(controls)
        self._voice_controls = controls
        self.rollbacks += 1

    # ------------------------------------------------------------------ views
    def stats(self) -> dict:
        """Latency, jitter, step time (ms) and counters so far."""
        return {
            **self.latency.summary_ms("control_to_note"),
            **self.jitter.summary_ms("jitter"),
            **self.step_time.summary_ms("step"),
            "underruns": self.underruns, "rollbacks": self.rollbacks, "sent": self.sent, "late": self.late,
            "device": self.voice.device, "realtime": self.realtime,
        }

    def snapshot(self) -> EngineSnapshot:
        """A consistent-enough copy of what a monitor shows; never blocks the engine."""
        now = self.clock.now() - self.t0
        since = now - self.config.keep_notes_s
        notes = tuple(tuple(r) for r in tuple(self._notes) if r[3] is None or r[3] >= since)
        cached_at, stats = self._stats_cache
        if now - cached_at > 0.5:
            stats = self.stats()
            self._stats_cache = (now, stats)
        return EngineSnapshot(
            t=now, horizon=self.horizon, frame=self._frame, controls=self._controls, notes=notes,
            tempo=self.performer.tempo, model=self.voice.name, device=self.voice.device,
            midi=self.midi_status(), stats=stats, controller=self.controller.stats(),
        )
