"""Deep Symphony Live: gestures in, neural music out through a virtual MIDI port."""

__version__ = "0.1.0"
