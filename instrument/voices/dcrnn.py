"""The DCRNN voice: one bar of 16 sixteenths per call, the piano roll turned into note events."""

from __future__ import annotations

import math

import numpy as np
import torch

from instrument.controls import Controls
from instrument.voices.base import fault_check, prepare_cpu, resolve_device
from instrument.voices.registry import VoiceInfo, VoiceOptions, register_voice
from models.keys import OwnKey, key_histogram, scale_pitch_classes
from models.events import Event, EventType, velocity_to_bin


class ChunkVoice:
    """The DCRNN: one bar of 16 sixteenths per call, in phrases that follow a form of theme codes.

    Style: the study's long-term form. Each phrase of `BARS_PER_PHRASE` bars glides from one
    theme code to the next along `FORM` (A B C A B ...); the pose picks where the form starts.
    The theme codes depend on `--seed`, so each seed is its own piece. EMG overwrites the
    first 8 noise slots (the performer's muscles), on top of the style.
    Notes: the shipped generator's key probabilities crowd around 0.5, so thresholding
    strikes clusters of ~10 keys with minor seconds in them, and sampling is worse (40-160
    onsets/s). The roll is decoded with a voicing budget instead (`decode_roll`): each
    bar strikes where the model most wants a strike, as often as `density` asks, each time
    the most probable keys, never two a semitone apart. `transpose` shifts the pitches. Velocities come from the roll's
    context: downbeats and the top voice louder, thick chords softer, a little seeded
    variation.
    """

    THEMES = {"rest": "A", "wave_in": "B", "wave_out": "C"}  # other theme names use "D"
    FORM = "ABCAB"
    KEY_PULL = 0.03  # probability points toward the key's strong pitch classes (the model's crowd near 0.5)
    BAR_JITTER = 0.15  # style noise added per bar (seeded), against loops of identical bars
    BARS_PER_PHRASE = 4
    REFERENCE_DENSITY = 5.0  # note-ons/s the calibrated threshold plays (measured on the demo take)

    def __init__(self, generator, *, device: str = "cpu", seed: int = 0, key: str | None = None,
                 scale_lock: bool = False, velocity: int = 72, temperature: float = 1.0,
                 name: str = "dcrnn") -> None:
        from models.dcrnn.model import theme_codes
        from models.roll import step_seconds

        self.name = name
        self.device = resolve_device(device)
        if self.device == "cpu":
            prepare_cpu()
        self.gen = generator.eval().to(self.device)
        self.config = generator.config
        self.temperature = float(temperature)  # scales the roll logits
        self.seconds_per_shift = step_seconds(120.0) / 2  # half a sixteenth at the reference tempo (staccato)
        self.base_velocity = int(velocity)
        self.codes = {k: v.to(self.device) for k, v in theme_codes(self.config, seed=2017 + int(seed)).items()}
        self._rng = torch.Generator().manual_seed(int(seed))
        self._state = self.gen.init_state(1)
        self._prev = torch.zeros(1, 128, dtype=torch.uint8)  # last step of the previous bar, model pitches
        self._prev_out = np.zeros(128, dtype=np.uint8)  # the same after transposition (what was played)
        self._bar = 0  # bars made so far: the position in the form
        self._home = "A"
        self._slots: tuple[float, ...] | None = None
        self._transpose = 0
        self._register: float | None = None  # requested mean pitch: each bar moves by whole octaves toward it
        self._onsets = 2.0 * self.REFERENCE_DENSITY
        self._voices = 2
        self._strike_step: int | None = None  # a gesture asked for a chord at this sixteenth of the next bar
        # The key condition: --key, else the voice's own recent notes (as the Char-RNN does), never "no key".
        self._fixed_key = self.config.cond_dim == 12 and key is not None
        self._own_key = OwnKey()
        self._cond = None
        if self.config.cond_dim == 12:
            hist = key_histogram(key) if key else self._own_key.histogram()
            self._cond = torch.tensor(np.asarray([hist]), dtype=torch.float32, device=self.device)
        mask = np.ones(128, dtype=bool)
        if key and scale_lock:
            allowed = scale_pitch_classes(key)
            mask = np.array([p % 12 in allowed for p in range(128)])
        self._mask = mask

    def set_controls(self, controls: Controls) -> None:
        """Theme from pose, noise slots from EMG, transposition, density and the key condition."""
        self._home = self.THEMES.get(controls.theme or "rest", "D")
        self._slots = controls.noise_slots
        transpose = controls.get("transpose")
        self._transpose = 0 if transpose is None else int(round(transpose))
        self._register = controls.get("register")
        density = controls.get("density")
        # note-ons per bar (2 s at the reference tempo), and the voicing: thicker chords when dense
        self._onsets = 2.0 * (self.REFERENCE_DENSITY if density is None else density)
        self._voices = int(min(4, max(1, round(self._onsets / 6))))
        if controls.key_histogram is not None and self.config.cond_dim == 12:
            self._fixed_key = True
            self._cond = torch.tensor([controls.key_histogram], dtype=torch.float32, device=self.device)

    def _style(self) -> torch.Tensor:
        """(1, Z) this bar's code: a glide from this phrase's theme code to the next one's."""
        from models.dcrnn.model import z_with_slots

        start = self.FORM.index(self._home) if self._home in self.FORM else 0
        form = self.FORM[start:] + self.FORM[:start] if self._home in self.FORM else self._home + self.FORM
        phrase, within = divmod(self._bar, self.BARS_PER_PHRASE)
        a = self.codes[form[phrase % len(form)]]
        b = self.codes[form[(phrase + 1) % len(form)]]
        u = within / self.BARS_PER_PHRASE
        z = a + (b - a) * (u * u * (3 - 2 * u))  # smoothstep: the phrase settles on its theme first
        z = z + self.BAR_JITTER * torch.randn(z.shape, generator=self._rng)  # no two bars quite alike
        return z_with_slots(z, self._slots).unsqueeze(0)

    @torch.inference_mode()
    def next_events(self) -> list[Event]:
        """One bar: roll logits -> sampled roll (16, 128) -> note events, 1 TIME_SHIFT per sixteenth."""
        fault_check()
        steps = self.config.steps_per_bar
        logits, self._state = self.gen.generate_chunk(self._style(), self._cond, self._state)  # (1, 16, 128, 2)
        logits = logits.float().cpu() / max(self.temperature, 1e-3)
        key = self._cond[0].cpu().numpy() if self._cond is not None else self._own_key.histogram()  # (12,)
        pull = self.KEY_PULL * (key * 12.0 - 1.0)  # + for the key's strong degrees, - for the others
        roll = decode_roll(torch.sigmoid(logits)[0].numpy(), self._prev[0].numpy(), self._voices, self._onsets,
                           float(self.gen.threshold), pull,
                           np.random.default_rng(int(torch.randint(2**31, (1,), generator=self._rng))),
                           self._strike_step if self._strike_step is not None and self._strike_step < steps else None)
        # a strike asked for after this bar's last sixteenth is the next bar's first
        self._strike_step = 0 if self._strike_step is not None and self._strike_step >= steps else None
        roll = torch.from_numpy(roll)  # (16, 128) uint8
        self._prev = roll[-1:].clone()
        self._bar += 1
        played = shift_pitches(roll.numpy(), self._transpose + self._octaves_toward_register(roll.numpy()))
        played[:, ~self._mask] = 0
        velocities = roll_velocities(played, self.base_velocity, self._rng)
        events = roll_events(played, self._prev_out, velocities, staccato_notes(played))
        self._prev_out = played[-1].copy()
        if not self._fixed_key and self._cond is not None:
            for pitch in np.flatnonzero((roll.numpy() == 2).any(axis=0)):
                self._own_key = self._own_key.add(int(pitch))
            self._cond = torch.tensor(np.asarray([self._own_key.histogram()]), dtype=torch.float32, device=self.device)
        return events

    def strike(self, after_s: float = 0.0) -> None:
        """The bar made next strikes a chord on the first sixteenth at or after `after_s` into it (past its last
        sixteenth: on the next bar's first)."""
        self._strike_step = math.ceil(after_s / (2 * self.seconds_per_shift) - 1e-9)

    def _octaves_toward_register(self, roll: np.ndarray) -> int:
        """Whole octaves that bring this bar's mean struck pitch nearest the requested register (keeps the key)."""
        if self._register is None:
            return 0
        struck = np.flatnonzero((roll == 2).any(axis=0))
        if struck.size == 0:
            return 0
        octaves = int(round((self._register - (struck.mean() + self._transpose)) / 12.0))
        low, high = int(struck.min()) + self._transpose, int(struck.max()) + self._transpose
        octaves = max(octaves, -(low // 12))  # stay inside 0..127
        return 12 * min(octaves, (127 - high) // 12)

    def snapshot(self) -> tuple:
        """(GRU states, last roll steps, bar count, sampling RNG state)."""
        return (self._state, self._prev, self._prev_out, self._bar, self._rng.get_state(), self._own_key, self._cond)

    def restore(self, snapshot: tuple) -> None:
        """Continue from a snapshot."""
        self._state, self._prev, self._prev_out, self._bar, rng_state, self._own_key, self._cond = snapshot
        self._strike_step = None
        self._rng.set_state(rng_state)


def decode_roll(p: np.ndarray, prev: np.ndarray, voices: int, onsets: float, threshold: float,
                key_bias: np.ndarray | None = None, rng: np.random.Generator | None = None,
                force: int | None = None) -> np.ndarray:
    """Probabilities (T, 128, 2: sounding, strike) after `prev` (128,) -> roll (T, 128) of OFF/HELD/ONSET.

    Rhythm from the strike channel: the steps where the model most wants a strike (its largest
    strike probability over keys), as many as make about `onsets` note-ons in the bar. Voicing
    from the sounding channel: at each struck step, the most probable keys above `threshold`,
    at most `voices`, never two a semitone (or a major seventh) apart, nor the same pitch class twice. A chord is held until
    the next strike, or until the model lets a key fall below the threshold. `key_bias` (12,)
    is added to the sounding probabilities by pitch class: a pull toward the current key.
    `force` is a step that must strike (a gesture's immediate answer), above the threshold or not.
    """
    steps = p.shape[0]
    salience = p[:, :, 1].max(axis=1)  # (T,) how much the model wants a strike at each step
    if rng is not None:  # near-ties (the probabilities crowd near 0.5) are broken by the seed, not by position
        salience = salience + rng.uniform(0.0, RHYTHM_JITTER, size=salience.shape)
    strikes = max(1, min(steps, int(round(onsets / max(voices, 1)))))
    struck = set(np.argsort(-salience, kind="stable")[:strikes].tolist())
    if force is not None:
        struck.add(force)
    roll = np.zeros((steps, 128), dtype=np.uint8)
    held = prev != 0
    bias = np.zeros(128) if key_bias is None else np.resize(key_bias, 128)  # pitch p -> key_bias[p % 12]
    for t in range(steps):
        sound = p[t, :, 0] + bias
        if t in struck:
            chosen: list[int] = []
            # near-ties among the keys above the threshold go to the seed: the voicing moves
            score = sound if rng is None else sound + rng.uniform(0.0, PITCH_JITTER, size=sound.shape)
            floor = -np.inf if t == force else threshold  # a forced strike takes the most probable keys anyway
            for key in np.argsort(-score, kind="stable"):
                if sound[key] <= floor or len(chosen) == voices:
                    break
                if all((key - c) % 12 not in (0, 1, 11) for c in chosen):  # no minor seconds, no doubled octaves
                    chosen.append(int(key))
            if chosen:
                held = np.zeros(128, dtype=bool)
                held[chosen] = True
                roll[t, held] = 2
                continue
        held = held & (sound > threshold)
        roll[t, held] = 1
    return roll


RHYTHM_JITTER = 0.01  # probability points of seeded noise on each step's strike salience
PITCH_JITTER = 0.03  # and on each key's sounding probability when a chord is voiced


def shift_pitches(roll: np.ndarray, semitones: int) -> np.ndarray:
    """A roll (T, 128) moved by `semitones`, keys pushed past either end dropped."""
    if semitones == 0:
        return roll.copy()
    out = np.zeros_like(roll)
    if semitones > 0:
        out[:, semitones:] = roll[:, :-semitones]
    else:
        out[:, :semitones] = roll[:, -semitones:]
    return out


def roll_velocities(roll: np.ndarray, base: int, rng: torch.Generator) -> np.ndarray:
    """(T, 128) velocity of each onset from its context: beat accent, top voice, chord thickness, jitter."""
    steps = roll.shape[0]
    onset = roll == 2
    accent = np.array([18 if i % 16 == 0 else 10 if i % 4 == 0 else 4 if i % 2 == 0 else -4 for i in range(steps)])
    velocities = np.zeros(roll.shape, dtype=np.int64)
    jitter = (torch.rand(steps, generator=rng).numpy() * 20 - 10).round()  # one per step: a chord moves together
    for i in np.flatnonzero(onset.any(axis=1)):
        pitches = np.flatnonzero(onset[i])
        level = base + accent[i] + jitter[i] - 2 * (len(pitches) - 1)
        velocities[i, pitches] = level
        velocities[i, pitches[-1]] = level + 8  # the top voice sings over its chord
    return np.clip(velocities, 1, 127)


def staccato_notes(roll: np.ndarray) -> np.ndarray:
    """(T, 128) bool: the onsets played detached, ended after half a sixteenth.

    An articulation rule: a note struck off the beat (an odd sixteenth) that is not held
    into the next step is a light, short note, as a pianist plays passing notes.
    """
    onset = roll == 2
    held_on = np.zeros_like(onset)
    held_on[:-1] = roll[1:] == 1
    odd = (np.arange(roll.shape[0]) % 2 == 1)[:, None]
    return onset & ~held_on & odd


def roll_events(roll: np.ndarray, prev: np.ndarray, velocities: np.ndarray | Event | None = None,
                staccato: np.ndarray | None = None) -> list[Event]:
    """A bar of roll (T, 128; 0 off, 1 held, 2 onset) after `prev` (128,) -> events.

    One TIME_SHIFT per step; with `staccato` (T, 128 bool) two per step (half sixteenths),
    the staccato notes ending between them. `velocities` (T, 128) gives each onset's
    velocity (a VELOCITY event goes before a note-on whose velocity bin differs from the
    last one); a single VELOCITY event applies to the whole bar.
    """
    events: list[Event] = []
    current = None
    if isinstance(velocities, Event):
        events.append(velocities)
        velocities = None

    def shift() -> None:
        if events and events[-1].type == EventType.TIME_SHIFT:
            events[-1] = Event(EventType.TIME_SHIFT, events[-1].value + 1)
        else:
            events.append(Event(EventType.TIME_SHIFT, 1))

    before = prev != 0
    for t, row in enumerate(roll):
        on = row != 0
        onset = row == 2
        for pitch in np.flatnonzero(before & (~on | onset)):
            events.append(Event(EventType.NOTE_OFF, int(pitch)))
        for pitch in np.flatnonzero(onset):
            if velocities is not None:
                level = velocity_to_bin(int(velocities[t, pitch]))
                if level != current:
                    events.append(Event(EventType.VELOCITY, level))
                    current = level
            events.append(Event(EventType.NOTE_ON, int(pitch)))
        shift()
        if staccato is not None:
            short = np.flatnonzero(staccato[t])
            for pitch in short:
                events.append(Event(EventType.NOTE_OFF, int(pitch)))
            on = on.copy()
            on[short] = False
            shift()
        before = on
    return events


@register_voice(VoiceInfo(
    name="dcrnn", summary="DCRNN", listens=("noise_slots", "theme", "register", "transpose", "density", "key_histogram"),
    model_class="Generator", weights="dcrnn.pt", keeps_grid=True, mappings={"default": "dcrnn.toml"},
))
def open_dcrnn(options: VoiceOptions) -> ChunkVoice:
    """The DCRNN generator from a checkpoint (default: the shipped one)."""
    from models.dcrnn.model import load_generator

    generator = load_generator(options.checkpoint)
    name = "dcrnn" if options.checkpoint is None else options.checkpoint.name
    return ChunkVoice(generator, device=options.device, seed=options.seed, key=options.key,
                      scale_lock=options.scale_lock, temperature=options.temperature, name=name)
