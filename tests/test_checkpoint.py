"""Checkpoints: weights + JSON round trip; anything unsafe or inconsistent is a one-line CheckpointError."""
import json
import pickle

import pytest
import torch

from models.charrnn.model import CharRNN, CharRNNConfig
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


# -- issue 19, items 7 and 9: hostile configs and weights are refused before anything is built ---
@pytest.mark.parametrize("key, value, fragment", [
    ("hidden_size", 256.5, "whole number"),
    ("hidden_size", "256", "whole number"),
    ("hidden_size", [256], "whole number"),
    ("hidden_size", True, "whole number"),
    ("hidden_size", 10_000, "4096"),
    ("num_layers", -3, "0..4096"),
    ("dropout", float("nan"), "finite"),
    ("dropout", "0.1", "number"),
    ("cell", ["lstm"], "string"),
])
def test_absurd_config_values_are_one_line_naming_the_key(saved, key, value, fragment):
    path, _ = saved
    edit_json(path, lambda record: record["config"].update({key: value}))
    with pytest.raises(CheckpointError) as err:
        load_charrnn(path)
    message = one_line_naming(err, path.with_suffix(".json"))
    assert key in message and fragment in message, message


def test_a_config_that_is_not_a_table_is_one_line(saved):
    path, _ = saved
    edit_json(path, lambda record: record.update(config=[1, 2]))
    with pytest.raises(CheckpointError, match="config must be a JSON object") as err:
        load_charrnn(path)
    one_line_naming(err, path.with_suffix(".json"))


def test_shapes_are_checked_against_the_config_before_the_model_is_built(saved, tmp_path):
    """hidden_size 4096 x 4 layers would allocate ~2 GB; the mismatch must be found with no allocation."""
    import subprocess
    import sys

    path, _ = saved
    edit_json(path, lambda record: record["config"].update(hidden_size=4096, num_layers=4))
    script = (
        "import resource, sys\n"
        "from models.checkpoint import CheckpointError, load_charrnn\n"
        "vsz = int(open('/proc/self/status').read().split('VmSize:')[1].split()[0]) * 1024\n"
        "resource.setrlimit(resource.RLIMIT_AS, (vsz + 600 * 2**20, resource.RLIM_INFINITY))\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "try:\n"
        f"    load_charrnn({str(path)!r})\n"
        "except CheckpointError as err:\n"
        "    print('REFUSED', err)\n"
        "print('GROWTH_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "REFUSED" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    assert "does not match the weights" in proc.stdout and "rnn.weight_hh_l0" in proc.stdout
    growth_kb = int(proc.stdout.split("GROWTH_KB")[1])
    assert growth_kb < 100 * 1024, f"loading grew RSS by {growth_kb / 1024:.0f} MB"


def test_a_zip_that_would_expand_far_beyond_its_size_is_refused_before_loading(saved):
    import zipfile

    path, _ = saved
    with zipfile.ZipFile(path) as archive:
        entries = [(info.filename, archive.read(info)) for info in archive.infolist()]
    bomb = path.with_name("bomb.pt")
    path.with_suffix(".json").replace(bomb.with_suffix(".json"))
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
        prefix = entries[0][0].split("/")[0]
        archive.writestr(f"{prefix}/data/999", b"\0" * (100 * 2**20))  # 100 MB of zeros in ~100 KB
    assert bomb.stat().st_size < 2**20
    with pytest.raises(CheckpointError, match="expand") as err:
        load_charrnn(bomb)
    one_line_naming(err, bomb)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_weights_holding_nan_or_inf_are_refused_at_load(saved, bad):
    path, _ = saved
    state = torch.load(path, weights_only=True)
    state["head.weight"].view(-1)[3] = bad
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="NaN or infinite") as err:
        load_charrnn(path)
    one_line_naming(err, path)


@pytest.mark.parametrize("value, ok", [(0.5, True), (1e-3, True), (0.0, False), (1.0, False), (-1e9, False),
                                       (float("nan"), False), (float("inf"), False), ("0.5", False), (True, False)])
def test_check_number_guards_a_probability_threshold(value, ok):
    from models.checkpoint import check_number

    if ok:
        assert check_number(value, name="threshold", where="g.json", low=0.0, high=1.0, open_low=True, open_high=True) == value
    else:
        with pytest.raises(CheckpointError, match=r"g.json: threshold must be a finite number in \(0, 1\)"):
            check_number(value, name="threshold", where="g.json", low=0.0, high=1.0, open_low=True, open_high=True)
