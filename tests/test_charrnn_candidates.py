"""Issue #16's Char-RNN candidates: the attention-LSTM and the streaming transformer.

For each: steps equal the whole-sequence forward (teacher forcing), segments carried through
the state equal one pass, the key/value cache stays within its window, states are never
written in place (the voice's snapshot/restore), the checkpoint format round-trips, and the
LSTM/GRU configs are written exactly as before.
"""
from __future__ import annotations

import pytest
import torch

from models.charrnn.attention import lag_index, windowed_attention
from models.charrnn.model import CharRNN, CharRNNConfig, quantize_for_cpu
from models.charrnn.train import parse_arch
from models.checkpoint import load_charrnn, save_checkpoint
from models.conditioning import DEFAULT_SPEC

CELLS = ("attn-lstm", "transformer")


def _model(cell: str, window: int = 5, layers: int = 2, cond_dim: int = 14) -> CharRNN:
    torch.manual_seed(0)
    config = CharRNNConfig(embed_dim=8, hidden_size=16, num_layers=layers, cell=cell, cond_dim=cond_dim,
                           dropout=0.0, heads=2, window=window)
    return CharRNN(config).eval()


def _inputs(batch: int = 3, steps: int = 23, cond_dim: int = 14) -> tuple[torch.Tensor, torch.Tensor | None]:
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 388, (batch, steps), generator=generator)
    cond = torch.rand(batch, steps, cond_dim, generator=generator) if cond_dim else None
    return tokens, cond


def _stepped(model: CharRNN, tokens: torch.Tensor, cond: torch.Tensor | None, state=None):
    state = model.init_state(tokens.size(0)) if state is None else state
    outputs = []
    for t in range(tokens.size(1)):
        logits, state = model.step(tokens[:, t], None if cond is None else cond[:, t], state)
        outputs.append(logits)
    return torch.stack(outputs, 1), state


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("cond_dim", [14, 0])
def test_steps_equal_teacher_forced_forward(cell: str, cond_dim: int) -> None:
    model = _model(cell, cond_dim=cond_dim)
    tokens, cond = _inputs(cond_dim=cond_dim)  # 23 steps: several times the window of 5
    with torch.no_grad():
        full, _ = model(tokens, cond)  # (B, T, V)
        stepped, _ = _stepped(model, tokens, cond)
    assert full.shape == stepped.shape == (3, 23, 388)
    torch.testing.assert_close(stepped, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_segments_through_state_equal_one_pass(cell: str) -> None:
    model = _model(cell)
    tokens, cond = _inputs()
    with torch.no_grad():
        full, _ = model(tokens, cond)
        first, state = model.forward_with_state(tokens[:, :3], cond[:, :3], model.init_state(3))  # shorter than the window
        second, state = model.forward_with_state(tokens[:, 3:15], cond[:, 3:15], state)
        _, stepped_state = _stepped(model, tokens[:, :15], cond[:, :15])
        third, _ = model.forward_with_state(tokens[:, 15:], cond[:, 15:], stepped_state)  # a stepped state carries on
    torch.testing.assert_close(torch.cat([first, second, third], 1), full, atol=1e-5, rtol=1e-5)
    for a, b in zip(state, stepped_state):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_cache_window_is_bounded(cell: str) -> None:
    model = _model(cell, window=4)
    tokens, cond = _inputs(batch=1, steps=50)
    with torch.no_grad():
        state = model.init_state(1)
        shapes = [tuple(s.shape) for s in state]
        for t in range(50):
            _, state = model.step(tokens[:, t], cond[:, t], state)
            assert [tuple(s.shape) for s in state] == shapes  # never grows
        _, state = model.forward_with_state(tokens, cond, model.init_state(1))
        assert [tuple(s.shape) for s in state] == shapes
    caches = state[2:] if cell == "attn-lstm" else state
    for cache in caches:
        assert cache.shape[3] == 3  # (2, B, heads, window-1, d): the window minus the current step


def test_transformer_sees_only_its_windows() -> None:
    """2 layers with a window of 3 reach 2 x (3 - 1) = 4 events back: an older event changes nothing."""
    model = _model("transformer", window=3, layers=2)
    tokens, cond = _inputs(batch=1, steps=12)
    changed = tokens.clone()
    changed[0, 0] = (tokens[0, 0] + 1) % 388
    with torch.no_grad():
        a, _ = model(tokens, cond)
        b, _ = model(changed, cond)
    assert not torch.allclose(a[0, 4], b[0, 4])  # 4 events back: still seen
    torch.testing.assert_close(a[0, 5:], b[0, 5:], atol=0, rtol=0)  # beyond: nothing


def test_windowed_attention_masks_and_chunks() -> None:
    slot, valid = lag_index(4, 3)
    assert valid.sum(1).tolist() == [3, 3, 3, 3]  # every query sees exactly the window
    assert slot[valid].view(4, 3).tolist() == [[0, 1, 2]] * 4  # oldest first, the query itself last
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 2, 40, 8), torch.randn(2, 2, 44, 8), torch.randn(2, 2, 44, 8)
    bias = torch.randn(2, 5)
    torch.testing.assert_close(windowed_attention(q, k, v, bias, chunk=7), windowed_attention(q, k, v, bias, chunk=128))


