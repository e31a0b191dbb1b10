"""Voices: the Char-RNN streaming voice and the DCRNN chunk voice behind the engine's protocol."""

from __future__ import annotations

import numpy as np
import torch

from instrument.controls import Controls
from instrument.voices.charrnn import StreamingVoice, _open_after
from instrument.voices.dcrnn import ChunkVoice, decode_roll, roll_events
from models.charrnn.model import CharRNN, CharRNNConfig
from models.events import NOTE_ON_OFFSET, Event, EventType


def tiny_model(seed: int = 0) -> CharRNN:
    torch.manual_seed(seed)
    return CharRNN(CharRNNConfig(embed_dim=8, hidden_size=32, num_layers=1, dropout=0.0))


def take(voice, n: int) -> list[Event]:
    return [e for _ in range(n) for e in voice.next_events()]


def test_same_seed_same_events_and_restore_replays_the_state():
    a = StreamingVoice(tiny_model(), seed=5)
    b = StreamingVoice(tiny_model(), seed=5)
    assert take(a, 50) == take(b, 50)
    snap = a.snapshot()
    a_rng = a._rng.get_state()
    first = take(a, 30)
    a.restore(snap)
    a._rng.set_state(a_rng)  # same state + same random draws -> the same continuation
    assert take(a, 30) == first


def test_scale_lock_keeps_every_note_in_the_key():
    voice = StreamingVoice(tiny_model(), seed=1, key="D:major", scale_lock=True)
    ons = [e.value for e in take(voice, 600) if e.type == EventType.NOTE_ON]
    assert ons and {p % 12 for p in ons} <= {2, 4, 6, 7, 9, 11, 1}


def test_controls_steer_the_condition_vector():
    voice = StreamingVoice(tiny_model(), seed=1, key="A:minor")
    voice.set_controls(Controls(register=72.0, density=8.0))
    cond = voice._cond[0].numpy()
    assert cond[0] == np.float32((72.0 - 60.0) / 12.0)  # register_norm
    assert int(np.argmax(cond[2:])) == 9  # A is the strongest pitch class of A minor


def test_roll_events_turns_a_bar_into_note_events_across_the_bar_line():
    roll = np.zeros((4, 128), dtype=np.uint8)
    roll[0, 60] = 2  # onset
    roll[1, 60] = 1  # held
    roll[3, 64] = 2
    prev = np.zeros(128, dtype=np.uint8)
    prev[55] = 1  # a note sounding from the previous bar ends at step 0
    vel = Event(EventType.VELOCITY, 20)
    got = roll_events(roll, prev, vel)
    E = lambda t, v: Event(t, v)  # noqa: E731
    assert got == [vel, E(EventType.NOTE_OFF, 55), E(EventType.NOTE_ON, 60), E(EventType.TIME_SHIFT, 2),
                   E(EventType.NOTE_OFF, 60), E(EventType.TIME_SHIFT, 1), E(EventType.NOTE_ON, 64),
                   E(EventType.TIME_SHIFT, 1)]


def test_chunk_voice_plays_one_bar_per_call_and_rolls_back():
    from models.dcrnn.model import DCRNNConfig, Generator

    torch.manual_seed(0)
    voice = ChunkVoice(Generator(DCRNNConfig()), seed=3)
    snap = voice.snapshot()
    rng = voice._rng.get_state()
    bar = voice.next_events()
    assert sum(e.value for e in bar if e.type == EventType.TIME_SHIFT) == 32  # half sixteenths (staccato resolution)
    voice.set_controls(Controls(noise_slots=(1.0,) * 8, theme="wave_in"))
    voice.restore(snap)  # the snapshot holds the sampling RNG too: the same bar again
    voice.set_controls(Controls(theme="rest"))
    assert voice.next_events() == bar
    del rng


def test_chunk_voice_seed_changes_the_music_and_its_velocities_vary():
    from models.dcrnn.model import load_generator

    def notes(seed):
        voice = ChunkVoice(load_generator(), seed=seed)
        return [(e.type, e.value) for _ in range(8) for e in voice.next_events()]

    a, b = notes(1), notes(2)
    assert a == notes(1) and a != b
    velocities = {v for t, v in a if t == EventType.VELOCITY}
    assert len(velocities) >= 4  # accents, top voice and chords: not one velocity for every note


def test_without_a_key_the_char_rnn_conditions_on_its_own_recent_notes_never_a_flat_histogram():
    voice = StreamingVoice(tiny_model(), seed=1)
    hist = voice._cond[0].numpy()[2:]
    assert hist.max() > 1.5 / 12  # the prior is a key profile, not uniform
    voice._pitch_classes = voice._pitch_classes
    for _ in range(40):
        voice._pitch_classes = voice._pitch_classes.add(62)  # D, again and again
    voice.set_controls(Controls())
    assert int(np.argmax(voice._cond[0].numpy()[2:])) == 2


def test_strike_makes_the_next_event_a_note_on():
    voice = StreamingVoice(tiny_model(), seed=4)
    for _ in range(30):
        voice.strike()
        event, = voice.next_events()
        assert event.type == EventType.NOTE_ON


