"""`instrument ports`: which MIDI systems this machine has, which one `--midi-api auto` picks, and their ports."""

from __future__ import annotations

import argparse
import json


def configure(parser: argparse.ArgumentParser) -> None:
    """Add ports' flags."""
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def report(system=None) -> dict:
    """{"auto": API or None, "auto_problem": why not, "apis": {API: {available, virtual_ports, outputs, inputs,
    problem}}} for every API python-rtmidi was compiled with (`system`: a midi_out.MidiSystem, default this machine)."""
    from instrument.errors import MidiUnavailable, UsageError
    from instrument.midi_systems import VIRTUAL_PORTS, current_system, list_ports, select_api

    system = system or current_system()
    result: dict = {"auto": None, "auto_problem": None, "apis": {}}
    try:
        result["auto"] = select_api("auto", system)
    except (MidiUnavailable, UsageError) as err:
        result["auto_problem"] = str(err)
    for api in system.compiled:
        entry = {"available": False, "virtual_ports": api in VIRTUAL_PORTS, "outputs": [], "inputs": [], "problem": None}
        try:
            select_api(api, system)
            entry["outputs"], entry["inputs"] = list_ports(api)
            entry["available"] = True
        except (MidiUnavailable, UsageError) as err:
            entry["problem"] = str(err)
        result["apis"][api] = entry
    return result


def run(args: argparse.Namespace) -> int:
    """List each compiled MIDI API: available or why not, then its output and input ports."""
    from instrument.midi_systems import API_NAMES, NO_VIRTUAL_HELP

    found = report()
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    for api, entry in found["apis"].items():
        if not entry["available"]:
            print(f"{API_NAMES[api]} ({api}): unavailable: {entry['problem']}")
            continue
        print(f"{API_NAMES[api]} ({api}): available" + ("" if entry["virtual_ports"] else f"; {NO_VIRTUAL_HELP}"))
        print("  outputs (destinations we can --connect to): " + (", ".join(entry["outputs"]) or "none"))
        print("  inputs (sources for --midi-in / --clock follow:): " + (", ".join(entry["inputs"]) or "none"))
    if found["auto"]:
        print(f"--midi-api auto uses {found['auto']}")
    else:
        print(f"--midi-api auto: {found['auto_problem']}")
    return 0
