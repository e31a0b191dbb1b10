"""The note ledger: the one record of sounding notes, its two rules, and panic."""

import mido

from instrument.ledger import NoteLedger


def on(note, channel=0, velocity=90):
    return mido.Message("note_on", channel=channel, note=note, velocity=velocity)


def off(note, channel=0):
    return mido.Message("note_off", channel=channel, note=note)


def kinds(messages):
    return [(m.type, m.channel, getattr(m, "note", None), getattr(m, "control", None)) for m in messages]


def test_a_sounding_pitch_is_ended_before_it_is_struck_again():
    ledger = NoteLedger()
    assert kinds(ledger.admit(on(60), 0.0)) == [("note_on", 0, 60, None)]
    assert kinds(ledger.admit(on(60), 0.5)) == [("note_off", 0, 60, None), ("note_on", 0, 60, None)]
    assert ledger.restrikes == 1 and ledger.sounding(0) == {60: 0.5}


def test_a_note_off_for_a_silent_key_is_dropped_so_every_note_on_has_exactly_one_note_off():
    ledger = NoteLedger()
    assert ledger.admit(off(60), 0.0) == []
    ledger.admit(on(60), 0.1)
    assert len(ledger.admit(off(60), 0.2)) == 1 and ledger.admit(off(60), 0.3) == []
    assert ledger.orphan_offs == 2 and len(ledger) == 0
    assert ledger.recent(0.0) == ((60, 90, 0.1, 0.2),)


def test_panic_sends_note_offs_then_all_notes_off_and_all_sound_off_once_per_channel():
    ledger = NoteLedger()
    for ch, note in [(0, 60), (0, 64), (3, 50)]:
        ledger.admit(on(note, ch), 0.0)
    ledger.admit(off(64), 0.1)
    assert kinds(ledger.panic(1.0)) == [
        ("note_off", 0, 60, None), ("note_off", 3, 50, None),
        ("control_change", 0, None, 123), ("control_change", 0, None, 120),
        ("control_change", 3, None, 123), ("control_change", 3, None, 120),
    ]
    assert len(ledger) == 0 and all(end is not None for *_, end in ledger.recent(0.0))
    assert [m.type for m in NoteLedger().panic(0.0)] == []
