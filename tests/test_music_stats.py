"""The music statistics of `instrument bench music`, on hand-built note lists whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from instrument.bench import music_stats as ms


def notes(*rows: tuple[float, float, float, float]) -> np.ndarray:
    """(pitch, velocity, start, end) rows as a sorted note array."""
    return ms.as_notes(rows)


def melody(pitches: list[int], step: float = 0.5, length: float = 0.4, velocity: int = 64) -> np.ndarray:
    """One note per `step` seconds."""
    return notes(*[(p, velocity, i * step, i * step + length) for i, p in enumerate(pitches)])


def chord(pitches: list[int], start: float, end: float) -> list[tuple[float, float, float, float]]:
    return [(p, 64, start, end) for p in pitches]


C_MAJOR_SCALE = [60, 62, 64, 65, 67, 69, 71, 72]


def test_as_notes_sorts_by_onset_then_pitch():
    array = ms.as_notes([(67, 64, 1.0, 2.0), (64, 64, 0.0, 1.0), (60, 64, 0.0, 1.0)])
    assert array[:, ms.PITCH].tolist() == [60, 64, 67]


def test_onsets_per_second_counts_note_ons_over_the_duration():
    assert ms.onsets_per_second(melody([60] * 10), duration=5.0) == 2.0


def test_short_fraction_counts_notes_under_100_ms():
    n = notes((60, 64, 0, 0.05), (62, 64, 1, 1.2), (64, 64, 2, 2.099), (65, 64, 3, 4))
    assert ms.short_fraction(n) == 0.5


def test_capped_fraction_counts_notes_that_reach_the_4_s_cap():
    n = notes((60, 64, 0, 4.0), (62, 64, 0, 3.995), (64, 64, 0, 1.0), (65, 64, 0, 3.5))
    assert ms.capped_fraction(n) == 0.5


def test_key_clarity_is_high_for_a_major_scale_and_low_for_a_whole_tone_scale():
    scale = melody(C_MAJOR_SCALE, step=1.0, length=1.0)
    assert ms.key_clarity(scale) > 0.85
    assert ms.key_clarity(melody([60, 62, 64, 66, 68, 70], step=1.0, length=1.0)) < 0.2


def test_key_clarity_shuffled_control_is_lower_for_a_tonal_piece():
    # Ten windows of C major: the pitch-class shuffle destroys the key, on average over windows.
    piece = notes(*[(p, 64, w * 10 + i, w * 10 + i + 1) for w in range(10) for i, p in enumerate(C_MAJOR_SCALE)])
    clear, shuffled = ms.key_clarity(piece), ms.key_clarity(piece, shuffle_seed=0)
    assert clear > 0.85
    assert shuffled < clear - 0.2
    assert ms.key_clarity(piece, shuffle_seed=0) == shuffled  # seeded: repeatable


def test_key_clarity_averages_over_10_s_windows_and_skips_silence():
    c_major = [(p, 64, i, i + 1) for i, p in enumerate(C_MAJOR_SCALE)]
    whole_tone = [(p, 64, 30 + i, 31 + i) for i, p in enumerate([60, 62, 64, 66, 68, 70])]
    both = ms.key_clarity(notes(*c_major, *whole_tone))  # windows 0 and 3; 1 and 2 are silent
    expected = (ms.key_clarity(notes(*c_major)) + ms.key_clarity(notes(*whole_tone))) / 2
    assert both == pytest.approx(expected)


def test_clash_fraction_of_a_chromatic_cluster_is_one_and_of_a_triad_zero():
    assert ms.clash_fraction(notes(*chord([60, 61, 62, 63], 0, 1))) == 1.0
    assert ms.clash_fraction(notes(*chord([60, 64, 67], 0, 1))) == 0.0


def test_clash_fraction_is_time_weighted_over_sounding_time_only():
    # 1 s triad, 2 s of silence, 1 s cluster: half of the sounding time clashes.
    n = notes(*chord([60, 64, 67], 0, 1), *chord([60, 61], 3, 4))
    assert ms.clash_fraction(n) == pytest.approx(0.5)


@pytest.mark.parametrize("pair, clash", [((71, 72), True),   # B-C: pitch classes wrap around
                                         ((60, 73), True),   # minor ninth
                                         ((60, 71), True),   # major seventh
                                         ((60, 62), False),  # whole tone
                                         ((60, 72), False)])  # octave
def test_clash_is_interval_class_one(pair, clash):
    assert ms.clash_fraction(notes(*chord(list(pair), 0, 1))) == (1.0 if clash else 0.0)


def test_identical_bars_two_identical_bars_give_one():
    bar = [(60, 64, 0.0, 0.4), (64, 64, 0.5, 0.9), (67, 64, 1.0, 1.4)]
    again = [(p, v, s + 2.0, e + 2.0) for p, v, s, e in bar]
    assert ms.identical_bars(notes(*bar, *again)) == 1.0


def test_identical_bars_counts_non_empty_bars_against_their_predecessor():
    bar = [(60, 64, 0.0, 0.4), (64, 64, 0.5, 0.9)]
    shifted = lambda k, dp=0: [(p + dp, v, s + 2.0 * k, e + 2.0 * k) for p, v, s, e in bar]  # noqa: E731
    # bars 0, 1 (same), 2 (transposed: differs), 4 (after an empty bar: differs from the empty one)
    n = notes(*shifted(0), *shifted(1), *shifted(2, 5), *shifted(4))
    assert ms.identical_bars(n) == pytest.approx(1 / 3)


def test_identical_bars_tolerates_a_few_ms_of_timing_jitter():
    bar = [(60, 64, 0.0, 0.4), (64, 64, 0.5, 0.9)]
    again = [(60, 64, 2.004, 2.4), (64, 64, 2.497, 2.9)]
    assert ms.identical_bars(notes(*bar, *again)) == 1.0


def test_velocity_stats_are_std_and_distinct_values():
    n = notes((60, 64, 0, 1), (62, 64, 1, 2), (64, 80, 2, 3), (65, 80, 3, 4))
    assert ms.velocity_stats(n) == (8.0, 2)
    assert ms.velocity_stats(melody([60] * 5, velocity=79)) == (0.0, 1)


def test_repeated_pitch_counts_consecutive_onsets_of_the_same_pitch():
    assert ms.repeated_pitch_fraction(melody([60, 60, 62, 60])) == pytest.approx(1 / 3)
    assert ms.repeated_pitch_fraction(melody(C_MAJOR_SCALE)) == 0.0


def test_chord_size_groups_onsets_within_30_ms_without_chaining():
    n = notes(*chord([60, 64, 67], 0, 1), *chord([62, 65, 69], 1, 2), (72, 64, 2, 3))
    assert ms.chord_size(n) == pytest.approx(7 / 3)
    rolled = notes((60, 64, 0.0, 1), (64, 64, 0.02, 1), (67, 64, 0.04, 1), (72, 64, 0.06, 1))
    assert ms.chord_size(rolled) == 2.0  # groups {0, 0.02} and {0.04, 0.06}: anchored at each group's first onset


def test_inter_onset_intervals_count_a_chord_once():
    n = notes(*chord([60, 64, 67], 0, 0.5), (62, 64, 0.5, 1), *chord([60, 65], 1.5, 2))
    assert ms.inter_onset_intervals(n).tolist() == pytest.approx([0.5, 1.0])


def test_mean_polyphony_is_time_weighted_over_sounding_time():
    # triad for 1 s, silence 1 s, one note for 1 s: (3 + 1) / 2 sounding seconds
    n = notes(*chord([60, 64, 67], 0, 1), (72, 64, 2, 3))
    assert ms.mean_polyphony(n) == pytest.approx(2.0)
    hist = ms.polyphony_histogram(n)
    assert hist[0] == pytest.approx(1.0) and hist[1] == pytest.approx(1.0) and hist[3] == pytest.approx(1.0)


def test_pattern_repetition_of_a_repeated_motif():
    motif = [60, 64, 62, 67, 65, 71, 69, 72]
    # The motif, then the same motif a fifth higher: only the last 8-note window repeats an earlier one.
    n = melody(motif + [p + 7 for p in motif])
    windows = 16 - 8 + 1
    assert ms.pattern_repetition(n) == pytest.approx(1 / windows)
    assert ms.pattern_repetition(melody(list(range(40, 60)))) == pytest.approx(12 / 13)  # one interval, always


def test_pattern_repetition_follows_the_top_voice_of_chords():
    rng = np.random.default_rng(0)
    tune = [int(p) for p in rng.integers(60, 84, 30)]
    plain = ms.pattern_repetition(melody(tune))
    with_bass = notes(*[(p, 64, i * 0.5, i * 0.5 + 0.4) for i, p in enumerate(tune)],
                      *[(40 + i % 3, 64, i * 0.5, i * 0.5 + 0.4) for i in range(len(tune))])
    assert ms.pattern_repetition(with_bass) == plain == 0.0


def test_summarize_weights_by_duration_and_pools_distributions():
    short, long = melody([60, 62]), melody(C_MAJOR_SCALE)
    summary = ms.summarize([(short, 10.0), (long, 30.0)])
    assert summary["onsets_per_s"] == pytest.approx((0.2 * 10 + 8 / 30 * 30) / 40)
    assert sum(summary["hist"]["length"]) == 10
    assert summary["ioi_p50"] == pytest.approx(0.5)
    assert summary["velocity_distinct"] == 1.0


# ------------------------------------------------------------------ control fidelity


def test_spearman_ranks_with_ties():
    assert ms.spearman(np.arange(10), np.arange(10) ** 3) == pytest.approx(1.0)
    assert ms.spearman(np.arange(10), -np.arange(10)) == pytest.approx(-1.0)
    assert ms.spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(0.9486833)  # scipy.stats.spearmanr
    assert ms.spearman([1, 1, 1, 1], [1, 2, 3, 4]) is None


def _follower(req_t: np.ndarray, req_register: np.ndarray, req_density: np.ndarray, delay: float,
              duration: float) -> np.ndarray:
    """Notes that play the requested register and density exactly, `delay` s late."""
    rows, t = [], 0.0
    while t < duration:
        i = max(0, int(np.searchsorted(req_t, t - delay, side="right")) - 1)
        rows.append((round(req_register[i]), 64, t, t + 0.1))
        t += 1.0 / req_density[i]
    return ms.as_notes(rows)


def _steps(duration: float = 60.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    req_t = np.arange(0.0, duration, 1 / 30)
    level = (req_t // 6).astype(int) % 4  # a new level every 6 s
    return req_t, np.array([50.0, 70.0, 58.0, 80.0])[level], np.array([2.0, 8.0, 4.0, 10.0])[level]


def test_fidelity_rho_is_high_for_a_follower_and_finds_its_lag():
    req_t, register, density = _steps()
    late = _follower(req_t, register, density, delay=0.3, duration=60.0)
    assert ms.fidelity_rho(req_t, register, late, "register", 60.0) > 0.95
    assert ms.fidelity_rho(req_t, density, late, "density", 60.0) > 0.9
    assert ms.fidelity_rho(req_t, register, late, "register", 60.0, lags=(0.0,)) < \
        ms.fidelity_rho(req_t, register, late, "register", 60.0)


def test_fidelity_rho_is_near_zero_for_notes_that_ignore_the_controls():
    req_t, register, _ = _steps()
    rng = np.random.default_rng(1)
    deaf = ms.as_notes([(int(rng.integers(48, 84)), 64, t, t + 0.1) for t in np.arange(0, 60, 0.25)])
    assert abs(ms.fidelity_rho(req_t, register, deaf, "register", 60.0, lags=(0.0,))) < 0.4


def test_find_steps_finds_each_change_and_its_levels():
    req_t, register, _ = _steps(30.0)
    steps = ms.find_steps(req_t, register, threshold=6.0)
    assert [round(t, 2) for t, _, _ in steps] == pytest.approx([6.0, 12.0, 18.0, 24.0], abs=0.06)
    assert [(b, a) for _, b, a in steps] == [(50.0, 70.0), (70.0, 58.0), (58.0, 80.0), (80.0, 50.0)]


@pytest.mark.parametrize("kind", ["register", "density"])
def test_response_time_measures_the_delay_to_halfway(kind):
    req_t, register, density = _steps()
    # One control steps at a time: a mean onset pitch is weighted by the onsets, so a
    # simultaneous density step would move it early or late.
    steady = np.full_like(req_t, 6.0 if kind == "register" else 60.0)
    requested = register if kind == "register" else density
    for delay in (0.0, 0.3, 0.8):
        follower = _follower(req_t, requested if kind == "register" else steady,
                             steady if kind == "register" else requested, delay=delay, duration=60.0)
        times = ms.response_times(req_t, requested, follower, kind, threshold=1.5, duration=60.0)
        assert len(times) == 9
        assert ms.median_response(times) == pytest.approx(delay, abs=0.11)


def test_response_time_is_none_when_the_notes_never_move():
    req_t, register, _ = _steps()
    still = melody([66] * 120)
    times = ms.response_times(req_t, register, still, "register", threshold=6.0, duration=60.0)
    assert times and all(t == float("inf") for t in times)
    assert ms.median_response(times) is None


def test_response_time_skips_a_step_already_played_past_its_target():
    # Requested density 2 -> 8 -> 4, notes always at 10/s: the first step is already answered
    # (nothing to time), the second is never answered.
    req_t = np.arange(0.0, 30.0, 1 / 30)
    density = np.where(req_t < 10, 2.0, np.where(req_t < 20, 8.0, 4.0))
    fast = melody([60] * 300, step=0.1, length=0.05)
    times = ms.response_times(req_t, density, fast, "density", threshold=2.0, duration=30.0)
    assert np.isnan(times[0]) and times[1] == float("inf")
    assert ms.median_response(times) is None


# ------------------------------------------------------------------ the bench around the statistics


@pytest.mark.parametrize("name", ["demo", "steps", "emg_bursts"])
def test_shipped_takes_are_180_s_small_and_at_most_50_frames_per_second(name):
    from controllers.replay import read_jsonl
    from instrument.bench.music import take_path

    path = take_path(name)
    frames = read_jsonl(path)
    assert path.stat().st_size < 1_000_000
    assert frames[-1].t >= 180.0
    assert np.min(np.diff([f.t for f in frames])) >= 1 / 50 - 1e-6


def test_steps_take_steps_both_register_and_density():
    from instrument.bench.music import STEP_THRESHOLDS, requested_series, take_path

    requested = requested_series(take_path("steps"), 180.0)
    for kind in ("register", "density"):
        steps = ms.find_steps(*requested[kind], threshold=STEP_THRESHOLDS[kind])
        assert len(steps) >= 8
        assert np.min(np.diff([t for t, _, _ in steps])) >= 5.0  # held still between steps


def test_bench_music_with_a_mapping_asks_what_that_mapping_asks(tmp_path):
    from instrument.bench.music import requested_series, take_path

    low = tmp_path / "low.toml"
    low.write_text('[register]\naxis = "y"\nrange = [30, 40]\nneutral = 35\n[response]\nstrike = "never"\n')
    register = requested_series(take_path("steps"), 60.0, "charrnn", str(low))["register"][1]
    own = requested_series(take_path("steps"), 60.0, "charrnn")["register"][1]
    assert 30.0 <= register.min() and register.max() <= 40.0
    assert own.max() > 50.0  # the voice's own mapping plays 48..84


def test_read_notes_keeps_zero_length_notes_and_counts_restrikes(tmp_path):
    import mido

    from instrument.bench.music import read_notes

    track = mido.MidiTrack()
    ticks = 480  # one beat = 0.5 s at the default 120 bpm
    track += [mido.Message("note_on", note=60, velocity=70, time=0),
              mido.Message("note_on", note=60, velocity=80, time=ticks),      # re-struck while sounding
              mido.Message("note_off", note=60, velocity=0, time=ticks),
              mido.Message("note_on", note=64, velocity=90, time=0),
              mido.Message("note_off", note=64, velocity=0, time=0),          # zero length: a cut note
              mido.Message("note_on", note=67, velocity=50, time=ticks)]      # never ended
    midi = mido.MidiFile(ticks_per_beat=ticks)
    midi.tracks.append(track)
    midi.save(tmp_path / "t.mid")
    notes, restrikes, unended = read_notes(tmp_path / "t.mid")
    assert restrikes == 1 and unended == 1
    assert notes.tolist() == [[60, 70, 0.0, 0.5], [60, 80, 0.5, 1.0], [64, 90, 1.0, 1.0], [67, 50, 1.5, 1.5]]


@pytest.mark.slow
def test_bench_music_renders_measures_and_prints_json(tmp_path, capsys):
    import argparse
    import json

    from instrument.bench.music import configure_music, run_music

    parser = argparse.ArgumentParser()
    configure_music(parser)
    args = parser.parse_args(["--model", "charrnn", "--takes", "steps", "--seeds", "1", "--seconds", "20",
                              "--reference", str(tmp_path / "no-such-folder"), "--json"])
    assert run_music(args) == 0
    captured = capsys.readouterr()
    assert "comparing against nothing" in captured.err
    result = json.loads(captured.out)
    summary = result["voices"]["charrnn"]["summary"]
    assert result["reference"] is None
    assert summary["recordings"] == 1 and summary["notes"] > 20
    assert 0.0 <= summary["short_frac"] <= 1.0 and summary["register_rho"] is not None
