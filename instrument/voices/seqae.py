"""The SeqAE voice: a random walk in a 16-bit code space, each code decoded into 8 events.

Each call advances the walk one code (`models.seqae.walk_step`: flip about k bits,
sometimes jump), returns to the stored theme code now and then (`ThemeReset`: with
probability p every n steps), and decodes the code with the binary decoder into one
subsequence of 8 events. Gestures (names of `Controls`):
- flip_rate: bits flipped per step (k, 0..16); more is restless, 0 repeats one code;
- jump: above 0.5 forces a jump to a random code at the next step (once per rise);
- theme_capture: above 0.5 stores the code being played as the theme (once per rise);
- reset_p: the probability of returning to the theme at each chance;
- theme (a pose, through the mapping): "wave_in" jumps, "wave_out" captures the theme, as
  jump and theme_capture do when the mapping does not set them;
- register, density: the model has no conditioning, so these act on its output: notes are
  transposed towards the requested mean pitch (octaves only under a scale lock), and time
  shifts are scaled (0.5x..2x) towards the requested note-ons per second.
A note the decoded subsequences never end is ended after MAX_HOLD_STEPS.
All randomness is drawn from (seed, step), so the state is a small immutable value:
snapshot is a reference, restore an assignment, and a restored walk replays exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from instrument.voices.base import fault_check, prepare_cpu, resolve_device
from instrument.voices.registry import VoiceInfo, VoiceOptions, register_voice
from models.events import CODEC, MAX_SHIFT_STEPS, STEPS_PER_SECOND, Event, EventType
from models.keys import OwnKey

DEFAULT_FLIPS = 2.0  # the study's walk: about 2 bits a step
JUMP_P = 0.02  # chance of a spontaneous jump per step (a new section every ~50 codes, ~20 s)
RESET_EVERY = 8  # steps between theme-reset chances (64 events)
DEFAULT_RESET_P = 0.5
MAX_TRANSPOSE = 24  # semitones either way the register control may move the output
PITCH_MEMORY = 0.9  # per note-on: the model's recent mean pitch, what the register control corrects
RATE_MEMORY = 0.8  # per chunk: the model's recent note-ons per second, what the density control corrects
# Subsequences are decoded one code at a time, so a note's off is often in a later code's
# subsequence, which may not have it: a note still held after MAX_HOLD_STEPS (0.5 s, about
# twice the corpus's median note) is ended by the voice.
MAX_HOLD_STEPS = 50  # 0.5 s: longer, the unended notes pile up into clusters (polyphony 8, semitone clashes)
KEY_PULL = 2.0  # logits toward the pitch classes of the key its recent notes fit best (scaled key profile)
REGISTER_PULL, REGISTER_WIDTH = 1.0, 8.0  # a logit of -1 for a note-on 8 semitones from the requested register
POSE_JUMP, POSE_CAPTURE = "wave_in", "wave_out"  # the Myo poses that jump and capture the theme
STRIKE_SEED = 500_009  # offsets a strike's sampler from the subsequence decoded at the same step
FIRST_NOTES_KEPT = 64  # codes whose first-note distribution is kept for strikes (a rollback reaches ~3 back)


@dataclass(frozen=True, slots=True)
class WalkState:
    """Everything a restore must bring back (immutable; snapshot is a reference)."""

    code: tuple[float, ...]  # (D,) +-1, the code played last
    step: int  # codes played so far
    held: tuple[tuple[int, int, int], ...] = ()  # (model pitch, sent pitch, onset step) of the notes on
    clock: int = 0  # 10 ms steps sent so far
    pitch_mean: float = 64.0  # running mean of the model's pitches
    rate: float = 8.0  # running note-ons per second of the model's output
    carry: float = 0.0  # fraction of a 10 ms step left over by time scaling
    own_key: OwnKey = OwnKey()  # decaying pitch-class count of its own note-ons: the key it pulls toward
    octave: int = 0  # semitones (whole octaves) the register control moved the last subsequence by


class SeqAEVoice:
    """The SeqAE random walk, 8 events per call."""

    seconds_per_shift = 1.0 / STEPS_PER_SECOND

    def __init__(self, model, *, device: str = "cpu", seed: int = 0, temperature: float = 1.0, top_p: float = 0.95,
                 key: str | None = None, scale_lock: bool = False, quantize: bool = False, name: str = "seqae") -> None:
        import torch

        from models.keys import scale_pitch_classes
        from models.seqae.model import ThemeReset

        self.name = name
        self.device = resolve_device(device)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.seed = int(seed)
        self.allowed = scale_pitch_classes(key) if (key and scale_lock) else None
        self._out_of_scale = None if self.allowed is None else np.array([p % 12 not in self.allowed for p in range(128)])
        model = model.eval()
        if self.device == "cpu":
            prepare_cpu()
            if quantize:
                import warnings

                with warnings.catch_warnings():  # torch deprecates the quantized API it still ships
                    warnings.simplefilter("ignore")
                    model = torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
        else:
            model = model.to(self.device)
        self.model = model
        start = np.random.default_rng([self.seed, 2017]).choice(np.array([-1.0, 1.0]), size=model.config.code_dim)
        self._state = WalkState(code=tuple(start), step=0)
        self.theme = ThemeReset(every=RESET_EVERY, p=DEFAULT_RESET_P).capture(start)  # the opening is the first theme
        self.flip_k, self.register, self.density = DEFAULT_FLIPS, None, None
        self._jump_armed = self._capture_armed = False  # a rise of the gesture, not yet played
        self._jump_step = self._capture_step = None  # the step that played it (re-armed if a restore drops it)
        self._jump_level = self._capture_level = 0.0
        self._strike = False
        self._first_notes: dict[tuple[float, ...], np.ndarray] = {}  # code -> (128,) first-event NOTE_ON logits

    # ---------------------------------------------------------------- controls
    def set_controls(self, controls) -> None:
        """Read flip_rate, jump, theme_capture, reset_p, register and density (None: keep the default)."""
        flips = controls.get("flip_rate")
        self.flip_k = DEFAULT_FLIPS if flips is None else float(np.clip(flips, 0.0, self.model.config.code_dim))
        reset_p = controls.get("reset_p")
        self.theme = replace(self.theme, p=DEFAULT_RESET_P if reset_p is None else float(np.clip(reset_p, 0.0, 1.0)))
        self.register, self.density = controls.get("register"), controls.get("density")
        pose = controls.get("theme")
        jump = float(controls.get("jump") if controls.get("jump") is not None else pose == POSE_JUMP)
        capture = float(controls.get("theme_capture") if controls.get("theme_capture") is not None else pose == POSE_CAPTURE)
        if jump > 0.5 >= self._jump_level:
            self._jump_armed, self._jump_step = True, None
        if capture > 0.5 >= self._capture_level:
            self._capture_armed, self._capture_step = True, None
        self._jump_level, self._capture_level = jump, capture

    # ---------------------------------------------------------------- generation
    def next_events(self) -> list[Event]:
        """Advance the walk one code and decode it: 8 events (shifts scaled, pitches moved by the controls)."""
        import torch

        from models.seqae.model import decode, walk_step

        fault_check()
        state = self._state
        if self._strike:
            self._strike = False
            return self._strike_note(state)
        rng = np.random.default_rng([self.seed, state.step])
        code = np.asarray(state.code)
        if state.step > 0 or self._jump_armed:
            jump = self._jump_armed
            code = walk_step(code, rng, self.flip_k, 1.0 if jump else JUMP_P)
            if jump:
                self._jump_armed, self._jump_step = False, state.step
            else:
                code = self.theme.apply(code, state.step, rng)
        if self._capture_armed:
            self.theme = self.theme.capture(code)
            self._capture_armed, self._capture_step = False, state.step
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + state.step)
        first: list = []  # the first step's NOTE_ON logits: a gesture while this code plays strikes from them
        with torch.inference_mode():
            tokens = decode(self.model, torch.tensor(code, dtype=torch.float32, device=self.device)[None], True,
                            generator, self.temperature, self.top_p, self.allowed, self._key_bias(state),
                            first_note_ons=first)[0].tolist()  # (L,) event indices
        self._keep_first_notes(tuple(code), first[0][0].double().cpu().numpy())
        events, self._state = self._shape([CODEC.decode(t) for t in tokens], replace(state, code=tuple(code), step=state.step + 1))
        return events

    def _strike_note(self, state: WalkState) -> list[Event]:
        """A gesture's immediate answer: the current code's own first note, drawn under the new controls.

        The code's first-event distribution over the note-ons was kept when the code was decoded
        (`first_note_on_logits`), so the answer costs a 128-way draw in numpy, not a model call (one
        decoder step only for a code not decoded here). The walk does not advance: the next call
        decodes the next code's subsequence as usual.
        """
        logits = self._first_notes.get(state.code)
        if logits is None:  # a code not decoded here (the walk's start): one decoder step
            import torch

            from models.seqae.model import first_note_on_logits

            with torch.inference_mode():
                code = torch.tensor(state.code, dtype=torch.float32, device=self.device)[None]  # (1, D)
                logits = self._keep_first_notes(state.code, first_note_on_logits(self.model, code)[0].double().cpu().numpy())
        scores = (logits + self._key_prior(state)) / max(self.temperature, 1e-3)  # (128,)
        if self._out_of_scale is not None:
            scores[self._out_of_scale] = -np.inf
        probs = np.exp(scores - scores.max())
        order = np.argsort(-probs, kind="stable")  # nucleus: the likeliest until their mass reaches top_p
        mass = np.cumsum(probs[order]) / probs.sum()
        keep = order[: int(np.searchsorted(mass, self.top_p)) + 1]
        rng = np.random.default_rng([self.seed, state.step, STRIKE_SEED])
        pitch = int(keep[rng.choice(len(keep), p=probs[keep] / probs[keep].sum())])
        events, self._state = self._shape([Event(EventType.NOTE_ON, pitch)], state)
        return events

    def _keep_first_notes(self, code: tuple[float, ...], logits: np.ndarray) -> np.ndarray:
        """Keep a code's (128,) first-event NOTE_ON logits for strikes (the last FIRST_NOTES_KEPT codes)."""
        self._first_notes[code] = logits
        while len(self._first_notes) > FIRST_NOTES_KEPT:
            self._first_notes.pop(next(iter(self._first_notes)))
        return logits

    def _key_prior(self, state: WalkState) -> np.ndarray:
        """(128,) logits for the note-ons: toward the key of its own recent notes (the walk has no key of its own)
        and, when the register is set, toward pitches near it (in the model's pitch space)."""
        hist = state.own_key.key_profile()  # (12,) the key its recent notes fit best
        prior = KEY_PULL * (np.resize(hist, 128) * 12.0 - 1.0)  # (128,)
        if self.register is not None:
            centre = float(self.register) - state.octave
            prior = prior - REGISTER_PULL * ((np.arange(128) - centre) / REGISTER_WIDTH) ** 2
        return prior

    def _key_bias(self, state: WalkState):
        """`_key_prior` as a tensor on the model's device: the NOTE_ON reshaping of `decode`."""
        import torch

        return torch.from_numpy(self._key_prior(state).astype(np.float32)).to(self.device)  # (128,)

    def strike(self, after_s: float = 0.0) -> None:
        """A gesture's immediate answer: the next call is one note, the current code's own (one decoder step)."""
        self._strike = True

    def _shape(self, events: list[Event], state: WalkState) -> tuple[list[Event], WalkState]:
        """Apply register (transposition), density (time scaling) and the hold limit to one decoded subsequence."""
        pitches = [e.value for e in events if e.type == EventType.NOTE_ON]
        pitch_mean, own_key = state.pitch_mean, state.own_key
        for p in pitches:
            pitch_mean = PITCH_MEMORY * pitch_mean + (1 - PITCH_MEMORY) * p
            own_key = own_key.add(p)
        steps = sum(e.value for e in events if e.type == EventType.TIME_SHIFT)
        rate = state.rate if steps == 0 else RATE_MEMORY * state.rate + (1 - RATE_MEMORY) * len(pitches) / (steps / STEPS_PER_SECOND)
        shift = 0
        if self.register is not None:  # octaves only: the key stays (the pitch prior in _key_bias does the rest)
            shift = 12 * round(int(np.clip(round(float(self.register) - pitch_mean), -MAX_TRANSPOSE, MAX_TRANSPOSE)) / 12)
        scale = 1.0 if self.density is None else float(np.clip(rate / max(float(self.density), 0.1), 0.5, 2.0))
        held = {model: (sent, onset) for model, sent, onset in state.held}
        clock, carry = state.clock, state.carry
        out: list[Event] = []
        for event in events:
            if event.type == EventType.TIME_SHIFT:
                exact = event.value * scale + carry
                carry = exact - int(exact)
                clock = _advance(out, held, clock, int(exact))
            elif event.type == EventType.NOTE_ON:
                sent = int(np.clip(event.value + shift, 0, 127))
                for model in [m for m, (other, _) in held.items() if m == event.value or other == sent]:
                    out.append(Event(EventType.NOTE_OFF, held.pop(model)[0]))  # a re-strike ends the old note first
                held[event.value] = (sent, clock)
                out.append(Event(EventType.NOTE_ON, sent))
            elif event.type == EventType.NOTE_OFF:
                if event.value in held:  # offs of pitches this voice does not hold are dropped
                    out.append(Event(EventType.NOTE_OFF, held.pop(event.value)[0]))
            else:
                out.append(event)
        return out, replace(state, held=tuple((m, s, o) for m, (s, o) in held.items()), pitch_mean=pitch_mean, rate=rate,
                                    own_key=own_key, octave=shift,
                            carry=carry, clock=clock)

    # ---------------------------------------------------------------- rollback
    def snapshot(self) -> WalkState:
        """The walk state (immutable)."""
        return self._state

    def restore(self, snapshot: WalkState) -> None:
        """Continue from a snapshot; a jump or theme capture played only in the dropped future is played again."""
        self._state = snapshot
        self._strike = False
        if self._jump_step is not None and self._jump_step >= snapshot.step:
            self._jump_armed, self._jump_step = True, None
        if self._capture_step is not None and self._capture_step >= snapshot.step:
            self._capture_armed, self._capture_step = True, None


