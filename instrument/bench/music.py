"""`instrument bench music`: does it sound like the music it learned, while the hand moves?

Each voice plays the shipped gesture takes (`instrument/takes/`: demo, steps,
emg_bursts) through the real engine (`instrument.commands.render.render`: fake clock,
generation inline, rollback on, default session settings), once per seed. The written
.mid files are read back and measured with `music_stats`, next to the same statistics
on real music (`--reference DIR`, default: the test split of the training corpus).

Scalars are averaged over renders, distributions (IOI, note length quantiles) pooled.
Control fidelity comes from the steps take: the requested register and density are
the take's frames mapped with the default mapping, the played ones are measured from
the notes (see `music_stats.fidelity_rho` and `music_stats.response_times`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np

from instrument.bench import music_stats
from instrument.voices.registry import voice_names
from instrument.bench.music_reference import DEFAULT_REFERENCE, reference_summary

TAKES = ("demo", "steps", "emg_bursts")
FIDELITY_TAKE = "steps"
STEP_THRESHOLDS = {"register": 6.0, "density": 2.0}  # semitones, onsets/s: what counts as a step change

# (key, label, format): the table's rows, in the order.
PCT, F2 = "{:.1%}", "{:.2f}"
ROWS: tuple[tuple[str, str, str], ...] = (
    ("onsets_per_s", "onsets per second", "{:.1f}"),
    ("short_frac", "notes shorter than 0.1 s", PCT),
    ("capped_frac", "notes at the 4-s cap (>= 3.99 s)", PCT),
    ("key_clarity", "key clarity per 10 s", F2),
    ("key_clarity_shuffled", "  pitch-shuffled control", F2),
    ("clash_frac", "time with a semitone clash", PCT),
    ("identical_bars", "identical consecutive bars", PCT),
    ("velocity_std", "velocity std", "{:.1f}"),
    ("velocity_distinct", "velocity distinct values", "{:.0f}"),
    ("repeated_pitch", "same pitch struck twice in a row", PCT),
    ("ioi_p10", "inter-onset interval p10 (s)", "{:.3f}"),
    ("ioi_p50", "inter-onset interval p50 (s)", "{:.3f}"),
    ("ioi_p90", "inter-onset interval p90 (s)", "{:.3f}"),
    ("length_p10", "note length p10 (s)", "{:.3f}"),
    ("length_p50", "note length p50 (s)", "{:.3f}"),
    ("length_p90", "note length p90 (s)", "{:.3f}"),
    ("chord_size", "chord size (notes per 30-ms onset)", F2),
    ("polyphony", "polyphony (sounding notes)", F2),
    ("pattern_repeat_8", "8-note interval patterns repeated", PCT),
    ("restrikes", "note-on for a sounding key (per render)", "{:.1f}"),
    ("unended", "notes left on at the end (per render)", "{:.1f}"),
    ("rollbacks_per_s", "rollbacks per second", F2),
    ("register_rho", "register rho over time (steps take)", F2),
    ("density_rho", "density rho over time (steps take)", F2),
    ("register_response_s", "register halfway after a step, median (s)", F2),
    ("density_response_s", "density halfway after a step, median (s)", F2),
)


def _get(controls, name: str):
    """A requested control value, from today's Controls dataclass or a generic mapping of names."""
    return controls.get(name) if hasattr(controls, "get") else getattr(controls, name, None)


def configure_music(parser: argparse.ArgumentParser) -> None:
    """Flags of `bench music`."""
    a = parser.add_argument
    voices = list(voice_names())
    a("--model", nargs="+", default=voices, metavar="M",
      help=f"voices to play: {', '.join(voices)} or checkpoint paths (default: all of them)")
    a("--refine", type=lambda text: tuple(n for n in text.split(",") if n), default=(), metavar="velocity[,duration]",
      help="refiners behind the voices (as play --refine)")
    a("--takes", default=",".join(TAKES), metavar="A,B",
      help=f"comma-separated shipped takes ({', '.join(TAKES)}) or .jsonl files (default: all shipped)")
    a("--mapping", default=None, metavar="FILE.toml",
      help="play the takes through this mapping instead of each voice's own (e.g. one with [response] strike = \"never\")")
    a("--seeds", type=int, default=3, help="renders per take and voice, seeds 0..N-1 (default 3)")
    a("--seconds", type=float, default=180.0, help="seconds rendered per take (default 180)")
    a("--reference", type=Path, default=DEFAULT_REFERENCE, metavar="DIR",
      help="real MIDI to compare with (default: the training corpus beside the repository)")
    a("--reference-split", default=None, choices=("train", "valid", "test", "all"),
      help="which split of --reference (default: test for the default corpus, all for a folder you name)")
    a("--device", default="cpu", choices=("auto", "cpu", "cuda"), help="model device (default cpu)")
    a("--json", action="store_true", help="print one JSON object instead of the table")
    a("--png", type=Path, default=None, metavar="OUT.png", help="draw the distributions side by side")


