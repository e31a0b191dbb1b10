"""The Refine nets: the Velocity Net gives notes dynamics, the Duration Net puts their timing back in place.

velocity.py, duration.py (offline), live_duration.py (causal, behind a voice live), notes.py (shared note tables),
train.py, eval.py, beat_grid.py (is a corpus on a beat grid?). The package imports nothing by itself.
"""
