"""The engine: the instrument's sending loop.

Every tick (on the caller's thread; a controller with a device thread also wakes it when a
frame arrives, so a gesture does not wait for the next poll):
  1. poll the controller's latest frame, map it to Controls and hand them to the
     generation (`Generation.steer`), which may ask for a rollback;
  2. (inline mode only) let the generation fill the future;
  3. send every message whose deadline has come: through the note ledger (the one
     record of what sounds), then to every sink.

Deadlines are absolute session seconds (from `t0`), so nothing accumulates and the
loop never drifts. The clock is injected: with `threaded=False` and a FakeClock the
whole engine is deterministic (tests, `instrument render`). Build one with
`instrument.session.build_engine`, which serves play, render and every benchmark.

The future is made on the generation thread (`instrument/generation.py`); the two
threads share the scheduler and the ledger under one lock, held only for list and
dict operations. Silence is guaranteed in `run`'s finally: the ledger's panic (a
note-off per sounding note, CC123 and CC120 once per channel) goes to every sink
before they close.
"""

from __future__ import annotations

import gc
import math
import threading
from collections.abc import Callable, Sequence

from controllers.frame import ControlFrame
from instrument import cpu_awake
from instrument.clock import make_realtime
from instrument.control_out import ControlOutputs
from instrument.controls import Controls
from instrument.engine_config import EngineConfig, EngineError, EngineSnapshot
from instrument.generation import Generation
from instrument.ledger import NoteLedger
from instrument.scheduler import Scheduler, TimedMessage
from instrument.stats import Samples

RT_PRIORITY = 8  # SCHED_FIFO priority of the sending thread (JACK's own runs at 10)
ANSWER_WAIT_S = 0.002  # the generation pauses this long at most while the sender sends a gesture's first note
START_OFFSET_S = 0.05  # a threaded engine's music starts this long after its clock: the first fill takes time


