"""What the engine needs from a voice, and the device settings every voice shares.

A voice turns the current `Controls` into the next few performance events and can
snapshot and restore its state, which is all rollback needs. Optional: `strike(after_s)`
(the immediate response to a gesture: a note-on at once, or for a grid voice on the first grid
step at or after `after_s` seconds into the restored state's time).

Device notes. CPU: one thread and mkldnn off (at batch 1 the plain kernels are several
times faster), optionally int8 dynamic quantization. CUDA: the state stays on the GPU.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Protocol

from instrument.controls import Controls
from models.events import Event

# Test-only fault hook, read once here: DEEP_SYMPHONY_FAULT=model-step-after:N makes the model step
# after the first N raise, so tests can check that a failing model still ends in silence.
_FAULT_PREFIX = "model-step-after:"
_fault_spec = os.environ.get("DEEP_SYMPHONY_FAULT", "")
_FAULT_AFTER = int(_fault_spec[len(_FAULT_PREFIX):]) if _fault_spec.startswith(_FAULT_PREFIX) \
    and _fault_spec[len(_FAULT_PREFIX):].isdigit() else None
_steps_taken = 0


class InjectedFault(RuntimeError):
    """The failure DEEP_SYMPHONY_FAULT asked for."""


def fault_check() -> None:
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
    listens: frozenset[str]  # set by open_voice from the VoiceInfo

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
    import torch

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
    import torch

    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = False


