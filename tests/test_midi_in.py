"""MIDI input through a real JACK server: learn mode maps knobs, then CCs become engine actions."""

import json
import threading
import time

import rtmidi

from instrument.midi_in import MidiInput, load_ccs


def send_cc_when_asked(out, asked: threading.Event, cc: int, value: int = 100) -> None:
    asked.wait(5)
    time.sleep(0.1)
    out.send_message([0xB0, cc, value])


def test_learn_mode_then_ccs_drive_actions(jack_server, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    keyboard = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="ds-keyboard")
    keyboard.open_virtual_port("knobs")
    midi_in = MidiInput("ds-keyboard", api="jack", ccs={"temperature": 21, "tempo": 22, "panic": 64})
    try:
        time.sleep(0.2)
        prompts = []
        asked = {name: threading.Event() for name in ("temperature", "tempo")}

        def prompt(text):
            prompts.append(text)
            for name, event in asked.items():
                if text.startswith(f"move the control for {name}"):
                    event.set()

        senders = [threading.Thread(target=send_cc_when_asked, args=(keyboard, asked["temperature"], 30)),
                   threading.Thread(target=send_cc_when_asked, args=(keyboard, asked["tempo"], 31))]
        for thread in senders:
            thread.start()
        learned = midi_in.learn(actions=("temperature", "tempo"), timeout=5, prompt=prompt)
        for thread in senders:
            thread.join()
        assert learned["temperature"] == 30 and learned["tempo"] == 31 and learned["panic"] == 64
        assert load_ccs() == learned  # saved for the next session
        assert json.loads((tmp_path / "deep-symphony" / "midi_in.json").read_text())["tempo"] == 31

        keyboard.send_message([0xB0, 30, 127])  # temperature knob full up
        keyboard.send_message([0xB0, 31, 0])  # tempo knob down
        keyboard.send_message([0xB0, 64, 127])  # panic pedal pressed
        keyboard.send_message([0xB0, 64, 0])  # released: not a second panic
        keyboard.send_message([0xB0, 99, 50])  # an unmapped knob
        deadline = time.monotonic() + 2
        actions = []
        while len(actions) < 3 and time.monotonic() < deadline:
            actions += midi_in.poll()
            time.sleep(0.01)
        assert actions == [("temperature", 2.0), ("tempo", 60.0), ("panic", 1.0)]
    finally:
        midi_in.close()
        keyboard.close_port()


# -- issue 18: no panic on the pedal, every mapping target learnable, tempo and key recorded ---------
def test_the_sustain_pedal_is_no_panic_by_default(tmp_path, monkeypatch):
    from instrument.midi_in import DEFAULT_CCS, scale

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert "panic" not in load_ccs() and 64 not in load_ccs().values() and load_ccs() == DEFAULT_CCS
    assert scale("transpose", 0) == -12 and scale("transpose", 64) == 0 and scale("transpose", 127) == 12
    assert scale("key", 64) == "C:major" and scale("key", 75) == "G:major" and scale("velocity", 127) == 127


def test_learn_a_mapping_target_skip_with_a_key_and_the_pedal_stays_a_pedal(jack_server, tmp_path, monkeypatch):
    import pytest

    from instrument.errors import UsageError

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    keyboard = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="ds-keys2")
    keyboard.open_virtual_port("knobs")
    midi_in = MidiInput("ds-keys2", api="jack")  # no saved file: the defaults, no panic
    try:
        time.sleep(0.2)
        asked = {name: threading.Event() for name in ("velocity", "panic", "key")}

        def prompt(text):
            for name, event in asked.items():
                if text.startswith(f"move the control for {name} "):
                    event.set()

        senders = [threading.Thread(target=send_cc_when_asked, args=(keyboard, asked["velocity"], 40)),
                   threading.Thread(target=send_cc_when_asked, args=(keyboard, asked["key"], 41))]
        pressed = threading.Thread(target=lambda: (asked["panic"].wait(5), time.sleep(0.1),
                                                   keyboard.send_message([0x90, 60, 100])))
        for thread in (*senders, pressed):
            thread.start()
        learned = midi_in.learn(actions=("velocity", "panic", "key"), timeout=5, prompt=prompt)
        for thread in (*senders, pressed):
            thread.join()
        assert learned == {"temperature": 21, "tempo": 22, "velocity": 40, "key": 41}  # panic skipped: none
        assert load_ccs() == learned
        with pytest.raises(UsageError, match="learnable actions are"):
            midi_in.learn(actions=("volume",), timeout=0.1, prompt=lambda text: None)

        keyboard.send_message([0xB0, 64, 127])  # the sustain pedal: no action
        keyboard.send_message([0xB0, 40, 10])
        keyboard.send_message([0xB0, 40, 127])  # a knob turned: only its last value counts
        keyboard.send_message([0xB0, 41, 75])
        time.sleep(0.5)  # all four have arrived (a JACK period is a few ms): one poll sees them together
        assert midi_in.poll() == [("velocity", 127.0), ("key", "G:major")]
    finally:
        midi_in.close()
        keyboard.close_port()


def test_tempo_and_key_from_midi_input_go_into_the_mid_and_the_log(jack_server, tmp_path):
    import mido

    from tests.play_helpers import busy_charrnn, session_log, start_play, wait_for

    (tmp_path / "deep-symphony").mkdir()
    (tmp_path / "deep-symphony" / "midi_in.json").write_text(json.dumps({"tempo": 22, "key": 30}))
    keyboard = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="ds-keys3")
    keyboard.open_virtual_port("knobs")
    mid = tmp_path / "knobs.mid"
    env = {**__import__("os").environ, "XDG_CONFIG_HOME": str(tmp_path)}
    proc = start_play(busy_charrnn(tmp_path), mid, "--midi-api", "jack", "--no-midi", "--midi-in", "ds-keys3",
                      "--duration", "4", env=env)
    try:
        wait_for(lambda: any(e["event"] == "start" for e in session_log(mid)), 60, "the session's start", proc)
        time.sleep(1.0)
        keyboard.send_message([0xB0, 22, 0])  # tempo knob down: 60 bpm
        keyboard.send_message([0xB0, 30, 75])  # key knob: G major on the circle of fifths
        _, err = proc.communicate(timeout=60)
    finally:
        keyboard.close_port()
    assert proc.returncode == 0, err
    t, metas = 0.0, []
    for message in mido.MidiFile(mid):
        t += message.time
        if message.type in ("set_tempo", "key_signature"):
            metas.append((t, message))
    assert [m.tempo for _, m in metas if m.type == "set_tempo"] == [mido.bpm2tempo(120), mido.bpm2tempo(60)]
    assert [m.key for _, m in metas if m.type == "key_signature"] == ["G"]
    assert all(t > 0.5 for t, m in metas[1:])  # written when the knob moved, not at the start
    changes = [(e["event"], e.get("bpm", e.get("key")), e["source"]) for e in session_log(mid) if e["event"] in ("tempo", "key")]
    assert changes == [("tempo", 60.0, "midi_in"), ("key", "G:major", "midi_in")]
