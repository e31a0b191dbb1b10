"""MIDI on every desktop OS (issue 18): the API choice per platform, with rtmidi's compiled API list stubbed.

`select_api` is pure: a platform, the APIs python-rtmidi was compiled with, and (Linux only)
whether the ALSA sequencer exists and a JACK server answers. `current_system` must not look
at /dev/snd or JACK anywhere but on Linux. The real JACK path is checked once at the end.
"""

from __future__ import annotations

import os
import sys

import pytest
import rtmidi

import instrument.midi_systems as midi_out
from instrument.commands import ports
from instrument.errors import MidiUnavailable, UsageError
from instrument.midi_systems import MIDI_API_CHOICES, MidiSystem, choose_api, current_system, jack_server_running, \
    select_api

LINUX = ("alsa", "jack")  # what a Linux wheel of python-rtmidi is compiled with
MACOS = ("coremidi",)
WINDOWS = ("winmm",)
RTMIDI_API = {"alsa": rtmidi.API_LINUX_ALSA, "jack": rtmidi.API_UNIX_JACK, "coremidi": rtmidi.API_MACOSX_CORE,
              "winmm": rtmidi.API_WINDOWS_MM}


@pytest.mark.parametrize("system, expected", [
    (MidiSystem("linux", LINUX, alsa_seq=True, jack_running=True), "alsa"),  # ALSA first: every Linux DAW sees it
    (MidiSystem("linux", LINUX, alsa_seq=False, jack_running=True), "jack"),  # containers, JACK-only setups
    (MidiSystem("linux", ("jack",), alsa_seq=True, jack_running=True), "jack"),  # a build without ALSA
    (MidiSystem("darwin", MACOS), "coremidi"),
    (MidiSystem("darwin", ("coremidi", "jack")), "coremidi"),
    (MidiSystem("win32", WINDOWS), "winmm"),
    (MidiSystem("cygwin", WINDOWS), "winmm"),
    (MidiSystem("freebsd14", ("jack",), jack_running=True), "jack"),
])
def test_auto_picks_the_native_api(system, expected):
    assert select_api("auto", system) == expected


def test_auto_on_linux_with_nothing_running_names_the_fix():
    with pytest.raises(MidiUnavailable, match=r"no MIDI system: .*jackd -S -d dummy.*snd-seq"):
        select_api("auto", MidiSystem("linux", LINUX))


@pytest.mark.parametrize("platform, compiled", [("darwin", ()), ("win32", ()), ("darwin", ("jack",))])
def test_a_build_without_the_native_api_says_so(platform, compiled):
    with pytest.raises(MidiUnavailable, match="this python-rtmidi was built without .*reinstall"):
        select_api("auto", MidiSystem(platform, compiled))


@pytest.mark.parametrize("system", [MidiSystem("linux", LINUX, alsa_seq=True, jack_running=True),
                                    MidiSystem("darwin", MACOS)])
def test_virtual_ports_where_the_api_has_them(system):
    assert select_api("auto", system, virtual=True) in ("alsa", "coremidi")


def test_windows_mm_has_no_virtual_port_and_one_line_names_loopmidi():
    windows = MidiSystem("win32", WINDOWS)
    assert select_api("winmm", windows, virtual=False) == "winmm"  # --connect NAME works
    for requested in ("auto", "winmm"):
        with pytest.raises(MidiUnavailable) as err:
            select_api(requested, windows, virtual=True)
        message = str(err.value)
        assert "\n" not in message and "loopMIDI" in message and "--connect" in message


@pytest.mark.parametrize("requested, system, match", [
    ("coremidi", MidiSystem("linux", LINUX, alsa_seq=True), r"no CoreMIDI \(it has: alsa, jack\)"),
    ("winmm", MidiSystem("darwin", MACOS), r"no Windows MM \(it has: coremidi\)"),
    ("alsa", MidiSystem("darwin", MACOS), "ALSA is used on Linux; here use --midi-api coremidi"),
    ("jack", MidiSystem("win32", WINDOWS), "JACK is used on Linux; here use --midi-api winmm"),
    ("alsa", MidiSystem("linux", ("jack",), alsa_seq=True), r"no ALSA \(it has: jack\)"),
    ("rtpmidi", MidiSystem("linux", LINUX), "use auto, alsa, jack, coremidi, winmm"),
])
def test_an_api_this_machine_cannot_have_is_a_usage_error(requested, system, match):
    with pytest.raises(UsageError, match=match):
        select_api(requested, system)