def take_path(name: str) -> Path:
    """A shipped take by name, or a .jsonl path as given."""
    from instrument.errors import UsageError

    if name.endswith(".jsonl"):
        path = Path(name)
    else:
        path = Path(str(resources.files("instrument").joinpath("takes", f"{name}.jsonl")))
    if not path.exists():
        raise UsageError(f"--takes: no take {name!r} (shipped: {', '.join(TAKES)}; or give a .jsonl file)")
    return path


def read_notes(path: Path) -> tuple[np.ndarray, int, int]:
    """(notes, note-ons for a key already sounding, notes never ended) of a rendered .mid.

    Parsed strictly as sent: no pedal, zero-length notes kept (a cut note is still a
    note the listener hears struck), a re-strike ends the sounding note where it happens.
    """
    import mido

    sounding: dict[tuple[int, int], tuple[float, int]] = {}
    rows, restrikes, now = [], 0, 0.0
    for message in mido.MidiFile(path):
        now += message.time
        if message.type not in ("note_on", "note_off"):
            continue
        key = (message.channel, message.note)
        if message.type == "note_on" and message.velocity > 0:
            if key in sounding:
                restrikes += 1
                start, velocity = sounding.pop(key)
                rows.append((message.note, velocity, start, now))
            sounding[key] = (now, message.velocity)
        elif key in sounding:
            start, velocity = sounding.pop(key)
            rows.append((message.note, velocity, start, now))
    for (_, pitch), (start, velocity) in sounding.items():
        rows.append((pitch, velocity, start, now))
    return music_stats.as_notes(rows), restrikes, len(sounding)


