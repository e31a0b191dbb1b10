"""Hostile or broken checkpoints (issue 7, item 5), met the way a user meets them: `--model PATH`.

A file that would run code when unpickled is refused without running it; a truncated
file, a config that does not match the weights, or a codec version mismatch ends
`instrument play` and `instrument bench model` with one line naming the file, exit
code 2 and no traceback. `test_checkpoint.py` covers the loader itself; this covers
the command line, both model kinds (Char-RNN and DCRNN), and a real process.
"""

from __future__ import annotations

import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from instrument.cli import main
from models.charrnn.model import CharRNN, CharRNNConfig
from models.checkpoint import save_checkpoint
from models.conditioning import DEFAULT_SPEC
from models.dcrnn.model import DCRNNConfig, Generator, save_generator

MARKER_NAME = "code-ran.marker"


class RunsCode:
    """Unpickling this would create a marker file (a stand-in for any command)."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """name -> broken checkpoint path (.pt with its .json beside it), plus 'good' ones."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    config = CharRNNConfig(embed_dim=8, hidden_size=16, num_layers=1, dropout=0.0)
    good = save_checkpoint(root / "good", CharRNN(config), config, meta={"conditioning": DEFAULT_SPEC.to_dict()})
    meta = json.loads(good.with_suffix(".json").read_text())

    def variant(name: str, *, weights: bytes | None = None, meta_change: dict | None = None) -> Path:
        pt = root / f"{name}.pt"
        pt.write_bytes(good.read_bytes() if weights is None else weights)
        record = json.loads(json.dumps(meta))
        for key, value in (meta_change or {}).items():
            if key == "config":
                record["config"].update(value)
            else:
                record[key] = value
        pt.with_suffix(".json").write_text(json.dumps(record))
        return pt

    marker = root / MARKER_NAME
    zipped = root / "tmp_evil.pt"
    torch.save({"rnn.weight": RunsCode(marker)}, zipped)  # torch's zip format with a code-running object
    paths = {
        "good": good,
        "code (torch.save)": variant("evil_torch", weights=zipped.read_bytes()),
        "code (plain pickle)": variant("evil_pickle", weights=pickle.dumps({"w": RunsCode(marker)})),
        "truncated": variant("truncated", weights=good.read_bytes()[: good.stat().st_size // 2]),
        "empty": variant("empty", weights=b""),
        "config mismatch": variant("mismatch", meta_change={"config": {"hidden_size": 32}}),
        "codec mismatch": variant("codec", meta_change={"codec_version": "perf999-v0"}),
    }
    torch.manual_seed(0)
    gen = Generator(DCRNNConfig(rnn_a_hidden=16, rnn_b_hidden=16, level_dim=8, octave_channels=8, critic_channels=8))
    save_generator(root / "dcrnn_good.pt", gen)
    dcrnn_json = (root / "dcrnn_good.json").read_text()
    for name, weights in (("dcrnn code", zipped.read_bytes()),
                          ("dcrnn truncated", (root / "dcrnn_good.pt").read_bytes()[:1000])):
        pt = root / f"{name.replace(' ', '_')}.pt"
        pt.write_bytes(weights)
        pt.with_suffix(".json").write_text(dcrnn_json)
        paths[name] = pt
    mismatch = root / "dcrnn_mismatch.pt"
    shutil.copy(root / "dcrnn_good.pt", mismatch)
    record = json.loads(dcrnn_json)
    record["config"]["rnn_b_hidden"] = 24
    mismatch.with_suffix(".json").write_text(json.dumps(record))
    paths["dcrnn mismatch"] = mismatch
    zipped.unlink()
    return paths


BROKEN = ["code (torch.save)", "code (plain pickle)", "truncated", "empty", "config mismatch", "codec mismatch",
          "dcrnn code", "dcrnn truncated", "dcrnn mismatch"]
WHAT = {"code (torch.save)": "refused", "code (plain pickle)": "refused", "dcrnn code": "refused",
        "truncated": "truncated", "empty": "truncated", "dcrnn truncated": "truncated",
        "config mismatch": "does not match the weights", "dcrnn mismatch": "does not match the weights",
        "codec mismatch": "codec"}


def one_clear_line(stderr: str, path: Path, what: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr
    assert len(lines) == 1, stderr
    assert path.stem in lines[0] and what in lines[0] and "error" in lines[0]
    return lines[0]


@pytest.mark.parametrize("case", BROKEN)
def test_play_with_a_broken_checkpoint_says_so_in_one_line(checkpoints, case, capsys, tmp_path):
    path = checkpoints[case]
    code = main(["play", "--model", str(path), "--controller", "demo", "--no-midi", "--duration", "1",
                 "--record", str(tmp_path / "take.mid")])
    err = capsys.readouterr().err
    assert code == 2, err
    one_clear_line(err, path, WHAT[case])
    assert not (path.parent / MARKER_NAME).exists(), "the checkpoint's code ran"


@pytest.mark.parametrize("case", [c for c in BROKEN if not c.startswith("dcrnn")])
def test_bench_model_with_a_broken_checkpoint_says_so_in_one_line(checkpoints, case, capsys):
    path = checkpoints[case]
    code = main(["bench", "model", "--model", str(path), "--steps", "5"])
    err = capsys.readouterr().err
    assert code == 2, err
    one_clear_line(err, path, WHAT[case])
    assert not (path.parent / MARKER_NAME).exists(), "the checkpoint's code ran"


@pytest.mark.parametrize("command, case", [("play", "code (plain pickle)"), ("bench model", "code (torch.save)")])
def test_a_code_carrying_checkpoint_is_refused_in_a_real_process(checkpoints, case, command, tmp_path):
    path = checkpoints[case]
    argv = [sys.executable, "-m", "instrument", *command.split(), "--model", str(path)]
    argv += (["--controller", "demo", "--no-midi", "--duration", "1", "--record", str(tmp_path / "take.mid")]
             if command == "play" else ["--steps", "5"])
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    line = one_clear_line(proc.stderr, path, "refused")
    assert str(path) in line
    assert not (path.parent / MARKER_NAME).exists(), "the checkpoint's code ran"


def test_the_good_checkpoints_still_load(checkpoints, capsys):
    """The fixtures are broken only where they say: the same files, intact, are accepted."""
    assert main(["bench", "model", "--model", str(checkpoints["good"]), "--steps", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"]["parameters"] > 0 and report["voice_next_events_cpu"]["p99_ms"] > 0
    from models.dcrnn.model import load_generator

    assert load_generator(checkpoints["good"].parent / "dcrnn_good.pt").config.rnn_b_hidden == 16


# -- issue 19, items 7 and 9: hostile configs and weights, met through the command line ----------
def hostile_variant(checkpoints, tmp_path, name: str, *, config: dict | None = None, threshold=None,
                    weights=None) -> Path:
    """A copy of a good checkpoint (Char-RNN, or DCRNN when `threshold` is given) with one thing changed."""
    source = checkpoints["good"].parent / ("dcrnn_good.pt" if threshold is not None else "good.pt")
    pt = tmp_path / f"{name}.pt"
    shutil.copy(source, pt)
    record = json.loads(source.with_suffix(".json").read_text())
    record["config"].update(config or {})
    if threshold is not None:
        record["meta"]["threshold"] = threshold
    pt.with_suffix(".json").write_text(json.dumps(record))
    if weights is not None:
        state = torch.load(source, weights_only=True)
        weights(state)
        torch.save(state, pt)
    return pt


def poison(state) -> None:
    next(t for t in state.values() if t.is_floating_point()).view(-1)[0] = float("nan")


HOSTILE = {
    "hidden_float": ({"config": {"hidden_size": 256.5}}, "hidden_size"),
    "hidden_string": ({"config": {"hidden_size": "256"}}, "hidden_size"),
    "hidden_list": ({"config": {"hidden_size": [256]}}, "hidden_size"),
    "hidden_huge": ({"config": {"hidden_size": 10_000}}, "4096"),
    "nan_weights": ({"weights": poison}, "NaN or infinite"),
    "dcrnn_threshold_negative": ({"threshold": -1e9}, "threshold"),
    "dcrnn_threshold_nan": ({"threshold": float("nan")}, "threshold"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_play_refuses_hostile_configs_and_weights_in_one_line(checkpoints, tmp_path, name, capsys):
    change, what = HOSTILE[name]
    path = hostile_variant(checkpoints, tmp_path, name, **change)
    code = main(["play", "--model", str(path), "--controller", "demo", "--no-midi", "--duration", "1",
                 "--record", str(tmp_path / "take.mid")])
    err = capsys.readouterr().err
    assert code == 2, err
    one_clear_line(err, path, what)
