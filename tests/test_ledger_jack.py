"""No note sticks at a separate receiver: every shipped voice played through JACK from a gesture take.

`instrument play` (its own process, rollback on, the voice's default mapping) plays the shipped
demo take; a separate JACK client logs what arrives. A listener relies on: every note-on is
ended exactly once, no key is struck while it sounds, no note outlives the 4-s cap, and the
session's .mid holds exactly the notes the receiver heard.
"""

from __future__ import annotations

import subprocess
import sys
from importlib import resources

import pytest

from tests.play_helpers import NOTE_KINDS, recording
from instrument.voices import voice_names

pytestmark = [pytest.mark.jack, pytest.mark.slow]

TAKE = str(resources.files("instrument").joinpath("takes", "demo.jsonl"))


@pytest.mark.parametrize("name", [n for n in voice_names() if n in ("charrnn", "dcrnn", "seqae")])
def test_every_voice_ends_every_note_once_at_a_separate_receiver(name, jack_server, jack_receiver, tmp_path):
    mid = tmp_path / f"{name}.mid"
    play = subprocess.Popen([sys.executable, "-m", "instrument", "play", "--model", name, "--controller",
                             f"replay:{TAKE}", "--midi-api", "jack", "--seed", "1", "--duration", "12",
                             "--record", str(mid), "--no-realtime"], stderr=subprocess.PIPE, text=True)
    receiver = jack_receiver(source="Deep Symphony")
    ready = receiver.wait_ready()
    _, err = play.communicate(timeout=120)
    assert play.returncode == 0, err
    received = [(r["t"], tuple(r["bytes"])) for r in receiver.stop()]

    sounding: dict[tuple[int, int], float] = {}
    seen: set[tuple[int, int]] = set()
    for t, b in received:
        if b[0] & 0xF0 not in NOTE_KINDS:
            continue
        key = (b[0] & 0x0F, b[1])
        if b[0] & 0xF0 == 0x90 and b[2] > 0:
            assert key not in sounding, f"{name}: note-on for sounding key {key}"
            sounding[key], _ = t, seen.add(key)
        elif key in sounding:
            assert t - sounding.pop(key) <= 4.05, f"{name}: note {key} outlived the 4-s cap"
        else:
            assert key not in seen, f"{name}: a second note-off for {key}"  # before connection: not ours to judge
    assert not sounding, f"{name}: still sounding at the receiver: {sorted(sounding)}"
    ons = sum(1 for _, b in received if b[0] & 0xF0 == 0x90 and b[2] > 0)
    assert ons >= 10, f"{name} should play in 12 s"

    t0, recorded = recording(mid)  # the .mid holds exactly what the receiver heard (after it connected)
    start = ready["t"] + 0.05
    sent = [b for t, b in recorded if b[0] & 0xF0 in NOTE_KINDS and t0 + t > start]
    heard = [b for t, b in received if b[0] & 0xF0 in NOTE_KINDS and t > start + 0.003]
    assert sent[-len(heard):] == heard or sent == heard[-len(sent):]