class Engine:
    """Controller -> mapping -> generation -> ledger -> sinks, on one clock."""

    def __init__(self, voice, controller, mapping, sinks: Sequence, clock, config: EngineConfig | None = None, *,
                 listens: frozenset[str] | None = None, grid: bool = False, midi_clock=None, tempo_source=None,
                 midi_in=None, refiners: Sequence = (), on_frames: Callable[[list[ControlFrame]], None] | None = None,
                 on_event: Callable[..., None] | None = None, midi_status: Callable[[], str] | None = None) -> None:
        self.voice, self.controller, self.mapping = voice, controller, mapping
        self.sinks = list(sinks)
        self.clock = clock
        self.config = config = config or EngineConfig()
        self.midi_clock, self.tempo_source, self.midi_in = midi_clock, tempo_source, midi_in
        self.on_frames = on_frames
        self.on_event = on_event or (lambda kind, **fields: None)
        self.midi_status = midi_status or (lambda: "")
        self.ledger = NoteLedger()
        self.scheduler = Scheduler()
        self._lock = threading.Lock()  # scheduler + ledger + rollback request
        self._stop = threading.Event()
        self._wake_sender, self._wake_gen = threading.Event(), threading.Event()
        self._sender_wake_at = 0.0
        listens = listens if listens is not None else getattr(voice, "listens", None)  # None: every knob counts
        self._answer_sent = threading.Event()  # the pending gesture's first note has left (set by the sender)
        self.generation = Generation(voice, listens, config, clock, self.scheduler, self.ledger, self._lock,
                                     grid=grid, on_pushed=self._pushed, on_event=self.on_event,
                                     on_answer_pushed=self._await_answer_sent if config.threaded else lambda: None)
        self.generation.refiners = list(refiners)
        self.t0 = 0.0
        self.error: BaseException | None = None
        self.jitter, self.latency = Samples(), Samples()
        self.sent = 0
        self._frame: ControlFrame | None = None
        self._controls = Controls()
        self._pending_gesture: tuple[int, float] | None = None  # (epoch, session time) awaiting its first note
        self._stage_poll_at = self._stage_map_s = self._stage_due_at = 0.0  # gesture stage timing (issue 15)
        self._thread: threading.Thread | None = None
        self._frames_to_record: list[ControlFrame] = []
        self._recorded_t = -math.inf
        self._recorded_present: bool | None = None
        self._last_maintain = 0.0
        self._controller_connected: int | None = None
        self._stats_cache: tuple[float, dict] = (-1.0, {})
        self._silenced = False
        self._clock_leads = False  # a followed MIDI clock sets the tempo (until it stops)
        # CC out, and tempo/key changes into the recording and the log (instrument/control_out.py)
        self.outputs = ControlOutputs(getattr(mapping, "cc_out", {}), config.channel, self.sinks, self.on_event)
        self.stuck_at_stop = self.ended_by_stop = 0
        self.realtime = False
        self._froze_gc = False
        self._cpu_awake = None  # the CPU wake-up latency request held while playing (real-time mode)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Fix the session start, take the first frame, start the generation thread."""
        self.t0 = self.clock.now()
        self._stats_cache = (-1.0, {})  # a snapshot taken before start measured from another origin
        offset = START_OFFSET_S if self.config.threaded else 0.0
        self.generation.start(self.t0, self.mapping.map(self.controller.latest()), offset)  # first controls: no rollback
        self._poll(0.0)
        self.on_event("start", t0_monotonic=self.t0, model=self.voice.name, device=self.voice.device)
        self.realtime = self.config.realtime and make_realtime(RT_PRIORITY)
        if self.config.realtime:  # idle CPUs poll instead of sleeping: a gesture finds them awake (cpu_awake.py)
            self._cpu_awake = cpu_awake.hold()
            self.on_event("cpu_awake", held=self._cpu_awake.held, message=self._cpu_awake.why)
        if self.config.threaded:
            wake_on_frame = getattr(self.controller, "wake_on_frame", None)
            if wake_on_frame is not None:  # a device thread's new frame wakes the loop: no wait for the next poll
                wake_on_frame(self._wake_sender)
            self._thread = threading.Thread(target=self._generate, name="generator", daemon=True)
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

    def freeze_heap(self) -> None:
        """Collect garbage once and freeze the heap (call after loading the model, before `start`/`run`).

        A full (generation-2) garbage collection walks every object torch and the model left behind
        (~290k, ~210 ms on the CI machine) holding the GIL: a stall of the whole engine whenever Python
        decides to run one mid-song. Frozen, later collections walk only what the performance allocates.
        `shutdown` unfreezes, for a process that builds another engine.
        """
        gc.collect()
        gc.freeze()
        self._froze_gc = True

    def request_stop(self) -> None:
        """Ask the loop to stop (safe from signal handlers and other threads)."""
        self._stop.set()
        self._wake_sender.set()
        self._wake_gen.set()

    def shutdown(self) -> None:
        """Stop generating, silence every note sent (ledger panic, once), close the sinks (idempotent)."""
        self._stop.set()
        self._wake_gen.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        if self._silenced:
            return
        self._silenced = True
        t = self.clock.now() - self.t0
        with self._lock:
            # notes only this final panic ends, although the cap should have: stuck notes (must be 0)
            self.stuck_at_stop = self.ledger.older_than(t, self.config.max_note_s + 0.05)
            self.ended_by_stop = len(self.ledger)
            silence = self.ledger.panic(t)
        self._broadcast(silence, t)
        if self.midi_clock is not None:
            self._broadcast(self.midi_clock.stop(), t, clock_only=True)
        for sink in self.sinks:
            try:
                sink.close(t)
            except Exception as err:  # noqa: BLE001 - one failing sink must not keep the others sounding
                self.on_event("sink_error", sink=type(sink).__name__, error=str(err))
        self._flush_frames()
        if self._cpu_awake is not None:
            self._cpu_awake.release()
            self._cpu_awake = None
        if self._froze_gc:  # the process may build another engine (benchmarks, tests): collect as before
            gc.unfreeze()
            self._froze_gc = False
        self.on_event("stop", t=round(t, 6), **self.stats())

    def _generate(self) -> None:
        if self.realtime:
            make_realtime(RT_PRIORITY - 1)
        self.generation.run_forever(self._stop, self._wake_gen, self._fail)

    def _fail(self, err: BaseException) -> None:
        self.error = err
        self.request_stop()

    # ------------------------------------------------------------------ the tick
    def tick(self) -> float:
        """One pass: poll, map, (inline: generate), send what is due. Returns the session time."""
        now = self.clock.now() - self.t0
        self._poll(now)
        if self.midi_in is not None:
            self._midi_in(self.midi_in.poll())
        if self.tempo_source is not None:
            bpm = self.tempo_source.tempo()  # clamped 20..300 and smoothed; None once the clock stops
            if bpm is not None:
                self._clock_leads = True
                self._follow_tempo(bpm)
            elif self._clock_leads:  # the DAW stopped: back to the set tempo (FollowClock logged clock_stopped)
                self._clock_leads = False
                self._follow_tempo(self.config.tempo)
        if not self.config.threaded:
            try:
                self.generation.fill(now, self._stop)
            except Exception as err:  # noqa: BLE001 - reported by run() once the engine is silent
                self._fail(err)
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

    def _await_answer_sent(self) -> None:
        """(Generation thread) a gesture's first note is due: wait until the sender has sent it, at most 2 ms."""
        self._answer_sent.wait(ANSWER_WAIT_S)

    def _pushed(self, first_deadline: float) -> None:
        """The generation pushed messages: wake the sender if the first is due before it planned to wake."""
        if first_deadline < self._sender_wake_at:
            self._wake_sender.set()

    def _poll(self, now: float) -> None:
        frame = self.controller.latest()
        if self._frame is not None and frame.t == self._frame.t:
            if self.generation.deferred:  # a rollback waited for min_rollback_s: ask again
                self._steer(self._controls, now)
            return
        self._frame = frame
        self._stage_poll_at = polled = self.clock.now()  # gesture stage timing
        controls = self.mapping.map(frame)
        self._stage_map_s = self.clock.now() - polled  # gesture stage timing
        self._controls = controls
        self._control_outputs(controls, now)
        if frame.t - self._recorded_t >= self.config.record_frame_s or frame.present != self._recorded_present:
            self._recorded_t, self._recorded_present = frame.t, frame.present  # a hand lost/found is never thinned out
            self._frames_to_record.append(frame)
        self._steer(controls, frame.t - self.t0)

    def _steer(self, controls: Controls, gesture_t: float) -> None:
        epoch = self.generation.steer(controls, gesture_t)
        if epoch is not None:
            self._answer_sent.clear()
            self._pending_gesture = (epoch, gesture_t)
            self.generation.stages.gesture(epoch, self.t0 + gesture_t, self._stage_poll_at, self._stage_map_s)
            self._wake_gen.set()

    def _send_due(self) -> None:
        now = self.clock.now() - self.t0
        self._stage_due_at = now  # gesture stage timing
        with self._lock:
            due = self.scheduler.due(now)
            if not due:
                return
            admitted = [(item, self.ledger.admit(item.message, now)) for item in due]
        for item, messages in admitted:
            for message in messages:
                self._send(item, message)

    def _send(self, item: TimedMessage, message) -> None:
        t = self.clock.now() - self.t0
        for sink in self.sinks:
            sink.send(message, t)
        self.sent += 1
        if not item.late:
            self.jitter.add(t - item.deadline)
        pending = self._pending_gesture
        if pending is not None and message.type == "note_on" and item.epoch == pending[0]:
            self.latency.add(t - pending[1] - item.music_wait)
            self._pending_gesture = None
            self._answer_sent.set()
            self.generation.stages.sent(pending[0], self.clock.now(), self.t0 + self._stage_due_at, self.t0 + t,
                                        self.sent - 1)  # gesture stage timing

    def stage_samples(self) -> dict:
        """Per-gesture stage timing of every rollback whose first note was sent (`GestureStages.samples`, ms)."""
        return self.generation.stages.samples()

    def _broadcast(self, messages, t: float, clock_only: bool = False) -> None:
        for message in messages:
            for sink in self.sinks:
                if not clock_only or sink.wants_clock:
                    sink.send(message, t)

    def _maintain(self, now: float) -> None:
        self._last_maintain = now
        self._flush_outputs(now)
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

    def _midi_in(self, actions: list[tuple[str, object]]) -> None:
        pinned = False
        for action, value in actions:
            if action == "temperature":
                self.generation.temperature = value  # hand-off: applied before the next model step
            elif action == "tempo":
                if "tempo" in self.mapping.targets():
                    self.mapping.override("tempo", value)  # the knob holds over the mapped axis from now on
                self._follow_tempo(value, "midi_in")
            elif action == "panic":
                self.panic()
            else:  # any other mapping target: the knob holds it from now on (instrument/midi_in.py)
                self.mapping.override(action, value)
                pinned = True
        if pinned and self._frame is not None:  # knobs moved together are one gesture: one steer
            now = self.clock.now() - self.t0
            self._controls = self.mapping.map(self._frame)
            self._control_outputs(self._controls, now, source="midi_in")
            self._steer(self._controls, now)

    # --- control outputs: CC out, tempo and key changes recorded ------------------------------- begin
    def _control_outputs(self, controls: Controls, now: float, source: str = "mapping") -> None:
        outputs = self.outputs
        if outputs.ccs:
            messages = outputs.cc(controls, now)
            if messages:
                self._send_cc(messages, now)
        bpm = controls.get("tempo")
        if bpm is not None and not self._clock_leads:
            self._follow_tempo(bpm, source)
        key = controls.get("key")
        if key is not None:
            outputs.key(key, now, source)

    def _send_cc(self, messages, now: float) -> None:
        """CCs out through the timed path (scheduler -> ledger -> sinks), due now: sent this tick."""
        with self._lock:
            for message in messages:
                self.scheduler.push(TimedMessage(now, message, self.generation.epoch))

    def _flush_outputs(self, now: float) -> None:
        messages = self.outputs.flush_cc(now)
        if messages:
            self._send_cc(messages, now)
            self._send_due()
        self.outputs.flush(now)
    # --- control outputs ------------------------------------------------------------------------ end

    def _follow_tempo(self, bpm: float | None, source: str = "clock") -> None:
        if bpm and abs(bpm - self.generation.tempo) > 0.5:
            self.generation.tempo = bpm  # hand-off: the performer reads it before the next model step
            if self.midi_clock is not None:
                self.midi_clock.set_tempo(bpm)
            self.outputs.tempo(bpm, self.clock.now() - self.t0, source)  # into the .mid and the log

    def panic(self) -> None:
        """Silence now and regenerate from the playhead (MIDI-in panic button)."""
        t = self.clock.now() - self.t0
        with self._lock:
            silence = self.ledger.panic(t)
        self._broadcast(silence, t)
        self.generation.request_rollback(self._controls, t)
        self._wake_gen.set()

    # ------------------------------------------------------------------ views
    @property
    def performer(self):
        """The generation's performer (tests and the monitor read its tempo)."""
        return self.generation.performer

    @property
    def rollbacks(self) -> int:
        """Rollbacks so far."""
        return self.generation.rollbacks

    @property
    def underruns(self) -> int:
        """Times the future ran out before the playhead."""
        return self.generation.underruns

    @property
    def late(self) -> int:
        """Messages made for a moment already past (must stay 0)."""
        return self.generation.late

    @property
    def horizon(self) -> float:
        """The end of the generated future (session seconds)."""
        return self.generation.horizon

    def stats(self) -> dict:
        """Latency, jitter, step time (ms) and counters so far."""
        g = self.generation
        return {
            **self.latency.summary_ms("control_to_note"),
            **self.jitter.summary_ms("jitter"),
            **g.step_time.summary_ms("step"),
            "underruns": g.underruns, "rollbacks": g.rollbacks, "strikes": g.strikes, "sent": self.sent, "late": g.late,
            "opening_delayed": g.opening_delayed, "caught_up": g.caught_up,
            "restrikes": self.ledger.restrikes, "orphan_offs": self.ledger.orphan_offs,
            "stuck_at_stop": self.stuck_at_stop,
            "device": self.voice.device, "realtime": self.realtime,
        }

    def snapshot(self) -> EngineSnapshot:
        """A consistent-enough copy of what a monitor shows; never blocks the engine."""
        now = self.clock.now() - self.t0
        notes = self.ledger.recent(now - self.config.keep_notes_s)
        cached_at, stats = self._stats_cache
        if now - cached_at > 0.5:
            stats = self.stats()
            self._stats_cache = (now, stats)
        return EngineSnapshot(
            t=now, horizon=self.horizon, frame=self._frame, controls=self._controls, notes=notes,
            tempo=self.generation.tempo, model=self.voice.name, device=self.voice.device,
            midi=self.midi_status(), stats=stats, controller=self.controller.stats(),
        )
