"""The latency bench's receiver: a separate JACK client process that stamps every MIDI message it gets.

Its stamps are `time.monotonic()` (CLOCK_MONOTONIC), the engine's clock too, so a stamp minus a
gesture frame's time is the latency a listener hears. Run by `Receiver` as
`python -m instrument.bench.jack_receiver --receive OUT.json --name NAME`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

from instrument.bench.helper_process import HelperProcess


def receive(out: Path, name: str) -> int:
    """A separate JACK client: a virtual input `NAME:in` stamping every message with time.monotonic() until SIGTERM.

    Writes {"ready": true} when its port exists, then, after SIGTERM, {"messages": [[t, byte, ...], ...]}.
    """
    import rtmidi

    from instrument.midi_systems import quiet_libjack

    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # taken by sigwait below: no handler, no lock
    quiet_libjack()
    received: list[tuple] = []  # (t, bytes), appended on JACK's thread; list.append is atomic
    now = time.monotonic

    def on_message(event, data=None) -> None:
        t = now()  # first: the stamp is the arrival
        received.append((t, event[0]))

    midi_in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=name)
    midi_in.ignore_types(sysex=True, timing=True, active_sense=True)
    midi_in.set_callback(on_message)
    midi_in.open_virtual_port("in")
    out.write_text(json.dumps({"ready": True}) + "\n")
    signal.sigwait(stop_signals)
    time.sleep(0.2)  # the last JACK periods' messages
    midi_in.close_port()
    messages = [[t, *message] for t, message in list(received)]
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps({"messages": messages}) + "\n")
    tmp.replace(out)
    return 0


class Receiver(HelperProcess):
    """This module's receiver, as a separate process; `finish()` returns {"messages": [[t, byte, ...], ...]}."""

    def __init__(self, folder: Path, name: str) -> None:
        self.name = name
        super().__init__("instrument.bench.jack_receiver", ["--receive", str(folder / f"{name}.json"), "--name", name],
                         folder / f"{name}.json", "latency receiver")


def main() -> int:
    parser = argparse.ArgumentParser(description="the latency bench's receiving JACK client (internal)")
    parser.add_argument("--receive", required=True, metavar="OUT.json")
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    return receive(Path(args.receive), args.name)


if __name__ == "__main__":
    sys.exit(main())
