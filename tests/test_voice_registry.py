"""The voice front door: one registry, every controller kind drives every voice, and the layering holds."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from controllers import controller_kind
from instrument.cli import main
from instrument.mapping import Mapping
from instrument.session import SessionConfig, describe_mapping, open_session_voice, session_mapping
from instrument.voices import model_help, resolve, voice_info, voice_names
from models.checkpoint import shipped_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_the_registry_lists_the_shipped_voices_without_importing_torch():
    code = ("import sys; from instrument.voices import voice_names, model_help; "
            "print(','.join(voice_names())); assert 'torch' not in sys.modules, 'torch imported'")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert {"charrnn", "dcrnn"} <= set(out.stdout.strip().split(","))
    assert all(name in model_help() for name in voice_names())


def test_a_checkpoint_path_finds_its_voice_by_model_class(tmp_path):
    assert resolve("dcrnn") == ("dcrnn", None)
    assert resolve(str(shipped_checkpoint("dcrnn"))) == ("dcrnn", shipped_checkpoint("dcrnn"))
    assert resolve(str(shipped_checkpoint("charrnn")))[0] == "charrnn"
    with pytest.raises(KeyError):
        resolve("no-such-voice")
    with pytest.raises(FileNotFoundError):
        resolve(str(tmp_path / "missing.pt"))


@pytest.mark.parametrize("command", [["train"], ["eval"]])
def test_train_and_eval_targets_come_from_the_registry(command, capsys):
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    listed = capsys.readouterr().out
    assert "charrnn" in listed and "dcrnn" in listed


@pytest.mark.parametrize("name", ["charrnn", "dcrnn", "seqae"])
@pytest.mark.parametrize("spec", ["jevois", "myo", "mouse", "osc", "replay:x.jsonl", "demo"])
def test_every_controller_kind_drives_every_shipped_voice(name, spec):
    voice = open_session_voice(SessionConfig(model=name, device="cpu"), 0)
    kind = controller_kind(spec)
    drives, warnings = describe_mapping(session_mapping(SessionConfig(model=name), voice, kind), voice, kind)
    assert drives != "nothing" and not any("no live control" in w for w in warnings), (drives, warnings)
    assert all(target.split(" -> ")[1] in voice.listens for target in drives.split(", "))


def test_a_mapping_that_leaves_a_voice_deaf_says_so():
    voice = open_session_voice(SessionConfig(model="charrnn", device="cpu"), 0)
    emg_only = Mapping.packaged("dcrnn.toml")  # noise slots and theme: the Char-RNN hears neither
    drives, warnings = describe_mapping(emg_only, voice, "emg")
    assert any("does not listen to noise_slots" in w for w in warnings)
    camera = Mapping.packaged("charrnn_camera.toml")
    drives, warnings = describe_mapping(camera, voice, "emg")  # a Myo sends no x or y
    assert drives == "nothing" and any("no live control" in w for w in warnings)


def test_rollbacks_follow_only_the_knobs_a_voice_listens_to():
    from instrument.controls import Controls, control_distance

    listens = voice_info("charrnn").listens
    assert control_distance(Controls(register=60.0, noise_slots=(0.0,) * 8),
                            Controls(register=60.0, noise_slots=(1.0,) * 8), listens) == 0.0
    assert control_distance(Controls(register=60.0), Controls(register=72.0), listens) == 1.0


def _imports(package: str) -> set[tuple[str, str]]:
    """(file, imported top-level module) for every import in a package."""
    found = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {(str(path.relative_to(ROOT)), alias.name.split(".")[0]) for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add((str(path.relative_to(ROOT)), node.module.split(".")[0]))
    return found


def test_the_layering_holds():
    assert not [f for f, m in _imports("models") if m == "instrument"], "models/ must not import instrument/"
    assert not [f for f, m in _imports("controllers") if m in ("instrument", "torch")], \
        "controllers/ must import neither instrument/ nor torch"


def test_no_import_cycle_among_the_packages():
    modules: dict[str, Path] = {}
    for package in ("instrument", "controllers", "models"):
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():  # module-level imports: the ones that run at import time
        deps = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps |= {c for c in (node.module, *(f"{node.module}.{a.name}" for a in node.names)) if c in modules}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in modules}
        graph[name] = deps - {name}
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for dep in graph[node]:
            assert state.get(dep) != 1, f"import cycle: {' -> '.join(stack[stack.index(dep):] + [dep])}"
            if dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [])


def test_a_voice_that_names_no_mapping_plays_with_the_shipped_default():
    from instrument.voices.registry import VoiceInfo

    class Bare:
        info = VoiceInfo(name="bare", summary="x", listens=("register",), model_class="X", weights="x.pt")
        listens = frozenset({"register"})
        name = "bare"

    mapping = session_mapping(SessionConfig(), Bare(), "camera")
    assert mapping.source == "default_mapping.toml" and mapping.register is not None
