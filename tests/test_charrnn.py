"""CharRNN: training forward and streaming step run the same weights; states are snapshots."""
import pytest
import torch

from models.charrnn.model import CharRNN, CharRNNConfig, quantize_for_cpu


def tiny(cell="lstm", cond_dim=14, layers=2):
    torch.manual_seed(0)
    return CharRNN(CharRNNConfig(embed_dim=8, hidden_size=16, num_layers=layers, cell=cell, cond_dim=cond_dim, dropout=0.0)).eval()


def inputs(cond_dim, batch=3, steps=12):
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 388, (batch, steps), generator=g)
    cond = torch.rand(batch, steps, cond_dim, generator=g) if cond_dim else None
    return tokens, cond


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("cond_dim", [14, 0])
def test_step_by_step_equals_forward(cell, cond_dim):
    model = tiny(cell, cond_dim)
    tokens, cond = inputs(cond_dim)
    with torch.no_grad():
        full, _ = model(tokens, cond)  # (B, T, V)
        state = model.init_state(batch_size=tokens.size(0))
        for t in range(tokens.size(1)):
            logits, state = model.step(tokens[:, t], None if cond is None else cond[:, t], state)
            torch.testing.assert_close(logits, full[:, t], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_snapshot_is_a_reference_and_restoring_replays_identically(cell):
    model = tiny(cell)
    tokens, cond = inputs(14, batch=1, steps=20)
    with torch.no_grad():
        state = model.init_state()
        for t in range(5):
            _, state = model.step(tokens[:, t], cond[:, t], state)
        snapshot = state
        frozen = tuple(s.clone() for s in snapshot)

        def continuation(start_state):
            out, s = [], start_state
            for t in range(5, 20):
                logits, s = model.step(tokens[:, t], cond[:, t], s)
                out.append(logits)
            return torch.stack(out)

        first = continuation(snapshot)
        for a, b in zip(snapshot, frozen):  # stepping never wrote into the snapshot
            assert torch.equal(a, b)
        torch.testing.assert_close(continuation(snapshot), first, atol=0, rtol=0)
    assert isinstance(state, tuple) and len(state) == (2 if cell == "lstm" else 1)
    assert state[0].shape == (2, 1, 16)


def test_condition_changes_the_prediction():
    model = tiny()
    tokens, cond = inputs(14, batch=1, steps=4)
    with torch.no_grad():
        a, _ = model(tokens, cond)
        b, _ = model(tokens, cond + 1.0)
    assert not torch.allclose(a, b)


def test_loss_is_mean_cross_entropy_in_nats():
    model = tiny()
    tokens, cond = inputs(14)
    logits, loss = model(tokens[:, :-1], cond[:, :-1], tokens[:, 1:])
    want = torch.nn.functional.cross_entropy(logits.reshape(-1, 388), tokens[:, 1:].reshape(-1))
    torch.testing.assert_close(loss, want)
    assert tiny()(tokens, cond)[1] is None


def test_unconditioned_baseline_and_wrong_conditions_are_refused():
    baseline = tiny(cond_dim=0)
    tokens, _ = inputs(0)
    logits, _ = baseline(tokens)
    assert logits.shape == (3, 12, 388)
    conditioned = tiny()
    with pytest.raises(ValueError, match="conditioned"):
        conditioned(tokens)
    with pytest.raises(ValueError, match="cond must have shape"):
        conditioned(tokens, torch.zeros(3, 12, 5))


def test_config_validation():
    with pytest.raises(ValueError, match="cell"):
        CharRNNConfig(cell="rnn")
    with pytest.raises(ValueError, match="hidden_size"):
        CharRNNConfig(hidden_size=0)


def test_int8_model_streams_with_the_same_interface():
    model = tiny()
    quantized = quantize_for_cpu(tiny())
    tokens, cond = inputs(14, batch=1, steps=6)
    with torch.no_grad():
        s, q = model.init_state(), quantized.init_state()
        for t in range(6):
            a, s = model.step(tokens[:, t], cond[:, t], s)
            b, q = quantized.step(tokens[:, t], cond[:, t], q)
    assert b.shape == (1, 388)
    assert torch.corrcoef(torch.stack([a[0], b[0]]))[0, 1] > 0.95  # int8 weights, nearly the same logits


def test_time_steps_reports_percentiles_and_restores_threads():
    from models.charrnn.model import time_steps

    threads = torch.get_num_threads()
    result = time_steps(tiny(), steps=50, warmup=5)
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"] and result["steps"] == 50
    assert torch.get_num_threads() == threads


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_forward_with_state_continues_like_step(cell):
    model = tiny(cell)
    tokens, cond = inputs(14, batch=2, steps=10)
    with torch.no_grad():
        _, state = model.forward_with_state(tokens[:, :4], cond[:, :4], model.init_state(2))
        chunk, after = model.forward_with_state(tokens[:, 4:], cond[:, 4:], state)
        s = state
        for t in range(4, 10):
            logits, s = model.step(tokens[:, t], cond[:, t], s)
            torch.testing.assert_close(logits, chunk[:, t - 4], atol=1e-5, rtol=1e-5)
    for a, b in zip(after, s):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- eval: the honest likelihood
def _piece(seed, n=300):
    rng = torch.Generator().manual_seed(seed)
    return torch.randint(0, 388, (n,), generator=rng).numpy().astype("int64")


@pytest.mark.parametrize("mode", ["honest", "past_only", "told_future"])
def test_held_out_nll_modes_match_a_whole_piece_forward(mode):
    """Segments carry the state; told_future gives input i the condition of event i+1, as training does."""
    import numpy as np

    from models.charrnn.eval import held_out_nll, input_conditions
    from models.conditioning import COND_V2, extract_conditions, neutral_conditions

    model = tiny()
    events = _piece(0)
    nll, per_s, scored = held_out_nll(model, [events], COND_V2, segment=64, mode=mode)
    cond = torch.from_numpy(input_conditions(events, COND_V2, mode))
    with torch.no_grad():
        logits, _ = model(torch.from_numpy(events[None, :-1]), cond[None, :-1])
    want = torch.nn.functional.cross_entropy(logits[0], torch.from_numpy(events[1:])).item()
    assert scored == len(events) - 1 and nll == pytest.approx(want, rel=1e-5) and per_s > 0
    if mode == "told_future":
        np.testing.assert_array_equal(cond[:-1].numpy(), extract_conditions(events, COND_V2)[1:])
    if mode == "honest":
        np.testing.assert_array_equal(cond.numpy(), neutral_conditions(events, COND_V2))


def test_evaluate_all_pieces_reports_the_honest_headline(tmp_path):
    from models.charrnn.eval import evaluate, headline, likelihoods
    from models.conditioning import DEFAULT_SPEC
    from models.data import Corpus, Piece

    import numpy as np

    pieces = [Piece(tmp_path / f"p{i}.mid", f"p{i}.mid", "train" if i else "test", _piece(i, 200),
                    np.zeros((0, 4))) for i in range(3)]
    corpus = Corpus(pieces)
    model = tiny()
    test_only = evaluate(model, DEFAULT_SPEC, corpus, nll_only=True)
    every = evaluate(model, DEFAULT_SPEC, corpus, nll_only=True, all_pieces=True)
    assert test_only["pieces_scored"] == 1 and test_only["events_scored"] == 199
    assert every["pieces_scored"] == 3 and every["events_scored"] == 3 * 199
    assert {"nll_per_event", "nll_past_only_per_event", "nll_told_future_per_event"} <= set(every)
    assert every["nll_per_event"] == likelihoods(model, [p.events for p in pieces], DEFAULT_SPEC)["nll_per_event"]
    assert headline(every).startswith("honest NLL ")
    capped = evaluate(model, DEFAULT_SPEC, corpus, nll_only=True, all_pieces=True, max_events=250)
    assert capped["events_scored"] == 199 + 49 and capped["pieces_scored"] == 2
    with pytest.raises(ValueError, match="--all"):
        evaluate(model, DEFAULT_SPEC, Corpus(pieces[1:]), nll_only=True)


def test_packed_step_equals_the_lstm_step_and_leaves_the_state_untouched():
    # the voice steps with PackedStep on the CPU (faster, above all when cold): it must be the same model
    from models.charrnn.model import CharRNN, CharRNNConfig, PackedStep

    torch.manual_seed(0)
    model = CharRNN(CharRNNConfig(hidden_size=32, num_layers=2, embed_dim=16, cond_dim=14)).eval()
    packed = PackedStep(model)
    state = first = tuple(torch.randn(2, 1, 32) for _ in range(2))
    before = tuple(s.clone() for s in first)
    with torch.inference_mode():
        for token in (0, 5, 300, 387):
            tok, cond = torch.tensor([token]), torch.randn(1, 14)
            want_logits, want_state = model.step(tok, cond, state)
            got_logits, got_state = packed(tok, cond, state)
            torch.testing.assert_close(got_logits, want_logits, rtol=1e-5, atol=1e-5)
            for got, want in zip(got_state, want_state):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
            state = got_state
    assert all(torch.equal(a, b) for a, b in zip(first, before))  # snapshots are references: never written


@pytest.mark.parametrize("layers,cond_dim", [(3, 14), (2, 0)])
def test_a_prepared_half_step_finishes_under_any_condition_as_the_whole_step_would(layers, cond_dim):
    # a gesture restores a state prepared before the hand moved, then finishes it under the new condition
    from models.charrnn.model import CharRNN, CharRNNConfig, PackedStep

    torch.manual_seed(1)
    model = CharRNN(CharRNNConfig(hidden_size=32, num_layers=layers, embed_dim=16, cond_dim=cond_dim)).eval()
    packed = PackedStep(model)
    state = tuple(torch.randn(layers, 1, 32) for _ in range(2))
    with torch.inference_mode():
        tok = torch.tensor([261])
        prepared = packed.prepare(tok, state)
        for _ in range(3):
            cond = torch.randn(1, cond_dim) if cond_dim else None
            want_logits, want_state = model.step(tok, cond, state)
            got_logits, got_state = packed.finish(prepared, cond, state)
            torch.testing.assert_close(got_logits, want_logits, rtol=1e-5, atol=1e-5)
            for got, want in zip(got_state, want_state):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
