"""The Refine nets: the Velocity Net gives notes dynamics, the Duration Net puts their timing back in place.

velocity.py, duration.py, notes.py (shared note tables), train.py, eval.py. The package imports nothing by itself.
"""
