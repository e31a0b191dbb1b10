"""MIDI input: knobs and pads of a controller keyboard -> panic, tempo, key and every mapping target.

Like magenta_midi's learn mode: `learn()` asks for each action in turn and takes the
first control change that moves (a key pressed on the keyboard skips an action). The
mapping is saved as JSON so the next session knows it. The rtmidi callback only enqueues;
the engine drains the queue each tick. A knob for a mapping target (velocity, transpose,
register, ...) holds that target from its first move on, over whatever the gesture says.
Tempo and key changes go into the .mid and the session log (instrument/control_out.py).
No panic by default: CC 64 is the sustain pedal, and a pianist's first pedal press must not
silence the instrument; learn one with `--midi-learn`.
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
from instrument.mapping import SCALAR_TARGETS
from instrument.mapping_toml import CIRCLE_OF_FIFTHS

# What a CC value 0..127 sets, in the target's units: (low, high, curve) with curve linear | exp | int.
RANGES: dict[str, tuple[float, float, str]] = {
    "temperature": (0.2, 2.0, "linear"),
    "tempo": (60.0, 180.0, "linear"),
    "velocity": (1.0, 127.0, "linear"),  # 80 = the voice's own dynamics
    "transpose": (-12.0, 12.0, "int"),  # semitones; the knob's middle (64) is 0
    "register": (36.0, 96.0, "linear"),
    "density": (1.0, 16.0, "exp"),
    "flip_rate": (0.0, 8.0, "linear"),
    "jump": (0.0, 1.0, "linear"),
    "theme_capture": (0.0, 1.0, "linear"),
    "reset_p": (0.0, 1.0, "linear"),
}
# panic, then the key (a knob across the circle of fifths, C in the middle), then every scalar mapping target
ACTIONS = ("panic", "key") + tuple(name for name in SCALAR_TARGETS if name in RANGES)
LEARNED_BY_DEFAULT = ("panic", "temperature", "tempo", "velocity", "transpose", "key")  # what --midi-learn asks for
DEFAULT_CCS = {"temperature": 21, "tempo": 22}  # the first knobs of many keyboards; no panic (CC 64 is the pedal)
SKIP = -1  # queued for a note-on: skips the action being learned


def config_path() -> Path:
    """Where the learned mapping lives (~/.config/deep-symphony/midi_in.json or $XDG_CONFIG_HOME)."""
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "deep-symphony" / "midi_in.json"


def scale(action: str, value: int) -> float | str:
    """A CC value 0..127 in the action's units (RANGES; a key name for `key`; panic 1 on press, else 0)."""
    if action == "panic":
        return 1.0 if value >= 64 else 0.0
    if action == "key":
        return CIRCLE_OF_FIFTHS[min(len(CIRCLE_OF_FIFTHS) - 1, value * len(CIRCLE_OF_FIFTHS) // 128)]
    lo, hi, curve = RANGES[action]
    u = value / 127.0
    if curve == "exp":
        return lo * (hi / lo) ** u
    if curve == "int":
        return float(round(lo + (hi - lo) * (value / 128.0 if value <= 64 else 0.5 + (value - 64) / 126.0)))
    return lo + (hi - lo) * u


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
        elif len(message) == 3 and message[0] & 0xF0 == 0x90 and message[2] > 0:
            self._queue.append((SKIP, message[2]))  # a key pressed: skips an action while learning

    def poll(self) -> list[tuple[str, float | str]]:
        """Actions since the last poll: (action, value in its units, a key name for `key`); a panic only on press."""
        if not self._queue:
            return []
        by_cc = {cc: action for action, cc in self.ccs.items()}
        latest: dict[str, float | str] = {}  # a knob turned sends many CCs: only its last value counts
        while self._queue:
            cc, value = self._queue.popleft()
            action = by_cc.get(cc)
            if action and not (action == "panic" and value < 64):
                latest[action] = scale(action, value)
        return list(latest.items())

    def learn(self, actions=LEARNED_BY_DEFAULT, timeout: float = 15.0, prompt=print) -> dict[str, int]:
        """Ask for each action, take the next CC that moves (a key pressed skips), save the mapping; returns it."""
        unknown = [a for a in actions if a not in ACTIONS]
        if unknown:
            raise UsageError(f"cannot learn {unknown[0]!r}: the learnable actions are {', '.join(ACTIONS)}")
        for action in actions:
            current = f"now CC {self.ccs[action]}" if action in self.ccs else "none yet"
            prompt(f"move the control for {action} ({current}; press a key to skip; waiting {timeout:.0f} s)...")
            self._queue.clear()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self._queue:
                    cc = self._queue.popleft()[0]
                    if cc == SKIP:
                        prompt(f"{action}: skipped ({current})")
                        break
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
