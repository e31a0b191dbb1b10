"""`instrument ports`: which MIDI systems are there, and their ports."""

from __future__ import annotations

import argparse
import json


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ports' flags."""
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run(args: argparse.Namespace) -> int:
    """List ALSA and JACK: available or why not, then output and input ports."""
    from instrument.errors import MidiUnavailable
    from instrument.midi_out import NO_MIDI_HELP, alsa_available, jack_server_running, list_ports

    report = {}
    for api, present, missing in (("alsa", alsa_available(), "no ALSA sequencer (/dev/snd/seq is missing)"),
                                  ("jack", jack_server_running(), "no JACK server is running")):
        entry = {"available": present, "outputs": [], "inputs": [], "problem": None if present else missing}
        if present:
            try:
                entry["outputs"], entry["inputs"] = list_ports(api)
            except MidiUnavailable as err:
                entry["available"], entry["problem"] = False, str(err)
        report[api] = entry
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    for api, entry in report.items():
        if not entry["available"]:
            print(f"{api.upper()}: unavailable: {entry['problem']}")
            continue
        print(f"{api.upper()}: available")
        print("  outputs (destinations we can --connect to): " + (", ".join(entry["outputs"]) or "none"))
        print("  inputs (sources for --midi-in / --clock follow:): " + (", ".join(entry["inputs"]) or "none"))
    if not any(e["available"] for e in report.values()):
        print(f"no MIDI system: {NO_MIDI_HELP}")
    return 0
