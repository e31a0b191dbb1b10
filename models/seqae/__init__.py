"""The Continuous Sequential AutoEncoder: 8-event subsequences as 16-bit codes, played by a random walk.

model.py (SeqAE, decode, walk_step, ThemeReset), train.py, eval.py. The package itself imports nothing
(torch loads only with a module), so listing the voices stays fast.
"""
