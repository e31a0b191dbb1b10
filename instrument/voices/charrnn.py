"""The Char-RNN voice: one model step per call, one event out, steered through the condition vector
and, where the event is drawn, by the small logit biases of `steering.py` (register, density, clash)."""

from __future__ import annotations

import numpy as np
import torch

from instrument.controls import Controls
from instrument.performer import MIN_NOTE_S
from instrument.voices.base import fault_check, prepare_cpu, resolve_device
from instrument.voices.registry import VoiceInfo, VoiceOptions, register_voice
from instrument.voices import steering as steer
from models.conditioning import COND_DIM, DEFAULT_SPEC, ConditionSpec, condition_vector, write_condition
from models.keys import OwnKey, key_histogram, scale_pitch_classes
from models.events import (CODEC, NOTE_OFF_OFFSET, NOTE_ON_OFFSET, STEPS_PER_SECOND, TIME_SHIFT_OFFSET,
                           VELOCITY_OFFSET,
                           Event, EventType, velocity_to_bin)

_EVENTS = tuple(CODEC.decode(i) for i in range(CODEC.size))  # index -> Event, decoded once


class _GraphedStep:
    """The Char-RNN's single step captured in a CUDA graph (static input and output tensors).

    Replaying writes the same output buffers each time, so the new state is cloned out:
    a voice's states stay immutable and a snapshot stays a reference.
    """

    def __init__(self, model, state: tuple[torch.Tensor, ...], cond_dim: int) -> None:
        device = state[0].device
        self.token = torch.zeros(1, dtype=torch.long, device=device)  # (1,)
        self.cond = torch.zeros(1, cond_dim, device=device) if cond_dim else None  # (1, C)
        self.state = tuple(torch.zeros_like(s) for s in state)  # each (layers, 1, H)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):  # warm up kernels and the allocator outside the capture
                model.step(self.token, self.cond, self.state)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.logits, self.new_state = model.step(self.token, self.cond, self.state)

    def __call__(self, token: torch.Tensor, cond: torch.Tensor | None, state):
        self.token.copy_(token, non_blocking=True)
        if cond is not None:
            self.cond.copy_(cond, non_blocking=True)
        for static, value in zip(self.state, state):
            if static is not value:
                static.copy_(value)
        self.graph.replay()
        return self.logits, tuple(s.clone() for s in self.new_state)