def requested_series(path: Path, seconds: float, model: str = "charrnn",
                     mapping_file: str | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"register"|"density": (times, values)} the mapping (default: the voice's own) asks for over a take."""
    from controllers.replay import read_jsonl
    from instrument.mapping import Mapping
    from instrument.voices import resolve, voice_info

    mapping = Mapping.from_toml(mapping_file) if mapping_file else \
        Mapping.packaged(voice_info(resolve(model)[0]).mapping_for("replay"))
    times, values = [], {"register": [], "density": []}
    for frame in read_jsonl(path):
        if frame.t > seconds:
            break
        controls = mapping.map(frame)
        times.append(frame.t)
        for name in values:
            value = _get(controls, name)
            values[name].append(np.nan if value is None else float(value))
    return {name: (np.array(times), np.array(v)) for name, v in values.items()}


def fidelity(renders: list[np.ndarray], requested: dict, seconds: float) -> dict[str, float | None]:
    """Register and density rho (mean over renders) and median halfway response (pooled over steps)."""
    out: dict[str, float | None] = {}
    for kind, (req_t, req_v) in requested.items():
        ok = np.isfinite(req_v)
        if ok.sum() < 2:
            out[f"{kind}_rho"] = out[f"{kind}_response_s"] = None
            continue
        req_t, req_v = req_t[ok], req_v[ok]
        rhos = [music_stats.fidelity_rho(req_t, req_v, notes, kind, seconds) for notes in renders]
        rhos = [r for r in rhos if r is not None]
        out[f"{kind}_rho"] = float(np.mean(rhos)) if rhos else None
        times = [t for notes in renders for t in music_stats.response_times(
            req_t, req_v, notes, kind, STEP_THRESHOLDS[kind], seconds)]
        out[f"{kind}_response_s"] = music_stats.median_response(times)
        timed = [t for t in times if not np.isnan(t)]
        out[f"{kind}_steps"] = float(len(times))
        out[f"{kind}_steps_timed"] = float(len(timed))  # the others already played at or past the new target
        out[f"{kind}_steps_answered"] = float(np.mean(np.isfinite(timed))) if timed else None
    return out


def play_voice(model: str, takes: dict[str, Path], args: argparse.Namespace, workdir: Path) -> dict:
    """Render every take x seed with one voice; its summary, per-take figures and fidelity."""
    from instrument.commands.render import render
    from instrument.session import SessionConfig

    recordings, per_take, restrikes, unended, rollbacks = [], {}, 0, 0, 0
    fidelity_renders: list[np.ndarray] = []
    for take, path in takes.items():
        take_recordings = []
        for seed in range(args.seeds):
            out = workdir / f"{Path(model).stem}-{take}-{seed}.mid"
            config = SessionConfig(model=model, device=args.device, seed=seed, refine=args.refine, mapping=args.mapping)
            started = time.perf_counter()
            stats = render(str(path), str(out), config=config, duration=args.seconds)
            notes, restruck, left_on = read_notes(out)
            print(f"bench music: {model} {take} seed {seed}: {len(notes)} notes, {int(stats['rollbacks'])} rollbacks, "
                  f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
            restrikes, unended, rollbacks = restrikes + restruck, unended + left_on, rollbacks + int(stats["rollbacks"])
            take_recordings.append((notes, args.seconds))
            if take == FIDELITY_TAKE:
                fidelity_renders.append(notes)
        recordings += take_recordings
        per_take[take] = {k: v for k, v in music_stats.summarize(take_recordings).items() if k != "hist"}
    summary = music_stats.summarize(recordings)
    renders = len(recordings)
    summary.update(restrikes=restrikes / renders, unended=unended / renders,
                   rollbacks_per_s=rollbacks / (renders * args.seconds))
    if fidelity_renders:
        summary.update(fidelity(fidelity_renders, requested_series(takes[FIDELITY_TAKE], args.seconds, model, args.mapping), args.seconds))
    return {"summary": summary, "takes": per_take}


def format_table(columns: dict[str, dict | None]) -> str:
    """Rows: statistics; columns: reference, then each voice ("-" where a figure does not apply)."""
    names = list(columns)
    label_w = max(len(label) for _, label, _ in ROWS)
    widths = [max(9, len(n)) for n in names]
    lines = ["  ".join([" " * label_w] + [n.rjust(w) for n, w in zip(names, widths)])]
    for key, label, fmt in ROWS:
        cells = []
        for name, w in zip(names, widths):
            value = (columns[name] or {}).get(key)
            cells.append((fmt.format(value) if value is not None else "-").rjust(w))
        lines.append("  ".join([label.ljust(label_w)] + cells))
    return "\n".join(lines)


def draw_png(columns: dict[str, dict | None], out: Path) -> None:
    """IOI, note length, velocity and polyphony distributions of every column, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("ioi", "inter-onset interval (s)", music_stats.TIME_BINS, True),
              ("length", "note length (s)", music_stats.TIME_BINS, True),
              ("velocity", "velocity", music_stats.VELOCITY_BINS, False),
              ("polyphony", "sounding notes (share of time)", np.arange(music_stats.POLY_LEVELS + 1) - 0.5, False))
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.2))
    for ax, (key, title, bins, log_x) in zip(axes, panels):
        for name, summary in columns.items():
            if not summary or "hist" not in summary:
                continue
            counts = np.asarray(summary["hist"][key], dtype=np.float64)
            if key == "polyphony":
                counts = counts[1:]  # time with sound only, as the mean polyphony
                edges = bins[1:]
            else:
                edges = bins
            total = counts.sum()
            if total > 0:
                ax.stairs(counts / total, edges, label=name, linewidth=2 if name == "reference" else 1.4)
        ax.set_title(title)
        if log_x:
            ax.set_xscale("log")
        ax.set_ylabel("share")
    axes[0].legend()
    fig.suptitle("instrument bench music: distributions (share of notes, of onsets, or of sounding time)")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def _jsonable(value):
    """Floats that JSON can hold (NaN and infinity become null)."""
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def run_music(args: argparse.Namespace) -> int:
    """Render, measure, compare with the reference, print."""
    from instrument.errors import UsageError

    if args.seeds < 1 or not args.seconds > 0:
        raise UsageError("--seeds must be >= 1 and --seconds > 0")
    if args.png is not None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--png needs matplotlib: pip install matplotlib") from None
    takes = {Path(name).stem: take_path(name) for name in args.takes.split(",") if name.strip()}
    started = time.perf_counter()
    split = args.reference_split or ("test" if args.reference == DEFAULT_REFERENCE else "all")
    columns: dict[str, dict | None] = {"reference": reference_summary(args.reference, split)}
    voices = {}
    with tempfile.TemporaryDirectory(prefix="bench-music-") as tmp:
        for model in args.model:
            voices[model] = play_voice(model, takes, args, Path(tmp))
            columns[Path(model).stem if model.endswith(".pt") else model] = voices[model]["summary"]
    took = time.perf_counter() - started
    if args.png is not None:
        draw_png(columns, args.png)
    if args.json:
        print(json.dumps(_jsonable({
            "reference": columns["reference"], "voices": voices, "takes": list(takes), "seeds": args.seeds,
            "seconds_per_render": args.seconds, "wall_s": round(took, 1)})))
    else:
        print(format_table(columns))
        print(f"{len(args.model)} voice(s) x {len(takes)} take(s) x {args.seeds} seed(s) x {args.seconds:g} s "
              f"in {took:.0f} s" + (f"; distributions in {args.png}" if args.png else ""))
    return 0
