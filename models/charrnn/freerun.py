"""Free-running statistics of a Char-RNN, next to the same figures on real pieces.

The model plays on its own for ``seconds`` of music per seed, with the voice's default
(neutral) controls: the spec's default register and density, and the own-key histogram of
the notes it has just played (models/keys.py ``OwnKey``, as instrument/voices/charrnn.py
does without ``--key``), sampled at the voice's default temperature 1.0 and top-p 0.95.
What is measured is the model's own distribution: no decode-time steering and no release of
forgotten notes (those belong to the live voice); notes it never ends stop at the engine's
4-s cap (``MAX_NOTE_S``).

Figures (models/metrics.py, the same functions `instrument bench music` uses):
- key clarity: mean over 10-s windows of the best correlation with the 24 Krumhansl-Kessler
  key profiles, and its chance level (each window's pitch classes shuffled);
- 8-note interval-pattern repetition: share of 8-note melody windows whose interval pattern
  occurred earlier in the same sample / excerpt; and the same without one-pitch windows
  (a sample stuck on one key scores high on the first without playing any motif); the
  per-sample range and the share of melody steps that repeat a pitch show such a sample;
- share of notes at the 4-s cap;
- note-ons per second.
The real side cuts each scored piece into consecutive excerpts of the same length, so the
repetition rate (which grows with length) compares like with like; its cap share is over
the real notes' own lengths.
"""

from __future__ import annotations

import numpy as np
import torch

from models.conditioning import ConditionSpec, condition_vector
from models.events import (
    CODEC,
    NOTE_OFF_OFFSET,
    NOTE_ON_OFFSET,
    TIME_SHIFT_OFFSET,
    VELOCITY_OFFSET,
    Event,
    EventType,
    decode_all,
    events_to_notes,
)
from models.keys import OwnKey
from models.metrics import capped_fraction, key_clarity, melody, pattern_repetition
from models.sampling import sample_token

FREERUN_SAMPLES = 4
FREERUN_SECONDS = 60.0
TEMPERATURE = 1.0  # the voice's defaults (instrument/voices/charrnn.py StreamingVoice)
TOP_P = 0.95
MAX_NOTE_S = 4.0  # the engine ends a note after 4 s
MAX_EVENTS_PER_S = 200  # a sample that hardly moves time stops here (the corpus has ~40 events/s)
PRIMER = Event(EventType.VELOCITY, 16)  # the same first input as the other generated samples of eval.py
STATS = ("key_clarity", "key_clarity_shuffled", "pattern_repeat_8", "pattern_repeat_8_moving", "unison_frac", "capped_frac",
         "notes_per_s")


@torch.no_grad()
def free_run(model, spec: ConditionSpec | None, seeds: list[int], seconds: float,
             temperature: float = TEMPERATURE, top_p: float = TOP_P) -> list[np.ndarray]:
    """One event-index array per seed, each `seconds` of music long (or MAX_EVENTS_PER_S * seconds events).

    Stepped as a batch; each sample keeps its own generator and own-key condition.
    """
    batch = len(seeds)
    generators = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    own = [OwnKey() for _ in seeds]
    cond = None
    if spec is not None and model.config.cond_dim:
        cond = torch.from_numpy(np.stack([condition_vector(key_histogram=k.histogram(), spec=spec) for k in own]))  # (B, C)
    state = model.init_state(batch)
    token = torch.full((batch,), CODEC.encode(PRIMER), dtype=torch.long)
    target_steps = int(round(seconds * 100))  # TIME_SHIFT steps of 10 ms
    limit = int(MAX_EVENTS_PER_S * seconds)
    steps = np.zeros(batch, dtype=np.int64)
    out: list[list[int]] = [[] for _ in seeds]
    for _ in range(limit):
        active = steps < target_steps
        if not active.any():
            break
        logits, state = model.step(token, cond, state)  # (B, 388)
        drawn = []
        for b in range(batch):
            index = sample_token(logits[b], generators[b], temperature=temperature, top_p=top_p)
            drawn.append(index)
            if not active[b]:
                continue  # finished: keeps stepping with the batch, records nothing
            out[b].append(index)
            if TIME_SHIFT_OFFSET <= index < VELOCITY_OFFSET:
                steps[b] += index - TIME_SHIFT_OFFSET + 1
            elif NOTE_ON_OFFSET <= index < NOTE_OFF_OFFSET and cond is not None:
                own[b] = own[b].add(index - NOTE_ON_OFFSET)
                cond[b] = torch.from_numpy(condition_vector(key_histogram=own[b].histogram(), spec=spec))
        token = torch.tensor(drawn, dtype=torch.long)
    return [np.asarray(events, dtype=np.int64) for events in out]


def note_array(events: np.ndarray, max_note_s: float | None = MAX_NOTE_S) -> np.ndarray:
    """(N, 4) pitch, velocity, start_s, end_s (models/metrics.py's layout) of generated events."""
    notes = events_to_notes(decode_all(int(i) for i in events), max_note_s=max_note_s)
    return np.array([(n.pitch, n.velocity, n.start, n.end) for n in notes], dtype=np.float64).reshape(-1, 4)


