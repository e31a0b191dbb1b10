"""The corpus pipeline on the real data in ../shared/data: round trip, stats, splits, cache, skips."""

import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from instrument.cli import main
from models.data import Corpus, augment, split_of
from models.events import Note, decode_all, encode_all, events_to_midi, notes_to_events, quantize_notes

from tests.test_events import assert_round_trip

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "deepsymphony"


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    if not DATA.exists():
        pytest.fail(f"the shared corpus is missing: {DATA}")
    return Corpus.load([DATA])


def _round_trip(piece_notes):
    relpath, note_array = piece_notes
    notes = [Note(int(p), float(s), float(e), int(v)) for p, s, e, v in note_array]
    merges = len(notes) - len(quantize_notes(notes))  # strikes the codec folds into the previous one
    return len(notes), assert_round_trip(notes, relpath), merges


def test_round_trip_on_every_corpus_file(corpus):
    assert len(corpus.pieces) == 843
    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(_round_trip, [(p.relpath, p.note_array) for p in corpus.pieces], chunksize=8))
    notes = sum(n for n, _, _ in results)
    irregular = sum(f for _, f, _ in results)
    merges = sum(m for _, _, m in results)
    assert notes == sum(len(p.note_array) for p in corpus.pieces)
    # Every note that is not reproduced within 10 ms is one side of a documented same-step merge
    # (the merged strike, or the note that absorbed it), and such merges stay rare.
    assert irregular <= 2 * merges, (irregular, merges)
    assert merges < notes * 5e-3, f"{merges} of {notes} notes merged as same-step re-strikes"


def test_cached_events_decode_to_the_cached_notes(corpus):
    for piece in corpus.pieces[::40]:
        assert encode_all(notes_to_events(piece.notes)) == piece.events.tolist(), piece.relpath


