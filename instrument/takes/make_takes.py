"""Write the gesture takes shipped for `instrument bench music`: ``python -m instrument.takes.make_takes``.

Each take is a session-style `.controls.jsonl` (one `ControlFrame.to_json()` per line,
replayable with `replay:` and `render --controls`), 180 s at 30 frames/s. Values are
rounded to 1/1000 (far below a camera's or EMG envelope's noise) so each file stays
well under 1 MB. Everything is seeded: running this again writes the same bytes.

- demo.jsonl: the built-in `demo` controller, recorded on a fake clock.
- steps.jsonl: the hand jumps to a new height and/or left/right position every
  6-10 s and holds still in between (with a camera's small tremor).
- emg_bursts.jsonl: the hand rests near the middle of the frame while EMG channels
  burst (alone, in pairs, all together; short and long, soft and strong).
"""

from __future__ import annotations

import argparse
import json
import math
import random
from collections.abc import Callable, Iterator
from pathlib import Path

from controllers.frame import ControlFrame

RATE_HZ = 30.0  # frames per second in the shipped files (the demo runs at 60; 30 keeps its shape)
SECONDS = 180.0
TAKES_DIR = Path(__file__).resolve().parent


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def frame_record(frame: ControlFrame) -> dict:
    """The JSONL record of a frame with its axes rounded to 1/1000 (time to 1 µs)."""
    record = frame.to_json()
    for name in ("x", "y", "size"):
        record[name] = _round(record[name])
    if record["emg"] is not None:
        record["emg"] = [_round(v) for v in record["emg"]]
    return record


def demo_frames(seconds: float = SECONDS) -> Iterator[ControlFrame]:
    """The built-in demo controller's frames, taken from it on a fake clock, RATE_HZ per second."""
    from controllers import open_controller
    from instrument.clock import FakeClock

    clock = FakeClock(0.0)
    controller = open_controller("demo", clock=clock)
    for i in range(int(seconds * RATE_HZ) + 1):
        clock.advance(i / RATE_HZ - clock.now())
        yield controller.latest()


def _smoothstep(a: float) -> float:
    a = min(1.0, max(0.0, a))
    return a * a * (3.0 - 2.0 * a)


def step_frames(seconds: float = SECONDS, seed: int = 14) -> Iterator[ControlFrame]:
    """Hand positions that change in steps (height, left/right or both) every 6-10 s."""
    rng = random.Random(seed)
    # The plan: (time the move starts, x, y). Moves take 0.15 s, about a quick arm movement.
    plan = [(0.0, 0.5, 0.5)]
    t = rng.uniform(6.0, 10.0)
    while t < seconds - 4.0:
        _, x, y = plan[-1]
        which = rng.choice(("y", "x", "both"))
        # A step moves at least 0.3 of the frame: 11 semitones or 2.7 notes/s with the default mapping.
        if which in ("y", "both"):
            y = _far_from(y, rng)
        if which in ("x", "both"):
            x = _far_from(x, rng)
        plan.append((t, x, y))
        t += rng.uniform(6.0, 10.0)
    tremor = random.Random(seed + 1)
    for i in range(int(seconds * RATE_HZ) + 1):
        now = i / RATE_HZ
        k = max(j for j, (start, _, _) in enumerate(plan) if start <= now)
        start, x, y = plan[k]
        if k > 0:
            a = _smoothstep((now - start) / 0.15)
            x = plan[k - 1][1] + (x - plan[k - 1][1]) * a
            y = plan[k - 1][2] + (y - plan[k - 1][2]) * a
        jitter = lambda: tremor.gauss(0.0, 0.003)  # noqa: E731  a held hand is never perfectly still
        yield ControlFrame(t=now, present=True, x=_clip(x + jitter()), y=_clip(y + jitter()),
                           size=_clip(0.3 + jitter()))


def _far_from(value: float, rng: random.Random) -> float:
    while True:
        new = rng.uniform(0.1, 0.9)
        if abs(new - value) >= 0.3:
            return new


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))


def emg_frames(seconds: float = SECONDS, seed: int = 15) -> Iterator[ControlFrame]:
    """A resting hand (slow drift around the centre) and EMG bursts of varied channels, lengths and strengths."""
    rng = random.Random(seed)
    bursts = []  # (start, length, peak, channels)
    t = 1.0
    while t < seconds - 3.0:
        kind = rng.choice(("one", "pair", "all"))
        if kind == "one":
            channels = (rng.randrange(8),)
        elif kind == "pair":
            first = rng.randrange(0, 8, 2)
            channels = (first, first + 1)
        else:
            channels = tuple(range(8))
        length = rng.uniform(0.3, 3.0)
        bursts.append((t, length, rng.uniform(0.3, 0.95), channels))
        t += length + rng.uniform(0.5, 4.0)
    noise = random.Random(seed + 1)
    for i in range(int(seconds * RATE_HZ) + 1):
        now = i / RATE_HZ
        emg = [0.04 + abs(noise.gauss(0.0, 0.01)) for _ in range(8)]  # a resting muscle's envelope
        for start, length, peak, channels in bursts:
            if start <= now <= start + length:
                # A flattened bump: a quick rise, a held contraction, a quick release.
                level = peak * min(1.0, 4.0 * math.sin(math.pi * (now - start) / length))
                for ch in channels:
                    emg[ch] = min(1.0, emg[ch] + level * (1.0 + noise.gauss(0.0, 0.05)))
        yield ControlFrame(t=now, present=True,
                           x=_clip(0.5 + 0.05 * math.sin(2 * math.pi * now / 23.0)),
                           y=_clip(0.5 + 0.05 * math.sin(2 * math.pi * now / 17.0)),
                           size=0.3, emg=tuple(_clip(v) for v in emg))


TAKES: dict[str, Callable[[], Iterator[ControlFrame]]] = {
    "demo": demo_frames, "steps": step_frames, "emg_bursts": emg_frames,
}


def write_take(path: Path, frames: Iterator[ControlFrame]) -> int:
    """Write frames as compact JSONL; returns the file size in bytes."""
    with open(path, "w", encoding="utf-8") as f:
        for frame in frames:
            f.write(json.dumps(frame_record(frame), separators=(",", ":")) + "\n")
    return path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    """Write every take (or those named) into the takes folder."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(TAKES), help=f"takes to write (default: {', '.join(TAKES)})")
    parser.add_argument("--out", type=Path, default=TAKES_DIR, help="folder (default: instrument/takes)")
    args = parser.parse_args(argv)
    for name in args.names:
        size = write_take(args.out / f"{name}.jsonl", TAKES[name]())
        print(f"{args.out / name}.jsonl: {size / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
