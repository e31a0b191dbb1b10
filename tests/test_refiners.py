"""The Refine nets behind the voices: live velocities (play/render --refine) and `instrument refine`."""

from __future__ import annotations

import mido
import numpy as np
import pytest

from instrument.cli import main
from instrument.refiners import open_refiners
from instrument.scheduler import TimedMessage
from models.events import midi_to_notes
from models.refine.velocity import predict_velocities


def note_on(t: float, pitch: int) -> TimedMessage:
    return TimedMessage(t, mido.Message("note_on", note=pitch, velocity=80))


def test_live_velocities_are_the_nets_own_one_note_at_a_time():
    refiner = open_refiners(["velocity"])[0]
    pitches = [60 + (i * 5) % 17 for i in range(80)]
    live = []
    for i, pitch in enumerate(pitches):
        item = note_on(i * 0.1, pitch)
        refiner.apply([item])
        live.append(item.message.velocity)
    table = np.array([(p, 80, i * 0.1, i * 0.1 + 0.23) for i, p in enumerate(pitches)], dtype=float)
    offline = predict_velocities(table, refiner.model, refiner.spread)
    assert live[40:] == list(offline[40:])  # past the 32-note window, the same as the whole-piece net
    assert len(set(live)) > 5


def test_a_rollback_forgets_the_dropped_notes_and_replays_the_same_velocities():
    refiner = open_refiners(["velocity"])[0]
    for i in range(20):
        refiner.apply([note_on(i * 0.1, 60 + i % 7)])
    again = [note_on(2.0 + i * 0.1, 67 - i) for i in range(5)]
    refiner.apply(again)
    first = [m.message.velocity for m in again]
    refiner.rollback(1.95)
    again = [note_on(2.0 + i * 0.1, 67 - i) for i in range(5)]
    refiner.apply(again)
    assert [m.message.velocity for m in again] == first


def test_the_hand_still_sets_how_loud_behind_the_velocity_net(tmp_path):
    """`--refine velocity` gives the dynamics, the velocity control (hand closer = louder) still scales them."""
    import json

    from instrument.controls import Controls

    refiner = open_refiners(["velocity"])[0]
    played = {}
    for loudness in (None, 40.0, 120.0):
        refiner.rollback(-1.0)  # the same history each time
        refiner.set_controls(Controls(velocity=loudness))
        items = [note_on(i * 0.1, 60 + (i * 5) % 17) for i in range(40)]
        refiner.apply(items)
        played[loudness] = np.array([m.message.velocity for m in items], dtype=float)
    assert np.mean(played[40.0]) == pytest.approx(np.mean(played[None]) / 2, rel=0.05)
    assert np.mean(played[120.0]) > 1.3 * np.mean(played[None])

    # and through the engine: a hand far from the camera against one close to it (`size` -> velocity)
    means = {}
    for size in (0.0, 1.0):
        take = tmp_path / f"size{size}.jsonl"
        take.write_text("".join(json.dumps({"t": i / 30, "present": True, "x": 0.5, "y": 0.5, "size": size,
                                            "emg": None, "pose": None}) + "\n" for i in range(30 * 12)))
        out = tmp_path / f"size{size}.mid"
        assert main(["render", "--controls", str(take), "--out", str(out), "--model", "charrnn", "--duration", "10",
                     "--refine", "velocity"]) == 0
        means[size] = np.mean([n.velocity for n in midi_to_notes(out)])
    assert means[1.0] > 1.5 * means[0.0], means


def test_duration_runs_live_behind_the_velocity_net():
    refiners = open_refiners(["duration", "velocity"])
    assert [type(r).__name__ for r in refiners] == ["VelocityRefiner", "DurationRefiner"]
    with pytest.raises(ValueError, match="unknown refiner"):
        open_refiners(["tempo"])


# ----------------------------------------------------------------------------- live duration
def stream(table: np.ndarray) -> list[tuple[float, int, int]]:
    """(time, 0 for a note-off / 1 for a note-on, pitch) of a note table, in the order a performer makes them."""
    events = [(float(e), 0, int(p)) for p, _, _, e in table] + [(float(s), 1, int(p)) for p, _, s, _ in table]
    return sorted(events)


def play_through(refiner, events, batch_sizes, lookahead=0.2, rollbacks=()):
    """Feed events in batches as the generation does (now = cursor - lookahead); schedule, send through a ledger."""
    from instrument.ledger import NoteLedger
    from instrument.scheduler import Scheduler

    scheduler, ledger, sent = Scheduler(), NoteLedger(), []
    i, b, previous = 0, 0, events[0][0]
    while i < len(events):
        batch = events[i:i + batch_sizes[b % len(batch_sizes)]]
        i, b = i + len(batch), b + 1
        cursor = batch[-1][0]
        now = min(cursor - lookahead, previous)  # the generation runs ahead of the playhead (no underrun here)
        previous = cursor
        for item in scheduler.due(now):  # what the sender has sent by now
            sent.append((item.deadline, item.message))
            ledger.admit(item.message, item.deadline)
        messages = [TimedMessage(t, mido.Message("note_on" if on else "note_off", note=p, velocity=80 if on else 0))
                    for t, on, p in batch]
        refiner.apply(messages, now, cursor)
        assert [m.deadline for m in messages] == sorted(m.deadline for m in messages)  # the engine wakes for the first
        for item in messages:
            assert item.deadline >= now, "a refined message would be late"
            scheduler.push(item)
    tail = []  # the music goes on (time shifts): the cursor passes every held note-off's end
    refiner.apply(tail, previous - lookahead, previous + 10.0)
    scheduler.extend(tail)
    for item in scheduler.due(float("inf")):
        sent.append((item.deadline, item.message))
        ledger.admit(item.message, item.deadline)
    return sent, ledger


