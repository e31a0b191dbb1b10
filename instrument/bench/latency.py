"""`instrument bench latency`: how fast a gesture is heard, measured at a separate JACK receiver.

The real engine (`build_engine`, real-time scheduling where permitted) plays the model
through JACK into a receiving client that runs as its own process (this module with
`--receive`) and stamps every message it gets with `time.monotonic()`. The engine's
clock (`SystemClock`) is `time.monotonic` too, i.e. CLOCK_MONOTONIC, one time line for
both processes, so a receiver's stamp minus a gesture frame's stamp is the latency a
listener hears.

The controller is scripted: after `--warmup` s it jumps between two distant hand
positions every `--every` s (default 0.3, above the engine's `min_rollback_s` of
0.25 s), `--gestures` times (default 1000). Like a device thread that has just put a
new frame, a thread of its own wakes the sending loop at each jump. Each jump moves register and density far
past `strike_threshold`, so every gesture rolls back and strikes: the model's next event
is a note-on. For each gesture the engine records its stages (`Engine.stage_samples`):

    frame_age      the frame's age when the sending loop polled it
    mapping        ControlFrame -> Controls
    decision       steering and the rollback decision, up to the request
    handoff        request -> the generation thread takes it
    restore        checkpoint restore, new controls, strike
    model          model steps until the first NOTE_ON under the new controls (steps: how many)
    deadline_wait  the note waits in the scheduler for its deadline (the playhead + restart margin)
    sender_wake    the sending loop wakes and takes it
    admit          ledger admission, up to the send call
    send           the send call itself (rtmidi into JACK's ring buffer)
    delivery       send -> arrival at the receiver (JACK delivers at its next period)

Each gesture is paired with the first note-on generated under it: the engine records
which message (its index among all messages sent) that note was, and the receiver's
message of that index is checked to be that note-on (same pitch); if the counts ever
disagree the first note-on of that pitch received after the send is taken instead.

control -> note (receiver) = arrival - gesture frame time; the in-engine figure is send
time - gesture frame time - the model's own silence before that note (0 for strikes).
Also reported: schedule jitter (send time - deadline, for notes made ahead of time),
underruns, late notes (made for a moment already past; must be 0), catch-ups (the future
fell behind the playhead in a stall and played on from there, with their causes) and model step time.
A stall probe (`stall_probe.py`, its own process at a higher real-time priority) records
when the whole machine stopped running user code; each gesture heard later than 5 ms is
checked against those stalls, so a miss is put down to the machine or to the engine.

JACK: `--period 64` (default) and/or 128 (`--period 64,128` runs both). A running server
with that period is used (its period is read with `jack_bufsize`); otherwise a private
`jackd -n NAME -S -d dummy -r 48000 -p N` is started and stopped again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from controllers.frame import ControlFrame
from instrument.bench.jack_receiver import Receiver
from instrument.bench.jack_server import SAMPLE_RATE, JackFor
from instrument.bench.stall_probe import StallProbe, overlaps, stall_summary
from instrument.engine_config import GIL_SWITCH_INTERVAL_S
from instrument.errors import UsageError
from instrument.generation import SLOW_STEP_S

# Rows of the stage table: (key in Engine.stage_samples, or "delivery"; label)
STAGES = (("frame_age", "frame age at poll"), ("mapping", "mapping"), ("decision", "rollback decision"),
          ("handoff", "hand-off to generator"), ("restore", "restore + strike"),
          ("model", "model steps to note-on"), ("step_compute", "  of which model compute"),
          ("deadline_wait", "wait for deadline"), ("sender_wake", "sender wake-up"), ("admit", "ledger admit"),
          ("send", "send call"), ("delivery", "JACK delivery"))
SLOW_MS = 5.0  # the p99 goal: a gesture heard later than this is checked against the machine's stalls


# ----------------------------------------------------------------------------- the gestures
class SteppedController:
    """A hand that holds still for `warmup` s, then jumps between low-left and high-right every `every` s.

    Frames carry the exact time of their jump. The time origin is the first `latest()` call (the
    engine's start), so model loading does not eat gestures. After `gestures` jumps the hand holds.
    """

    POSITIONS = ((0.15, 0.2), (0.85, 0.8))  # (x, y): register 55 <-> 77, density 2.4 <-> 8.7 notes/s

    def __init__(self, clock, every: float = 0.3, warmup: float = 1.0, gestures: int | None = None) -> None:
        self.clock, self.every, self.warmup, self.limit = clock, every, warmup, gestures
        self.t0: float | None = None
        self.gestures = 0  # jumps made so far
        self.spec = "bench"

    def latest(self) -> ControlFrame:
        """The frame of the current position, stamped with the time the hand got there."""
        now = self.clock.now()
        if self.t0 is None:
            self.t0 = now
        k = int((now - self.t0 - self.warmup) // self.every) + 1 if now - self.t0 >= self.warmup else 0
        if self.limit is not None:
            k = min(k, self.limit)
        self.gestures = k
        x, y = self.POSITIONS[k % 2]
        t = self.t0 if k == 0 else self.t0 + self.warmup + (k - 1) * self.every
        return ControlFrame(t=t, present=True, x=x, y=y, size=0.3)

    def wake_on_frame(self, event) -> None:
        """Set `event` at each jump, from a thread of its own, as a device thread does when its frame arrives."""
        import threading

        self._closed = threading.Event()

        def jumps() -> None:
            k = 1
            while not self._closed.is_set() and (self.limit is None or k <= self.limit):
                at = self.t0 + self.warmup + (k - 1) * self.every
                if self._closed.wait(max(0.0, at - self.clock.now())):
                    return
                event.set()
                k += 1

        threading.Thread(target=jumps, name="bench-hand", daemon=True).start()

    def stats(self) -> dict:
        return {"gestures": self.gestures}

    def close(self) -> None:
        """Stop the jump thread, if any."""
        closed = getattr(self, "_closed", None)
        if closed is not None:
            closed.set()


# ----------------------------------------------------------------------------- figures
def percentiles(values) -> dict[str, float | None]:
    """{p50, p99, p99_9, max, mean} in the values' unit, rounded to 3 decimals; None when empty."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if not v.size:
        return {"p50": None, "p99": None, "p99_9": None, "max": None, "mean": None}
    p50, p99, p999 = np.percentile(v, [50, 99, 99.9])
    return {"p50": round(float(p50), 3), "p99": round(float(p99), 3), "p99_9": round(float(p999), 3),
            "max": round(float(v.max()), 3), "mean": round(float(v.mean()), 3)}


def pair_with_receiver(stages: dict[str, np.ndarray], messages: list[list[float]]) -> tuple[np.ndarray, dict]:
    """Arrival time (s, NaN if never heard) of each gesture's first note at the receiver, and how it was found."""
    times = np.array([m[0] for m in messages], dtype=np.float64)
    is_on = np.array([len(m) >= 4 and int(m[1]) & 0xF0 == 0x90 and m[3] > 0 for m in messages], dtype=bool)
    pitch = np.array([int(m[2]) if len(m) >= 3 else -1 for m in messages], dtype=np.int64)
    arrival = np.full(len(stages["epoch"]), np.nan)
    by_index = by_time = 0
    for i, (seq, note, sent) in enumerate(zip(stages["seq"], stages["pitch"], stages["send_t"])):
        if 0 <= seq < len(messages) and is_on[seq] and pitch[seq] == note and times[seq] >= sent:
            arrival[i] = times[seq]
            by_index += 1
            continue
        later = np.flatnonzero(is_on & (pitch == note) & (times >= sent))
        if later.size:
            arrival[i] = times[later[0]]
            by_time += 1
    return arrival, {"paired_by_index": by_index, "paired_by_time": by_time}


def measure(period: int, args: argparse.Namespace, folder: Path) -> dict:
    """One run at JACK period `period`: the engine plays into a receiver process; the run's figures."""
    from instrument.clock import SystemClock
    from instrument.midi_out import MidiSink
    from instrument.session import SessionConfig, build_engine

    load_before = os.getloadavg()
    with JackFor(period) as server:
        receiver = Receiver(folder, f"ds-latency-rx-{os.getpid()}-{period}")
        machine = StallProbe(folder)
        try:
            receiver.wait_ready()
            machine.wait_ready()
            lines: list[str] = []
            sink = MidiSink(port="Deep Symphony", connect=receiver.name, api="jack",
                            on_status=lambda kind, message: lines.append(message))
            if not sink.connected:
                sink.close()
                raise UsageError(f"bench latency: cannot reach the receiver: {lines[-1] if lines else 'no MIDI'}")
            try:
                config = SessionConfig(model=args.model, device=args.device, quantize=args.quantize, seed=args.seed,
                                       lookahead=args.lookahead, realtime=not args.no_realtime)
                clock = SystemClock()
                controller = SteppedController(clock, args.every, args.warmup, args.gestures)
                engine = build_engine(config, clock, controller, [sink])
                switch = sys.getswitchinterval()
                sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)  # as `play`
                started = time.monotonic()
                try:
                    engine.run(args.warmup + (args.gestures - 1) * args.every + max(args.every, 0.5))
                finally:
                    controller.close()
                    sys.setswitchinterval(switch)
                    _normal_priority()  # what this thread starts next (servers, receivers) must not inherit FIFO
                wall = time.monotonic() - started
            finally:
                sink.close()
            messages = receiver.finish().get("messages", [])
            probed = machine.finish()
        finally:
            receiver.kill()
            machine.kill()
    stats, stages = engine.stats(), engine.stage_samples()
    arrival, pairing = pair_with_receiver(stages, messages)
    receiver_ms = (arrival - stages["frame_t"]) * 1e3
    delivery_ms = (arrival - stages["send_t"]) * 1e3
    table = {key: percentiles(delivery_ms if key == "delivery" else stages[key]) for key, _ in STAGES}
    table["music_wait"] = percentiles(stages["music_wait"])
    stalls = np.asarray(probed["stalls"], dtype=np.float64).reshape(-1, 2)
    heard = np.isfinite(arrival)
    in_stall = np.zeros(len(arrival), dtype=bool)
    in_stall[heard] = overlaps(stages["frame_t"][heard], arrival[heard], stalls)
    slow = heard & (receiver_ms > SLOW_MS)
    first_late = int((stages["late_by"] > 0).sum())
    steps = stages["steps"]
    result = {
        "period": period, "sample_rate": SAMPLE_RATE, "period_ms": round(period / SAMPLE_RATE * 1e3, 3),
        "server": server.where, "model": engine.voice.name, "grid": engine.generation.performer.grid,
        "device": stats.get("device"),
        "realtime": engine.realtime, "gestures": controller.gestures, "every_s": args.every,
        "rollbacks": engine.rollbacks, "strikes": engine.generation.strikes,
        "notes_sent": int(len(stages["epoch"])), "notes_received": int(np.isfinite(arrival).sum()), **pairing,
        "control_to_note_ms": percentiles(receiver_ms),
        "machine_stalls": {**stall_summary(stalls, wall), "probe_realtime": probed.get("realtime"),
                           "slow_gestures": int(slow.sum()), "slow_during_a_stall": int((slow & in_stall).sum()),
                           "control_to_note_outside_stalls_ms": percentiles(receiver_ms[heard & ~in_stall])},
        "engine_ms": percentiles(stages["engine"]),
        "stages_ms": table,
        "steps_to_note": {"p50": _int_pct(steps, 50), "p99": _int_pct(steps, 99),
                          "max": int(steps.max()) if steps.size else None,
                          "one_step_pct": round(100.0 * float((steps == 1).mean()), 2) if steps.size else None},
        "jitter_ms": {"p50": stats.get("jitter_p50_ms"), "p99": stats.get("jitter_p99_ms"),
                      "max": stats.get("jitter_max_ms")},
        "step_ms": {"p50": stats.get("step_p50_ms"), "p99": stats.get("step_p99_ms"), "max": stats.get("step_max_ms")},
        "underruns": engine.underruns, "late": engine.late,
        "caught_up": {"count": engine.generation.caught_up, "max_ms": round(engine.generation.caught_up_max_s * 1e3, 2),
                      "causes": dict(engine.generation.catch_up_causes), "grid_notes_skipped": engine.generation.skipped_late},
        "first_notes_late": first_late,
        "slow_steps": {"over_ms": SLOW_STEP_S * 1e3, "count": engine.generation.slow_step_count,
                       "first": list(engine.generation.slow_steps)},
        "first_notes_late_by_ms": percentiles(stages["late_by"][stages["late_by"] > 0]),
        "sent": engine.sent, "received": len(messages),
        "seconds": round(wall, 1),
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]},
    }
    if args.keep:
        keep = Path(args.keep)
        keep.mkdir(parents=True, exist_ok=True)
        raw = {key: value.tolist() for key, value in stages.items()}
        raw.update(arrival=arrival.tolist(), receiver_ms=receiver_ms.tolist())
        (keep / f"latency_p{period}.json").write_text(json.dumps({"result": result, "gestures": raw}) + "\n")
    return result


