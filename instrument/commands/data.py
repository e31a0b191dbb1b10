"""`instrument data stats PATH...`: what a MIDI corpus holds, and what was skipped and why."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from instrument.errors import UsageError


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the `data` subcommands."""
    sub = parser.add_subparsers(dest="data_command", metavar="WHAT", required=True)
    stats = sub.add_parser("stats", help="files, hours, notes, events, skipped files and split sizes")
    stats.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="MIDI files or folders (searched recursively)")
    stats.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    stats.add_argument("--cache", type=Path, default=None, help="cache folder for encoded pieces (default: XDG cache)")


def run(args: argparse.Namespace) -> int:
    """Print corpus statistics."""
    from models.data import Corpus  # deferred: keeps `instrument --help` fast

    missing = [str(p) for p in args.paths if not p.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    corpus = Corpus.load(args.paths, cache_dir=args.cache)
    if not corpus.pieces:
        raise UsageError(f"no usable MIDI files (.mid/.midi) under {', '.join(map(str, args.paths))}"
                         f" ({len(corpus.skipped)} skipped)")
    splits = Counter(p.split for p in corpus.pieces)
    stats = {
        "files": len(corpus.pieces) + len(corpus.skipped),
        "usable_files": len(corpus.pieces),
        "hours": round(sum(p.seconds for p in corpus.pieces) / 3600, 2),
        "notes": int(sum(len(p.note_array) for p in corpus.pieces)),
        "events": int(sum(len(p.events) for p in corpus.pieces)),
        "splits": {name: splits.get(name, 0) for name in ("train", "valid", "test")},
        "skipped": [{"path": str(path), "reason": reason} for path, reason in corpus.skipped],
    }
    if args.json:
        print(json.dumps(stats))
        return 0
    print(f"files    {stats['files']:>10,}  ({stats['usable_files']:,} usable)")
    print(f"hours    {stats['hours']:>10,.2f}")
    print(f"notes    {stats['notes']:>10,}")
    print(f"events   {stats['events']:>10,}")
    print("splits   " + "  ".join(f"{k} {v}" for k, v in stats["splits"].items()))
    print(f"skipped  {len(corpus.skipped):>10,}")
    for item in stats["skipped"]:
        print(f"  {item['path']}: {item['reason']}")
    return 0
