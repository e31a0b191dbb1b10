"""Checkpoints: ``NAME.pt`` holds only the weights, ``NAME.json`` everything needed to rebuild.

The JSON records the model class, its config, the event-codec version, the conditioning
spec, the data it was trained on, how it was trained and its metrics, so a checkpoint
rebuilds its model alone (nanochat's checkpoint_manager does the same).

Weights load with ``torch.load(..., weights_only=True)``: a file that carries code is
refused without running it. Every failure is a :class:`CheckpointError` whose message
is one line naming the file.

A checkpoint may come from anyone, so nothing in it is trusted before it is checked: the
config's values (types and sizes), the zip's expanded size (before ``torch.load``), the
weights' shapes against the config (on the meta device, before a byte is allocated for the
model) and the weights' values (no NaN or inf).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import typing
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from models.events import CODEC_VERSION

FORMAT_VERSION = 2  # 2: {format, model_class, config, codec_version, meta}; 1 kept meta keys at the top level
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"  # shipped checkpoints (package data)
MAX_CONFIG_INT = 4096  # any size in a config (hidden_size, layers, ...): 4096 x 4 layers is already ~2 GB
MAX_WEIGHTS_BYTES = 512 * 2**20  # a weights file, and what it expands to; the shipped ones are ~4 MB
MAX_EXPANSION = 4  # torch.save stores tensors uncompressed: a zip expanding far beyond its size is a bomb
MAX_ZIP_ENTRIES = 100_000


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message is one line naming the file."""


def checkpoint_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """(NAME.pt, NAME.json) for a path given with or without either suffix."""
    path = Path(path)
    base = path.with_suffix("") if path.suffix in (".pt", ".json") else path
    return base.with_name(base.name + ".pt"), base.with_name(base.name + ".json")


def save_checkpoint(dir_or_path: str | os.PathLike, model: nn.Module, config: Any, meta: dict[str, Any] | None = None) -> Path:
    """Write NAME.pt (state_dict) and NAME.json {format, model_class, config, codec_version, meta}; returns the .pt path.

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
        "config": config.to_dict() if hasattr(config, "to_dict") else dataclasses.asdict(config),
        "codec_version": CODEC_VERSION,
        "meta": dict(meta or {}),
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
    """The JSON record beside a checkpoint, flattened: format, model_class, config, codec_version and the meta keys."""
    pt_path, json_path = checkpoint_paths(path)
    if not json_path.exists():
        raise CheckpointError(f"{json_path}: missing checkpoint config (expected beside {pt_path.name})")
    try:
        meta = json.loads(json_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{json_path}: unreadable checkpoint config: {err}") from err
    if not isinstance(meta, dict) or "model_class" not in meta or "config" not in meta:
        raise CheckpointError(f"{json_path}: not a checkpoint config (needs model_class and config)")
    nested = meta.pop("meta", None)  # format 2 nests what training recorded; readers see one flat record
    if isinstance(nested, dict):
        meta = {**nested, **meta}
    return meta


def check_number(value: Any, *, name: str, where: str | os.PathLike, low: float = -math.inf, high: float = math.inf,
                 open_low: bool = False, open_high: bool = False) -> float:
    """`value` as a finite float within low..high (open ends where asked), else a one-line CheckpointError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low < value if open_low else low <= value) and (value < high if open_high else value <= high)
    if not ok:
        bounds = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"
        raise CheckpointError(f"{where}: {name} must be a finite number in {bounds}, got {value!r:.40}")
    return float(value)


def check_config_values(raw: Any, config_class: type, where: str | os.PathLike) -> None:
    """Refuse config values of the wrong type or an absurd size, before anything is built from them.

    Each field is checked against its annotation: ints are whole numbers in 0..MAX_CONFIG_INT (a
    float 256.5, a string "256" or a list would reach torch as a TypeError or a huge allocation),
    floats are finite, strings are strings, tuples are lists of those. Unknown keys are left to
    the config class, which names them.
    """
    if not isinstance(raw, dict):
        raise CheckpointError(f"{where}: config must be a JSON object, got {type(raw).__name__}")
    try:
        hints = typing.get_type_hints(config_class)
    except Exception:  # an annotation that cannot be resolved: fall back to the defaults' types
        hints = {f.name: type(f.default) for f in dataclasses.fields(config_class) if f.default is not dataclasses.MISSING}
    for key, value in raw.items():
        hint = hints.get(key)
        if typing.get_origin(hint) is tuple:
            item = (typing.get_args(hint) or (None,))[0]
            if not (isinstance(value, list) and len(value) <= MAX_CONFIG_INT):
                raise CheckpointError(f"{where}: config {key} must be a list, got {value!r:.40}")
            for element in value:
                _check_config_value(key, element, item, where)
        else:
            _check_config_value(key, value, hint, where)