def _int_pct(values: np.ndarray, q: float) -> int | None:
    return int(np.percentile(values, q, method="higher")) if values.size else None


def _normal_priority() -> None:
    try:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (AttributeError, OSError):
        pass


# ----------------------------------------------------------------------------- the command
def configure_latency(parser: argparse.ArgumentParser) -> None:
    """Flags of `bench latency`."""
    from instrument.voices.registry import model_help

    a = parser.add_argument
    a("--gestures", type=int, default=1000, help="how many gestures (default 1000; each is a strike)")
    a("--period", default="64", help="JACK period in frames at 48 kHz: 64, 128 or both as 64,128 (default 64)")
    a("--every", "--step-every", dest="every", type=float, default=0.3,
      help="seconds between gestures (default 0.3; more than the engine's min_rollback_s, 0.25 s)")
    a("--warmup", type=float, default=1.0, help="seconds of play before the first gesture (default 1)")
    a("--model", default="charrnn", help=model_help())
    a("--device", default="auto", choices=("auto", "cpu", "cuda"), help="model device (default auto)")
    a("--lookahead", type=float, default=0.2, help="engine lookahead in s (default 0.2)")
    a("--quantize", action="store_true", help="int8 dynamic quantization on CPU")
    a("--no-realtime", action="store_true", help="do not ask for SCHED_FIFO scheduling")
    a("--seed", type=int, default=0)
    a("--keep", default=None, metavar="DIR", help="write every gesture's stages and arrival to DIR/latency_pN.json")
    a("--json", action="store_true", help="print one JSON object")