class StreamingVoice:
    """The Char-RNN, one event per call, steered through the condition vector and decode-time biases.

    `steering=None` plays the model's own distribution (as before issue 14's steering).
    """

    seconds_per_shift = 1.0 / STEPS_PER_SECOND

    def __init__(self, model, *, device: str = "cpu", temperature: float = 1.0, top_p: float = 0.95,
                 key: str | None = None, scale_lock: bool = False, seed: int = 0,
                 spec: ConditionSpec = DEFAULT_SPEC, quantize: bool = False, cuda_graph: bool = True,
                 pitch_range: tuple[int, int] | None = None, name: str = "charrnn",
                 steering: steer.SteeringConfig | None = steer.DEFAULT_STEERING, style: str | None = None) -> None:
        from models.sampling import forbidden_pitches, sample_pitch, sample_token  # the engine runs without torch models

        self._sample = sample_token
        self._sample_pitch = sample_pitch
        self._strike_rng = np.random.default_rng([int(seed), STRIKE_SEED])  # a strike's one uniform, in numpy
        self.name = name
        self.device = resolve_device(device)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.spec = spec
        self.styles = spec.styles  # the style condition's choices (empty: this checkpoint has none)
        self.unplayable = () if spec.styles else ("style",)  # knobs VoiceInfo declares that this checkpoint cannot play
        if style is not None:
            spec.style_index(style)  # an unknown style is a clear error here, not a surprise on stage
        self.style = style  # the style played when the controls name none (None: the model's first)
        self._style_written: str | None = ""  # the style the condition's style columns hold now ("": none yet)
        self.pitch_range = pitch_range
        self.allowed = scale_pitch_classes(key) if (key and scale_lock) else None
        self._forbidden = forbidden_pitches(self.allowed, pitch_range)  # (128,) bool or None, for strikes
        self.key_histogram = key_histogram(key) if key else None  # --key: a fixed soft key condition
        model = model.eval()
        if self.device == "cpu":
            prepare_cpu()
            if quantize:
                import warnings

                from models.charrnn.model import quantize_for_cpu

                with warnings.catch_warnings():  # torch deprecates the quantized tensor API it uses itself
                    warnings.simplefilter("ignore")
                    model = quantize_for_cpu(model)
        else:
            model = model.to(self.device)
        self.model = model
        cond_dim = model.config.cond_dim
        self._rng = torch.Generator().manual_seed(int(seed))
        self._token = torch.zeros(1, dtype=torch.long, device=self.device)  # (1,)
        self._cond = torch.zeros(1, cond_dim, device=self.device) if cond_dim else None  # (1, C)
        # on the CPU a gesture's new condition is written straight into the tensor, through numpy
        self._cond_values = self._cond[0].numpy() if (cond_dim and self.device == "cpu") else None  # (C,) view
        self._state = model.init_state(1, device=self.device)
        self._last = CODEC.encode(Event(EventType.VELOCITY, velocity_to_bin(80)))  # a neutral first input
        # Without --key the key condition follows the voice's own recent notes (a decaying pitch-class count
        # over a C-major prior): a flat histogram lies outside the training data, where it means silence.
        self._pitch_classes = OwnKey()
        self._controls = Controls()
        self._strike, self._strike_after_s = False, 0.0
        self._open: tuple[tuple[int, float], ...] = ()  # (pitch, seconds sounding) of the notes it has struck
        self._last_on: int | None = None  # the pitch it struck last (sounding or not)
        # Decode-time steering (steering.py): None plays the model's distribution untouched.
        self.steering = steering
        self._rate_window_s = (steering or steer.DEFAULT_STEERING).rate_window_s
        self._rate = steer.OnsetRate()  # its own recent onsets against those asked for, part of the state
        self._register_window = None  # (128,) numpy NOTE_ON bias of the current register, or None
        active = steering is not None and steering.register_strength > 0
        self._register_windows = steer.register_windows(steering.register_width, steering.register_strength) \
            if active else None  # (513, 128): every quarter-semitone register's window, indexed by a gesture
        self._step = model.step
        if self.device == "cpu" and not quantize and model.config.cell == "lstm":
            from models.charrnn.model import PackedStep

            self._step = PackedStep(model)  # the same sums, half the time (a cold strike step: 1.4 -> 0.8 ms)
        # PackedStep's condition-free half of the next step, made once this step's event is drawn (None: not
        # made yet); part of the state, so a gesture that restores it pays only the other half
        self._prepare = getattr(self._step, "prepare", None)
        self._prepared = None
        if self.device == "cuda" and cuda_graph:
            self._step = _GraphedStep(model, self._state, cond_dim)
        self.set_controls(Controls())

    def set_controls(self, controls: Controls) -> None:
        """Rebuild the condition vector from register, density and key (own recent notes when no key is set)."""
        self._controls = controls
        self._cond_stale = False
        if self._register_windows is not None and controls.register is not None:
            # the quarter-semitone grid: a table row, not a computation, on a gesture's path
            quarter = min(max(round(float(controls.register) * 4.0), 0), steer.REGISTER_QUARTERS - 1)
            self._register_window = self._register_windows[quarter]
        else:
            self._register_window = None
        if self._cond is None:
            return
        hist = controls.key_histogram if controls.key_histogram is not None else self.key_histogram
        style = (controls.style or self.style) if self.styles else None
        if self._cond_values is not None:  # (C,)
            if hist is None:  # the voice's own key: a histogram already normalized, cached with its counts
                write_condition(self._cond_values, controls.register, controls.density,
                                self._pitch_classes.histogram(), self.spec)
                if self.styles and style != self._style_written:  # the style columns change only with the style
                    self._cond_values[COND_DIM:] = self.spec.style_vector(style)
            else:
                condition_vector(controls.register, controls.density, hist, self.spec, out=self._cond_values, style=style)
        else:
            hist = self._pitch_classes.histogram() if hist is None else hist
            self._cond.copy_(torch.from_numpy(condition_vector(controls.register, controls.density, hist, self.spec,
                                                               style=style)))
        self._style_written = style

    def strike(self, after_s: float = 0.0) -> None:
        """The next event is a note-on, drawn from the model's own distribution restricted to note-ons.

        `after_s`: how far past this state's time the strike sounds (the playhead after a rollback).
        """
        self._strike = True
        self._strike_after_s = after_s

    @torch.inference_mode()
    def next_events(self) -> tuple[Event]:
        """One model step and one sampled event."""
        fault_check()
        if self._cond_stale:
            self.set_controls(self._controls)
        logits = self._model_step()[0]  # (388,)
        struck, self._strike = self._strike, False
        if logits.device.type != "cpu":
            logits = logits.float().cpu()
        if struck:
            index = NOTE_ON_OFFSET + self._strike_pitch(logits)
        else:
            if self.steering is not None:
                logits = self._steer(logits)
            if self._open and self._open[0][1] > RELEASE_AFTER_S:
                logits = self._release_old_notes(logits)
            index = self._sample(logits, self._rng, self.temperature, self.top_p, self.allowed, self.pitch_range)
        self._last = int(index)
        event = _EVENTS[self._last]
        self._open = _open_after(self._open, event)
        if event.type == EventType.TIME_SHIFT:
            self._rate = steer.rate_after_shift(self._rate, event.value / STEPS_PER_SECOND, self._rate_window_s,
                                                 self._controls.density)
        elif event.type == EventType.NOTE_ON:
            self._rate = steer.rate_after_note_on(self._rate)
            self._last_on = event.value
        if event.type == EventType.NOTE_ON and self.key_histogram is None:
            self._pitch_classes = self._pitch_classes.add(event.value)
            # the condition stays a function of the state: rebuilt before the next step, not here,
            # so a strike's note-on leaves without waiting for it
            self._cond_stale = self._cond is not None
        self._prepared = None
        if self._prepare is not None and not struck:  # a strike's note-on leaves first: its next step prepares
            self._token.fill_(self._last)
            self._prepared = self._prepare(self._token, self._state)
        return (event,)

    def _model_step(self) -> torch.Tensor:
        """One model step from the last event under the present condition: logits (1, 388); the state advances."""
        self._token.fill_(self._last)
        if self._prepare is None:
            logits, self._state = self._step(self._token, self._cond, self._state)
        else:
            prepared = self._prepared if self._prepared is not None else self._prepare(self._token, self._state)
            logits, self._state = self._step.finish(prepared, self._cond, self._state)
        return logits

    def _strike_pitch(self, logits: torch.Tensor) -> int:
        """A strike's pitch: the model's NOTE_ON logits under the steering's pitch biases, drawn in numpy.

        Only which pitch matters, so only the pitch biases apply (the same note-on distribution as
        masking a full step's logits), and the 128-way draw costs a fraction of a 388-way torch
        sample on a gesture's cold path.
        """
        note_ons = logits.numpy()[NOTE_ON_OFFSET:NOTE_OFF_OFFSET]  # (128,) view, never written
        if self.steering is not None:
            bias = self._pitch_bias(note_ons)
            if bias is not None:
                note_ons = note_ons + bias
        uniform = self._strike_rng.random()
        forbidden = self._forbidden
        # a pitch struck under MIN_NOTE_S before the strike sounds would merge with it into one note (the
        # performer's rule), and the gesture would have no note of its own: the strike draws another
        fresh = [pitch for pitch, age in self._open if age + self._strike_after_s < MIN_NOTE_S]
        if fresh:
            forbidden = np.zeros(128, dtype=bool) if forbidden is None else forbidden.copy()
            forbidden[fresh] = True
        return self._sample_pitch(note_ons, uniform, self.temperature, self.top_p, forbidden)

    def _pitch_bias(self, note_ons: np.ndarray) -> np.ndarray | None:
        """(128,) NOTE_ON bias of the register window, the clash and repeat penalties and the register tilt, or None."""
        steering = self.steering
        pitch_bias = self._register_window  # (128,) or None; shared, never written
        if self._open and steering.clash_penalty > 0:
            clash = steer.clash_bias(steer.pitch_class_mask(p for p, _ in self._open), steering.clash_penalty)
            pitch_bias = clash if pitch_bias is None else pitch_bias + clash
        if self._last_on is not None and steering.repeat_penalty > 0:
            repeat = steer.repeat_bias(self._last_on, steering.repeat_penalty)
            pitch_bias = repeat if pitch_bias is None else pitch_bias + repeat
        register = self._controls.register
        if register is not None and steering.register_max_tilt > 0:
            biased = note_ons if pitch_bias is None else note_ons + pitch_bias
            tilt = steer.register_tilt(biased, float(register), steering.register_tolerance, steering.register_max_tilt)
            pitch_bias = tilt if pitch_bias is None else pitch_bias + tilt
        return pitch_bias

    def _steer(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits (388,) plus the pitch and density biases of `steering.py` (a new tensor)."""
        steering = self.steering
        logits = logits.clone()
        values = logits.numpy()  # (388,) float32 view: writing into it writes into `logits`
        note_ons = values[NOTE_ON_OFFSET:NOTE_OFF_OFFSET]  # (128,) view
        pitch_bias = self._pitch_bias(note_ons)
        if pitch_bias is not None:
            note_ons += steer.keep_mass(note_ons, pitch_bias) if steering.keep_note_on_mass else pitch_bias
        density = self._controls.density
        if density is not None and steering.density_gain > 0:
            owed = steer.density_debt(self._rate, steering.density_max_debt)
            bonus = (steering.density_gain if owed >= 0.0 else steering.density_ahead_gain) * owed
            note_ons += bonus
            values[VELOCITY_OFFSET:] += bonus  # a VELOCITY event leads into a note-on
            if steering.overshoot_gain > 0:
                values[TIME_SHIFT_OFFSET:VELOCITY_OFFSET] += steer.shift_overshoot_bias(
                    float(density), self._rate, self._rate_window_s, steering.overshoot_gain, steering.overshoot_slack)
        if self._open and steering.early_release_penalty > 0:
            young = steer.early_release_pitches(self._open, steering.min_length_s)
            if young:
                values[[NOTE_OFF_OFFSET + p for p in young]] -= steering.early_release_penalty
        return logits

    def _release_old_notes(self, logits: torch.Tensor) -> torch.Tensor:
        """Raise the NOTE_OFF logit of each note sounding longer than RELEASE_AFTER_S, more the older it is.

        The model sometimes forgets a note (the corpus is pedalled, so its notes are long): left
        alone, 7 % of its notes would run to the engine's 4-s cap, against 1.6 % of real notes.
        """
        return self._release_old_notes_for(self._open, logits)

    @staticmethod
    def _release_old_notes_for(open_notes: tuple[tuple[int, float], ...], logits: torch.Tensor) -> torch.Tensor:
        """`_release_old_notes` for given open notes (oldest first)."""
        logits = logits.clone()
        for pitch, age in open_notes:
            if age <= RELEASE_AFTER_S:
                break  # oldest first
            logits[NOTE_OFF_OFFSET + pitch] += RELEASE_GAIN * (age - RELEASE_AFTER_S)
        return logits

    def snapshot(self) -> tuple:
        """(recurrent state, last event, own-key counts, open notes, onset rate, last pitch, the next step's
        prepared half): references, never modified."""
        return (self._state, self._last, self._pitch_classes, self._open, self._rate, self._last_on, self._prepared)

    def restore(self, snapshot: tuple) -> None:
        """Continue from a snapshot."""
        self._state, self._last, self._pitch_classes, self._open, self._rate, self._last_on, self._prepared = snapshot
        self._strike = False
        # the own-key condition is part of the state: rebuilt before the next step, unless new controls
        # come first (a rollback's), which rebuild it anyway: one rebuild on a gesture's path, not two
        self._cond_stale = self.key_histogram is None


STRIKE_SEED = 7331  # a strike's draws come from their own stream of the voice's seed
RELEASE_AFTER_S = 1.2  # real notes (pedal applied) are shorter than this 9 times out of 10 (p90 1.1 s)
RELEASE_GAIN = 4.0  # logit added per second past it


def _open_after(open_notes: tuple[tuple[int, float], ...], event: Event) -> tuple[tuple[int, float], ...]:
    """The voice's own open notes (oldest first) after one event: ages grow with time shifts."""
    if event.type == EventType.TIME_SHIFT:
        if not open_notes:
            return open_notes
        dt = event.value / STEPS_PER_SECOND
        return tuple((p, age + dt) for p, age in open_notes)
    if event.type == EventType.NOTE_ON:
        return tuple(n for n in open_notes if n[0] != event.value) + ((event.value, 0.0),)
    if event.type == EventType.NOTE_OFF:
        return tuple(n for n in open_notes if n[0] != event.value)
    return open_notes


@register_voice(VoiceInfo(
    name="charrnn", summary="Conditional Char-RNN", listens=("register", "density", "key_histogram", "style"),
    model_class="CharRNN", weights="charrnn.pt",
    mappings={"default": "charrnn_camera.toml", "emg": "charrnn_emg.toml"},
))
def open_charrnn(options: VoiceOptions) -> StreamingVoice:
    """The Char-RNN from a checkpoint (default: the shipped one), with its conditioning spec."""
    from models.checkpoint import load_charrnn, shipped_checkpoint

    path = options.checkpoint or shipped_checkpoint("charrnn")
    model, _, meta = load_charrnn(path)
    spec = ConditionSpec.from_dict(meta["conditioning"]) if meta.get("conditioning") else DEFAULT_SPEC
    return StreamingVoice(model, device=options.device, temperature=options.temperature, top_p=options.top_p,
                          key=options.key, scale_lock=options.scale_lock, seed=options.seed, spec=spec,
                          quantize=options.int8, name="charrnn" if options.checkpoint is None else path.name,
                          style=options.style if spec.styles else None)


