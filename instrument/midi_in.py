"""MIDI input: knobs and pads of a controller keyboard -> temperature, tempo, panic.

Like magenta_midi's learn mode: `learn()` asks for each action in turn and takes the
first control change that moves. The mapping is saved as JSON so the next session
knows it. The rtmidi callback only enqueues; the engine drains the queue each tick.
A saved mapping that cannot be used (not JSON, a CC outside 0..127, `1e400`) is one line
naming the file, before any port is opened.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from pathlib import Path

from instrument.errors import UsageError

ACTIONS = ("temperature", "tempo", "panic")
DEFAULT_CCS = {"temperature": 21, "tempo": 22, "panic": 64}  # first knobs of many keyboards; sustain pedal


def config_path() -> Path:
    """Where the learned mapping lives (~/.config/deep-symphony/midi_in.json or $XDG_CONFIG_HOME)."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "deep-symphony" / "midi_in.json"


def scale(action: str, value: int) -> float:
    """A CC value 0..127 in the action's units: temperature 0.2..2.0, tempo 60..180 bpm, panic 1/0."""
    u = value / 127.0
    if action == "temperature":
        return 0.2 + 1.8 * u
    if action == "tempo":
        return 60.0 + 120.0 * u
    return 1.0 if value >= 64 else 0.0


class MidiInput:
    """An input port whose control changes become engine actions."""

    def __init__(self, port: str, api: str = "auto", ccs: dict[str, int] | None = None) -> None:
        import rtmidi

        from instrument.midi_systems import APIS, choose_api, find_port

        self.ccs = dict(ccs or load_ccs())  # first: a broken file is named even without a MIDI system
        self.api = choose_api(api)
        self._queue: deque[tuple[int, int]] = deque(maxlen=1024)
        self._in = rtmidi.MidiIn(APIS[self.api], name="Deep Symphony in")
        self._in.open_port(find_port(self._in.get_ports(), port), "control in")
        self._in.set_callback(self._on_message)
        self.port = port

    def _on_message(self, event, data=None) -> None:
        message, _ = event
        if len(message) == 3 and message[0] & 0xF0 == 0xB0:
            self._queue.append((message[1], message[2]))

    def poll(self) -> list[tuple[str, float]]:
        """Actions since the last poll: (action, value); a panic only on press."""
        if not self._queue:
            return []
        by_cc = {cc: action for action, cc in self.ccs.items()}
        out = []
        while self._queue:
            cc, value = self._queue.popleft()
            action = by_cc.get(cc)
            if action and not (action == "panic" and value < 64):
                out.append((action, scale(action, value)))
        return out

    def learn(self, actions=ACTIONS, timeout: float = 15.0, prompt=print) -> dict[str, int]:
        """Ask for each action, take the next CC that moves, save the mapping; returns it."""
        for action in actions:
            prompt(f"move the control for {action} (waiting {timeout:.0f} s)...")
            self._queue.clear()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._queue:
                    cc = self._queue.popleft()[0]
                    if cc not in (c for a, c in self.ccs.items() if a != action):
                        self.ccs[action] = cc
                        prompt(f"{action}: CC {cc}")
                        break
                time.sleep(0.01)
        save_ccs(self.ccs)
        return dict(self.ccs)

    def close(self) -> None:
        """Close the port."""
        from instrument.midi_systems import release

        release(self._in, self.api)  # a JACK client whose server died is abandoned, never closed (a 1-s GIL stall)


def load_ccs(path: Path | None = None) -> dict[str, int]:
    """The saved mapping (the actions it names), or the defaults when there is none; a broken file is a UsageError."""
    path = path or config_path()
    fix = f"fix or delete it (defaults: {json.dumps(DEFAULT_CCS)})"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return dict(DEFAULT_CCS)
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror or err}") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise UsageError(f"{path} is not valid JSON ({' '.join(str(err).split())[:80]}); {fix}") from None
    if not isinstance(data, dict):
        raise UsageError(f"{path} must hold a JSON object of action -> CC number; {fix}")
    ccs = {}
    for action in ACTIONS:
        if action not in data:
            continue
        cc = data[action]
        if isinstance(cc, bool) or not isinstance(cc, int) or not 0 <= cc <= 127:
            raise UsageError(f"{path}: {action} must be a CC number 0..127, got {cc!r:.40}; {fix}")
        ccs[action] = cc
    return ccs or dict(DEFAULT_CCS)


def save_ccs(ccs: dict[str, int], path: Path | None = None) -> None:
    """Write the mapping as JSON."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ccs, indent=2) + "\n")
