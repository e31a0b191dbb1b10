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
