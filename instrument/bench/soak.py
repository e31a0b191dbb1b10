"""`instrument bench soak --minutes N [--json]`: a long `play` through JACK, watched from outside.

It runs what a performer runs, `instrument play --controller demo`, as its own process
for N minutes, connected to a separate receiving JACK client process, and reports:

- the player's resident memory (RSS) after a warm-up, at the end, and at its highest;
- max schedule lateness (send time minus deadline, from the session log) and late sends;
- underruns (the playhead caught up with the generated future);
- stuck notes at the end: keys whose last message at the receiver was a note-on;
- notes recorded in the session's .mid (read back with mido) and notes received.

When no JACK server runs, a private `jackd -S -d dummy -r 48000 -p 128` is started and
stopped again. The receiver is this module run as a script (`--receive`).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from instrument.bench.helper_process import HelperProcess
from instrument.voices.registry import model_help

RESULT_KEYS = ("minutes", "model", "rss_start_mb", "rss_end_mb", "rss_max_mb", "memory_growth_pct",
               "max_lateness_ms", "jitter_p99_ms", "late", "underruns", "stuck_notes", "notes_recorded",
               "notes_received", "midi_lost", "exit_code", "midi")


def configure_soak(parser: argparse.ArgumentParser) -> None:
    """Flags of `bench soak`."""
    a = parser.add_argument
    a("--minutes", type=float, default=30.0, help="how long to play (default 30)")
    a("--json", action="store_true", help="print one JSON object")
    a("--model", default="charrnn", help=model_help())
    a("--seed", type=int, default=0, help="the player's seed (default 0)")
    a("--lookahead", type=float, default=0.2, help="engine lookahead in s (default 0.2)")
    a("--warmup", type=float, default=None, metavar="S",
      help="seconds of play (after the model loaded) before the start RSS is taken "
           "(default: a tenth of the run, at most 30)")
    a("--keep", default=None, metavar="DIR", help="keep the session files (.mid, logs) in DIR")


# ----------------------------------------------------------------------------- measuring
def rss_mb(pid: int) -> float | None:
    """Resident memory of process `pid` in MiB (Linux /proc), None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


class RssSampler(threading.Thread):
    """Samples a process's RSS every `period` s while it plays; `start_mb` is taken `warmup` s into the session.

    The session starts when its log records the engine's `start` event (after the model loaded).
    """

    def __init__(self, pid: int, log: Path, warmup: float, period: float = 1.0) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.log, self.warmup, self.period = pid, log, warmup, period
        self.start_mb = self.end_mb = self.max_mb = None
        self._done = threading.Event()

    def _logged(self, event: str) -> bool:
        try:
            return f'"event": "{event}"' in self.log.read_text()
        except OSError:
            return False

    def run(self) -> None:
        began = None
        while not self._done.wait(self.period):
            value = rss_mb(self.pid)
            if value is None or (began is not None and self._logged("stop")):
                return  # the end figure is the last one taken while playing, not while exiting
            if began is None:
                began = time.monotonic() if self._logged("start") else None
                continue
            if time.monotonic() - began >= self.warmup:
                if self.start_mb is None:
                    self.start_mb = value
                self.max_mb = max(self.max_mb or 0.0, value)
                self.end_mb = value

    def stop(self) -> None:
        """Stop sampling (the last sample taken stays `end_mb`)."""
        self._done.set()
        self.join(timeout=5)


def note_faults(messages: list[list[int]], times: list[float], cap_s: float = 4.05) -> dict[str, int]:
    """What a listener would call broken: note-ons for a key already sounding, notes longer than the cap."""
    since: dict[tuple[int, int], float] = {}
    restruck = over_cap = 0
    for b, t in zip(messages, times):
        if len(b) != 3 or b[0] & 0xF0 not in (0x80, 0x90):
            if len(b) == 3 and b[0] & 0xF0 == 0xB0 and b[1] in (120, 123):
                since = {k: v for k, v in since.items() if k[0] != b[0] & 0x0F}
            continue
        key = (b[0] & 0x0F, b[1])
        if b[0] & 0xF0 == 0x90 and b[2] > 0:
            restruck += key in since
            since[key] = t
        elif key in since:
            over_cap += t - since.pop(key) > cap_s
    return {"note_on_while_sounding": restruck, "notes_over_cap": over_cap}


