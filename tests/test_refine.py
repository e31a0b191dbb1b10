"""The Refine nets: note tables, causal velocity features and net, stretch and restore, refine functions, train/eval."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint
from models.refine.duration import (
    FEATURE_SETS,
    PHRASE_GROUPS,
    STRETCH_RANGE,
    DurationNet,
    DurationNetConfig,
    duration_features,
    interval_mask,
    refine_durations,
    restore_timing,
    stretch,
)
from models.refine.live_duration import (
    LIVE_FEATURES,
    LiveDurationNet,
    LiveDurationNetConfig,
    NumpyGRUStep,
    causal_features,
    restore_durations,
    safe_end,
)
from models.refine.notes import END, PITCH, START, VELOCITY, as_table, from_table, group_stats, onset_groups
from models.refine.velocity import VelocityNet, VelocityNetConfig, heuristic_velocities, refine_velocities, velocity_features
from tests.test_seqae import write_corpus


def piece(seed: int = 0, groups: int = 40) -> list[tuple[int, int, float, float]]:
    """Notes (pitch, velocity, start_s, end_s): a chord or a lone note every ~0.25 s, slightly rolled chords."""
    rng = np.random.default_rng(seed)
    notes, t = [], 0.0
    for _ in range(groups):
        size = int(rng.integers(1, 4))
        for k in range(size):
            notes.append((int(rng.integers(40, 90)), int(rng.integers(30, 100)), t + 0.005 * k, t + float(rng.uniform(0.1, 0.8))))
        t += float(rng.choice([0.25, 0.5]))
    return notes


# ----------------------------------------------------------------------------- note tables
def test_as_table_and_from_table_round_trip_in_the_original_order():
    notes = piece(1)[::-1]  # any input order
    table, order = as_table(notes)
    assert np.all(np.diff(table[:, START]) >= 0)
    assert from_table(table, order) == [(int(p), int(v), float(s), float(e)) for p, v, s, e in notes]


def test_onset_groups_and_ranks_from_the_top():
    table, _ = as_table([(60, 80, 0.0, 1.0), (64, 80, 0.01, 1.0), (67, 80, 0.02, 1.0), (72, 80, 0.5, 1.0)])
    groups = onset_groups(table[:, START])
    assert groups.tolist() == [0, 0, 0, 1]
    stats = group_stats(table, groups)
    assert stats["size"].tolist() == [3, 3, 3, 1]
    assert stats["rank"].tolist() == [2, 1, 0, 0]  # 67 is the chord's top voice


# ----------------------------------------------------------------------------- velocity
def test_velocity_features_are_causal_and_never_read_velocities():
    table, _ = as_table(piece(2))
    features = velocity_features(table)
    changed = table.copy()
    changed[:, VELOCITY] = 1  # velocities are not an input
    assert np.array_equal(velocity_features(changed), features)
    groups = onset_groups(table[:, START])
    cut = int(np.searchsorted(groups, groups[len(groups) // 2]))  # the first note of a middle group
    future = table.copy()
    future[cut:, PITCH] = 100 - future[cut:, PITCH]  # rewrite everything from that group on
    future[cut:, END] += 3.0
    assert np.allclose(velocity_features(future)[:cut], features[:cut])


def test_velocity_net_is_causal_in_note_order():
    torch.manual_seed(0)
    net = VelocityNet(VelocityNetConfig(hidden_size=8, mlp_size=8)).eval()
    x = torch.randn(1, 20, VelocityNetConfig.num_features)
    y = x.clone()
    y[0, 12:] = torch.randn(8, VelocityNetConfig.num_features)
    with torch.no_grad():
        assert torch.allclose(net(x)[0][0, :12], net(y)[0][0, :12])


def test_refine_velocities_keeps_notes_and_gives_midi_velocities():
    torch.manual_seed(0)
    net = VelocityNet(VelocityNetConfig(hidden_size=8, mlp_size=8))
    notes = piece(3)
    out = refine_velocities(notes, net)
    assert [(p, s, e) for p, _, s, e in out] == [(p, s, e) for p, _, s, e in notes]
    assert all(isinstance(v, int) and 1 <= v <= 127 for _, v, _, _ in out)
    assert refine_velocities([], net) == []


def test_spread_widens_velocities_without_changing_their_order():
    from models.refine.velocity import predict_velocities

    torch.manual_seed(1)
    net = VelocityNet(VelocityNetConfig(hidden_size=8, mlp_size=8))
    table, _ = as_table(piece(8))
    plain, wide = predict_velocities(table, net), predict_velocities(table, net, spread=2.0)
    assert wide.std() > plain.std()
    assert np.all(np.diff(wide[np.lexsort((wide, plain))]) >= 0)  # a louder note stays at least as loud


def test_heuristic_plays_chord_tops_louder_than_the_rest():
    table, _ = as_table([(60, 0, 0.0, 1.0), (64, 0, 0.0, 1.0), (67, 0, 0.0, 1.0), (72, 0, 0.5, 1.0)])
    assert heuristic_velocities(table, single=70, top=80, inner=55).tolist() == [55, 55, 80, 70]


# ----------------------------------------------------------------------------- duration
def test_stretch_factors_lie_in_the_range_and_chords_stay_chords():
    table, _ = as_table(piece(4))
    stretched, log_f, log_g = stretch(table, np.random.default_rng(0))
    low, high = np.log(STRETCH_RANGE[0]) - 1e-9, np.log(STRETCH_RANGE[1]) + 1e-9
    assert np.all((log_f >= low) & (log_f <= high)) and np.all((log_g >= low) & (log_g <= high))
    assert np.array_equal(onset_groups(stretched[:, START]), onset_groups(table[:, START]))
    durations = (stretched[:, END] - stretched[:, START]) / (table[:, END] - table[:, START])
    assert np.allclose(np.log(durations), log_g)


def _runs(values: np.ndarray) -> list[int]:
    """Lengths of the runs of equal consecutive values."""
    cuts = np.flatnonzero(np.diff(values) != 0) + 1
    return np.diff(np.concatenate([[0], cuts, [len(values)]])).tolist()


def test_phrase_stretch_holds_a_tempo_and_a_legato_factor_over_segments_of_onset_groups():
    table, _ = as_table(piece(4, groups=400))
    stretched, log_f, log_g = stretch(table, np.random.default_rng(0), kind="phrase")
    low, high = np.log(STRETCH_RANGE[0]) - 1e-9, np.log(STRETCH_RANGE[1]) + 1e-9
    assert np.all((log_f >= low) & (log_f <= high)) and np.all((log_g >= low) & (log_g <= high))
    assert np.array_equal(onset_groups(stretched[:, START]), onset_groups(table[:, START]))
    groups = onset_groups(table[:, START])
    first = np.flatnonzero(np.diff(np.concatenate([[-1], groups])))  # each group's first note
    interval_runs, legato_runs = _runs(log_f[first][:-1]), _runs(log_g[first])  # per group (the last has no interval)
    for runs in (interval_runs, legato_runs):
        assert len(runs) > 5 and all(PHRASE_GROUPS[0] <= r <= PHRASE_GROUPS[1] for r in runs[:-1])  # the last may be cut
    assert interval_runs != legato_runs  # durations have segments of their own
    note_f = stretch(table, np.random.default_rng(0), kind="note")[1][first][:-1]
    assert np.mean(np.array(_runs(note_f)) == 1) > 0.9  # per note: a factor of its own
    with pytest.raises(ValueError, match="phrase"):
        stretch(table, np.random.default_rng(0), kind="bar")


def test_piece_features_see_a_phrase_stretch_but_not_a_uniform_tempo_change():
    table, _ = as_table(piece(9, groups=300))
    features = duration_features(table, "piece")
    assert features.shape == (len(table), FEATURE_SETS["piece"]) and np.isfinite(features).all()
    assert np.allclose(features[:, :11], duration_features(table))  # the first net's columns come first
    slower = table.copy()
    slower[:, START:END + 1] *= 1.15  # the same piece played slower: nothing to restore
    relative = list(range(11, FEATURE_SETS["piece"]))  # intervals and durations against the piece's own
    assert np.allclose(duration_features(slower, "piece")[:, relative], features[:, relative], atol=1e-5)
    stretched = stretch(table, np.random.default_rng(3), kind="phrase")[0]
    assert not np.allclose(duration_features(stretched, "piece")[:, relative], features[:, relative], atol=1e-2)


def test_grid_features_extend_the_piece_set_and_read_note_values_against_the_beat():
    table, _ = as_table(piece(9, groups=300))  # intervals of 0.25 and 0.5 s: on a beat grid
    features = duration_features(table, "grid")
    assert features.shape == (len(table), FEATURE_SETS["grid"]) and np.isfinite(features).all()
    assert np.allclose(features[:, :FEATURE_SETS["piece"]], duration_features(table, "piece"))
    new = list(range(FEATURE_SETS["piece"], FEATURE_SETS["grid"]))
    slower = table.copy()
    slower[:, START:END + 1] *= 1.15
    assert np.allclose(duration_features(slower, "grid")[:, new], features[:, new], atol=1e-5)
    ioi_cos = features[:, FEATURE_SETS["piece"] + 1]  # cos of the interval's phase: 1 on whole note values
    assert np.mean(ioi_cos > 0.99) > 0.9 and features[0, -2] > 0.95  # and the piece's intervals are sharp on it
    stretched = stretch(table, np.random.default_rng(3), kind="note")[0]
    assert duration_features(stretched, "grid")[0, -2] < features[0, -2] - 0.05


def test_a_net_warm_started_on_a_wider_feature_set_computes_the_same():
    from models.refine.train import widened

    torch.manual_seed(0)
    narrow = DurationNet(DurationNetConfig(num_features=19, features="piece", hidden_size=8, mlp_size=8)).eval()
    wide = DurationNet(DurationNetConfig(num_features=29, features="grid", hidden_size=8, mlp_size=8)).eval()
    wide.load_state_dict(widened(narrow.state_dict(), wide.state_dict()))
    features = torch.from_numpy(duration_features(as_table(piece(4))[0], "grid"))[None]
    assert torch.allclose(wide(features)[0], narrow(features[..., :19])[0])


def test_duration_config_names_its_features_and_stretch_and_an_old_config_keeps_the_first_nets():
    old = DurationNetConfig(num_features=11, hidden_size=64, mlp_size=64)  # a JSON saved before the fields existed
    assert (old.features, old.stretch) == ("local", "note")
    assert DurationNetConfig(num_features=19, features="piece", stretch="phrase").to_dict()["stretch"] == "phrase"
    with pytest.raises(ValueError, match="num_features"):
        DurationNetConfig(num_features=11, features="piece")
    with pytest.raises(ValueError, match="stretch"):
        DurationNetConfig(stretch="bar")


class _Oracle(DurationNet):
    """A Duration Net that predicts the true factors: restoring must give the original timing back."""

    def __init__(self, log_f: np.ndarray, log_g: np.ndarray):
        super().__init__(DurationNetConfig(hidden_size=4, mlp_size=4))
        self.answer = torch.from_numpy(np.stack([log_f, log_g], axis=1)).float()[None]

    def forward(self, features, targets=None, mask=None):
        return self.answer.double(), None


@pytest.mark.parametrize("kind", ["note", "phrase"])
def test_restore_with_the_true_factors_gives_the_original_timing(kind):
    table, _ = as_table(piece(5))
    stretched, log_f, log_g = stretch(table, np.random.default_rng(1), kind=kind)
    restored = restore_timing(stretched, _Oracle(log_f, log_g), shared_ends=False)  # the division alone
    assert np.allclose(restored[:, START], table[:, START], atol=1e-6)
    assert np.allclose(restored[:, END], table[:, END], atol=1e-6)


def test_duration_features_shape_and_interval_mask():
    table, _ = as_table(piece(6))
    features = duration_features(table)
    assert features.shape == (len(table), DurationNetConfig.num_features) and np.isfinite(features).all()
    mask = interval_mask(table)
    assert not mask[-1] and mask.sum() >= len(np.unique(onset_groups(table[:, START]))) - 1


def test_refine_durations_keeps_pitches_order_and_positive_durations():
    torch.manual_seed(0)
    net = DurationNet(DurationNetConfig(hidden_size=8, mlp_size=8))
    notes = piece(7)
    out = refine_durations(notes, net)
    assert [(p, v) for p, v, _, _ in out] == [(p, v) for p, v, _, _ in notes]
    assert all(e > s for _, _, s, e in out)
    starts = [s for _, _, s, _ in sorted(out, key=lambda n: n[2])]
    assert starts[0] == pytest.approx(min(s for _, _, s, _ in notes))
    assert refine_durations(notes[:1], net) == [tuple(notes[0])]


def test_grid_deviation_is_zero_on_a_regular_grid():
    from models.refine.eval import grid_deviation_ms

    table, _ = as_table([(60, 80, 0.25 * i, 0.25 * i + 0.2) for i in range(40)])
    assert grid_deviation_ms(table) == pytest.approx(0.0, abs=1e-6)


# ----------------------------------------------------------------------------- train and eval
def _args(net: str, data: Path, out: Path, **overrides) -> argparse.Namespace:
    from models.refine.train import configure_train

    parser = argparse.ArgumentParser()
    configure_train(parser)
    argv = ["--net", net, "--data", str(data), "--out", str(out), "--epochs", "2", "--steps-per-epoch", "3",
            "--batch-size", "4", "--window", "32", "--hidden", "8", "--cache-dir", str(out / "cache")]
    for key, value in overrides.items():
        argv += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
    return parser.parse_args(argv)


@pytest.mark.slow
@pytest.mark.parametrize("net,model_class", [("velocity", VelocityNet), ("duration", DurationNet),
                                             ("live_duration", LiveDurationNet)])
def test_train_writes_a_checkpoint_and_resumes(tmp_path, net, model_class):
    from models.refine.train import run_train

    data = write_corpus(tmp_path / "corpus", notes_per_piece=120)
    out = tmp_path / "run"
    assert run_train(_args(net, data, out, **({"stretch": "phrase"} if net == "duration" else {}))) == 0
    model, config, meta = load_checkpoint(out / f"{net}.pt", model_class)
    assert config.hidden_size == 8 and meta["training"]["step"] >= 3 and (out / f"{net}_loss.png").exists()
    if net == "duration":  # the JSON beside the weights says what it learned to undo, and from which features
        assert (config.stretch, config.features, config.num_features) == ("phrase", "piece", FEATURE_SETS["piece"])
    assert run_train(_args(net, data, out, epochs=3, resume=True)) == 0
    assert torch.load(out / f"{net}.resume.pt", weights_only=True)["step"] == 9


@pytest.mark.slow
def test_duration_warm_start_widens_to_grid_features_and_weights_sequenced_pieces(tmp_path):
    from models.data import Corpus
    from models.refine.train import run_train, sequenced_weights

    data = write_corpus(tmp_path / "corpus", notes_per_piece=120)
    assert run_train(_args("duration", data, tmp_path / "a")) == 0
    assert run_train(_args("duration", data, tmp_path / "b", features="grid", grid_weight=3, epochs=4,
                           init_from=tmp_path / "a" / "duration")) == 0
    _, config, meta = load_checkpoint(tmp_path / "b" / "duration.pt", DurationNet)
    assert (config.features, config.num_features) == ("grid", FEATURE_SETS["grid"]) and meta["training"]["step"] > 6
    pieces = Corpus.load([data], cache_dir=tmp_path / "cache", workers=1).split("train")
    assert np.all(sequenced_weights(pieces, 3.0) == 3.0)  # the synthetic pieces sit on their 16ths


@pytest.mark.slow
def test_eval_reports_both_nets_against_their_baselines(tmp_path):
    from models.data import Corpus
    from models.refine.eval import evaluate

    corpus = Corpus.load([write_corpus(tmp_path / "corpus", notes_per_piece=120)], cache_dir=tmp_path / "cache", workers=1)
    torch.manual_seed(0)
    report = evaluate(corpus, VelocityNet(VelocityNetConfig(hidden_size=8)), DurationNet(DurationNetConfig(hidden_size=8)))
    for key in ("velocity_mae_net", "velocity_mae_constant", "velocity_mae_heuristic", "velocity_rho_net",
                "velocity_rho_heuristic", "timing_error_ms_before", "timing_error_ms_after", "grid_deviation_ms_restored",
                "phrase_timing_error_ms_before", "phrase_timing_error_ms_after", "phrase_grid_deviation_ms_restored"):
        assert np.isfinite(report[key]), key
    assert report["timing_error_ms_before"] > 0 and report["phrase_timing_error_ms_before"] > 0
    assert report["phrase_timing_error_ms_before"] != report["timing_error_ms_before"]  # two different stretches


def test_train_usage_errors_are_one_line_model_errors(tmp_path):
    from models.errors import ModelError
    from models.refine.train import run_train

    with pytest.raises(ModelError, match="--resume"):
        run_train(_args("velocity", tmp_path, tmp_path / "run", resume=True))
    with pytest.raises(ModelError, match="--data"):
        run_train(_args("duration", tmp_path / "missing", tmp_path / "run"))


# ----------------------------------------------------------------------------- live (causal) duration net
def test_causal_features_of_a_note_do_not_change_with_what_comes_after_its_end():
    table, _ = as_table(piece(1, groups=60))
    features, order = causal_features(table)
    assert features.shape == (len(table), LIVE_FEATURES) and np.isfinite(features).all()
    cut = float(np.median(table[:, END]))
    # a piece cut at `cut`: the notes that ended by then keep their features (the rest of the piece is unknown live)
    kept = table[table[:, START] < cut]
    kept_features, kept_order = causal_features(kept)
    ended = [i for i in order if table[i, END] <= cut and table[i, START] < cut]
    by_note = {tuple(table[i]): features[row] for row, i in enumerate(order)}
    by_kept = {tuple(kept[i]): kept_features[row] for row, i in enumerate(kept_order)}
    for i in ended:
        np.testing.assert_allclose(by_kept[tuple(table[i])], by_note[tuple(table[i])], atol=1e-6)


def test_numpy_step_is_the_torch_net_and_restoring_keeps_onsets_and_bounds():
    torch.manual_seed(0)
    model = LiveDurationNet(LiveDurationNetConfig(hidden_size=16)).eval()
    table, _ = as_table(piece(2, groups=50))
    features, order = causal_features(table)
    with torch.no_grad():
        expected = model(torch.from_numpy(features)[None])[0][0, :, 0].numpy()
    step, state, got = NumpyGRUStep(model), None, []
    state = step.initial()
    for row in features:
        value, state = step(row, state)
        got.append(value)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    restored = restore_durations(table, model)
    np.testing.assert_array_equal(restored[:, START], table[:, START])
    ratio = (restored[:, END] - restored[:, START]) / (table[:, END] - table[:, START])
    assert (ratio >= np.exp(-0.2) - 1e-9).all() and (ratio <= np.exp(0.2) + 1e-9).all()


def test_safe_end_bounds():
    assert safe_end(0.0, 1.0, 0.2) == pytest.approx(np.exp(-0.2))
    assert safe_end(0.0, 1.0, 0.2, earliest=0.95) == pytest.approx(0.95)  # never before now
    assert safe_end(0.0, 1.0, 0.2, earliest=1.5) == 1.0  # too late to move earlier: unchanged
    assert safe_end(0.0, 0.035, 0.2) == pytest.approx(0.03)  # never under 30 ms
    assert safe_end(0.0, 1.0, -0.2, latest=1.1) == pytest.approx(1.1)  # never past the same pitch's next onset
    assert safe_end(0.0, 3.9, -0.2, max_note_s=4.0) == pytest.approx(3.99)


@pytest.mark.slow
def test_data_weight_draws_a_small_folder_more_often_and_eval_scores_the_live_net(tmp_path):
    from models.data import Corpus
    from models.errors import ModelError
    from models.refine.eval import evaluate
    from models.refine.train import folder_weights, run_train

    big, small = write_corpus(tmp_path / "big", notes_per_piece=120), write_corpus(tmp_path / "small", notes_per_piece=100)
    corpus = Corpus.load([big, small], cache_dir=tmp_path / "cache", workers=1)
    weights = folder_weights(corpus.pieces, [big, small], [1.0, 3.0])
    assert set(weights) == {1.0, 3.0} and len(weights) == len(corpus.pieces)
    with pytest.raises(ModelError, match="one weight per --data folder"):
        folder_weights(corpus.pieces, [big, small], [1.0])
    args = _args("live_duration", big, tmp_path / "run")
    args.data, args.data_weight = [str(big), str(small)], [1.0, 2.0]
    assert run_train(args) == 0
    model = load_checkpoint(tmp_path / "run" / "live_duration.pt", LiveDurationNet)[0]
    report = evaluate(corpus, live_duration_model=model)
    for key in ("live_duration_error_ms_before", "live_duration_error_ms_after", "live_phrase_timing_error_ms_after"):
        assert np.isfinite(report[key]), key


def test_beat_grid_tells_a_sequenced_file_from_a_played_one(tmp_path):
    import mido

    from models.refine.beat_grid import folder_report

    rng = np.random.default_rng(0)
    for name, jitter in (("grid", 0), ("played", 1)):
        folder = tmp_path / name
        folder.mkdir()
        track = mido.MidiTrack()
        for i in range(200):
            delta = 120 + (int(rng.integers(-40, 40)) if jitter else 0)  # 16ths at 480 ticks a beat, or played
            track.append(mido.Message("note_on", note=60, velocity=64, time=0 if i == 0 else delta // 2))
            track.append(mido.Message("note_off", note=60, velocity=0, time=delta - delta // 2))
        mido.MidiFile(tracks=[track], ticks_per_beat=480).save(folder / "a.mid")
    assert folder_report(tmp_path / "grid")["all"]["on_16th"] == 1.0
    assert folder_report(tmp_path / "played")["all"]["on_16th"] < 0.5
