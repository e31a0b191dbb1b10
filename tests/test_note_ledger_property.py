"""No note ever sticks: random gesture scripts through every registered voice, rollback on.

Each example plays a random script of hand moves, jumps, losses and EMG bursts through the
real engine (FakeClock, inline generation, the voice's default mapping) into a recording
sink and a .mid file, then checks what a listener relies on:
- every note-on has exactly one note-off, and no note-on comes for a pitch already sounding;
- no note is longer than max_note_s;
- the .mid written holds exactly the notes sent.
"""

from __future__ import annotations

import mido
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controllers.frame import ControlFrame
from instrument.clock import FakeClock
from instrument.midi_out import ListSink
from instrument.midi_file import FileSink
from instrument.session import SessionConfig, build_engine
from instrument.voices import voice_names

MAX_NOTE_S = 4.0

# (seconds until the next frame, x, y, present, EMG level, pose)
gesture = st.tuples(st.floats(0.01, 1.5), st.floats(0, 1), st.floats(0, 1), st.booleans(), st.floats(0, 1),
                    st.sampled_from([None, "rest", "wave_in", "wave_out", "fist"]))


class Script:
    """A controller that plays a list of gestures on the fake clock (a frame every 20 ms in between)."""

    spec = "replay"

    def __init__(self, clock, gestures) -> None:
        self.clock, self.start, self.frames = clock, clock.now(), []
        t = 0.0
        for dt, x, y, present, emg, pose in gestures:
            self.frames.append((t, ControlFrame(t=0.0, present=present, x=x, y=y, size=0.3,
                                                emg=(emg,) * 8, pose=pose)))
            t += dt

    def latest(self) -> ControlFrame:
        elapsed = self.clock.now() - self.start
        tick = round(elapsed / 0.02) * 0.02
        frame = self.frames[0][1]
        for t, f in self.frames:
            if t <= elapsed:
                frame = f
        return ControlFrame(t=self.start + tick, present=frame.present, x=frame.x, y=frame.y, size=frame.size,
                            emg=frame.emg, pose=frame.pose)

    def stats(self) -> dict:
        return {}


def check_notes(sent: list[tuple[float, mido.Message]]) -> None:
    """Every note-on has exactly one note-off, none on a sounding key, none longer than the cap."""
    sounding: dict[tuple[int, int], float] = {}
    for t, m in sent:
        if m.type not in ("note_on", "note_off"):
            continue
        key = (m.channel, m.note)
        if m.type == "note_on" and m.velocity > 0:
            assert key not in sounding, f"note-on for sounding key {key} at {t:.3f}"
            sounding[key] = t
        else:
            assert key in sounding, f"note-off for silent key {key} at {t:.3f}"
            assert t - sounding.pop(key) <= MAX_NOTE_S + 0.006, f"note {key} longer than the cap"  # + one 5-ms render tick
    assert not sounding, f"left sounding: {sorted(sounding)}"


def mid_notes(path) -> list[tuple[str, int, int]]:
    return [(m.type, m.note, m.velocity) for m in mido.MidiFile(path) if m.type in ("note_on", "note_off")]


@pytest.mark.parametrize("name", voice_names())
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gestures=st.lists(gesture, min_size=2, max_size=12), seed=st.integers(0, 3))
def test_random_gestures_never_leave_a_note_stuck(name, gestures, seed, tmp_path):
    clock = FakeClock(10.0)
    listing, path = ListSink(), tmp_path / f"{name}.mid"
    config = SessionConfig(model=name, device="cpu", seed=seed)
    engine = build_engine(config, clock, Script(clock, gestures), [listing, FileSink(path)],
                          threaded=False)
    duration = min(8.0, sum(g[0] for g in gestures) + 1.0)
    engine.run(duration)
    check_notes(listing.sent)
    sent = [(m.type, m.note, m.velocity) for _, m in listing.sent if m.type in ("note_on", "note_off")]
    assert mid_notes(path) == sent  # the recording holds exactly what was sent
    assert engine.late == 0