def test_a_strike_never_draws_a_pitch_struck_under_30_ms_before_it_sounds():
    """Such a note-on would merge with that note (the performer's one-note rule): the gesture would have no note."""
    voice = StreamingVoice(tiny_model(), seed=4)
    for _ in range(10):
        voice.next_events()
    logits = torch.full((1, 388), -30.0)
    logits[0, NOTE_ON_OFFSET + 60], logits[0, NOTE_ON_OFFSET + 67] = 10.0, 0.0  # the model wants 60, a little 67
    voice._model_step = lambda: logits
    state = voice.snapshot()
    drawn = {}
    for ages, after_s in ((((60, 0.010),), 0.0), (((60, 0.010),), 0.025), (((60, 0.0),), 0.0)):
        voice.restore(state)
        voice._open = ages
        voice.strike(after_s)
        event, = voice.next_events()
        drawn[(ages[0][1], after_s)] = event.value
    assert drawn[(0.010, 0.0)] == 67 and drawn[(0.0, 0.0)] == 67  # 60 struck 10 ms / 0 ms before: another pitch
    assert drawn[(0.010, 0.025)] == 60  # struck 35 ms before the strike sounds: a note of its own, so 60 again


def test_a_strike_is_one_model_step_and_a_numpy_draw_that_keeps_the_scale_lock(monkeypatch):
    """A gesture's answer: one step, then a 128-way draw (never the 388-way torch sampler), in the locked scale."""
    from models.keys import scale_pitch_classes

    voice = StreamingVoice(tiny_model(), seed=3, key="D:major", scale_lock=True)
    for _ in range(20):
        voice.next_events()
    steps = []
    step = voice._model_step
    monkeypatch.setattr(voice, "_model_step", lambda: steps.append(1) or step())
    monkeypatch.setattr(voice, "_sample", lambda *args: (_ for _ in ()).throw(AssertionError("torch sampler on a strike")))
    allowed = scale_pitch_classes("D:major")
    for register in (40.0, 60.0, 84.0):
        voice.set_controls(Controls(register=register, density=4.0))
        voice.strike()
        event, = voice.next_events()
        assert event.type == EventType.NOTE_ON and event.value % 12 in allowed
    assert len(steps) == 3


def test_a_gesture_pays_only_the_half_step_its_controls_change_and_plays_what_the_whole_step_would():
    """Restore, new controls, strike: the condition-free half came with the restored state (cold p50 0.88 -> 0.58 ms)."""
    voice = StreamingVoice(tiny_model(), seed=8)
    for _ in range(30):
        voice.next_events()
    state = voice.snapshot()
    prepares = []
    prepare = voice._prepare
    voice._prepare = lambda *args: prepares.append(1) or prepare(*args)
    voice.restore(state)
    voice.set_controls(Controls(register=72.0, density=6.0))
    voice.strike()
    struck, = voice.next_events()
    assert struck.type == EventType.NOTE_ON and prepares == []  # nothing made on the gesture's path but the finish
    after = [voice.next_events()]
    assert prepares == [1, 1]  # the struck note-on left first: the step after it made its own half, then the next's
    after += [voice.next_events() for _ in range(19)]
    # the same gesture on a voice stepping whole (no prepared half) strikes the same pitch and goes on alike
    whole = StreamingVoice(tiny_model(), seed=8)
    whole._prepare = None
    for _ in range(30):
        whole.next_events()
    whole.set_controls(Controls(register=72.0, density=6.0))
    whole.strike()
    assert whole.next_events() == (struck,)
    assert [whole.next_events() for _ in range(20)] == after


def test_the_condition_follows_the_own_key_from_the_step_after_a_note_on():
    """The own-key condition is rebuilt before the next step, not on the note-on's path: same values either way."""
    from models.conditioning import condition_vector

    voice = StreamingVoice(tiny_model(), seed=6)
    voice.set_controls(Controls(register=64.0, density=3.0))
    for _ in range(200):
        voice.next_events()
        if voice._cond_stale:
            break
    assert voice._cond_stale  # a note-on was drawn: the condition is owed
    own_key = voice._pitch_classes  # it counts the note-on just drawn
    conds = []
    step = voice._model_step
    voice._model_step = lambda: conds.append(voice._cond.clone()) or step()
    voice.next_events()
    expected = condition_vector(64.0, 3.0, own_key.histogram(), voice.spec)
    assert np.allclose(conds[0][0].numpy(), expected, atol=1e-6)
    assert not np.allclose(expected[2:], 1.0 / 12)


def test_char_rnn_releases_a_note_it_forgot():
    voice = StreamingVoice(tiny_model(), seed=2)
    forgotten = _open_after((), Event(EventType.NOTE_ON, 60))
    forgotten = _open_after(forgotten, Event(EventType.TIME_SHIFT, 100))
    forgotten = _open_after(forgotten, Event(EventType.TIME_SHIFT, 100))  # sounding for 2 s
    logits = torch.zeros(388)
    released = voice._release_old_notes_for(forgotten, logits)
    assert released[128 + 60] > 2.0 and released.sum() == released[128 + 60]  # only that note's NOTE_OFF


def test_dcrnn_decode_keeps_the_voicing_budget_and_no_semitones():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.4, 0.6, size=(16, 128, 2))
    roll = decode_roll(p, np.zeros(128, dtype=np.uint8), voices=3, onsets=12, threshold=0.5)
    for row in roll:
        keys = np.flatnonzero(row)
        assert len(keys) <= 3
        assert all((a - b) % 12 not in (0, 1, 11) for a in keys for b in keys if a != b)
    assert 1 <= (roll == 2).any(axis=1).sum() <= 16
