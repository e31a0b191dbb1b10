"""The session files under attack (issue 19, items 1, 2 and 9): a full disk, twin sessions, bad `--record` paths.

A full disk mid-song must not end the song: `instrument play` runs as its own process
into a 64 KB tmpfs (or, where mounting is not permitted, under a 64 KB RLIMIT_FSIZE),
plays through a real JACK server into a receiver in another process, and the recording
stops with one line while the receiver keeps hearing notes; what was recorded stays a
valid .mid, a readable control stream and a log of whole lines. A place that cannot be
written at start is one line and exit 2. Two sessions started together into one folder
never write the same files.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import mido
import pytest

from instrument.cli import main
from tests.play_helpers import busy_charrnn, kill_with_stacks, sounding
from tests.required import missing

SMALL = 64 * 1024


class SmallDisk:
    """A 64 KB place to record: a tmpfs (root), else a folder whose files a child may not grow past 64 KB."""

    def __init__(self, folder: Path, mounted: bool) -> None:
        self.folder = folder
        self.mounted = mounted
        self.limit = SMALL

    def fill(self) -> None:
        """Leave no room at all."""
        if not self.mounted:
            self.limit = 256  # not 0: torch's start-up writes a few bytes of its own; a log line is longer
            return
        fd = os.open(self.folder / "filler", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass  # ENOSPC: full
        finally:
            os.close(fd)

    def preexec(self):
        """preexec_fn for the player: nothing on a tmpfs, else the file size limit (EFBIG past it)."""
        if self.mounted:
            return None
        limit = self.limit
        return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


def _mount(folder: Path, options: str) -> bool:
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = _mount(folder, f"size={SMALL}")
    try:
        yield SmallDisk(folder, mounted)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.fixture
def readonly_folder(tmp_path):
    folder = tmp_path / "readonly"
    folder.mkdir()
    mounted = _mount(folder, "ro,size=64k")
    if not mounted:
        if os.geteuid() == 0:
            missing("cannot mount a read-only tmpfs, and root writes into any chmod-ed folder")
        folder.chmod(0o555)
    try:
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)
        else:
            folder.chmod(0o755)


@pytest.fixture(scope="module")
def busy_model(tmp_path_factory) -> Path:
    return busy_charrnn(tmp_path_factory.mktemp("busy"))


def play_argv(model: Path, record: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "instrument", "play", "--model", str(model), "--seed", "3", "--controller", "demo",
            "--record", str(record), "--no-realtime", *extra]


def log_lines(path: Path) -> list[dict]:
    """Every line of a session log; each must be a whole JSON object."""
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.jack
def test_a_full_disk_stops_the_recording_not_the_music(jack_server, jack_receiver, busy_model, small_disk):
    from controllers.replay import read_jsonl

    receiver = jack_receiver(name="ds-disk-full")
    receiver.wait_ready()
    mid = small_disk.folder / "take.mid"
    proc = subprocess.Popen(play_argv(busy_model, mid, "--midi-api", "jack", "--connect", "ds-disk-full",
                                      "--duration", "12"),
                            stderr=subprocess.PIPE, text=True, preexec_fn=small_disk.preexec(),
                            env={**os.environ, "PYTHONFAULTHANDLER": "1"})
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"play did not end:\n{kill_with_stacks(proc)}") from None
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    stopped = [line for line in err.splitlines() if "recording stopped" in line]
    assert len(stopped) == 1 and "the music goes on" in stopped[0], err  # one line, not one per write

    recorded_s = mido.MidiFile(mid).length  # the .mid up to the full disk is a valid file
    assert 0.5 < recorded_s < 10, recorded_s
    frames = read_jsonl(mid.with_suffix(".controls.jsonl"))  # the control stream: whole frames, readable
    assert 0.5 < frames[-1].t < 10
    events = [e["event"] for e in log_lines(mid.with_suffix(".log.jsonl"))]  # whole lines only
    assert "start" in events
    assert "recording_stopped" in events or ".log.jsonl" in stopped[0]  # the log itself may be what failed

    time.sleep(0.2)
    heard = receiver.stop()
    onsets = [r["t"] for r in heard if r["bytes"][0] & 0xF0 == 0x90 and r["bytes"][2] > 0]
    assert onsets[-1] - onsets[0] > recorded_s + 3, "the music stopped with the recording"
    assert sounding(tuple(r["bytes"]) for r in heard) == {}


def test_a_full_disk_at_start_is_one_line_and_exit_2(busy_model, small_disk):
    small_disk.fill()
    proc = subprocess.run(play_argv(busy_model, small_disk.folder / "take.mid", "--no-midi", "--duration", "2"),
                          capture_output=True, text=True, timeout=120, preexec_fn=small_disk.preexec())
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("instrument play: error: --record"), proc.stderr
    assert "take" in lines[0]
    assert not list(small_disk.folder.glob("take*")), "a failed start leaves no empty session files behind"


BAD_RECORD = {
    # case: (--record PATH, fragments of the one line)
    "read-only folder": ("{readonly}/take.mid", ["cannot write", "take"]),
    "a file in /proc": ("/proc/take.mid", ["/proc/take.mid", "cannot write"]),
    "/proc as the folder": ("/proc", ["/proc", "cannot write"]),
    "an existing file": ("{tmp}/old.mid", ["old.mid", "already exists", "never overwritten"]),
    "a folder named x.mid": ("{tmp}/x.mid", ["x.mid", "is a folder"]),
    "/dev/null": ("/dev/null", ["/dev/null", "not a folder"]),
}


@pytest.mark.parametrize("case", sorted(BAD_RECORD))
def test_a_place_that_cannot_be_recorded_to_is_one_line_and_exit_2(case, tiny_charrnn, tmp_path, readonly_folder,
                                                                   capsys):
    (tmp_path / "old.mid").write_bytes(b"MThd keep me")
    (tmp_path / "x.mid").mkdir()
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if not p.is_relative_to(readonly_folder)}
    record, fragments = BAD_RECORD[case]
    record = record.format(tmp=tmp_path, readonly=readonly_folder)
    code = main(["play", "--model", str(tiny_charrnn), "--controller", "demo", "--no-midi", "--duration", "0.5",
                 "--record", record])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("instrument play: error: --record"), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    assert (tmp_path / "old.mid").read_bytes() == b"MThd keep me"  # never overwritten
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if not p.is_relative_to(readonly_folder)}
    assert after == before  # nothing created, nothing touched


def test_twin_sessions_started_together_never_share_files(busy_model, tmp_path):
    folder = tmp_path / "takes"
    procs = [subprocess.Popen(play_argv(busy_model, folder, "--no-midi", "--duration", "3"), stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    for proc in procs:
        try:
            _, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"play did not end:\n{kill_with_stacks(proc)}") from None
        assert proc.returncode == 0, err
    mids = sorted(folder.glob("*.mid"))
    assert len(mids) == 2, mids
    for mid in mids:
        from controllers.replay import read_jsonl

        assert mido.MidiFile(mid).length > 1.0  # each a valid file of its own session
        events = [e["event"] for e in log_lines(mid.with_suffix(".log.jsonl"))]
        assert events.count("start") == 1 and events.count("stop") == 1, events  # not two sessions interleaved
        times = [frame.t for frame in read_jsonl(mid.with_suffix(".controls.jsonl"))]
        assert times == sorted(times) and times[-1] < 4


def test_twin_claims_in_one_second_get_numbered_names(tmp_path):
    import datetime as dt

    from instrument.recording import claim_session_paths, session_paths

    now = dt.datetime(2026, 12, 1, 20, 30, 5)
    first = claim_session_paths(session_paths(str(tmp_path), now), numbered=True)
    second = claim_session_paths(session_paths(str(tmp_path), now), numbered=True)
    (tmp_path / "session_2026-12-01_20-30-05-3.controls.jsonl").touch()  # a stray file of a third name
    third = claim_session_paths(session_paths(str(tmp_path), now), numbered=True)
    assert first["mid"].name == "session_2026-12-01_20-30-05.mid"
    assert second["mid"].name == "session_2026-12-01_20-30-05-2.mid"
    assert third["mid"].name == "session_2026-12-01_20-30-05-4.mid"  # the three files go together
    assert {p.name for p in third.values()} == {"session_2026-12-01_20-30-05-4.mid",
                                                "session_2026-12-01_20-30-05-4.controls.jsonl",
                                                "session_2026-12-01_20-30-05-4.log.jsonl"}
    assert not (tmp_path / "session_2026-12-01_20-30-05-3.mid").exists()  # the attempt was undone
    with pytest.raises(FileExistsError):  # an explicit .mid is never numbered: refused
        claim_session_paths(session_paths(str(first["mid"]), now), numbered=False)
