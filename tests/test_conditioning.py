"""The condition vector: one extractor for training labels, live controls and evaluation."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.conditioning import (
    COND_DIM,
    DEFAULT_SPEC,
    HISTOGRAM,
    SPECS,
    condition_vector,
    event_times,
    extract_conditions,
    measure,
    stretch_conditions,
    transpose_conditions,
)
from models.keys import key_histogram, scale_pitch_classes
from models.data import augment
from models.events import CODEC, Event, EventType, Note, encode_all, notes_to_events

S = DEFAULT_SPEC
V1 = SPECS["cond-v1"]  # Performance RNN's windows (5 s register and histogram, 3 s density)


def on(p):
    return CODEC.encode(Event(EventType.NOTE_ON, p))


def off(p):
    return CODEC.encode(Event(EventType.NOTE_OFF, p))


def shift(steps):
    return CODEC.encode(Event(EventType.TIME_SHIFT, steps))


# C4 for 0.5 s, then E4 for 1 s: a 1.5 s piece.
TWO_NOTES = np.array([on(60), shift(50), off(60), on(64), shift(100), off(64)])


def naive_histogram(pitch, start, end, t, window):
    h = np.zeros(12)
    for p, s, e in zip(pitch, start, end):
        h[p % 12] += max(0.0, min(e, t + window) - max(s, t))
    return h / h.sum() if h.sum() > 0 else np.full(12, 1 / 12)


def random_piece(rng, n_notes=60):
    notes = []
    for _ in range(n_notes):
        start = float(rng.uniform(0, 20))
        notes.append(Note(int(rng.integers(30, 90)), start, start + float(rng.uniform(0.05, 2.0)), 80))
    return sorted(notes, key=lambda n: n.start)


def test_known_piece_gives_exact_register_density_and_histogram():
    cond = extract_conditions(TWO_NOTES, V1)
    assert cond.shape == (6, COND_DIM) and cond.dtype == np.float32
    # At t=0 both notes lie ahead: mean pitch 62, 2 notes in the 1.5 s left, C:E = 0.5 s : 1 s.
    assert V1.denorm_register(cond[0, 0]) == pytest.approx(62.0, abs=1e-4)
    assert V1.denorm_density(cond[0, 1]) == pytest.approx(2 / 1.5, rel=1e-4)
    assert cond[0, HISTOGRAM][0] == pytest.approx(1 / 3, abs=1e-5)
    assert cond[0, HISTOGRAM][4] == pytest.approx(2 / 3, abs=1e-5)
    # From t=0.5 s only E4 lies ahead (the window looks forward, never back).
    assert V1.denorm_register(cond[3, 0]) == pytest.approx(64.0, abs=1e-4)
    assert cond[3, HISTOGRAM][4] == pytest.approx(1.0)
    # cond-v2 looks 1 s ahead: the same two notes, 2 in the first second.
    v2 = extract_conditions(TWO_NOTES, SPECS["cond-v2"])
    assert SPECS["cond-v2"].denorm_density(v2[0, 1]) == pytest.approx(2.0, rel=1e-4)
    assert SPECS["cond-v2"].denorm_density(v2[3, 1]) == pytest.approx(1.0, rel=1e-4)  # 1 s left: E4 alone


def test_silence_ahead_gives_uniform_histogram_and_default_register():
    cond = extract_conditions(np.array([on(60), shift(10), off(60), shift(100), shift(100), shift(100), shift(100), shift(100), shift(100)]))
    last = cond[-1]
    np.testing.assert_allclose(last[HISTOGRAM], np.full(12, 1 / 12), atol=1e-6)
    assert S.denorm_register(last[0]) == pytest.approx(S.default_register, abs=1e-4)
    assert S.denorm_density(last[1]) == pytest.approx(0.0, abs=1e-5)


def test_histogram_matches_a_naive_overlap_sum_on_random_music():
    rng = np.random.default_rng(1)
    notes = random_piece(rng)
    events = np.asarray(encode_all(notes_to_events(notes)))
    cond = extract_conditions(events)
    times = event_times(events)
    from models.conditioning import _timeline

    tl = _timeline(events)
    for i in range(0, len(events), 7):
        np.testing.assert_allclose(cond[i, HISTOGRAM], naive_histogram(tl.pitch, tl.start, tl.end, times[i], S.histogram_window_s), atol=1e-5)


def test_notes_input_aligned_to_event_times_equals_event_input():
    notes = random_piece(np.random.default_rng(2))
    events = np.asarray(encode_all(notes_to_events(notes)))
    from models.events import events_to_notes, decode_all

    decoded = events_to_notes(decode_all(events))  # quantized to 10 ms like the events
    np.testing.assert_allclose(extract_conditions(decoded, times=event_times(events)), extract_conditions(events), atol=1e-5)
    with pytest.raises(ValueError, match="times"):
        extract_conditions(decoded)


def test_event_objects_and_indices_agree():
    events = [CODEC.decode(int(i)) for i in TWO_NOTES]
    np.testing.assert_array_equal(extract_conditions(events), extract_conditions(TWO_NOTES))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 387), min_size=1, max_size=300))
def test_any_event_sequence_gives_a_valid_vector(indices):
    cond = extract_conditions(np.array(indices))
    assert cond.shape == (len(indices), COND_DIM)
    assert np.isfinite(cond).all()
    np.testing.assert_allclose(cond[:, HISTOGRAM].sum(axis=1), 1.0, atol=1e-5)
    assert (cond[:, HISTOGRAM] >= 0).all() and (cond[:, 1] >= 0).all()


def test_transpose_transform_matches_extracting_the_transposed_music():
    notes = random_piece(np.random.default_rng(3), n_notes=200)
    events = np.asarray(encode_all(notes_to_events(notes)))
    moved = augment(events, transpose=5)
    base, want = extract_conditions(events), extract_conditions(moved)
    got = transpose_conditions(base, 5)
    has_notes = np.abs(base[:, 0] - S.norm_register(S.default_register)) > 1e-6
    np.testing.assert_allclose(got[:, HISTOGRAM], want[:, HISTOGRAM], atol=1e-5)
    np.testing.assert_allclose(got[has_notes, 0], want[has_notes, 0], atol=1e-5)


def test_stretch_transform_scales_density():
    cond = condition_vector(density=10.0)[None]
    assert S.denorm_density(stretch_conditions(cond, 2.0)[0, 1]) == pytest.approx(5.0, rel=1e-5)
    # A real stretch by 2 halves the density of a steady pulse.
    pulse = np.array([x for _ in range(40) for x in (on(60), shift(5), off(60), shift(5))])
    slow = augment(pulse, stretch=2.0)
    assert S.denorm_density(extract_conditions(slow)[0, 1]) == pytest.approx(5.0, rel=0.02)
    assert S.denorm_density(extract_conditions(pulse)[0, 1]) == pytest.approx(10.0, rel=0.02)


def test_condition_vector_defaults_and_validation():
    vec = condition_vector()
    assert vec.shape == (COND_DIM,) and vec.dtype == np.float32
    assert S.denorm_register(vec[0]) == pytest.approx(S.default_register, abs=1e-4)
    assert S.denorm_density(vec[1]) == pytest.approx(S.default_density, rel=1e-4)
    np.testing.assert_allclose(vec[HISTOGRAM], 1 / 12)
    vec = condition_vector(register=72, density=4, key_histogram=[2] + [0] * 11)
    assert vec[0] == pytest.approx(1.0) and vec[HISTOGRAM][0] == pytest.approx(1.0)
    for bad in ([1] * 11, [-1] + [1] * 11, [0] * 12, [math.nan] * 12):
        with pytest.raises(ValueError, match="key_histogram"):
            condition_vector(key_histogram=bad)


def test_measure_whole_piece():
    m = measure(TWO_NOTES)
    assert m["register"] == pytest.approx(62.0)
    assert m["density"] == pytest.approx(2 / 1.5)
    assert m["histogram"][0] == pytest.approx(1 / 3) and m["histogram"][4] == pytest.approx(2 / 3)
    assert math.isnan(measure([shift(10)])["register"])


@pytest.mark.parametrize("name, tonic", [("C:major", 0), ("A:minor", 9), ("F#:minor", 6), ("Bb:major", 10), ("Eb", 3), ("c# min", 1), ("Am", 9)])
def test_key_histogram_peaks_on_the_tonic(name, tonic):
    hist = key_histogram(name)
    assert len(hist) == 12 and sum(hist) == pytest.approx(1.0)
    assert int(np.argmax(hist)) == tonic


def test_key_names_agree_and_bad_names_list_the_accepted_forms():
    assert key_histogram("Bb:major") == key_histogram("A#:major")
    assert key_histogram("F#:minor") == tuple(np.roll(key_histogram("A:minor"), -3))
    assert scale_pitch_classes("C:major") == frozenset({0, 2, 4, 5, 7, 9, 11})
    assert {9, 11, 0, 2, 4, 5, 7, 8} == set(scale_pitch_classes("A:minor"))  # natural minor + leading tone G#
    for bad in ("H:major", "C:dorian", "", "C##"):
        with pytest.raises(ValueError, match="accepted forms"):
            key_histogram(bad)


def test_spec_round_trips_through_a_dict():
    from models.conditioning import ConditionSpec

    assert ConditionSpec.from_dict(S.to_dict()) == S


# ----------------------------------------------------------------------------- cond-v2, own key, past-only
def test_cond_v2_windows_answer_within_a_second_and_round_trip():
    from models.conditioning import COND_V2, SPECS, ConditionSpec, spec_for

    assert COND_V2.version == "cond-v2" and COND_V2.dim == COND_DIM == S.dim  # same layout: v1 weights warm-start
    assert COND_V2.register_window_s == COND_V2.density_window_s == 1.0 and COND_V2.min_window_s == 0.5
    assert set(SPECS) == {"cond-v1", "cond-v2"} and spec_for("cond-v2") is COND_V2
    assert ConditionSpec.from_dict(COND_V2.to_dict()) == COND_V2
    with pytest.raises(ValueError, match="known"):
        spec_for("cond-v9")
    # Low notes for 3 s, then high ones: 1.5 s before the jump v1 already hears it, v2 does not yet.
    low_high = np.array([x for p in [48] * 30 + [72] * 30 for x in (on(p), shift(10), off(p))])
    times = event_times(low_high)
    before = int(np.searchsorted(times, 1.5))
    assert V1.denorm_register(extract_conditions(low_high, V1)[before, 0]) > 50
    assert COND_V2.denorm_register(extract_conditions(low_high, COND_V2)[before, 0]) == pytest.approx(48)


def test_own_key_histograms_follow_the_live_voice_note_by_note():
    from models.conditioning import own_key_histograms
    from models.keys import OwnKey
    from models.keys import OwnKey as VoiceOwnKey  # the voices use this one class (instrument/voices/*)

    rng = np.random.default_rng(4)
    events = np.array([on(int(p)) if rng.random() < 0.5 else shift(int(rng.integers(1, 30))) for p in rng.integers(30, 90, 200)])
    hist = own_key_histograms(events)
    live, ours = VoiceOwnKey(), OwnKey()
    np.testing.assert_allclose(hist[0] if events[0] >= 128 else live.histogram(), live.histogram(), atol=1e-6)
    for i, e in enumerate(events):
        if e < 128:
            live, ours = live.add(int(e)), ours.add(int(e))
        np.testing.assert_allclose(hist[i], live.histogram(), atol=1e-6)
        np.testing.assert_allclose(ours.histogram(), live.histogram(), atol=1e-12)


def test_past_and_neutral_conditions_never_look_ahead():
    from models.conditioning import COND_V2, neutral_conditions, past_conditions

    rng = np.random.default_rng(5)
    events = np.asarray(encode_all(notes_to_events(random_piece(rng, n_notes=80))))
    cut = len(events) // 2
    for spec in (S, COND_V2):
        for fn in (past_conditions, neutral_conditions):
            whole, prefix = fn(events, spec), fn(events[:cut], spec)
            np.testing.assert_allclose(whole[:cut], prefix, atol=1e-6)
            np.testing.assert_allclose(whole[:, HISTOGRAM].sum(axis=1), 1.0, atol=1e-5)
    neutral = neutral_conditions(events, COND_V2)
    assert COND_V2.denorm_register(neutral[:, 0]) == pytest.approx(COND_V2.default_register, abs=1e-4)
    assert COND_V2.denorm_density(neutral[:, 1]) == pytest.approx(COND_V2.default_density, rel=1e-4)
    # A steady pulse of 10 notes/s at pitch 60: past-only hears it once a window has gone by.
    pulse = np.array([x for _ in range(40) for x in (on(60), shift(5), off(60), shift(5))])
    past = past_conditions(pulse, COND_V2)
    late = event_times(pulse) >= 1.5
    np.testing.assert_allclose(COND_V2.denorm_density(past[late, 1]), 10.0, rtol=0.11)
    np.testing.assert_allclose(COND_V2.denorm_register(past[:, 0]), 60.0, atol=1e-4)


def test_the_gesture_path_writes_the_same_condition_as_condition_vector():
    from models.conditioning import COND_V2, write_condition
    from models.keys import OwnKey

    rng = np.random.default_rng(0)
    own = OwnKey()
    for i in range(200):
        own = own.add(int(rng.integers(0, 128)))
        for spec in (DEFAULT_SPEC, COND_V2):
            register = float(rng.uniform(20, 110)) if i % 7 else None
            density = float(rng.uniform(-1, 40)) if i % 5 else None
            written = np.empty(COND_DIM, dtype=np.float32)
            write_condition(written, register, density, own.histogram(), spec)
            expected = np.concatenate([[spec.norm_register(spec.default_register if register is None else register),
                                        spec.norm_density(spec.default_density if density is None else density)],
                                       own.histogram()]).astype(np.float32)  # the spec's own (numpy) normalisers
            assert np.array_equal(written, expected)
            assert np.array_equal(written, condition_vector(register, density, own.histogram(), spec))
    assert own.histogram() is own.histogram() and not own.histogram().flags.writeable  # computed once, shared
