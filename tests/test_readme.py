"""The README's port names are the real ones (issue 18: it once told users `jack_connect "Deep Symphony:out"`).

Every `Deep Symphony:...` JACK port name the README gives must be the name a real MidiSink
reports and a separate JACK client lists; every `--connect NAME` it gives must find the port
of the program it names (FluidSynth started with the README's own command line; loopMIDI's
port as Windows MM lists it). And a missing camera is the one line the README promises, without
OpenCV's own log before it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import rtmidi

from instrument.midi_out import MidiSink

from instrument.midi_systems import DEFAULT_PORT_NAME, find_port
from tests.required import missing

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
JACK_NAMES = sorted(set(re.findall(rf"({re.escape(DEFAULT_PORT_NAME)}:[^\"`'\s]+(?: [^\"`'\s:]+)*)", README)))
CONNECTS = sorted(set(re.findall(r"--connect ([A-Za-z][\w-]*)", README)) - {"NAME"})
FLUIDSYNTH = re.search(r"`(fluidsynth -a jack -m jack [^`]+)`", README)


def jack_sources() -> list[str]:
    """MIDI output ports of every JACK client, as a separate client sees them."""
    probe = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="readme-check")
    try:
        return list(probe.get_ports())
    finally:
        probe.delete()


def jack_destinations() -> list[str]:
    probe = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="readme-check")
    try:
        return list(probe.get_ports())
    finally:
        probe.delete()


def test_the_readme_names_ports_to_type():
    assert f"`{DEFAULT_PORT_NAME}`" in README
    assert JACK_NAMES, "the README no longer gives the JACK port name (jack_connect ...)"
    assert {"fluidsynth", "loopMIDI"} <= set(CONNECTS), CONNECTS


@pytest.mark.jack
def test_jack_port_names_are_what_the_sink_reports(jack_server):
    sink = MidiSink(api="jack")
    try:
        assert sink.connected, sink.status
        listed = jack_sources()
        for name in JACK_NAMES:
            assert name == sink.full_port_name, f"README says {name!r}, the port is {sink.full_port_name!r}"
            assert name in listed, f"README says {name!r}; JACK lists {listed}"
    finally:
        sink.close()


@pytest.mark.jack
def test_connect_fluidsynth_finds_the_port_the_readme_command_opens(jack_server):
    fluidsynth = shutil.which("fluidsynth")
    assert FLUIDSYNTH, "the README no longer shows how to start FluidSynth"
    argv = shlex.split(FLUIDSYNTH.group(1))
    if fluidsynth is None or not os.path.exists(argv[-1]):
        missing("fluidsynth or the TimGM6mb soundfont is not installed (apt install fluidsynth timgm6mb-soundfont)")
    # stdin stays open: FluidSynth's shell waits on it, as in a terminal
    proc = subprocess.Popen([fluidsynth, *argv[1:]], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while not any("fluidsynth" in p.lower() for p in jack_destinations()):
            assert proc.poll() is None and time.monotonic() < deadline, "FluidSynth opened no JACK MIDI port"
            time.sleep(0.1)
        find_port(jack_destinations(), "fluidsynth")  # raises UsageError naming the ports if not found
        sink = MidiSink(connect="fluidsynth", api="jack")
        try:
            assert sink.connected and "fluidsynth" in sink.full_port_name.lower(), sink.status
        finally:
            sink.close()
    finally:
        proc.kill()
        proc.wait()


def test_connect_loopmidi_finds_the_port_windows_mm_lists():
    # Windows MM lists ports with a number after the name; loopMIDI's default port is "loopMIDI Port"
    windows_ports = ["Microsoft GS Wavetable Synth 0", "loopMIDI Port 1"]
    assert windows_ports[find_port(windows_ports, "loopMIDI")] == "loopMIDI Port 1"


def test_a_missing_camera_is_one_line_not_opencv_log():
    # The README promises one line for a missing device; OpenCV used to print its own first
    # ("[ WARN:0@0.014] ... can't open camera by index", "Camera index out of range").
    assert "missing devices" in README and "one line" in README
    env = {k: v for k, v in os.environ.items() if k != "OPENCV_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-m", "instrument", "monitor", "--controller", "webcam:97", "--frames", "1"],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()] and "no camera at webcam:97" in result.stderr, \
        result.stderr