def _advance(out: list[Event], held: dict[int, tuple[int, int]], clock: int, steps: int) -> int:
    """Append `steps` of TIME_SHIFTs to `out`, ending held notes at MAX_HOLD_STEPS on the way; returns the new clock."""
    target = clock + steps
    for model, (sent, onset) in sorted(held.items(), key=lambda item: item[1][1]):  # oldest first
        deadline = onset + MAX_HOLD_STEPS
        if deadline > target:
            break
        _shifts(out, deadline - clock)
        clock = max(clock, deadline)
        out.append(Event(EventType.NOTE_OFF, sent))
        del held[model]
    _shifts(out, target - clock)
    return target


def _shifts(out: list[Event], steps: int) -> None:
    """Append TIME_SHIFTs totalling `steps` (none for steps <= 0)."""
    while steps > 0:
        out.append(Event(EventType.TIME_SHIFT, min(steps, MAX_SHIFT_STEPS)))
        steps -= MAX_SHIFT_STEPS


@register_voice(VoiceInfo(
    name="seqae", summary="Continuous SeqAE random walk",
    listens=("flip_rate", "jump", "theme_capture", "reset_p", "register", "density", "theme"),
    keeps_grid=False, model_class="SeqAE", weights="seqae.pt",
    mappings={"default": "seqae.toml", "emg": "seqae_emg.toml"},
))
def open_seqae(options: VoiceOptions) -> SeqAEVoice:
    """The SeqAE from a checkpoint (default: the shipped one)."""
    from models.checkpoint import load_checkpoint, shipped_checkpoint
    from models.seqae.model import SeqAE

    path = options.checkpoint or shipped_checkpoint("seqae")
    model, _, _ = load_checkpoint(path, SeqAE)
    return SeqAEVoice(model, device=options.device, seed=options.seed, temperature=options.temperature, top_p=options.top_p,
                      key=options.key, scale_lock=options.scale_lock, quantize=options.int8,
                      name="seqae" if options.checkpoint is None else path.name)
