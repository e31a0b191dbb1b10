"""What the controls do besides steering the voice: MIDI CCs out, and tempo and key changes recorded.

- CC out (`[cc.N]` in a mapping): the control's value, rounded to 0..127, becomes a control
  change N on the output channel, for DAW automation. It is sent only when the value
  changes, at most `CC_MAX_HZ` times a second per CC; a change that came too soon is sent
  once the interval has passed (`flush`), so the last value always arrives. The engine
  sends these through its timed path (scheduler -> ledger -> every sink).
- Tempo and key changes (from the mapping, MIDI input or a followed clock) go to every sink
  that records (`meta(message, t)`: the .mid gets a tempo or key-signature meta event) and
  to the session log (`tempo` / `key` events with their source), at most `META_MAX_HZ`
  times a second each; the last change always gets there.

Pure apart from the sinks and the log it is handed; times are session seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import mido

CC_MAX_HZ = 100.0
META_MAX_HZ = 10.0
# Key-signature spelling (what a DAW shows) of each tonic pitch class, major and minor.
_MAJOR_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
_MINOR_NAMES = ("Cm", "C#m", "Dm", "Ebm", "Em", "Fm", "F#m", "Gm", "G#m", "Am", "Bbm", "Bm")


def key_signature(name: str) -> mido.MetaMessage:
    """The key-signature meta event of a key name like 'F#:minor'."""
    from models.keys import parse_key

    tonic, mode = parse_key(name)
    return mido.MetaMessage("key_signature", key=(_MAJOR_NAMES if mode == "major" else _MINOR_NAMES)[tonic])


def tempo_meta(bpm: float) -> mido.MetaMessage:
    """The set-tempo meta event of `bpm`."""
    return mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm))


class ControlOutputs:
    """CC out (rate-limited, only on change) and recorded tempo/key changes (throttled)."""

    def __init__(self, cc_numbers: Iterable[int], channel: int, sinks: list,
                 on_event: Callable[..., None] = lambda kind, **fields: None) -> None:
        self.ccs = tuple(sorted(cc_numbers))
        self._names = tuple(f"cc{number}" for number in self.ccs)
        self.channel = channel
        self.sinks = sinks
        self.on_event = on_event
        self._cc_value: dict[int, int] = {}  # CC -> last value sent
        self._cc_at: dict[int, float] = {}  # CC -> when it was sent
        self._cc_pending: dict[int, int] = {}  # CC -> a value that came too soon after the last
        self._meta_at: dict[str, float] = {}  # "tempo" / "key" -> when it was last recorded
        self._meta_pending: dict[str, tuple[object, str]] = {}  # kind -> (value, source) not yet recorded
        self._meta_value: dict[str, object] = {}  # kind -> the value last recorded

    # -- CC out ------------------------------------------------------------------------
    def cc(self, controls, now: float) -> list[mido.Message]:
        """The control changes the mapped CCs ask for now (only changed values, at most CC_MAX_HZ per CC)."""
        out = []
        for number, name in zip(self.ccs, self._names):
            value = controls.get(name)
            if value is None:
                continue
            value = max(0, min(127, int(round(value))))
            self._cc_pending.pop(number, None)
            if self._cc_value.get(number) == value:
                continue
            if now - self._cc_at.get(number, -1e9) < 1.0 / CC_MAX_HZ:
                self._cc_pending[number] = value  # too soon: sent by a later call or by flush()
                continue
            out.append(self._sent(number, value, now))
        return out

    def _sent(self, number: int, value: int, now: float) -> mido.Message:
        self._cc_value[number], self._cc_at[number] = value, now
        return mido.Message("control_change", channel=self.channel, control=number, value=value)

    def flush_cc(self, now: float) -> list[mido.Message]:
        """The control changes held back by the rate limit whose interval has passed."""
        ready = [n for n, at in self._cc_at.items() if n in self._cc_pending and now - at >= 1.0 / CC_MAX_HZ]
        return [self._sent(n, self._cc_pending.pop(n), now) for n in ready]

    # -- tempo and key, recorded -----------------------------------------------------------
    def tempo(self, bpm: float, now: float, source: str) -> None:
        """A tempo change: into the recording and the log (throttled)."""
        self._change("tempo", round(float(bpm), 2), now, source)

    def key(self, name: str, now: float, source: str) -> None:
        """A key change (a key name): into the recording and the log, when it differs from the last."""
        if name != self._meta_pending.get("key", (self._meta_value.get("key"),))[0]:
            self._change("key", name, now, source)

    def _change(self, kind: str, value: object, now: float, source: str) -> None:
        if now - self._meta_at.get(kind, -1e9) < 1.0 / META_MAX_HZ:
            self._meta_pending[kind] = (value, source)
            return
        self._meta_pending.pop(kind, None)
        self._record(kind, value, now, source)

    def _record(self, kind: str, value: object, now: float, source: str) -> None:
        self._meta_at[kind] = now
        if self._meta_value.get(kind) == value:
            return
        self._meta_value[kind] = value
        message = tempo_meta(value) if kind == "tempo" else key_signature(value)
        for sink in self.sinks:
            meta = getattr(sink, "meta", None)
            if meta is not None:
                meta(message, now)
        fields = {"bpm": value} if kind == "tempo" else {"key": value}
        self.on_event(kind, t=round(now, 3), source=source, **fields)

    def flush(self, now: float) -> None:
        """Record the tempo and key changes held back by the throttle whose interval has passed."""
        for kind in [k for k in self._meta_pending if now - self._meta_at.get(k, -1e9) >= 1.0 / META_MAX_HZ]:
            value, source = self._meta_pending.pop(kind)
            self._record(kind, value, now, source)