def stuck_keys(messages: list[list[int]]) -> list[tuple[int, int]]:
    """(channel, pitch) of the notes a receiver still hears: last message a note-on with velocity > 0."""
    sounding: dict[tuple[int, int], bool] = {}
    for b in messages:
        if len(b) == 3 and b[0] & 0xF0 in (0x80, 0x90):
            sounding[(b[0] & 0x0F, b[1])] = b[0] & 0xF0 == 0x90 and b[2] > 0
        elif len(b) == 3 and b[0] & 0xF0 == 0xB0 and b[1] in (120, 123):  # all sound / all notes off
            for key in [k for k in sounding if k[0] == b[0] & 0x0F]:
                sounding[key] = False
    return sorted(k for k, on in sounding.items() if on)


# ----------------------------------------------------------------------------- the receiver
def receive(out: Path, name: str) -> int:
    """A separate JACK client: a virtual input `NAME:in` counting what it hears until SIGTERM."""
    import rtmidi

    from instrument.midi_systems import quiet_libjack

    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # taken by sigwait below: no handler, no lock
    quiet_libjack()
    lock = threading.Lock()
    tally = {"messages": 0, "note_on": 0, "note_off": 0}
    notes: list[list[int]] = []  # note and CC messages only: enough to tell what still sounds
    times: list[float] = []  # when each of them arrived (monotonic seconds)

    def on_message(event, data=None) -> None:
        message, _ = event
        with lock:
            tally["messages"] += 1
            kind = message[0] & 0xF0 if message else 0
            if kind == 0x90 and message[2] > 0:
                tally["note_on"] += 1
            elif kind in (0x80, 0x90):
                tally["note_off"] += 1
            if kind in (0x80, 0x90, 0xB0):
                notes.append(list(message))
                times.append(time.monotonic())

    midi_in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=name)
    midi_in.ignore_types(sysex=True, timing=True, active_sense=True)
    midi_in.set_callback(on_message)
    midi_in.open_virtual_port("in")
    out.write_text(json.dumps({"ready": True}) + "\n")
    signal.sigwait(stop_signals)
    time.sleep(0.2)  # the last JACK period's messages
    midi_in.close_port()
    with lock:
        stuck = stuck_keys(notes)
        summary = {**tally, "stuck": len(stuck), "stuck_keys": stuck, **note_faults(notes, times)}
    out.write_text(json.dumps(summary) + "\n")
    return 0


class Receiver(HelperProcess):
    """This module's receiver, as a separate process; `finish()` returns its summary."""

    def __init__(self, folder: Path, name: str) -> None:
        out = folder / "receiver.json"
        super().__init__("instrument.bench.soak", ["--receive", str(out), "--name", name], out, "soak receiver")


# ----------------------------------------------------------------------------- the run
def _session_figures(log: Path) -> dict:
    """The stop event's statistics and the MIDI-lost count from a session log."""
    stop, lost = {}, 0
    for line in log.read_text().splitlines():
        record = json.loads(line)
        if record.get("event") == "stop":
            stop = record
        elif record.get("event") == "midi_lost":
            lost += 1
    return {"max_lateness_ms": stop.get("jitter_max_ms"), "jitter_p99_ms": stop.get("jitter_p99_ms"),
            "late": stop.get("late"), "underruns": stop.get("underruns"), "midi_lost": lost,
            "ended_only_by_stop": stop.get("stuck_at_stop")}


def _notes_recorded(mid: Path) -> int | None:
    import mido

    try:
        return sum(1 for m in mido.MidiFile(mid) if m.type == "note_on" and m.velocity > 0)
    except (OSError, ValueError, EOFError):
        return None


