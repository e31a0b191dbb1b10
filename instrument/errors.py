"""The instrument's domain exceptions, in one place."""


class UsageError(Exception):
    """A mistake in what the user asked for (bad flag value, missing file): one line, exit 2."""


class MidiUnavailable(Exception):
    """No MIDI system (ALSA sequencer or JACK server) can be reached."""