def excerpts(piece_notes: np.ndarray, seconds: float) -> list[np.ndarray]:
    """Consecutive `seconds`-long excerpts of a piece (models.data layout: pitch, start, end, velocity), shifted to 0.

    Each excerpt holds the notes that start inside it, their ends clipped to it; a last
    excerpt shorter than half of `seconds` is dropped.
    """
    if not len(piece_notes):
        return []
    notes = np.asarray(piece_notes, dtype=np.float64)[:, [0, 3, 1, 2]]  # -> pitch, velocity, start, end
    notes = notes[np.lexsort((notes[:, 0], notes[:, 2]))]
    end = notes[:, 3].max()
    out = []
    for lo in np.arange(0.0, end, seconds):
        if end - lo < seconds / 2:
            break
        inside = notes[(notes[:, 2] >= lo) & (notes[:, 2] < lo + seconds)].copy()
        if not len(inside):
            continue
        inside[:, 2:] -= lo
        inside[:, 3] = np.minimum(inside[:, 3], seconds)
        out.append(inside)
    return out


def unison_fraction(notes: np.ndarray) -> float:
    """Share of melody steps (skyline, models/metrics.py) that strike the same pitch again: high when a sample is stuck."""
    intervals = np.diff(melody(notes))
    return float(np.mean(intervals == 0)) if len(intervals) else 0.0


def stats(notes: np.ndarray, seconds: float, seed: int = 0) -> dict[str, float]:
    """The free-running figures of one note list (pitch, velocity, start_s, end_s) `seconds` long."""
    return {
        "key_clarity": key_clarity(notes),
        "key_clarity_shuffled": key_clarity(notes, shuffle_seed=seed),
        "pattern_repeat_8": pattern_repetition(notes, 8),
        "pattern_repeat_8_moving": pattern_repetition(notes, 8, exclude_unison=True),
        "unison_frac": unison_fraction(notes),
        "capped_frac": capped_fraction(notes),
        "notes_per_s": len(notes) / seconds if seconds > 0 else 0.0,
    }


def mean_stats(per: list[dict[str, float]]) -> dict[str, float]:
    """Plain mean of each figure (every sample / excerpt has the same length)."""
    return {name: float(np.mean([p[name] for p in per])) if per else float("nan") for name in STATS}


def freerun_report(model, spec: ConditionSpec | None, pieces: list, samples: int = FREERUN_SAMPLES,
                   seconds: float = FREERUN_SECONDS, seed: int = 0) -> dict[str, float]:
    """``freerun_*`` figures of `samples` seeded samples and ``real_*`` figures of the pieces' excerpts.

    `pieces`: models.data Piece objects (their ``note_array``); the real cap share is over
    every note of them, at its real length.
    """
    generated = free_run(model, spec, [seed + s for s in range(samples)], seconds)
    gen_notes = [note_array(events) for events in generated]
    report: dict[str, float] = {"freerun_samples": samples, "freerun_seconds": float(seconds),
                                "freerun_events_per_s": float(np.mean([len(e) for e in generated]) / seconds)}
    per = [stats(n, seconds, seed + i) for i, n in enumerate(gen_notes)]
    report.update({f"freerun_{k}": v for k, v in mean_stats(per).items()})
    report["freerun_pattern_repeat_8_min"] = float(min(p["pattern_repeat_8"] for p in per))
    report["freerun_pattern_repeat_8_max"] = float(max(p["pattern_repeat_8"] for p in per))
    real = [x for piece in pieces for x in excerpts(piece.note_array, seconds)]
    real_stats = mean_stats([stats(n, seconds, seed + i) for i, n in enumerate(real)])
    every = [np.asarray(p.note_array, dtype=np.float64)[:, [0, 3, 1, 2]] for p in pieces if len(p.note_array)]
    real_stats["capped_frac"] = capped_fraction(np.concatenate(every)) if every else float("nan")
    report.update({f"real_{k}": v for k, v in real_stats.items()})
    report["real_excerpts"] = len(real)
    return report


def freerun_lines(report: dict) -> list[str]:
    """The free-running figures beside the real ones, one line each."""
    if "freerun_key_clarity" not in report:
        return []
    head = (f"free-running, {report['freerun_samples']} x {report['freerun_seconds']:g} s, neutral controls "
            f"(model) vs {report['real_excerpts']} real {report['freerun_seconds']:g}-s excerpts:")
    rows = [("key clarity per 10 s", "key_clarity", "{:.3f}"), ("  pitch-shuffled chance", "key_clarity_shuffled", "{:.3f}"),
            ("8-note interval patterns repeated", "pattern_repeat_8", "{:.1%}"),
            ("  without one-pitch windows", "pattern_repeat_8_moving", "{:.1%}"),
            ("melody steps repeating a pitch", "unison_frac", "{:.1%}"), ("notes at the 4-s cap", "capped_frac", "{:.1%}"),
            ("note-ons per second", "notes_per_s", "{:.1f}")]
    lines = [head] + [f"  {label:34s} {fmt.format(report['freerun_' + key])} vs {fmt.format(report['real_' + key])}"
                      for label, key, fmt in rows]
    lines[3] += f"  (samples {report['freerun_pattern_repeat_8_min']:.1%} .. {report['freerun_pattern_repeat_8_max']:.1%})"
    return lines