def random_table(rng, n=400, pitches=6):
    """Notes on few pitches (many re-strikes of a pitch), legato, staccato and overlapping."""
    rows, t = [], 0.0
    for _ in range(n):
        t += float(rng.choice([0.0, 0.05, 0.125, 0.25, 0.5]))
        pitch = 60 + int(rng.integers(0, pitches))
        rows.append((pitch, 80, t, t + float(rng.uniform(0.03, 0.95))))
    rows.sort(key=lambda r: (r[2], r[0]))
    out, last = [], {}
    for pitch, v, s, e in rows:  # a pitch struck again ends the note before (as midi_to_notes does)
        if pitch in last and out[last[pitch]][3] > s:
            if s - out[last[pitch]][2] < 0.03:
                continue
            out[last[pitch]] = out[last[pitch]][:3] + (s,)
        last[pitch] = len(out)
        out.append((pitch, v, s, e))
    return np.array(out, dtype=float)


def test_live_duration_is_the_offline_causal_net_note_by_note():
    from models.refine.live_duration import restore_durations
    from models.refine.notes import as_table

    refiner = open_refiners(["duration"])[0]
    rng = np.random.default_rng(3)
    table = as_table(random_table(rng, n=300, pitches=24))[0]
    table[:, 3] -= rng.uniform(0, 1e-4, len(table))  # distinct ends: one order of note-offs
    sent, _ = play_through(refiner, stream(table), [1], lookahead=5.0)
    starts, live = {}, {}
    for t, m in sent:
        if m.type == "note_on":
            starts[m.note] = t
        else:
            live[(m.note, round(starts[m.note], 6))] = t
    offline = restore_durations(table, refiner.model)
    for p, _, s, e in offline:
        assert live[(int(p), round(s, 6))] == pytest.approx(e, abs=1e-6)  # float32 net, float64 NumPy step
    assert refiner.lengthened > 0 and refiner.shortened > 0


@pytest.mark.parametrize("seed", range(4))
def test_live_duration_keeps_every_note_ended_and_no_key_struck_while_sounding(seed):
    rng = np.random.default_rng(seed)
    table = random_table(rng)
    refiner = open_refiners(["duration"])[0]
    refiner.max_note_s = 1.0
    factors = np.random.default_rng(seed + 100)
    refiner._step = lambda features, state: (float(factors.uniform(-0.2, 0.2)), state)  # any net's worst: +-22 %
    sent, ledger = play_through(refiner, stream(table), [1, 3, 7, 2])
    assert ledger.restrikes == 0 and ledger.orphan_offs == 0 and len(ledger) == 0
    ons = [(t, m.note) for t, m in sent if m.type == "note_on"]
    assert ons == sorted((float(s), int(p)) for p, _, s, _ in table), "onsets never move"
    starts = {}
    for t, m in sent:
        if m.type == "note_on":
            starts[m.note] = t
        else:
            length = t - starts.pop(m.note)
            assert length <= 1.0 and length >= 0.03 - 1e-9
    assert refiner.lengthened and refiner.shortened


def test_a_rollback_hands_over_the_held_note_offs_and_forgets_the_future():
    refiner = open_refiners(["duration"])[0]
    refiner._step = lambda features, state: (-0.2, state)  # every note 22 % longer: all note-offs held
    messages = [note_on(0.0, 60), note_on(0.5, 62), TimedMessage(1.0, mido.Message("note_off", note=60, velocity=0))]
    refiner.apply(messages, now=0.0, cursor=1.0)
    assert [m.message.type for m in messages] == ["note_on", "note_on"]  # the note-off is held back
    held = refiner.take_held()
    assert len(held) == 1 and held[0].deadline == pytest.approx(1.22140, abs=1e-4)
    refiner.rollback(0.8)
    again = [TimedMessage(1.2, mido.Message("note_off", note=62, velocity=0))]
    refiner.apply(again, now=0.8, cursor=1.2)  # 62 started before the playhead: still refined
    assert again == [] and refiner._held[62].deadline > 1.2
    release = [note_on(1.3, 62)]  # struck again before its held end: its note-off goes first, at the onset
    refiner.apply(release, now=1.0, cursor=1.3)
    assert [(m.message.type, m.deadline) for m in release] == [("note_off", 1.3), ("note_on", 1.3)]


