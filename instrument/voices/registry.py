"""The voice front door: every voice registers here, and everything that lists voices asks here.

A voice is a model package (`models/NAME/`) plus one file here (`instrument/voices/NAME.py`)
that declares a `VoiceInfo` and registers an opener with `@register_voice(info)`. The one
registry line for a new voice is its entry in `SHIPPED` below: name, one-line summary.
From the registry come the CLI's `--model` choices and help, the `train`/`eval`
targets (`models/NAME/train.py`, `models/NAME/eval.py` when they exist), the checkpoint
class table (`voice_for_checkpoint`), the default mapping per controller kind, and the
start line. This module never imports torch: `--help` stays fast.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# name -> one-line summary. THE registry line: add yours here (and write instrument/voices/NAME.py).
SHIPPED: dict[str, str] = {
    "charrnn": "Conditional Char-RNN: an LSTM over 388 performance events; hand height -> register, left/right -> density",
    "dcrnn": "DCRNN: a WGAN-GP piano-roll generator, one bar per call; EMG -> noise slots, pose -> theme",
    "seqae": "Continuous SeqAE: a random walk in a binary code space with theme resets; hand x -> flip rate",
}

CONTROLLER_KINDS = ("camera", "emg", "xy", "replay")  # what a default mapping is chosen by


@dataclass(frozen=True)
class VoiceOptions:
    """What every voice opener gets: the `play`/`render` flags that concern the model."""

    checkpoint: Path | None = None  # None: the shipped weights
    device: str = "auto"  # auto | cpu | cuda
    seed: int = 0
    temperature: float = 1.0
    top_p: float = 0.95
    key: str | None = None
    scale_lock: bool = False
    int8: bool = False  # int8 dynamic quantization of the weights on the CPU
    style: str | None = None  # the default style, for a voice whose checkpoint has a style condition


@dataclass(frozen=True)
class VoiceInfo:
    """What a voice declares about itself."""

    name: str
    summary: str
    listens: tuple[str, ...]  # the controls it reacts to: rollbacks and the monitor's bars follow these
    model_class: str  # the `model_class` in its checkpoints' JSON
    weights: str  # the shipped checkpoint in models/weights/
    keeps_grid: bool = False  # True: bars on a time grid (a rollback answers at the next grid step)
    # controller kind -> mapping TOML file in instrument/voices/mappings/ (missing kinds use the "default" entry)
    mappings: dict[str, str] = field(default_factory=lambda: {"default": "default.toml"})

    def mapping_for(self, kind: str) -> str:
        """The mapping file this voice plays with for a controller kind."""
        return self.mappings.get(kind, self.mappings.get("default", "default.toml"))


Opener = Callable[[VoiceOptions], object]
_OPENERS: dict[str, tuple[VoiceInfo, Opener]] = {}


def register_voice(info: VoiceInfo) -> Callable[[Opener], Opener]:
    """Decorator: `@register_voice(VoiceInfo(...))` on `def open_NAME(options) -> Voice`."""

    def add(opener: Opener) -> Opener:
        _OPENERS[info.name] = (info, opener)
        return opener

    return add


def voice_names() -> tuple[str, ...]:
    """The registered voices whose files are installed (no import of torch)."""
    return tuple(name for name in SHIPPED if importlib.util.find_spec(f"instrument.voices.{name}") is not None)


def model_help() -> str:
    """The `--model` help text, from the registry."""
    return "voice: " + ", ".join(voice_names()) + " (default charrnn), or a checkpoint PATH.pt of any of them"


def voice_info(name: str) -> VoiceInfo:
    """The VoiceInfo of a registered voice (imports its voice file)."""
    _load(name)
    return _OPENERS[name][0]


def _load(name: str) -> None:
    if name not in _OPENERS:
        if name not in SHIPPED:
            raise KeyError(name)
        importlib.import_module(f"instrument.voices.{name}")


def model_target(name: str, kind: str) -> str | None:
    """The module of `models/NAME/KIND.py` (train, eval) if the voice has one."""
    module = f"models.{name}.{kind}"
    return module if importlib.util.find_spec(f"models.{name}") is not None and importlib.util.find_spec(module) else None


def voice_for_checkpoint(path: Path) -> str | None:
    """The voice whose model_class the checkpoint's JSON names (None: unknown)."""
    from models.checkpoint import read_meta

    model_class = read_meta(path)["model_class"]
    for name in voice_names():
        if voice_info(name).model_class == model_class:
            return name
    return None


def resolve(model: str) -> tuple[str, Path | None]:
    """`--model` (a voice name or a checkpoint path) -> (voice name, checkpoint or None for the shipped one).

    Raises KeyError (unknown name), FileNotFoundError (no such path) or LookupError (no voice plays it).
    """
    if model in SHIPPED:
        return model, None
    path = Path(os.path.expanduser(model))
    if path.suffix not in (".pt", ".json") and not path.with_suffix(".pt").exists():
        raise KeyError(model)
    pt = path.with_suffix(".pt")
    if not pt.exists():
        raise FileNotFoundError(str(pt))
    name = voice_for_checkpoint(pt)
    if name is None:
        raise LookupError(str(pt))
    return name, pt


def open_voice(name: str, options: VoiceOptions):
    """Build the voice `name` with `options`; the voice carries its VoiceInfo as `.info`."""
    _load(name)
    info, opener = _OPENERS[name]
    voice = opener(options)
    voice.info = info
    # a checkpoint may lack a knob its voice declares (a Char-RNN trained without a style condition)
    voice.listens = frozenset(info.listens) - frozenset(getattr(voice, "unplayable", ()))
    return voice
