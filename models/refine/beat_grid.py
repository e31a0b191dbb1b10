"""Is a MIDI corpus sequenced on a beat grid? ``python -m models.refine.beat_grid DIR...``.

For every note onset (all channels but drums) the distance, in ticks, to the nearest tick of
the file's 16th-note grid (ticks_per_beat / 4), of its 12-per-beat grid (ticks_per_beat / 12:
16ths and 16th triplets together) and of its 8th-triplet grid (ticks_per_beat / 3), converted to
milliseconds with the tempo in force at that onset. An onset "on the grid" is within
``TOLERANCE_MS`` of a grid tick. Chance is the share a uniformly placed onset would score:
2 * tolerance / grid step (capped at 1), averaged over the same onsets. Per folder: the share of
onsets on each grid, chance, and the share of files with at least 90 % of their onsets on the
16th grid. Split by the corpus's own rule, so test-split figures can be read apart.

A performance recorded from a keyboard (the classical competition files) sits on its grid only by
chance; a file typed into a sequencer sits on it exactly. This is what tells whether "align the
music to the beat" can be learnt from a folder.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import mido
import numpy as np

TOLERANCE_MS = 10.0
SEQUENCED_SHARE = 0.9  # a file with at least this share of its onsets on its own 16th grid was typed into a sequencer
GRIDS = {"16th": 4, "12ths": 12, "8th_triplet": 3}  # grid ticks per beat
DRUM_CHANNEL = 9


def onset_distances(path: Path) -> dict[str, np.ndarray] | None:
    """Per grid: (distance to the nearest grid tick in ms (N,), grid step in ms (N,)) of the file's onsets; None if unreadable."""
    try:
        midi = mido.MidiFile(path, clip=True)
    except Exception:  # noqa: BLE001 - a measurement: unreadable files are counted apart
        return None
    tpb = midi.ticks_per_beat
    tick, tempo = 0, 500_000
    ticks, tempos = [], []
    for message in mido.merge_tracks(midi.tracks):
        tick += message.time
        if message.type == "set_tempo":
            tempo = message.tempo
        elif message.type == "note_on" and message.velocity > 0 and message.channel != DRUM_CHANNEL:
            ticks.append(tick)
            tempos.append(tempo)
    if not ticks:
        return None
    t = np.asarray(ticks, dtype=np.float64)
    ms_per_tick = np.asarray(tempos, dtype=np.float64) / 1000.0 / tpb
    out = {}
    for name, per_beat in GRIDS.items():
        step = tpb / per_beat
        distance = np.abs(t - np.round(t / step) * step)
        out[name] = np.stack([distance * ms_per_tick, step * ms_per_tick])
    return out


def is_sequenced(path: Path) -> bool:
    """Whether a file's onsets sit on its own 16th grid (at least SEQUENCED_SHARE of them within TOLERANCE_MS)."""
    return on_grid_share(path) >= SEQUENCED_SHARE


def on_grid_share(path: Path, grid: str = "16th", tolerance_ms: float = TOLERANCE_MS) -> float:
    """The share of a file's onsets within `tolerance_ms` of its `grid` (0 for an unreadable file)."""
    result = onset_distances(Path(path))
    return float((result[grid][0] <= tolerance_ms).mean()) if result is not None else 0.0


def folder_report(root: Path, tolerance_ms: float = TOLERANCE_MS) -> dict:
    """The grid shares of every MIDI file under `root`, per split and overall."""
    from models.data import find_midi_files, split_of

    per_split: dict[str, dict[str, list]] = {}
    unreadable = 0
    for path in find_midi_files(root):
        result = onset_distances(path)
        if result is None:
            unreadable += 1
            continue
        split = split_of(path.relative_to(root).as_posix())
        for key in ("all", split):
            bucket = per_split.setdefault(key, {"files": 0, "on90": 0, **{g: [] for g in GRIDS}, **{g + "_chance": [] for g in GRIDS}})
            bucket["files"] += 1
            on16 = result["16th"][0] <= tolerance_ms
            bucket["on90"] += int(on16.mean() >= SEQUENCED_SHARE)
            for grid, (distance, step) in result.items():
                bucket[grid].append(distance <= tolerance_ms)
                bucket[grid + "_chance"].append(np.minimum(1.0, 2 * tolerance_ms / np.maximum(step, 1e-9)))
    report = {"folder": str(root), "unreadable_files": unreadable}
    for key, bucket in per_split.items():
        row = {"files": bucket["files"], "onsets": int(sum(len(x) for x in bucket["16th"])),
               "files_90pct_on_16th": round(bucket["on90"] / max(bucket["files"], 1), 3)}
        for grid in GRIDS:
            row[f"on_{grid}"] = round(float(np.concatenate(bucket[grid]).mean()), 3)
            row[f"chance_{grid}"] = round(float(np.concatenate(bucket[grid + "_chance"]).mean()), 3)
        report[key] = row
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="beat_grid", description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, metavar="DIR")
    parser.add_argument("--tolerance-ms", type=float, default=TOLERANCE_MS, help="on the grid within this (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="one JSON object per folder")
    args = parser.parse_args(argv)
    for folder in args.folders:
        report = folder_report(folder, args.tolerance_ms)
        if args.json:
            print(json.dumps(report))
            continue
        print(f"{folder} (unreadable: {report['unreadable_files']})")
        for key in ("all", "train", "valid", "test"):
            if key in report:
                row = report[key]
                grids = "  ".join(f"{g} {row[f'on_{g}']:.3f} (chance {row[f'chance_{g}']:.3f})" for g in GRIDS)
                print(f"  {key:5s} {row['files']:4d} files {row['onsets']:8d} onsets  {grids}  files >=90% on 16th: "
                      f"{row['files_90pct_on_16th']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
