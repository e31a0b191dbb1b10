"""Controls: what the mapping hands to a voice, in musical units."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Controls:
    """Model controls derived from a ControlFrame; None means "leave at the model's default".

    register: mean MIDI pitch of the notes to play (e.g. 48..84).
    density: note-ons per second (e.g. 1..12).
    key_histogram: 12 pitch-class weights summing to 1 (C first), the soft key condition.
    noise_slots: values for the DCRNN noise slots 0..N-1, in the prior's range.
    theme: a stored theme code name chosen by pose.
    present: False while the hand is lost (the mapping has applied hold/glide already).
    """

    register: float | None = None
    density: float | None = None
    key_histogram: tuple[float, ...] | None = None
    noise_slots: tuple[float, ...] | None = None
    theme: str | None = None
    present: bool = True
