"""Checkpoints: weights + JSON round trip; anything unsafe or inconsistent is a one-line CheckpointError."""
import json
import pickle

import pytest
import torch

from models.charrnn import CharRNN, CharRNNConfig
from models.checkpoint import CheckpointError, load_charrnn, load_checkpoint, save_checkpoint, shipped_checkpoint
from models.conditioning import DEFAULT_SPEC
from models.events import CODEC_VERSION


def tiny():
    torch.manual_seed(0)
    config = CharRNNConfig(embed_dim=8, hidden_size=16, num_layers=1, dropout=0.0)
    return CharRNN(config).eval(), config


@pytest.fixture
def saved(tmp_path):
    model, config = tiny()
    path = save_checkpoint(tmp_path / "net", model, config, {"conditioning": DEFAULT_SPEC.to_dict(), "metrics": {"valid_nll_per_event": 2.5}})
    return path, model


def one_line_naming(err, path):
    message = str(err.value)
    assert "\n" not in message and path.name in message
    return message


def test_round_trip_rebuilds_the_same_model(saved):
    path, model = saved
    assert path.name == "net.pt" and path.with_suffix(".json").exists()
    loaded, config, meta = load_charrnn(path)
    assert config == model.config and meta["codec_version"] == CODEC_VERSION and meta["metrics"]["valid_nll_per_event"] == 2.5
    tokens, cond = torch.randint(0, 388, (2, 5)), torch.rand(2, 5, 14)
    torch.testing.assert_close(loaded(tokens, cond)[0], model(tokens, cond)[0])
    assert isinstance(torch.load(path, weights_only=True), dict)  # the .pt holds only a state_dict


def test_directory_target_uses_the_class_name(tmp_path):
    model, config = tiny()
    assert save_checkpoint(tmp_path, model, config, {"conditioning": DEFAULT_SPEC.to_dict()}) == tmp_path / "charrnn.pt"


class WritesMarker:
    """Unpickling this runs code: it would create a marker file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_pickle_carrying_code_is_refused_without_running(saved, tmp_path, writer):
    path, _ = saved
    marker = tmp_path / "pwned"
    payload = {"embed.weight": WritesMarker(marker)}
    if writer == "torch":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload))
    with pytest.raises(CheckpointError) as err:
        load_charrnn(path)
    assert not marker.exists()
    assert "refused" in one_line_naming(err, path) or "corrupt" in str(err.value)


def test_truncated_file(saved):
    path, _ = saved
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated") as err:
        load_charrnn(path)
    one_line_naming(err, path)


def edit_json(path, change) -> None:
    """Rewrite a checkpoint's JSON beside it after `change(record)` edits it in place."""
    json_path = path.with_suffix(".json")
    record = json.loads(json_path.read_text())
    change(record)
    json_path.write_text(json.dumps(record))


def test_config_that_does_not_match_the_weights(saved):
    path, _ = saved
    edit_json(path, lambda record: record["config"].update(hidden_size=32))
    with pytest.raises(CheckpointError, match="does not match the weights") as err:
        load_charrnn(path)
    one_line_naming(err, path)


def test_codec_version_mismatch(saved):
    path, _ = saved
    edit_json(path, lambda record: record.update(codec_version="perf999"))
    with pytest.raises(CheckpointError, match="codec") as err:
        load_charrnn(path)
    one_line_naming(err, path.with_suffix(".json"))


def test_missing_json_wrong_class_and_missing_shipped_model(saved):
    path, _ = saved
    json_path = path.with_suffix(".json")
    record = json.loads(json_path.read_text())
    with pytest.raises(CheckpointError, match="expected Linear"):
        load_checkpoint(path, torch.nn.Linear, CharRNNConfig)
    json_path.unlink()
    with pytest.raises(CheckpointError, match="missing") as err:
        load_charrnn(path)
    one_line_naming(err, json_path)
    json_path.write_text(json.dumps({**record, "conditioning": None}))
    with pytest.raises(CheckpointError, match="conditioning"):
        load_charrnn(path)
    with pytest.raises(CheckpointError, match="no shipped checkpoint"):
        shipped_checkpoint("no-such-model")