def test_a_stall_moves_the_held_note_offs_with_the_music():
    refiner = open_refiners(["duration"])[0]
    refiner._step = lambda features, state: (-0.2, state)  # every note 22 % longer: all note-offs held
    messages = [note_on(0.0, 60), note_on(0.5, 62), TimedMessage(1.0, mido.Message("note_off", note=60, velocity=0))]
    refiner.apply(messages, now=0.0, cursor=1.0)
    refiner.delay(0.3)  # a stall: the performer plays the rest 0.3 s later (`Performer.delay`)
    assert refiner._held[60].deadline == pytest.approx(1.22140 + 0.3, abs=1e-4)
    # 62 started at 0.5, now at 0.8 in the delayed music: ending at 1.8 (delayed), it lasted 1.0 s -> 1.2214 s
    late_end = [TimedMessage(1.8, mido.Message("note_off", note=62, velocity=0))]
    refiner.apply(late_end, now=1.3, cursor=1.8)
    assert refiner._held[62].deadline == pytest.approx(0.8 + 1.22140, abs=1e-4)


@pytest.mark.parametrize("voice", ["charrnn", "dcrnn", "seqae"])
def test_every_voice_renders_with_live_durations_and_keeps_the_note_rules(voice, tmp_path):
    """The demo take through `render --refine velocity,duration`, and random gestures (rollbacks) through the engine."""
    from importlib import resources

    from instrument.clock import FakeClock
    from instrument.midi_file import FileSink
    from instrument.midi_out import ListSink
    from instrument.session import SessionConfig, build_engine
    from tests.test_note_ledger_property import Script, check_notes, mid_notes

    take = str(resources.files("instrument").joinpath("takes", "demo.jsonl"))
    lengths = {}
    for refine in ("velocity", "velocity,duration"):
        out = tmp_path / f"{voice}-{refine}.mid"
        assert main(["render", "--controls", take, "--out", str(out), "--model", voice, "--duration", "20",
                     "--refine", refine]) == 0
        lengths[refine] = [n.end - n.start for n in midi_to_notes(out)]
    assert max(lengths["velocity,duration"]) <= 4.0 + 0.006
    # the lengths change (after a rollback the two renders part ways: compare the means, not note by note)
    assert abs(np.mean(lengths["velocity,duration"]) / np.mean(lengths["velocity"]) - 1) > 0.01

    gestures = [(0.7, 0.2, 0.8, True, 0.1, None), (0.4, 0.9, 0.1, True, 0.9, "fist"), (0.3, 0.5, 0.5, False, 0.0, None),
                (0.6, 0.1, 0.3, True, 0.6, "wave_in"), (0.5, 0.8, 0.9, True, 0.2, "wave_out"), (1.0, 0.4, 0.6, True, 0.5, None)]
    clock = FakeClock(10.0)
    listing, path = ListSink(), tmp_path / f"{voice}-gestures.mid"
    engine = build_engine(SessionConfig(model=voice, device="cpu", seed=1, refine=("velocity", "duration")), clock,
                          Script(clock, gestures), [listing, FileSink(path)], threaded=False)
    engine.run(6.0)
    check_notes(listing.sent)  # every note-on has one note-off, none on a sounding key, none longer than the cap
    assert mid_notes(path) == [(m.type, m.note, m.velocity) for _, m in listing.sent if m.type in ("note_on", "note_off")]
    stats = engine.stats()
    assert engine.late == 0 and stats["restrikes"] == 0 and stats["stuck_at_stop"] == 0 and engine.rollbacks >= 2
    duration = engine.generation.refiners[-1]
    assert duration.applied > 10 and duration.lengthened + duration.shortened > duration.applied // 4


def test_random_gestures_with_live_durations_never_leave_a_note_stuck(tmp_path):
    """The property test of tests/test_note_ledger_property.py, every voice, both live refiners, random lengths."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from instrument.clock import FakeClock
    from instrument.midi_out import ListSink
    from instrument.session import SessionConfig, build_engine
    from instrument.voices import voice_names
    from tests.test_note_ledger_property import Script, check_notes, gesture

    @settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(name=st.sampled_from(voice_names()), gestures=st.lists(gesture, min_size=2, max_size=10), seed=st.integers(0, 3))
    def run(name, gestures, seed):
        clock = FakeClock(10.0)
        listing = ListSink()
        config = SessionConfig(model=name, device="cpu", seed=seed, refine=("velocity", "duration"))
        engine = build_engine(config, clock, Script(clock, gestures), [listing], threaded=False)
        factors = np.random.default_rng(seed)  # the worst any net could do: every note +-22 %, half of them held back
        engine.generation.refiners[-1]._step = lambda features, state: (float(factors.uniform(-0.2, 0.2)), state)
        engine.run(min(6.0, sum(g[0] for g in gestures) + 1.0))
        check_notes(listing.sent)
        stats = engine.stats()
        assert engine.late == 0 and stats["restrikes"] == 0 and stats["stuck_at_stop"] == 0

    run()
