"""MIDI clock: lead a DAW (`--clock internal`) or follow one (`--clock follow:PORT`).

Internal: 24 timing clocks per quarter note plus start and stop, on deadlines
computed from an anchor (never by adding intervals), so the DAW's tempo reading is
steady. Follow: the tempo is estimated from the intervals between incoming 0xF8
bytes, timed by the MIDI driver's own time stamps (JACK's are sample-accurate, where
arrival times are rounded to its period); the rtmidi callback only updates a few numbers.
A followed tempo is clamped to the range `--tempo` accepts and smoothed over the ticks, and
the clock counts as stopped after a MIDI stop or a second without ticks, so the engine goes
back to the set tempo; each change is announced through `on_event` (the session log).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

import mido

PPQN = 24  # MIDI timing clocks per quarter note
MIN_BPM, MAX_BPM = 20.0, 300.0  # the range --tempo accepts: a 5000-bpm clock must not flood the voice
STOPPED_AFTER_S = 1.0  # no tick for this long: the clock stopped (8 ticks at 20 bpm, so no flicker)
MIN_TICKS = PPQN // 4 + 1  # a sixteenth note of ticks before the first estimate
SMOOTHING = 0.1  # per-tick weight of the newest estimate: ~10 ticks, under half a beat

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


class TempoFollower:
    """Clock ticks in, a clamped and smoothed tempo out, None once the clock stops (no I/O: times are passed in).

    `tick(t, arrival)` takes a tick's driver time stamp `t` (sample-accurate under JACK) and its
    arrival on the monotonic clock, which times the silence that means "stopped".
    """

    def __init__(self, smoothing: float = SMOOTHING, stopped_after_s: float = STOPPED_AFTER_S) -> None:
        self.smoothing = smoothing
        self.stopped_after_s = stopped_after_s
        self._ticks: deque[float] = deque(maxlen=PPQN + 1)  # one beat of ticks: rounding averages out
        self._smoothed: float | None = None
        self.raw: float | None = None  # the last unclamped estimate (for the log)
        self._last_arrival = -math.inf

    def tick(self, t: float, arrival: float) -> None:
        """One 0xF8 clock; a tick after a silence starts afresh, so the old tempo does not drag."""
        if arrival - self._last_arrival > self.stopped_after_s:
            self.reset()
        self._last_arrival = arrival
        self._ticks.append(t)
        if len(self._ticks) < MIN_TICKS:
            return
        raw = tempo_from_ticks(list(self._ticks))
        if raw is None:
            return
        self.raw = raw
        clamped = min(MAX_BPM, max(MIN_BPM, raw))
        previous = self._smoothed
        self._smoothed = clamped if previous is None else previous + self.smoothing * (clamped - previous)

    def reset(self) -> None:
        """Forget the tempo (MIDI start, continue or stop)."""
        self._ticks.clear()
        self._smoothed = self.raw = None
        self._last_arrival = -math.inf

    def tempo(self, now: float) -> float | None:
        """The followed tempo in [MIN_BPM, MAX_BPM], or None when the clock is stopped or silent."""
        if now - self._last_arrival > self.stopped_after_s:
            return None
        return self._smoothed


class FollowClock:
    """Follows the MIDI clock arriving on an input port; `tempo()` is None while it is stopped or silent.

    `on_event(kind, **fields)` (the session log's `event`) hears `clock_followed` when a clock
    starts leading, `clock_clamped` when its tempo leaves 20..300 bpm, and `clock_stopped` when
    it stops and the set tempo takes over again.
    """

    def __init__(self, port: str, api: str = "auto", clock=time.monotonic,
                 on_event: Callable[..., None] | None = None) -> None:
        import rtmidi

        from instrument.midi_systems import APIS, choose_api, find_port

        self.api = choose_api(api)
        self._clock = clock
        self.on_event = on_event or (lambda kind, **fields: None)
        self._follower = TempoFollower()
        self._following = self._clamped = False
        self._stream_t = 0.0  # sum of rtmidi's delta times: sample-accurate under JACK
        self._in = rtmidi.MidiIn(APIS[self.api], name="Deep Symphony clock")
        self._in.ignore_types(sysex=True, timing=False, active_sense=True)
        self._in.open_port(find_port(self._in.get_ports(), port), "clock in")
        self._in.set_callback(self._on_message)
        self.port = port

    def _on_message(self, event, data=None) -> None:
        message, delta = event
        self._stream_t += delta
        if not message:
            return
        if message[0] == 0xF8:
            self._follower.tick(self._stream_t, self._clock())
        elif message[0] in (0xFA, 0xFB, 0xFC):  # start, continue, stop: the old tempo no longer holds
            self._follower.reset()

    def tempo(self) -> float | None:
        """The DAW's tempo (bpm, clamped to 20..300 and smoothed), or None when its clock is stopped."""
        bpm = self._follower.tempo(self._clock())
        if (bpm is not None) != self._following:
            self._following = bpm is not None
            if bpm is None:
                self._clamped = False
                self.on_event("clock_stopped", port=self.port, detail="back to the set tempo")
            else:
                self.on_event("clock_followed", port=self.port, bpm=round(bpm, 2))
        raw = self._follower.raw
        clamped = bpm is not None and raw is not None and not MIN_BPM <= raw <= MAX_BPM
        if clamped != self._clamped:
            self._clamped = clamped
            if clamped:
                self.on_event("clock_clamped", port=self.port, clock_bpm=round(raw, 2), bpm=round(bpm, 2))
        return bpm

    def close(self) -> None:
        """Close the input port."""
        from instrument.midi_systems import release

        release(self._in, self.api)  # a JACK client whose server died is abandoned, never closed (a 1-s GIL stall)
