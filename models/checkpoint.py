"""Checkpoints: ``NAME.pt`` holds only the weights, ``NAME.json`` everything needed to rebuild.

The JSON records the model class, its config, the event-codec version, the conditioning
spec, the data it was trained on, how it was trained and its metrics, so a checkpoint
rebuilds its model alone (nanochat's checkpoint_manager does the same).

Weights load with ``torch.load(..., weights_only=True)``: a file that carries code is
refused without running it. Every failure is a :class:`CheckpointError` whose message
is one line naming the file.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from models.events import CODEC_VERSION

FORMAT_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"  # shipped checkpoints (package data)


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message is one line naming the file."""


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(NAME.pt, NAME.json) for a path given with or without either suffix."""
    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".pt", ".json") else path
    return base.with_name(base.name + ".pt"), base.with_name(base.name + ".json")


def save_checkpoint(dir_or_path: str | os.PathLike, model: nn.Module, config: Any, meta: dict[str, Any] | None = None) -> Path:
    """Write NAME.pt (state_dict) and NAME.json (class, config, codec version, meta); returns the .pt path.

    A directory gets ``<modelclass>.pt`` inside it. Both files are written atomically.
    """
    target = Path(dir_or_path)
    if target.is_dir():
        target = target / type(model).__name__.lower()
    pt_path, json_path = checkpoint_paths(target)
    pt_path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "format": FORMAT_VERSION,
        "model_class": type(model).__name__,
        "config": dataclasses.asdict(config),
        "codec_version": CODEC_VERSION,
        **(meta or {}),
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp_pt, tmp_json = pt_path.with_suffix(".pt.tmp"), json_path.with_suffix(".json.tmp")
    torch.save(state, tmp_pt)
    tmp_json.write_text(json.dumps(record, indent=2, sort_keys=False, default=_json_default) + "\n")
    tmp_pt.replace(pt_path)
    tmp_json.replace(json_path)
    return pt_path


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    raise TypeError(f"not JSON-serializable: {type(value).__name__}")


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON record beside a checkpoint."""
    pt_path, json_path = checkpoint_paths(path)
    if not json_path.exists():
        raise CheckpointError(f"{json_path}: missing checkpoint config (expected beside {pt_path.name})")
    try:
        meta = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{json_path}: unreadable checkpoint config: {err}") from err
    if not isinstance(meta, dict) or "model_class" not in meta or "config" not in meta:
        raise CheckpointError(f"{json_path}: not a checkpoint config (needs model_class and config)")
    return meta


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a weights file safely (weights_only=True); code-carrying or broken files raise CheckpointError."""
    pt_path = Path(path)
    if not pt_path.exists():
        raise CheckpointError(f"{pt_path}: no such checkpoint file")
    try:
        with warnings.catch_warnings():  # a foreign pickle protocol is refused below, in our one line
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(pt_path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Weights only load failed" in str(err) and "truncated" not in str(err).lower():
            raise CheckpointError(f"{pt_path}: refused: the file carries code or objects other than weights (not loaded)") from err
        raise CheckpointError(f"{pt_path}: truncated or corrupt checkpoint") from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as err:
        raise CheckpointError(f"{pt_path}: truncated or corrupt checkpoint ({type(err).__name__})") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{pt_path}: not a state_dict of tensors")
    return state


def load_checkpoint(path: str | os.PathLike, expected_class: type[nn.Module], config_class: type | None = None) -> tuple[nn.Module, Any, dict[str, Any]]:
    """Rebuild ``expected_class`` from NAME.json and load NAME.pt into it; returns (model in eval mode, config, meta)."""
    pt_path, json_path = checkpoint_paths(path)
    meta = read_meta(pt_path)
    if meta["model_class"] != expected_class.__name__:
        raise CheckpointError(f"{json_path}: holds a {meta['model_class']}, expected {expected_class.__name__}")
    if meta.get("codec_version") != CODEC_VERSION:
        raise CheckpointError(f"{json_path}: event codec {meta.get('codec_version')!r} does not match this build's {CODEC_VERSION!r}")
    config_class = config_class or getattr(expected_class, "config_class")
    try:
        config = config_class(**meta["config"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{json_path}: invalid {config_class.__name__}: {err}") from err
    state = load_state_dict_file(pt_path)
    model = expected_class(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = " ".join(line.strip() for line in first[1:3]) if len(first) > 1 else first[0]
        raise CheckpointError(f"{pt_path}: config in {json_path.name} does not match the weights: {detail[:200]}") from err
    return model.eval(), config, meta


def load_charrnn(path: str | os.PathLike):
    """Load a CharRNN checkpoint: (model in eval mode, CharRNNConfig, meta); checks the conditioning spec."""
    from models.charrnn import CharRNN
    from models.conditioning import ConditionSpec

    model, config, meta = load_checkpoint(path, CharRNN)
    if config.cond_dim:
        try:
            spec = ConditionSpec.from_dict(meta["conditioning"])
        except (KeyError, TypeError) as err:
            raise CheckpointError(f"{checkpoint_paths(path)[1]}: conditioned model without a valid conditioning spec") from err
        if spec.version != ConditionSpec().version or spec.dim != config.cond_dim:
            raise CheckpointError(f"{checkpoint_paths(path)[1]}: conditioning {spec.version!r} (dim {config.cond_dim}) does not match this build's {ConditionSpec().version!r}")
    return model, config, meta


def shipped_checkpoint(name: str) -> Path:
    """Path of ``models/weights/NAME.pt`` inside the installed package."""
    path = WEIGHTS_DIR / f"{name}.pt"
    if not path.exists():
        available = sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt")) if WEIGHTS_DIR.exists() else []
        raise CheckpointError(f"{path}: no shipped checkpoint named {name!r} (available: {', '.join(available) or 'none'})")
    return path