def test_data_stats_reports_files_and_hours(capsys, corpus):
    assert main(["data", "stats", str(DATA), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["files"] == 843 and stats["skipped"] == []
    assert 65.0 < stats["hours"] < 67.0
    assert sum(stats["splits"].values()) == 843 and stats["splits"]["train"] > stats["splits"]["test"] > 0


def test_split_is_deterministic_and_uses_the_relative_path():
    assert split_of("classical/ADIG01.mid") == split_of("classical/ADIG01.mid")
    counts = {s: 0 for s in ("train", "valid", "test")}
    for i in range(5000):
        counts[split_of(f"x/{i}.mid")] += 1
    assert 0.75 < counts["train"] / 5000 < 0.85 and counts["valid"] > 350 and counts["test"] > 350


def test_broken_files_are_skipped_with_reasons(tmp_path):
    good = sorted((DATA / "easymusicnotes").rglob("*.mid"))[0]
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "GOOD.MIDI").write_bytes(good.read_bytes())
    (tmp_path / "truncated.mid").write_bytes(good.read_bytes()[:40])
    (tmp_path / "text.mid").write_text("not a midi file")
    events_to_midi([]).save(tmp_path / "empty.mid")
    (tmp_path / "notes.txt").write_text("ignored: not a MIDI suffix")
    corpus = Corpus.load([tmp_path], cache_dir=tmp_path / "cache")
    assert [p.relpath for p in corpus.pieces] == ["sub/GOOD.MIDI"]
    reasons = {path.name: reason for path, reason in corpus.skipped}
    assert set(reasons) == {"truncated.mid", "text.mid", "empty.mid"}
    assert "no notes" in reasons["empty.mid"] and "MIDI" in reasons["text.mid"]


def test_second_load_comes_from_the_cache(tmp_path):
    files = sorted((DATA / "easymusicnotes").rglob("*.mid"))[:3]
    for f in files:
        (tmp_path / f.name).write_bytes(f.read_bytes())
    first = Corpus.load([tmp_path], cache_dir=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 3
    # The cache is keyed by content, so prove it answers the second load by poisoning it.
    for entry in (tmp_path / "cache").glob("*.npz"):
        with np.load(entry) as data:
            np.savez(entry, events=data["events"][:5], notes=data["notes"][:1])
    second = Corpus.load([tmp_path], cache_dir=tmp_path / "cache")
    assert [len(p.events) for p in second.pieces] == [5, 5, 5]
    assert [len(p.events) for p in first.pieces] != [5, 5, 5]


def test_data_stats_on_a_folder_without_midi_is_a_usage_error(tmp_path, capsys):
    assert main(["data", "stats", str(tmp_path)]) == 2
    assert "no usable MIDI files" in capsys.readouterr().err


def test_transposition_moves_pitches_and_refuses_out_of_range():
    events = np.asarray(encode_all(notes_to_events([Note(60, 0.0, 0.5, 80), Note(120, 0.5, 1.0, 80)])))
    up = augment(events, transpose=5)
    assert [n.pitch for n in _notes(up)] == [65, 125]
    assert augment(events, transpose=8) is None


def test_time_stretch_scales_onsets_without_drift():
    notes = [Note(60 + i % 12, i * 0.37, i * 0.37 + 0.2, 80) for i in range(200)]
    events = np.asarray(encode_all(notes_to_events(notes)))
    stretched = _notes(augment(events, stretch=1.05))
    assert len(stretched) == 200
    for original, result in zip(notes, stretched):
        assert abs(result.start - original.start * 1.05) < 0.02


def _notes(indices):
    from models.events import events_to_notes

    return events_to_notes(decode_all(indices))


# -- issue 19, item 7: hostile MIDI files are skipped and counted, with bounded memory ----------
def _smf(division: int, track: bytes) -> bytes:
    """A format-0 standard MIDI file from raw track bytes."""
    return (b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
            + division.to_bytes(2, "big") + b"MTrk" + len(track).to_bytes(4, "big") + track)


# tempo 0xFFFFFF (16.7 s a beat), one note held for a delta of 0x0FFFFFFF ticks: ~9.4 million seconds
HOSTILE_44 = _smf(480, bytes.fromhex("00FF5103FFFFFF" "00903C40" "FFFFFF7F803C40" "00FF2F00"))
C_MAJOR = bytes.fromhex("00903C40" "60803C40" "00903E40" "60803E40" "00FF2F00")


def test_the_hostile_44_byte_file_is_what_the_issue_describes():
    assert len(HOSTILE_44) == 44


def test_hostile_files_are_skipped_with_reasons_never_fatal(tmp_path, monkeypatch):
    import models.data

    (tmp_path / "good.mid").write_bytes(_smf(96, C_MAJOR))
    (tmp_path / "tpb0.mid").write_bytes(_smf(0, C_MAJOR))
    (tmp_path / "many.mid").write_bytes(_smf(96, b"\x00\x90" + b"\x3C\x40\x00" * 3000 + b"\x3C\x00\x00\xFF\x2F\x00"))
    (tmp_path / "type2.mid").write_bytes(_smf(96, C_MAJOR).replace(b"\x00\x00\x00\x01", b"\x00\x02\x00\x01", 1))
    monkeypatch.setattr(models.data, "MAX_MESSAGES", 2000, raising=False)  # the real cap (2 M) needs a 6 MB file
    corpus = Corpus.load([tmp_path], cache_dir=tmp_path / "cache")
    assert [p.relpath for p in corpus.pieces] == ["good.mid"]
    reasons = {path.name: reason for path, reason in corpus.skipped}
    assert set(reasons) == {"tpb0.mid", "many.mid", "type2.mid"}, reasons
    assert "ticks_per_beat" in reasons["tpb0.mid"] and "messages" in reasons["many.mid"]


def test_a_piece_longer_than_the_cap_is_skipped(tmp_path):
    (tmp_path / "long.mid").write_bytes(_smf(480, bytes.fromhex("00FF510307A120" "00903C40" "FFFFFF7F803C40" "00FF2F00")))
    corpus = Corpus.load([tmp_path], cache_dir=tmp_path / "cache")  # 0.5 s a beat, 559,240 beats: 78 hours
    assert not corpus.pieces and "too long" in corpus.skipped[0][1]


def test_data_stats_on_the_hostile_44_byte_file_keeps_memory_bounded(tmp_path):
    """Before: `data stats` grew past 2.5 GB on this file. The child caps its address space so a regression fails fast."""
    import subprocess
    import sys

    (tmp_path / "songs").mkdir()
    (tmp_path / "songs" / "hostile.mid").write_bytes(HOSTILE_44)
    script = (
        "import resource, sys\n"
        "from instrument.cli import main\n"
        "import models.data, mido\n"
        "vsz = int(open('/proc/self/status').read().split('VmSize:')[1].split()[0]) * 1024\n"
        "resource.setrlimit(resource.RLIMIT_AS, (vsz + 1024 * 2**20, resource.RLIM_INFINITY))\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"code = main(['data', 'stats', {str(tmp_path / 'songs')!r}, '--cache', {str(tmp_path / 'cache')!r}])\n"
        "print('GROWTH_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "no usable MIDI files" in proc.stderr and "1 skipped" in proc.stderr
    growth_kb = int(proc.stderr.split("GROWTH_KB")[1])
    assert growth_kb < 300 * 1024, f"data stats grew RSS by {growth_kb / 1024:.0f} MB"
