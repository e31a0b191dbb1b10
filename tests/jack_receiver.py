"""A second, separate JACK MIDI client for tests: receives and logs every message.

    python tests/jack_receiver.py --out FILE.jsonl [--source NAME] [--name CLIENT]

With --source it waits for an output port whose name contains NAME and connects to
it; without, it opens a virtual input port CLIENT:in that others connect to. The
first line written is {"ready": ...}; then one line per message:
{"t": time.monotonic() at arrival, "bytes": [...]}. It runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time

import rtmidi


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--source", default=None)
    parser.add_argument("--name", default="ds-receiver")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    out = open(args.out, "w", buffering=1)
    lock = threading.Lock()

    def on_message(event, data=None) -> None:
        t = time.monotonic()
        message, _ = event
        with lock:
            out.write(json.dumps({"t": t, "bytes": list(message)}) + "\n")

    midi_in = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name=args.name)
    midi_in.ignore_types(sysex=True, timing=False, active_sense=True)
    midi_in.set_callback(on_message)
    port = f"{args.name}:in"
    if args.source:
        deadline = time.monotonic() + args.timeout
        while not done.is_set():
            ports = midi_in.get_ports()
            match = [i for i, p in enumerate(ports) if args.source.lower() in p.lower()]
            if match:
                port = ports[match[0]]
                midi_in.open_port(match[0], "in")
                break
            if time.monotonic() > deadline:
                print(f"no JACK output port matching {args.source!r} within {args.timeout} s", file=sys.stderr)
                return 1
            time.sleep(0.02)
    else:
        midi_in.open_virtual_port("in")
    with lock:
        out.write(json.dumps({"ready": True, "t": time.monotonic(), "port": port}) + "\n")
    done.wait()
    midi_in.close_port()
    out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
