"""Hostile MIDI files in the DCRNN's training rolls (issue 19, item 7): skipped with a reason, never fatal.

The Char-RNN's corpus (`models.data.Corpus`) is tested in tests/test_corpus.py; the DCRNN reads
its rolls through `models.dcrnn.data.load_rolls`, which must apply the same caps.
"""

from __future__ import annotations

from models.dcrnn.data import load_rolls
from tests.test_corpus import C_MAJOR, HOSTILE_44, _smf


def test_dcrnn_rolls_skip_hostile_files_with_reasons(tmp_path):
    songs = tmp_path / "songs"
    songs.mkdir()
    (songs / "good.mid").write_bytes(_smf(96, C_MAJOR))
    (songs / "tpb0.mid").write_bytes(_smf(0, C_MAJOR))  # ticks_per_beat 0: a ZeroDivisionError before
    (songs / "hostile44.mid").write_bytes(HOSTILE_44)  # 9.4 million seconds of one note
    rolls, skipped = load_rolls([songs], cache_dir=tmp_path / "cache")
    assert sum(len(r) for r in rolls.values()) == 1  # good.mid, in whichever split its path falls
    reasons = {name.rsplit("/", 1)[-1]: reason for name, reason in skipped}
    assert set(reasons) == {"tpb0.mid", "hostile44.mid"}, reasons
    assert "ticks_per_beat" in reasons["tpb0.mid"] and "too long" in reasons["hostile44.mid"]