def test_a_named_linux_api_that_is_not_running():
    with pytest.raises(MidiUnavailable, match=r"/dev/snd/seq is missing"):
        select_api("alsa", MidiSystem("linux", LINUX, jack_running=True))
    with pytest.raises(MidiUnavailable, match="no JACK server is running"):
        select_api("jack", MidiSystem("linux", LINUX, alsa_seq=True))
    assert select_api("jack", MidiSystem("linux", LINUX, alsa_seq=True, jack_running=True)) == "jack"


def test_the_choices_are_the_api_table():
    assert MIDI_API_CHOICES == ("auto", "alsa", "jack", "coremidi", "winmm")


@pytest.fixture
def stub_os(monkeypatch):
    """stub_os(platform, compiled): sys.platform and rtmidi's compiled API list as on that OS; probing
    /dev/snd or JACK fails the test unless the platform is Linux."""

    def stub(platform: str, compiled: tuple[str, ...]) -> None:
        monkeypatch.setattr(sys, "platform", platform)
        monkeypatch.setattr(midi_out.rtmidi, "get_compiled_api", lambda: [RTMIDI_API[a] for a in compiled])
        if not platform.startswith("linux"):
            def forbidden(*args):
                raise AssertionError(f"probed a Linux MIDI system on {platform}")

            monkeypatch.setattr(midi_out, "alsa_available", forbidden)
            monkeypatch.setattr(midi_out, "jack_server_running", forbidden)

    return stub


@pytest.mark.parametrize("platform, compiled, expected", [("darwin", MACOS, "coremidi"), ("win32", WINDOWS, "winmm")])
def test_nothing_probes_dev_snd_or_jack_off_linux(stub_os, platform, compiled, expected):
    stub_os(platform, compiled)
    assert current_system() == MidiSystem(platform, compiled)
    assert choose_api("auto") == expected
    report = ports.report()
    assert report["auto"] == expected and list(report["apis"]) == [expected]


def test_current_system_on_linux_reads_what_runs(stub_os, monkeypatch):
    stub_os("linux", LINUX)
    monkeypatch.setattr(midi_out, "alsa_available", lambda: True)
    monkeypatch.setattr(midi_out, "jack_server_running", lambda server=None: False)
    assert current_system() == MidiSystem("linux", LINUX, alsa_seq=True, jack_running=False)


def test_jack_probe_without_unix_sockets_is_false(monkeypatch):
    monkeypatch.delattr(os, "getuid", raising=False)  # as on Windows
    assert jack_server_running() is False


def test_ports_on_windows_names_the_loopmidi_fix(stub_os, monkeypatch, capsys):
    stub_os("win32", WINDOWS)
    monkeypatch.setattr(midi_out, "list_ports", lambda api: (["Microsoft GS Wavetable Synth", "loopMIDI Port"],
                                                             ["loopMIDI Port"]))
    assert ports.run(type("Args", (), {"json": False})()) == 0
    out = capsys.readouterr().out
    assert "Windows MM (winmm): available; Windows MM has no virtual MIDI ports" in out
    assert "loopMIDI Port" in out and "--midi-api auto uses winmm" in out


@pytest.mark.jack
def test_auto_finds_a_real_jack_server(jack_server):
    found = ports.report()
    assert found["apis"]["jack"]["available"]
    if midi_out.alsa_available():  # a machine with an ALSA sequencer: auto prefers it, JACK still listed
        assert choose_api("auto") == "alsa" and found["auto"] == "alsa"
        return
    assert choose_api("auto") == "jack" and found["auto"] == "jack"
    assert not found["apis"]["alsa"]["available"] and "/dev/snd/seq" in found["apis"]["alsa"]["problem"]