def _periods(text: str) -> list[int]:
    try:
        periods = [int(p) for p in str(text).split(",") if p.strip()]
    except ValueError:
        periods = []
    if not periods or any(p < 16 or p > 8192 or p & (p - 1) for p in periods):
        raise UsageError(f"--period must be JACK periods (powers of two), e.g. 64, 128 or 64,128; got {text!r}")
    return periods


def run_latency(args: argparse.Namespace) -> int:
    """Run the benchmark for each --period and print the figures."""
    periods = _periods(args.period)
    if args.gestures < 1:
        raise UsageError(f"--gestures must be >= 1, got {args.gestures}")
    from instrument.engine import EngineConfig

    min_rollback = EngineConfig().min_rollback_s  # gestures closer than this steer instead of striking
    if args.every < min_rollback + 0.01:
        raise UsageError(f"--every must be >= {min_rollback + 0.01:g} s: closer gestures than the engine's "
                         f"{min_rollback:g} s between rollbacks steer instead of striking; got {args.every:g}")
    if args.warmup < 0:
        raise UsageError(f"--warmup must be >= 0 s, got {args.warmup:g}")
    runs = []
    with tempfile.TemporaryDirectory(prefix="ds-latency-") as tmp:
        for period in periods:
            if not args.json:
                print(f"bench latency: {args.gestures} gestures every {args.every:g} s at -p {period} "
                      f"(about {args.warmup + args.gestures * args.every:.0f} s after the model loads)...",
                      file=sys.stderr, flush=True)
            runs.append(measure(period, args, Path(tmp)))
    report = {"model": runs[0]["model"], "device": runs[0]["device"], "gestures": args.gestures,
              "clock": "time.monotonic (CLOCK_MONOTONIC) in the engine and the receiver", "runs": runs}
    if args.json:
        print(json.dumps(report))
    else:
        for run in runs:
            print_run(run)
    return 0


