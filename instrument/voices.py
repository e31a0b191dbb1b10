"""Voices: the small protocol the engine drives, and the two models behind it.

A voice turns the current `Controls` into the next few performance events and can
snapshot and restore its state, which is all rollback needs:

- `StreamingVoice` wraps the Char-RNN: one model step per call, one event out.
- `ChunkVoice` wraps the DCRNN generator: one bar per call, the piano roll turned
  into note events (one TIME_SHIFT per sixteenth at the reference tempo).

Device notes. CPU: one thread and mkldnn off (at batch 1 the plain LSTM kernel is
several times faster), optionally int8 dynamic quantization. CUDA: the state stays on
the GPU and the single step is captured once in a CUDA graph, so a step is one graph
launch plus the copy of 388 logits back for sampling.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch

from instrument.controls import Controls
from models.conditioning import DEFAULT_SPEC, ConditionSpec, condition_vector, key_histogram, scale_pitch_classes
from models.events import CODEC, STEPS_PER_SECOND, Event, EventType, velocity_to_bin

_EVENTS = tuple(CODEC.decode(i) for i in range(CODEC.size))  # index -> Event, decoded once


# Test-only fault hook, read once here: DEEP_SYMPHONY_FAULT=model-step-after:N makes the model step
# after the first N raise, so tests can check that a failing model still ends in silence.
_FAULT_PREFIX = "model-step-after:"
_fault_spec = os.environ.get("DEEP_SYMPHONY_FAULT", "")
_FAULT_AFTER = int(_fault_spec[len(_FAULT_PREFIX):]) if _fault_spec.startswith(_FAULT_PREFIX) \
    and _fault_spec[len(_FAULT_PREFIX):].isdigit() else None
_steps_taken = 0


class InjectedFault(RuntimeError):
    """The failure DEEP_SYMPHONY_FAULT asked for."""


def _fault_check() -> None:
    """Count a model step; raise InjectedFault past the DEEP_SYMPHONY_FAULT limit (no-op when unset)."""
    global _steps_taken
    if _FAULT_AFTER is not None:
        _steps_taken += 1
        if _steps_taken > _FAULT_AFTER:
            raise InjectedFault(f"injected fault after {_FAULT_AFTER} model steps (DEEP_SYMPHONY_FAULT)")


class Voice(Protocol):
    """What the engine needs from a model."""

    name: str
    device: str
    seconds_per_shift: float  # length of one TIME_SHIFT step at the reference tempo (120 bpm)
    temperature: float
    keeps_grid: bool  # True: after a rollback, skip onsets already past instead of playing them late

    def set_controls(self, controls: Controls) -> None:
        """Steer the next events."""

    def next_events(self) -> Sequence[Event]:
        """Generate the next event(s); at least one TIME_SHIFT every few calls."""

    def snapshot(self) -> object:
        """An immutable token of the current state (cheap: references only)."""

    def restore(self, snapshot: object) -> None:
        """Go back to a snapshot."""


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'; validates explicit choices."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        from instrument.errors import UsageError

        raise UsageError("--device cuda: no CUDA GPU is available to torch here; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        from instrument.errors import UsageError

        raise UsageError(f"unknown device {device!r}: use auto, cpu or cuda")
    return device


def prepare_cpu() -> None:
    """Batch-1 real-time settings for the whole process: one intra-op thread, mkldnn off."""
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False


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
    """The Char-RNN, one event per call, steered through the condition vector."""

    seconds_per_shift = 1.0 / STEPS_PER_SECOND
    keeps_grid = False  # one event per step: the next onset after a rollback is played at once

    def __init__(self, model, *, device: str = "cpu", temperature: float = 1.0, top_p: float = 0.95,
                 key: str | None = None, scale_lock: bool = False, seed: int = 0,
                 spec: ConditionSpec = DEFAULT_SPEC, quantize: bool = False, cuda_graph: bool = True,
                 pitch_range: tuple[int, int] | None = None, name: str = "charrnn") -> None:
        from models.sampling import sample_token  # imported here so the engine can run without torch models

        self._sample = sample_token
        self.name = name
        self.device = resolve_device(device)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.spec = spec
        self.pitch_range = pitch_range
        self.allowed = scale_pitch_classes(key) if (key and scale_lock) else None
        self.key_histogram = key_histogram(key) if key else None
        model = model.eval()
        if self.device == "cpu":
            prepare_cpu()
            if quantize:
                import warnings

                from models.charrnn import quantize_for_cpu

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
        self._state = model.init_state(1, device=self.device)
        self._last = CODEC.encode(Event(EventType.VELOCITY, velocity_to_bin(80)))  # a neutral first input
        self._step = model.step
        if self.device == "cuda" and cuda_graph:
            self._step = _GraphedStep(model, self._state, cond_dim)
        self.set_controls(Controls())

    def set_controls(self, controls: Controls) -> None:
        """Rebuild the condition vector from register, density and key (the --key default when unset)."""
        if self._cond is None:
            return
        hist = controls.key_histogram if controls.key_histogram is not None else self.key_histogram
        vec = condition_vector(controls.register, controls.density, hist, self.spec)  # (14,)
        self._cond.copy_(torch.from_numpy(vec).unsqueeze(0))

    @torch.inference_mode()
    def next_events(self) -> tuple[Event]:
        """One model step and one sampled event."""
        _fault_check()
        self._token.fill_(self._last)
        logits, self._state = self._step(self._token, self._cond, self._state)  # (1, 388)
        if logits.device.type != "cpu":
            logits = logits.float().cpu()
        index = self._sample(logits[0], self._rng, self.temperature, self.top_p, self.allowed, self.pitch_range)
        self._last = int(index)
        return (_EVENTS[self._last],)

    def snapshot(self) -> tuple:
        """(recurrent state, last event): references, since states are never modified in place."""
        return (self._state, self._last)

    def restore(self, snapshot: tuple) -> None:
        """Continue from a snapshot."""
        self._state, self._last = snapshot


class ChunkVoice:
    """The DCRNN: one bar of 16 sixteenths per call; EMG -> noise slots 0..7, pose -> theme code."""

    THEMES = {"rest": "A", "wave_in": "B", "wave_out": "C"}  # other theme names use "D"
    keeps_grid = True  # a rollback regenerates the current bar; its past sixteenths are skipped

    def __init__(self, generator, *, device: str = "cpu", seed: int = 0, key: str | None = None,
                 scale_lock: bool = False, velocity: int = 80, temperature: float = 1.0,
                 name: str = "dcrnn") -> None:
        from models.dcrnn import theme_codes
        from models.roll import step_seconds

        self.name = name
        self.device = resolve_device(device)
        if self.device == "cpu":
            prepare_cpu()
        self.gen = generator.eval().to(self.device)
        self.config = generator.config
        self.temperature = float(temperature)  # scales the roll logits
        self.seconds_per_shift = step_seconds(120.0)  # one sixteenth at the reference tempo
        self.velocity_event = Event(EventType.VELOCITY, velocity_to_bin(velocity))
        self.codes = {k: v.to(self.device) for k, v in theme_codes(self.config).items()}  # letter -> (Z,)
        self._rng = torch.Generator().manual_seed(int(seed))
        self._state = self.gen.init_state(1)
        self._prev = torch.zeros(1, 128, dtype=torch.uint8)  # last step of the previous bar (OFF/HELD/ONSET)
        self._z = self.codes["A"].unsqueeze(0)  # (1, Z)
        self._cond = None
        if self.config.cond_dim == 12 and key:
            self._cond = torch.tensor([key_histogram(key)], dtype=torch.float32, device=self.device)
        mask = np.ones(128, dtype=bool)
        if key and scale_lock:
            allowed = scale_pitch_classes(key)
            mask = np.array([p % 12 in allowed for p in range(128)])
        self._mask = torch.from_numpy(mask)

    def set_controls(self, controls: Controls) -> None:
        """Theme from pose, noise slots from EMG, key histogram as the condition."""
        from models.dcrnn import z_with_slots

        base = self.codes[self.THEMES.get(controls.theme or "rest", "D")]
        self._z = z_with_slots(base, controls.noise_slots).unsqueeze(0)  # (1, Z)
        if controls.key_histogram is not None and self.config.cond_dim == 12:
            self._cond = torch.tensor([controls.key_histogram], dtype=torch.float32, device=self.device)

    @torch.inference_mode()
    def next_events(self) -> list[Event]:
        """One bar: roll logits -> sampled roll (16, 128) -> note events, 1 TIME_SHIFT per sixteenth."""
        from models.dcrnn import binarize

        _fault_check()
        logits, self._state = self.gen.generate_chunk(self._z, self._cond, self._state)  # (1, 16, 128, 2)
        logits = logits.float().cpu() / max(self.temperature, 1e-3)
        # Threshold at the calibrated value the model was evaluated with: Bernoulli sampling of
        # 128 keys per step turns many unlikely keys into a cluster of ~20 notes per sixteenth.
        roll = binarize(logits, self.gen.threshold, prev=self._prev)[0]  # (16, 128) uint8
        roll[:, ~self._mask] = 0
        events = roll_events(roll.numpy(), self._prev[0].numpy(), self.velocity_event)
        self._prev = roll[-1:].clone()
        return events

    def snapshot(self) -> tuple:
        """(GRU states, last roll step)."""
        return (self._state, self._prev)

    def restore(self, snapshot: tuple) -> None:
        """Continue from a snapshot."""
        self._state, self._prev = snapshot


def roll_events(roll: np.ndarray, prev: np.ndarray, velocity: Event) -> list[Event]:
    """A bar of roll (T, 128; 0 off, 1 held, 2 onset) after `prev` (128,) -> events, one shift per step."""
    events: list[Event] = [velocity]
    before = prev != 0
    for row in roll:
        on = row != 0
        onset = row == 2
        for pitch in np.flatnonzero(before & (~on | onset)):
            events.append(Event(EventType.NOTE_OFF, int(pitch)))
        for pitch in np.flatnonzero(onset):
            events.append(Event(EventType.NOTE_ON, int(pitch)))
        if events[-1].type == EventType.TIME_SHIFT:
            events[-1] = Event(EventType.TIME_SHIFT, events[-1].value + 1)
        else:
            events.append(Event(EventType.TIME_SHIFT, 1))
        before = on
    return events
