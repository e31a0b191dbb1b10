"""`instrument bench latency`: how fast a gesture is heard, measured on the real engine.

The real engine plays the shipped model through JACK (a private dummy server with
-p 128 is started when none runs), driven by a scripted controller that jumps between
two distant hand positions every `--step-every` seconds. Reported:

- control -> note: send time of the first NOTE_ON generated under the new controls,
  minus the gesture frame's timestamp, minus the TIME_SHIFTs the model itself
  generated before that note (the music's own wait is not latency); JACK then
  delivers it at its next period (128 / 48 kHz = 2.7 ms at most), not included;
- schedule jitter: send time minus deadline, for messages generated ahead of time;
- model step time; underruns (the playhead caught up with the generated future).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

from controllers.frame import ControlFrame

KEYS = ("control_to_note_p50_ms", "control_to_note_p99_ms", "jitter_p50_ms", "jitter_p99_ms", "jitter_max_ms",
        "step_p50_ms", "step_p99_ms", "underruns", "rollbacks", "gestures", "sent", "late", "device", "midi",
        "seconds", "realtime")


class SteppedController:
    """A hand that jumps between low-left and high-right every `period` s, on exact times."""

    POSITIONS = ((0.15, 0.2), (0.85, 0.8))  # (x, y): register 48+.. and density change together

    def __init__(self, clock, period: float = 0.5) -> None:
        self.clock, self.period = clock, period
        self.t0 = clock.now()
        self.gestures = 0

    def latest(self) -> ControlFrame:
        """The frame of the current step, stamped with the step's exact start time."""
        k = int((self.clock.now() - self.t0) / self.period)
        x, y = self.POSITIONS[k % 2]
        self.gestures = k
        return ControlFrame(t=self.t0 + k * self.period, present=True, x=x, y=y, size=0.3)

    def stats(self) -> dict:
        return {"gestures": self.gestures}

    def close(self) -> None:
        """Nothing to release."""


def configure_latency(parser: argparse.ArgumentParser) -> None:
    """Flags of `bench latency`."""
    a = parser.add_argument
    a("--json", action="store_true", help="print one JSON object")
    a("--seconds", type=float, default=60.0, help="how long to play (default 60)")
    a("--model", default="charrnn", help="charrnn (default), dcrnn or a checkpoint path")
    a("--device", default="auto", choices=("auto", "cpu", "cuda"), help="model device (default auto)")
    a("--lookahead", type=float, default=0.2, help="engine lookahead in s (default 0.2)")
    a("--step-every", type=float, default=0.5, help="seconds between scripted gestures (default 0.5)")
    a("--quantize", action="store_true", help="int8 dynamic quantization on CPU")
    a("--no-midi", action="store_true", help="measure without any MIDI port")
    a("--no-realtime", action="store_true", help="do not ask for SCHED_FIFO scheduling")
    a("--seed", type=int, default=0)


def _private_jack() -> subprocess.Popen | None:
    """Start `jackd -S -d dummy -r 48000 -p 128` under a private name; None if jackd is missing."""
    jackd = shutil.which("jackd")
    if jackd is None:
        return None
    from instrument.midi_out import jack_server_running

    name = f"ds-bench-{os.getpid()}"
    env = {**os.environ, "JACK_NO_AUDIO_RESERVATION": "1"}
    proc = subprocess.Popen([jackd, "-n", name, "-S", "-d", "dummy", "-r", "48000", "-p", "128"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 10
    while not jack_server_running(name) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.environ["JACK_DEFAULT_SERVER"] = name
    return proc


def run_latency(args: argparse.Namespace) -> int:
    """Run the engine for --seconds and print the figures."""
    from instrument.clock import SystemClock
    from instrument.midi_out import MidiSink, alsa_available, jack_server_running
    from instrument.session import SessionConfig, build_engine

    private = None
    sinks = []
    midi = "none"
    if not args.no_midi:
        if not (alsa_available() or jack_server_running()):
            private = _private_jack()
        lines: list[str] = []
        sink = MidiSink(api="auto", on_status=lambda kind, message: lines.append(message))
        if sink.connected:
            sinks.append(sink)
            midi = sink.status + (" (private dummy server, -p 128)" if private else "")
        else:
            sink.close()
            print(f"bench latency: {lines[-1] if lines else 'no MIDI'}; measuring without a port", file=sys.stderr)
    try:
        config = SessionConfig(model=args.model, device=args.device, quantize=args.quantize, seed=args.seed,
                               lookahead=args.lookahead, realtime=not args.no_realtime)
        clock = SystemClock()
        controller = SteppedController(clock, args.step_every)
        engine = build_engine(config, clock, controller, sinks)
        voice = engine.voice
        sys.setswitchinterval(0.0005)
        engine.run(args.seconds)
    finally:
        for sink in sinks:
            sink.close()
        if private is not None:
            private.terminate()
            private.wait(timeout=10)
    stats = engine.stats()
    result = {**{k: stats.get(k) for k in KEYS}, "gestures": controller.gestures, "midi": midi, "seconds": args.seconds}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"model {voice.name} on {result['device']}, {args.seconds:g} s, {result['gestures']} gestures, MIDI: {midi}")
        print(f"control -> note  p50 {result['control_to_note_p50_ms']} ms  p99 {result['control_to_note_p99_ms']} ms")
        print(f"schedule jitter  p50 {result['jitter_p50_ms']} ms  p99 {result['jitter_p99_ms']} ms  "
              f"max {result['jitter_max_ms']} ms")
        print(f"model step       p50 {result['step_p50_ms']} ms  p99 {result['step_p99_ms']} ms")
        print(f"underruns {result['underruns']}  rollbacks {result['rollbacks']}  messages {result['sent']}  "
              f"real-time scheduling {'on' if result['realtime'] else 'off (not permitted)'}")
    return 0
