"""Decode-time steering of the Char-RNN: small logit biases from the hand's controls and the voice's own notes.

The condition vector steers the model, but its windows look seconds ahead, so the music glides
toward a new hand position instead of answering it. These biases act where the event is drawn:
each one adds the log of a soft preference to the model's logits (a product of experts), so what
the model finds likely stays likely, and only what it would leave to chance far from the request
is made rarer. No retraining; the model's likelihood is untouched.

Which pitch (NOTE_ON logits, 128 classes):
- register tilt: the exponential tilt exp(lambda * pitch) of the model's note-on distribution
  that brings its expected pitch within `register_tolerance` semitones of the requested register
  (the smallest change, in KL divergence, that meets that mean: the shape of what the model wants,
  chords and all, is kept and only moved);
- register window: NOTE_ONs farther than `register_width` semitones from the register lose
  `register_strength` nats per octave squared beyond it (a wide guard against stray notes);
- clash: NOTE_ONs a semitone (in any octave) from a pitch class the voice holds open lose
  `clash_penalty` nats.
These are renormalized (`keep_note_on_mass`) so they change which pitch is struck, never whether
a note is struck now: that is the density's business.

How long (NOTE_OFF logits):
- early release: the NOTE_OFF of a note sounding for less than `min_length_s` loses
  `early_release_penalty` nats. Steered notes are notes the model did not quite plan, and it
  tends to end them at once: without this, the three biases above raise the share of notes
  under 0.1 s from ~35 % to ~47 % (real music: 26 %). 3 nats since the overshoot's slack went to
  half a note (below), which shortened the notes again.

When (the NOTE_ON and VELOCITY mass):
- density: the note-ons the voice owes (the requested rate integrated over its recent time, minus its
  recent note-ons, both leaky over `rate_window_s`) add a bonus to every NOTE_ON and VELOCITY
  event (a velocity leads into a note-on); when it is ahead, a penalty three times as steep
  (`density_ahead_gain`): a note struck ahead of the rate is a dyad or a note rushed, and either
  puts two notes in one second's count. On the steps take, 16 seeds: density rho 0.884 with the
  same gain both ways, 0.895 with 8, 0.898 with 12; chords shrink (1.10 -> 1.06 notes) and
  the short notes grow a little (28.4 -> 31.4 %, real music 26 %). What was asked is integrated
  moment by moment (`OnsetRate.expected`), not the present request times the window: that one
  owed a whole window's difference the moment the hand moved, a burst after a step up and a
  silence after a step down, and scored 0.897 against 0.907 (16 seeds; the halfway response to a
  step, 0.00 s with the burst, is 0.35 s, inside the 0.5-s goal). Measured and
  dropped: biasing TIME_SHIFTs instead (shorter shifts while notes are owed) follows the hand as
  well but shortens the notes (the model ends notes after so many events, not so many seconds):
  notes under 0.1 s rose from ~35 % to 55-70 % on the steps take.
- overshoot: a TIME_SHIFT that would leave more than `overshoot_slack` notes owed when it ends
  loses `overshoot_gain` nats per note beyond (the bonus above answers a debt only after the time
  has passed, so a long shift drawn on time made the owed notes come late, in a burst). Density
  rho over time on the steps take, 6 seeds: 0.856 without, 0.890 with (gain 1; gain 3 raised the
  short notes to 41 %). With what was asked integrated moment by moment, a slack of half a note
  and the early-release penalty at 3 nats (steps and demo takes, 16 seeds, against a slack of 1
  and 2 nats): density rho 0.907 -> 0.912, register rho 0.913 -> 0.916, short notes 32.2 -> 24.0 %
  (real 26 %), key clarity 0.729 -> 0.744, clash 25.1 % either way. A slack of 0.5 alone: rho 0.916
  but 33.5 % short notes on the steps take; 0.75: 0.915 and 31.4 %. What keeps it near 0.9 is
  counting: onsets counted in 1-s bins move by one or two at a time, and even onset groups paced
  exactly at the asked rate, 30 % of them dyads, score 0.91 (a simulation over the same take;
  single notes 0.94, at random 0.70).

Every function here is pure (arrays and tuples in, arrays and tuples out) on numpy float32 views
of the logits: the index arrays are built once, and the per-step work is a handful of vector
operations over the 128 pitches (a 128-class softmax is ~1 us in numpy, ~5 us in torch); the
register tilt, the dearest, is one (41, 128) exponential. All of it adds ~0.1 ms to a step.

The strengths were chosen with `instrument bench music --model charrnn` (3 takes x 3 seeds x
180 s; its renders use a fake clock, so they do not depend on the machine's load). Run-to-run
noise of that bench (a change of a strength by 0.01) is about +-5 points of short notes and of
clash time, and +-0.03 of rho.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np

_PITCHES = np.arange(128, dtype=np.float32)  # (128,) MIDI pitch of each NOTE_ON class
# (12, 128): 1 where the pitch's class lies a semitone from the row's pitch class (m2, M7, m9, ... in any octave)
_SEMITONE_FROM = np.array([[float((p - pc) % 12 in (1, 11)) for p in range(128)] for pc in range(12)], dtype=np.float32)
_TILT_GRID = 41  # tilts tried at once, evenly spaced over +-register_max_tilt


@dataclass(frozen=True)
class SteeringConfig:
    """Strengths of the biases (0 turns one off); chosen with `instrument bench music` (see the voice's notes)."""

    register_tolerance: float = 1.5    # semitones the expected note-on pitch may lie from the register untilted
    register_max_tilt: float = 8.0     # the strongest tilt: nats per octave
    register_width: float = 12.0       # semitones around the register the window leaves untouched
    register_strength: float = 2.0     # nats lost per (octave beyond the width) squared
    density_gain: float = 4.0          # NOTE_ON and VELOCITY bonus: nats per note owed
    density_max_debt: float = 3.0      # notes owed (or ahead) are clamped to this
    density_ahead_gain: float = 12.0   # NOTE_ON and VELOCITY penalty: nats per note played ahead of the rate
    rate_window_s: float = 0.7         # time constant of the voice's own onset-rate estimate
    overshoot_gain: float = 1.0        # TIME_SHIFT penalty: nats per note a shift would leave owed beyond ...
    overshoot_slack: float = 0.5       # ... this many notes
    clash_penalty: float = 0.75        # nats lost by a NOTE_ON a semitone from a note held open
    repeat_penalty: float = 2.0        # nats lost by a NOTE_ON of the pitch struck last (real music: 1.3 % repeats)
    keep_note_on_mass: bool = True     # pitch biases choose which note, not whether one is struck
    min_length_s: float = 0.1          # a note younger than this ...
    early_release_penalty: float = 3.0  # ... loses these nats on its NOTE_OFF

    def __post_init__(self) -> None:
        for name in ("register_tolerance", "register_max_tilt", "register_width", "register_strength",
                     "density_gain", "density_ahead_gain", "overshoot_gain", "overshoot_slack", "clash_penalty", "repeat_penalty", "min_length_s",
                     "early_release_penalty"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.density_max_debt <= 0 or self.rate_window_s <= 0:
            raise ValueError("density_max_debt and rate_window_s must be > 0")


DEFAULT_STEERING = SteeringConfig()


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)  # cached and shared: never modified in place
    return array


@lru_cache(maxsize=512)
def register_window(register: float, width: float, strength: float) -> np.ndarray:
    """(128,) NOTE_ON bias: -strength * (max(0, |pitch - register| - width) / 12)^2 (0 inside the window)."""
    beyond = np.maximum(np.abs(_PITCHES - np.float32(register)) - np.float32(width), 0.0) / np.float32(12.0)
    return _frozen((-strength * beyond * beyond).astype(np.float32))


@lru_cache(maxsize=8)
def register_windows(width: float, strength: float) -> np.ndarray:
    """(513, 128) `register_window` for each register on the quarter-semitone grid 0, 0.25, ..., 128 (read-only).

    A live voice indexes it on a gesture's path instead of computing a window there.
    """
    registers = np.arange(REGISTER_QUARTERS, dtype=np.float32)[:, None] / np.float32(4.0)  # (513, 1)
    beyond = np.maximum(np.abs(_PITCHES[None, :] - registers) - np.float32(width), 0.0) / np.float32(12.0)
    return _frozen((-strength * beyond * beyond).astype(np.float32))


REGISTER_QUARTERS = 128 * 4 + 1  # quarter-semitone registers 0 .. 128


def register_tilt(note_on_logits: np.ndarray, register: float, tolerance: float, max_tilt: float) -> np.ndarray:
    """(128,) bias lambda * (pitch - register) / 12 that brings the expected pitch within `tolerance` of `register`.

    lambda (nats per octave, |lambda| <= max_tilt) is the smallest tilt whose expected pitch reaches
    the band's nearer edge (0 when the model's own expectation already lies inside): found on a grid
    of tilts at once and interpolated, since the expected pitch grows monotonically with lambda.
    """
    octaves = (_PITCHES - np.float32(register)) / np.float32(12.0)  # (128,)
    weights = np.exp(note_on_logits - note_on_logits.max())
    own = float(weights @ octaves) / float(weights.sum())  # the model's own expectation, (pitch - register) / 12
    edge = tolerance / 12.0
    if abs(own) <= edge:  # most steps: the model already plays in the register
        return np.zeros(128, dtype=np.float32)
    tilts = np.linspace(-max_tilt, max_tilt, _TILT_GRID, dtype=np.float32)  # (K,)
    z = note_on_logits[None, :] + tilts[:, None] * octaves[None, :]  # (K, 128)
    z -= z.max(axis=1, keepdims=True)
    weights = np.exp(z)
    means = (weights @ octaves) / weights.sum(axis=1)  # (K,) expected (pitch - register) / 12, increasing
    tilt = float(np.interp(math.copysign(edge, own), means, tilts))  # clamps to the grid's ends
    return tilt * octaves


def keep_mass(note_on_logits: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """`bias` shifted so the NOTE_ONs' total probability stays what the model gave them."""
    before = _logsumexp(note_on_logits)
    return bias - np.float32(_logsumexp(note_on_logits + bias) - before)


def _logsumexp(x: np.ndarray) -> float:
    top = float(x.max())
    return top + math.log(float(np.exp(x - top).sum())) if math.isfinite(top) else top


@lru_cache(maxsize=4096)
def clash_bias(open_classes: int, penalty: float) -> np.ndarray:
    """(128,) NOTE_ON bias: -penalty on each pitch a semitone from a pitch class in the bit mask `open_classes`."""
    present = np.array([float(open_classes >> pc & 1) for pc in range(12)], dtype=np.float32)  # (12,)
    return _frozen((-penalty * np.minimum(present @ _SEMITONE_FROM, 1.0)).astype(np.float32))


@lru_cache(maxsize=256)
def repeat_bias(pitch: int, penalty: float) -> np.ndarray:
    """(128,) NOTE_ON bias: -penalty on `pitch` (the one struck last), 0 elsewhere."""
    bias = np.zeros(128, dtype=np.float32)
    bias[pitch] = -penalty
    return _frozen(bias)


def early_release_pitches(open_notes: tuple[tuple[int, float], ...], min_length_s: float) -> list[int]:
    """Pitches of the open (pitch, seconds sounding) notes, oldest first, that sound for less than `min_length_s`."""
    young = []
    for pitch, age in reversed(open_notes):  # newest first: stop at the first old enough
        if age >= min_length_s:
            break
        young.append(pitch)
    return young


def pitch_class_mask(pitches) -> int:
    """Bit mask (bit pc set) of the pitch classes of `pitches`."""
    mask = 0
    for pitch in pitches:
        mask |= 1 << (int(pitch) % 12)
    return mask


class OnsetRate(NamedTuple):
    """The voice's own recent onsets against what was asked: exponentially weighted counts over the same window."""

    count: float = 0.0     # note-ons, each weighted exp(-age / window)
    weight: float = 0.0    # seconds of elapsed time, weighted the same way (window at most)
    expected: float = 0.0  # note-ons asked for: the asked rate at each moment, integrated with the same weights

    def per_second(self, floor_s: float = 0.1) -> float:
        """Note-ons per second (the weight is floored so the first steps do not read as a burst)."""
        return self.count / max(self.weight, floor_s)


def rate_after_shift(rate: OnsetRate, seconds: float, window_s: float, target: float | None) -> OnsetRate:
    """The estimate after `seconds` pass at the asked rate `target` (None: nothing asked, nothing owed)."""
    decay = math.exp(-seconds / window_s)
    count = rate.count * decay
    expected = count if target is None else rate.expected * decay + target * window_s * (1.0 - decay)
    return OnsetRate(count, rate.weight * decay + window_s * (1.0 - decay), expected)


def rate_after_note_on(rate: OnsetRate) -> OnsetRate:
    """The estimate after one note-on."""
    return OnsetRate(rate.count + 1.0, rate.weight, rate.expected)


def density_debt(rate: OnsetRate, max_debt: float) -> float:
    """Note-ons owed: those asked for over the window minus those played (clamped to +-max_debt).

    A leaky count of what is owed rather than a ratio of rates: every missing or extra note counts
    the same at any density, so the count per second stays close to the target (sub-Poisson).
    What was asked is integrated over time, not the present request times the window: when the
    hand moves, the voice paces at the new rate from that moment, instead of owing (or being
    ahead by) the whole window's difference at once, which came out as a burst or a silence.
    """
    return max(-max_debt, min(max_debt, rate.expected - rate.count))


_SHIFT_S = np.arange(1, 101, dtype=np.float64) / 100.0  # (100,) seconds of each TIME_SHIFT class


def shift_overshoot_bias(target: float, rate: OnsetRate, window_s: float, gain: float, slack: float) -> np.ndarray:
    """(100,) TIME_SHIFT bias: -gain per note a shift would leave owed beyond `slack` (0 for shifts that do not).

    The note-on bonus answers a debt only after the time has passed: a long shift drawn while
    the voice is on time skips past the moment the next note was due, and the notes owed come
    late, in a burst. This makes the shifts that overshoot rarer and leaves the others alone.
    """
    decay = np.exp(-_SHIFT_S / window_s)
    owed_after = (rate.expected - rate.count) * decay + target * window_s * (1.0 - decay)  # (100,)
    return (-gain * np.maximum(owed_after - slack, 0.0)).astype(np.float32)