def _check_config_value(key: str, value: Any, hint: Any, where: str | os.PathLike) -> None:
    if hint is bool:
        if not isinstance(value, bool):
            raise CheckpointError(f"{where}: config {key} must be true or false, got {value!r:.40}")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_CONFIG_INT:
            raise CheckpointError(f"{where}: config {key} must be a whole number in 0..{MAX_CONFIG_INT}, got {value!r:.40}")
    elif hint is float:
        check_number(value, name=f"config {key}", where=where, low=-1e6, high=1e6)
    elif hint is str and not (isinstance(value, str) and len(value) <= 256):
        raise CheckpointError(f"{where}: config {key} must be a string, got {value!r:.40}")


def _check_expanded_size(pt_path: Path) -> None:
    """Refuse a file, or a zip whose entries would expand, beyond what any real checkpoint needs."""
    size = pt_path.stat().st_size
    if size > MAX_WEIGHTS_BYTES:
        raise CheckpointError(f"{pt_path}: {size / 2**20:.0f} MB is larger than any usable checkpoint "
                              f"({MAX_WEIGHTS_BYTES // 2**20} MB at most); not loaded")
    if not zipfile.is_zipfile(pt_path):
        return  # the legacy format is read as it is stored: bounded by the file's size
    try:
        with zipfile.ZipFile(pt_path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise CheckpointError(f"{pt_path}: truncated or corrupt checkpoint ({type(err).__name__})") from err
    expanded = sum(info.file_size for info in infos)
    cap = min(MAX_EXPANSION * size + 64 * 2**20, MAX_WEIGHTS_BYTES)
    if len(infos) > MAX_ZIP_ENTRIES or expanded > cap:
        raise CheckpointError(f"{pt_path}: refused: would expand to {expanded / 2**20:.0f} MB in {len(infos)} entries "
                              f"(at most {cap / 2**20:.0f} MB for a {size / 2**20:.1f} MB file); not loaded")


def _check_shapes(expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], pt_path: Path, json_name: str) -> None:
    """The weights' names and shapes against the model the config describes (built on the meta device)."""
    problems = [f"{name} is {tuple(state[name].shape)} in the weights, {tuple(t.shape)} by the config"
                for name, t in expected.items() if name in state and tuple(state[name].shape) != tuple(t.shape)]
    problems += [f"{name} missing" for name in expected if name not in state]
    problems += [f"{name} unexpected" for name in state if name not in expected]
    if problems:
        more = f" (and {len(problems) - 2} more)" if len(problems) > 2 else ""
        raise CheckpointError(f"{pt_path}: config in {json_name} does not match the weights: {'; '.join(problems[:2])}{more}")


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a weights file safely (weights_only=True, size capped, finite); bad files raise CheckpointError."""
    pt_path = Path(path)
    if not pt_path.exists():
        raise CheckpointError(f"{pt_path}: no such checkpoint file")
    _check_expanded_size(pt_path)
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
    for name, tensor in state.items():  # a NaN weight plays silence or noise only once the music has started
        try:
            finite = not (tensor.is_floating_point() or tensor.is_complex()) or bool(torch.isfinite(tensor).all())
        except RuntimeError as err:  # a sparse or otherwise exotic tensor: not a weight we use
            raise CheckpointError(f"{pt_path}: weight {name} is not a plain tensor ({type(err).__name__})") from err
        if not finite:
            raise CheckpointError(f"{pt_path}: weight {name} holds NaN or infinite values; not loaded")
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
    raw = meta["config"]
    check_config_values(raw, config_class, json_path)
    try:
        config = config_class.from_dict(raw) if hasattr(config_class, "from_dict") else config_class(**raw)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{json_path}: invalid {config_class.__name__}: {err}") from err
    state = load_state_dict_file(pt_path)
    try:
        with torch.device("meta"):  # shapes only: a config of absurd sizes allocates nothing
            skeleton = expected_class(config)
    except (TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{json_path}: invalid {config_class.__name__}: {err}") from err
    _check_shapes(skeleton.state_dict(), state, pt_path, json_path.name)
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
    from models.charrnn.model import CharRNN
    from models.conditioning import SPECS, ConditionSpec

    model, config, meta = load_checkpoint(path, CharRNN)
    if config.cond_dim:
        try:
            spec = ConditionSpec.from_dict(meta["conditioning"])
        except (KeyError, TypeError) as err:
            raise CheckpointError(f"{checkpoint_paths(path)[1]}: conditioned model without a valid conditioning spec") from err
        if spec.version not in SPECS or spec.dim != config.cond_dim:
            raise CheckpointError(f"{checkpoint_paths(path)[1]}: conditioning {spec.version!r} (dim {config.cond_dim}) "
                                  f"is not one this build reads ({', '.join(SPECS)})")
    return model, config, meta


def shipped_checkpoint(name: str) -> Path:
    """Path of ``models/weights/NAME.pt`` inside the installed package."""
    path = WEIGHTS_DIR / f"{name}.pt"
    if not path.exists():
        available = sorted(p.stem for p in WEIGHTS_DIR.glob("*.pt")) if WEIGHTS_DIR.exists() else []
        raise CheckpointError(f"{path}: no shipped checkpoint named {name!r} (available: {', '.join(available) or 'none'})")
    return path