def _cells(figures: dict, keys=("p50", "p99", "p99_9", "max")) -> str:
    return "".join(f"{'-' if figures.get(k) is None else format(figures[k], '.3f'):>9}" for k in keys)


def _fig(value) -> str:
    """A figure for the table; "n/a" where nothing was measured (no None in printed figures)."""
    return "n/a" if value is None else str(value)


def print_run(run: dict) -> None:
    """The readable table of one run."""
    p = print
    p(f"\n{run['model']} on {run['device']}, JACK dummy -p {run['period']} at {run['sample_rate'] // 1000} kHz "
      f"({run['period_ms']} ms period, {run['server']}), real-time scheduling "
      f"{'on' if run['realtime'] else 'off (not permitted)'}, load average {run['load_average']['before'][0]:.1f}")
    p(f"{run['gestures']} gestures every {run['every_s']:g} s: {run['rollbacks']} rollbacks, {run['strikes']} strikes, "
      f"first notes sent {run['notes_sent']}, received {run['notes_received']} "
      f"({run['paired_by_index']} by message index, {run['paired_by_time']} by time)")
    p(f"{'(ms)':<34}{'p50':>9}{'p99':>9}{'p99.9':>9}{'max':>9}")
    p(f"{'control -> note at the receiver':<34}{_cells(run['control_to_note_ms'])}")
    p(f"{'control -> note in the engine':<34}{_cells(run['engine_ms'])}")
    p("stages:")
    for key, label in STAGES:
        p(f"  {label:<32}{_cells(run['stages_ms'][key])}")
    s = run["steps_to_note"]
    p(f"  {'model steps to note-on (count)':<32}{_fig(s['p50']):>9}{_fig(s['p99']):>9}{'':>9}{_fig(s['max']):>9}"
      f"   ({_fig(s['one_step_pct'])} % in one step)")
    p(f"  {'music wait (subtracted in engine)':<32}{_cells(run['stages_ms']['music_wait'])}")
    j, st = run["jitter_ms"], run["step_ms"]
    p(f"schedule jitter p50 {_fig(j['p50'])} p99 {_fig(j['p99'])} max {_fig(j['max'])} ms; "
      f"model step p50 {_fig(st['p50'])} p99 {_fig(st['p99'])} ms")
    lb = run["first_notes_late_by_ms"]
    by = f" (late by p50 {_fig(lb['p50'])}, max {_fig(lb['max'])} ms)" if run["first_notes_late"] else ""
    p(f"underruns {run['underruns']}  late {run['late']} messages (must be 0): {run['first_notes_late']} of them "
      f"a gesture's first note{by}")
    caught = run["caught_up"]
    if caught["count"]:
        then = (f"the grid voice skipped the {caught['grid_notes_skipped']} note(s) whose time had passed"
                if run["grid"] else "the music played on from there, its rhythm whole")
        p(f"caught up {caught['count']}x (the future fell behind the playhead, by at most {caught['max_ms']:g} ms; "
          f"{then}):")
        for cause, count in caught["causes"].items():
            p(f"  {cause}: {count}")
    slow = run["slow_steps"]
    if slow["count"]:
        p(f"slow model calls (> {slow['over_ms']:g} ms): {slow['count']}; the first, with this thread's counters "
          f"since its previous fill:")
        for row in slow["first"][:5]:
            p(f"  t {row['t']:g} s: {row['ms']:g} ms, CPU {row['cpu_ms_since_fill']:g} ms, preempted "
              f"{row['preempted']}x, page faults {row['minor_faults']}+{row['major_faults']} major"
              f"{', first after a rollback' if row['first_after_rollback'] else ''}")
    p(f"messages sent {run['sent']}, received {run['received']} (with the final panic); {run['seconds']:g} s")
    m = run["machine_stalls"]
    p(f"machine stalls (a separate probe process oversleeping by > 2 ms): {m['count']} ({m['over_5ms']} over 5 ms, "
      f"{m['over_20ms']} over 20 ms, max {m['max_ms']:g} ms); gestures over {SLOW_MS:g} ms: {m['slow_gestures']}, "
      f"{m['slow_during_a_stall']} of them during a machine stall")
    p(f"{'control -> note outside the stalls':<34}{_cells(m['control_to_note_outside_stalls_ms'])}")
