"""Models: the event codec, corpus, networks, training and evaluation.

This package never opens MIDI ports or serial devices.
"""