@pytest.mark.parametrize("cell", CELLS)
def test_state_is_never_modified_in_place(cell: str) -> None:
    """The voice's snapshot is a reference to the state: stepping on must leave it as it was."""
    model = _model(cell)
    tokens, cond = _inputs(batch=1, steps=8)
    with torch.no_grad():
        _, snapshot = _stepped(model, tokens[:, :4], cond[:, :4])
        kept = tuple(s.clone() for s in snapshot)
        first, _ = _stepped(model, tokens[:, 4:], cond[:, 4:], snapshot)
        for a, b in zip(snapshot, kept):
            assert torch.equal(a, b)
        again, _ = _stepped(model, tokens[:, 4:], cond[:, 4:], snapshot)  # restore and replay
    assert torch.equal(first, again)


@pytest.mark.parametrize("cell", CELLS)
def test_checkpoint_round_trip(cell: str, tmp_path) -> None:
    model = _model(cell)
    meta = {"conditioning": DEFAULT_SPEC.to_dict()}
    path = save_checkpoint(tmp_path / "candidate", model, model.config, meta)
    loaded, config, _ = load_charrnn(path)
    assert config == model.config and config.to_dict()["cell"] == cell and config.to_dict()["window"] == 5
    tokens, cond = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(tokens, cond)[0], model(tokens, cond)[0], atol=0, rtol=0)
    assert not [k for k in loaded.state_dict() if "slot_bias" in k and cell == "transformer"]  # ALiBi is not a weight


@pytest.mark.parametrize("cell", CELLS)
def test_int8_model_steps(cell: str) -> None:
    model = quantize_for_cpu(_model(cell))
    tokens, cond = _inputs(batch=1, steps=5)
    with torch.no_grad():
        logits, state = _stepped(model, tokens, cond)
    assert logits.shape == (1, 5, 388) and torch.isfinite(logits).all()


def test_arch_strings_and_defaults() -> None:
    assert parse_arch("attn-lstm:2x256") == ("attn-lstm", 2, 256)
    assert parse_arch("transformer:4x128") == ("transformer", 4, 128)
    config = CharRNNConfig(cell="transformer", num_layers=4, hidden_size=128)
    assert (config.heads, config.window, config.ff_size) == (4, 64, 512)
    assert CharRNNConfig(**config.to_dict()) == config  # what the JSON holds rebuilds the same model
    assert (CharRNNConfig(cell="attn-lstm").heads, CharRNNConfig(cell="attn-lstm").window) == (4, 32)
    with pytest.raises(ValueError):
        CharRNNConfig(cell="transformer", hidden_size=30, heads=4)
    with pytest.raises(ValueError):
        CharRNNConfig(cell="attn-lstm", window=1)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_lstm_and_gru_configs_are_written_as_before(cell: str) -> None:
    keys = set(CharRNNConfig(cell=cell).to_dict())
    assert keys == {"vocab_size", "embed_dim", "hidden_size", "num_layers", "cell", "cond_dim", "dropout"}
    assert not hasattr(CharRNN(CharRNNConfig(cell=cell)), "core") or CharRNN(CharRNNConfig(cell=cell)).core is None