def soak(minutes: float, model: str, seed: int, lookahead: float, warmup: float, folder: Path) -> dict:
    """Play for `minutes` through JACK into a separate receiver; returns the figures (RESULT_KEYS)."""
    name = f"ds-soak-{os.getpid()}"
    receiver = Receiver(folder, name)
    try:
        receiver.wait_ready()
        mid = folder / "soak.mid"
        for old in folder.glob("soak.*"):  # a session never overwrites a recording: clear the last run's
            old.unlink()
        player = subprocess.Popen(
            [sys.executable, "-m", "instrument", "play", "--controller", "demo", "--midi-api", "jack",
             "--connect", name, "--model", model, "--seed", str(seed), "--lookahead", str(lookahead),
             "--record", str(mid), "--duration", str(minutes * 60.0)],
            stderr=open(folder / "play.stderr", "w"), start_new_session=True)
        sampler = RssSampler(player.pid, mid.with_suffix(".log.jsonl"), warmup)
        sampler.start()
        try:
            code = player.wait(timeout=minutes * 60.0 + 120.0)
        except subprocess.TimeoutExpired:
            player.kill()
            code = player.wait()
        sampler.stop()
        heard = receiver.finish()
    finally:
        receiver.kill()
    result = {"minutes": minutes, "model": model, "exit_code": code,
              "rss_start_mb": _round(sampler.start_mb), "rss_end_mb": _round(sampler.end_mb),
              "rss_max_mb": _round(sampler.max_mb), "memory_growth_pct": None,
              "stuck_notes": heard["stuck"], "notes_received": heard["note_on"],
              "note_on_while_sounding": heard["note_on_while_sounding"], "notes_over_cap": heard["notes_over_cap"],
              "notes_recorded": _notes_recorded(mid)}
    if sampler.start_mb and sampler.end_mb:
        result["memory_growth_pct"] = round(100.0 * (sampler.end_mb - sampler.start_mb) / sampler.start_mb, 2)
    log = mid.with_suffix(".log.jsonl")
    result.update(_session_figures(log) if log.exists() else {})
    if code != 0:
        result["play_stderr"] = (folder / "play.stderr").read_text()[-2000:]
    return result


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def run_soak(args: argparse.Namespace) -> int:
    """Run the soak and print its figures; 1 if the player did not end cleanly."""
    from instrument.bench.jack_server import _private_jack
    from instrument.errors import UsageError
    from instrument.midi_systems import jack_server_running

    if args.minutes <= 0:
        raise UsageError(f"--minutes must be > 0, got {args.minutes:g}")
    warmup = args.warmup if args.warmup is not None else min(30.0, args.minutes * 6.0)
    private = None
    if not jack_server_running():
        private = _private_jack()
        if private is None or not jack_server_running():
            raise UsageError("bench soak plays through JACK: install jackd2 or start a server (jackd -S -d dummy)")
    try:
        with tempfile.TemporaryDirectory(prefix="ds-soak-") as tmp:
            folder = Path(args.keep) if args.keep else Path(tmp)
            folder.mkdir(parents=True, exist_ok=True)
            result = soak(args.minutes, args.model, args.seed, args.lookahead, warmup, folder)
    finally:
        if private is not None:
            private.terminate()
            private.wait(timeout=10)
    result["midi"] = "JACK, private dummy server -p 128" if private is not None else "JACK, running server"
    if args.json:
        print(json.dumps(result))
    else:
        def fig(name: str) -> object:  # no None in printed figures: a player that never stopped measured nothing
            return "n/a" if result.get(name) is None else result[name]

        print(f"soak: {args.minutes:g} min of `play --controller demo --model {args.model}` via {result['midi']}")
        print(f"RSS            start {result['rss_start_mb']} MiB (after {warmup:g} s)  end {result['rss_end_mb']} MiB  "
              f"max {result['rss_max_mb']} MiB  growth {result['memory_growth_pct']} %")
        print(f"lateness       max {fig('max_lateness_ms')} ms  p99 {fig('jitter_p99_ms')} ms  "
              f"late sends {fig('late')}")
        print(f"underruns      {fig('underruns')}")
        print(f"stuck notes    {result['stuck_notes']} (at a separate receiver, after the stop); "
              f"{fig('ended_only_by_stop')} ended only by the final panic")
        print(f"note faults    {result['note_on_while_sounding']} note-ons for a sounding key, "
              f"{result['notes_over_cap']} notes over the 4-s cap (at the receiver)")
        print(f"notes          {result['notes_recorded']} recorded, {result['notes_received']} received; "
              f"MIDI server lost {fig('midi_lost')} times; player exit code {result['exit_code']}")
        if result["exit_code"] != 0:
            print(result.get("play_stderr", ""), file=sys.stderr)
    return 0 if result["exit_code"] == 0 else 1


def _receiver_main() -> int:
    parser = argparse.ArgumentParser(description="the soak's receiving JACK client (internal)")
    parser.add_argument("--receive", required=True, metavar="OUT.json")
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    return receive(Path(args.receive), args.name)


if __name__ == "__main__":
    sys.exit(_receiver_main())
