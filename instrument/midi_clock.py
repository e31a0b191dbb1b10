"""MIDI clock: lead a DAW (`--clock internal`) or follow one (`--clock follow:PORT`).

Internal: 24 timing clocks per quarter note plus start and stop, on deadlines
computed from an anchor (never by adding intervals), so the DAW's tempo reading is
steady. Follow: the tempo is estimated from the intervals between incoming 0xF8
bytes, timed by the MIDI driver's own time stamps (JACK's are sample-accurate, where
arrival times are rounded to its period); the rtmidi callback only appends a number.
"""

from __future__ import annotations

import time
from collections import deque

import mido

PPQN = 24  # MIDI timing clocks per quarter note

_CLOCK, _START, _STOP = mido.Message("clock"), mido.Message("start"), mido.Message("stop")


class MidiClockOut:
    """Timing clock messages for a tempo, from session time 0."""

    def __init__(self, tempo: float = 120.0) -> None:
        self._started = False
        self._anchor, self._ticks = 0.0, 0
        self.tempo = float(tempo)
        self.next_at = 0.0  # session time of the next clock message

    def set_tempo(self, bpm: float) -> None:
        """Change tempo from the next clock on."""
        self._anchor, self._ticks = self.next_at, 0
        self.tempo = float(bpm)

    def due(self, now: float) -> list[mido.Message]:
        """Start (first call), then every clock whose time has come."""
        out = []
        if not self._started:
            self._started = True
            out.append(_START)
        interval = 60.0 / (self.tempo * PPQN)
        while self.next_at <= now:
            out.append(_CLOCK)
            self._ticks += 1
            self.next_at = self._anchor + self._ticks * interval
        return out

    def stop(self) -> list[mido.Message]:
        """The stop message (once)."""
        return [_STOP] if self._started else []


def tempo_from_ticks(times: list[float]) -> float | None:
    """BPM from the times of consecutive 0xF8 clocks; None if too few.

    The mean interval over the whole window (span / count): senders and drivers round
    clock times to their period (2.7 ms at JACK -p 128), which averages out over a beat,
    and a single late clock inside the window changes nothing.
    """
    if len(times) < 3 or times[-1] <= times[0]:
        return None
    return 60.0 / (PPQN * (times[-1] - times[0]) / (len(times) - 1))


class FollowClock:
    """Follows the MIDI clock arriving on an input port; `tempo()` is None while it is silent."""

    def __init__(self, port: str, api: str = "auto", clock=time.monotonic) -> None:
        import rtmidi

        from instrument.midi_out import APIS, choose_api, find_port

        self.api = choose_api(api)
        self._clock = clock
        self._ticks: deque[float] = deque(maxlen=PPQN + 1)  # tick times from the driver's own time stamps
        self._stream_t = 0.0  # sum of rtmidi's delta times: sample-accurate under JACK
        self._last_arrival = float("-inf")
        self._in = rtmidi.MidiIn(APIS[self.api], name="Deep Symphony clock")
        self._in.ignore_types(sysex=True, timing=False, active_sense=True)
        self._in.open_port(find_port(self._in.get_ports(), port), "clock in")
        self._in.set_callback(self._on_message)
        self.port = port

    def _on_message(self, event, data=None) -> None:
        message, delta = event
        self._stream_t += delta
        if message and message[0] == 0xF8:
            self._ticks.append(self._stream_t)
            self._last_arrival = self._clock()

    def tempo(self) -> float | None:
        """The DAW's tempo (bpm), or None when no clock arrived in the last half second."""
        if self._clock() - self._last_arrival > 0.5:
            return None
        return tempo_from_ticks(list(self._ticks))

    def close(self) -> None:
        """Close the input port."""
        self._in.close_port()
        self._in.delete()
