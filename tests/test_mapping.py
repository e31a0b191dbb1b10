"""Mapping: frames to model controls, from the shipped default TOML or a user file."""

from __future__ import annotations

import pytest

from controllers.frame import ControlFrame
from instrument.mapping import AxisMap, Mapping, MappingError


def frame(t, **axes):
    return ControlFrame(t=t, **axes)


def test_default_reproduces_the_original_instrument():
    m = Mapping.default()
    low, high = m.map(frame(0, x=0.5, y=0.1)), m.map(frame(0.1, x=0.5, y=0.9))
    assert high.register > low.register  # hand up = higher pitch
    left, right = m.map(frame(0.2, x=0.1, y=0.5)), m.map(frame(0.3, x=0.9, y=0.5))
    assert right.density > left.density  # hand right = denser
    assert m.map(frame(0.4, x=0.0, y=0.0)).register == 48 and m.map(frame(0.5, x=1.0, y=1.0)).register == 84
    emg = m.map(frame(0.6, emg=(0.0, 0.25, 0.5, 0.75, 1.0, 0.0, 0.0, 1.0), pose="wave_in"))
    assert emg.noise_slots == pytest.approx((-1.0, -0.5, 0.0, 0.5, 1.0, -1.0, -1.0, 1.0))  # the EMG slots' U(-1, 1) prior
    assert emg.theme == "wave_in"
    assert emg.register is None and emg.density is None  # a Myo alone: the model's defaults


def test_glide_to_neutral_uses_frame_timestamps():
    m = Mapping.default()
    m.map(frame(10.0, x=1.0, y=1.0))
    first = m.map(frame(10.5, present=False))
    assert first.present is False and first.register == 84  # the glide starts at the first lost frame
    half = m.map(frame(11.5, present=False))
    assert half.register == pytest.approx(84 + (66 - 84) * 0.5)
    assert m.map(frame(20.0, present=False)).register == pytest.approx(66)
    back = m.map(frame(20.1, x=0.0, y=0.0))
    assert back.present and back.register == 48


def test_hold_keeps_the_last_controls(tmp_path):
    path = tmp_path / "hold.toml"
    path.write_text('[lost]\nmode = "hold"\n[register]\naxis = "y"\nrange = [40, 80]\n')
    m = Mapping.from_toml(path)
    m.map(frame(0, y=1.0))
    assert m.map(frame(60, present=False)).register == 80
    assert m.map(frame(61, present=False)).density is None
    fresh = Mapping.from_toml(path)
    assert fresh.map(frame(0, present=False)).register is None  # nothing to hold yet


def test_curves_dead_zone_and_invert():
    dz = AxisMap("x", 0.0, 1.0, dead_zone=0.2)
    assert dz(0.45) == 0.5 and dz(0.55) == 0.5 and dz(0.0) == 0.0 and dz(1.0) == 1.0
    assert dz(0.8) == pytest.approx(0.5 + 0.2 / 0.8)
    assert AxisMap("x", 1.0, 16.0, curve="exp")(0.5) == pytest.approx(4.0)
    assert AxisMap("x", 0.0, 1.0, curve="power:2")(0.5) == pytest.approx(0.25)
    assert AxisMap("x", 0.0, 1.0, curve="smooth")(0.25) == pytest.approx(0.15625)
    assert AxisMap("y", 48, 84, invert=True)(1.0) == 48


def test_custom_mapping_file(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('[density]\naxis = "size"\nrange = [2, 8]\ncurve = "exp"\n'
                    '[theme]\naxis = "pose"\n[theme.poses]\nfist = "storm"\n'
                    '[noise_slots]\nslots = [4, 5]\nrange = [-1, 1]\n')
    m = Mapping.from_toml(path)
    c = m.map(frame(0, size=1.0, pose="fist", emg=(1.0, 0.0) + (0.5,) * 6))
    assert c.density == pytest.approx(8) and c.theme == "storm" and c.register is None
    assert c.noise_slots == pytest.approx((0, 0, 0, 0, 1, -1))
    assert m.map(frame(1, pose="rest")).theme == "rest"  # unlisted poses keep their name


@pytest.mark.parametrize("text, message", [
    ("[register\naxis = 'y'", "is not valid TOML"),
    ("[register]\naxis = 'z'\nrange = [1, 2]", "axis must be one of"),
    ("[register]\naxis = 'y'\nrange = [1]", "range must be two numbers"),
    ("[register]\naxis = 'y'\nrange = [1, 2]\nrnage = 3", "unknown key 'rnage'"),
    ("[volume]\naxis = 'y'", "unknown section [volume]"),
    ("[lost]\nmode = 'freeze'", "mode must be 'hold' or 'glide'"),
    ("[register]\naxis = 'x'\nrange = [0, 10]\ncurve = 'exp'", "positive range"),  # density refuses 0 itself
])
def test_bad_mapping_files_give_one_line_errors_naming_the_file(tmp_path, text, message):
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(MappingError) as err:
        Mapping.from_toml(path)
    assert message in str(err.value) and "broken.toml" in str(err.value) and "\n" not in str(err.value)


def test_missing_or_binary_file(tmp_path):
    with pytest.raises(MappingError, match="cannot read mapping file .*nope.toml"):
        Mapping.from_toml(tmp_path / "nope.toml")
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(MappingError, match="bin.toml"):
        Mapping.from_toml(binary)


# -- issue 19, item 3/9: every number checked at load, structural type errors named --------
@pytest.mark.parametrize("text, key", [
    ("[register]\naxis = 'y'\nrange = [48, 84]\nneutral = nan", "neutral"),
    ("[register]\naxis = 'y'\nrange = [48, 84]\nneutral = inf", "neutral"),
    ("[register]\naxis = 'y'\nrange = [48, 84]\nneutral = 100", "neutral"),
    ("[register]\naxis = 'y'\nrange = [48, 84]\nneutral = '66'", "neutral"),
    ("[register]\naxis = 'y'\nrange = [0, 1e300]", "range"),
    ("[register]\naxis = 'y'\nrange = [-20, 84]", "range"),
    ("[density]\naxis = 'x'\nrange = [0, 10]", "range"),
    ("[density]\naxis = 'x'\nrange = [1, 5000]", "range"),
    ("[density]\naxis = 'x'\nrange = [-1e308, 1e308]", "range"),
    ("[noise_slots]\nrange = [-1e6, 1e6]", "range"),
    ("[noise_slots]\nrange = [-1, 1]\nneutral = nan", "neutral"),
    ("[register]\naxis = 'y'\nrange = [48, 84]\ndead_zone = nan", "dead_zone"),
    ("[register]\naxis = 'y'\nrange = [48, 84]\ndead_zone = 1", "dead_zone"),
    ("[register]\naxis = 'y'\nrange = [48, 84]\ndead_zone = 'wide'", "dead_zone"),
    ("[register]\naxis = 'y'\nrange = [48, 84]\ninvert = 'yes'", "invert"),
    ("[register]\naxis = 'y'\nrange = [48, 84]\ncurve = 3", "curve"),
    ("[register]\naxis = ['y']\nrange = [48, 84]", "axis"),
    ("[lost]\nglide_s = nan", "glide_s"),
    ("[lost]\nglide_s = 1e9", "glide_s"),
    ("[lost]\nglide_s = 0", "glide_s"),
    ("[lost]\nglide_s = 'slow'", "glide_s"),
    ("[lost]\nmode = 3", "mode"),
    ("[lost]\nmood = 'hold'", "mood"),
    ("lost = [1, 2]", "lost"),
    ("theme = 'x'", "theme"),
    ("register = 60", "register"),
    ("noise_slots = 'all'", "noise_slots"),
    ("[noise_slots]\nslots = 'all'\nrange = [-1, 1]", "slots"),
    ("[theme]\nposes = 'all'", "poses"),
    ("[theme]\naxis = 'pose'\n[theme.poses]\nfist = 3", "poses"),
    ("[theme]\nsize = 3", "size"),
])
def test_out_of_range_or_mistyped_values_are_one_line_naming_the_key(tmp_path, text, key):
    path = tmp_path / "hostile.toml"
    path.write_text(text)
    with pytest.raises(MappingError) as err:
        Mapping.from_toml(path)
    message = str(err.value)
    assert "hostile.toml" in message and key in message and "\n" not in message, message


def test_values_at_the_edges_of_their_ranges_are_accepted(tmp_path):
    path = tmp_path / "edges.toml"
    path.write_text("[lost]\nmode = 'glide'\nglide_s = 60\n"
                    "[register]\naxis = 'y'\nrange = [127, 0]\nneutral = 0\ndead_zone = 0.99\n"
                    "[density]\naxis = 'x'\nrange = [0.1, 50]\nneutral = 50\n"
                    "[noise_slots]\nrange = [-10, 10]\nneutral = -10\n")
    m = Mapping.from_toml(path)
    assert m.register(1.0) == 0 and m.density(1.0) == 50 and m.noise.rest == -10 and m.lost.glide_s == 60


# -- issue 18: the mapping's reach: new targets, several sources, keys, CCs out ----------------
def load(tmp_path, text, name="reach.toml"):
    path = tmp_path / name
    path.write_text(text)
    return Mapping.from_toml(path)


def test_new_targets_map_their_axes(tmp_path):
    m = load(tmp_path, '[velocity]\naxis = "emg"\nrange = [40, 127]\n'
                       '[transpose]\naxis = "x"\nrange = [-12, 12]\n'
                       '[temperature]\naxis = "roll"\nrange = [0.5, 1.5]\n'
                       '[tempo]\naxis = "pitch"\nrange = [60, 180]\n'
                       '[cc.74]\naxis = "y"\n'
                       '[cc.1]\naxis = "yaw"\nrange = [127, 0]\n')
    c = m.map(frame(0, x=1.0, y=0.5, emg=(1.0,) * 8, roll=0.0, pitch=0.5, yaw=1.0))
    assert (c.velocity, c.transpose, c.temperature, c.tempo) == (127, 12, 0.5, 120)
    assert c.cc74 == 63.5 and c.cc1 == 0  # a CC's range defaults to the full 0..127
    assert m.cc_out.keys() == {1, 74}
    assert m.map(frame(1, x=0.0)).velocity is None  # no EMG in the frame: the voice's own dynamics


def test_several_sources_sum_or_max_and_the_single_axis_form_still_works(tmp_path):
    m = load(tmp_path, '[velocity]\nsources = [{ axis = "x", weight = 0.5 }, { axis = "emg", weight = 0.5 }]\n'
                       'range = [1, 101]\n'
                       '[density]\nsources = [{ axis = "size" }, { axis = "emg", weight = 2.0 }]\ncombine = "max"\n'
                       'range = [1, 11]\n'
                       '[register]\naxis = "y"\nrange = [48, 84]\n')
    both = m.map(frame(0, x=0.4, y=1.0, size=0.3, emg=(0.2,) * 8))
    assert both.velocity == pytest.approx(31.0)  # 0.5 * 0.4 + 0.5 * 0.2 -> 0.3 of 1..101
    assert both.density == pytest.approx(1 + 10 * 0.4)  # max(0.3, 2 * 0.2)
    assert both.register == 84
    camera = m.map(frame(1, x=0.4, size=0.9))  # no EMG: the sources that are there count
    assert camera.velocity == pytest.approx(21.0) and camera.density == pytest.approx(10.0)
    loud = m.map(frame(2, x=1.0, emg=(1.0,) * 8, size=0.0))
    assert loud.velocity == 101 and loud.density == 11  # a sum over 1 is clamped to the range's end
    assert m.sources()["velocity"] == "0.5 x + 0.5 emg" and m.sources()["density"] == "max(size | 2 emg)"


def test_key_follows_the_circle_of_fifths_with_hysteresis_and_a_knob_pins_it(tmp_path):
    from models.keys import key_histogram

    m = load(tmp_path, '[key]\naxis = "x"\n')
    assert m.map(frame(0, x=0.5)).key == "C:major"
    assert m.map(frame(1, x=0.0)).key == "Gb:major" and m.map(frame(2, x=1.0)).key == "B:major"
    c = m.map(frame(3, x=7.5 / 12))  # the middle of G major's twelfth
    assert c.key == "G:major" and c.key_histogram == key_histogram("G:major")
    assert m.map(frame(4, x=8.1 / 12)).key == "G:major"  # just past its edge: held
    assert m.map(frame(5, x=8.3 / 12)).key == "D:major"  # clearly past: the next key
    assert m.map(frame(6, present=False)).key == "D:major"  # a lost hand keeps the key
    m.override("key", "A:minor")
    pinned = m.map(frame(7, x=0.0))
    assert pinned.key == "A:minor" and pinned.key_histogram == key_histogram("A:minor")
    own = load(tmp_path, '[key]\naxis = "y"\nkeys = ["A:minor", "C:major"]\ninvert = true\n', "own.toml")
    assert own.map(frame(0, y=0.9)).key == "A:minor" and own.map(frame(1, y=0.1)).key == "C:major"


def test_overrides_hold_over_the_frames_until_unpinned(tmp_path):
    m = load(tmp_path, '[velocity]\naxis = "x"\nrange = [1, 127]\n')
    m.override("velocity", 100.0)
    m.override("transpose", -5.0)
    c = m.map(frame(0, x=0.0))
    assert (c.velocity, c.transpose) == (100.0, -5.0)
    m.override("velocity", None)
    assert m.map(frame(1, x=0.0)).velocity == 1


@pytest.mark.parametrize("text, key", [
    ("[velocity]\naxis = 'x'\nrange = [0, 127]", "range"),
    ("[velocity]\naxis = 'x'\nrange = [1, 128]", "range"),
    ("[transpose]\naxis = 'x'\nrange = [-60, 0]", "range"),
    ("[temperature]\naxis = 'x'\nrange = [0, 1]", "range"),
    ("[temperature]\naxis = 'x'\nrange = [0.5, nan]", "range"),
    ("[tempo]\naxis = 'x'\nrange = [10, 100]", "range"),
    ("[tempo]\naxis = 'x'\nrange = [60, 180]\nneutral = 200", "neutral"),
    ("[cc.74]\naxis = 'x'\nrange = [0, 200]", "range"),
    ("[cc.120]\naxis = 'x'", "cc.120"),
    ("[cc.volume]\naxis = 'x'", "cc.volume"),
    ("cc = 3", "cc"),
    ("[cc.7]\naxis = 'x'\nrange = [0, inf]", "range"),
    ("[velocity]\nsources = [{ axis = 'x', weight = nan }]\nrange = [1, 127]", "weight"),
    ("[velocity]\nsources = [{ axis = 'x', weight = 11 }]\nrange = [1, 127]", "weight"),
    ("[velocity]\nsources = [{ axis = 'x', weight = -1 }]\nrange = [1, 127]", "weight"),
    ("[velocity]\nsources = [{ axis = 'x', weight = '1' }]\nrange = [1, 127]", "weight"),
    ("[velocity]\nsources = [{ axis = 'z' }]\nrange = [1, 127]", "axis"),
    ("[velocity]\nsources = [{ axis = 'x', gain = 2 }]\nrange = [1, 127]", "gain"),
    ("[velocity]\nsources = []\nrange = [1, 127]", "sources"),
    ("[velocity]\nsources = 'x'\nrange = [1, 127]", "sources"),
    ("[velocity]\nsources = ['x']\nrange = [1, 127]", "sources[0]"),
    ("[velocity]\naxis = 'x'\nsources = [{ axis = 'y' }]\nrange = [1, 127]", "sources"),
    ("[velocity]\nsources = [{ axis = 'x' }]\ncombine = 'mean'\nrange = [1, 127]", "combine"),
    ("[velocity]\naxis = 'x'\ncombine = 'max'\nrange = [1, 127]", "combine"),
    ("[key]\naxis = 'x'\nkeys = ['H:major']", "keys"),
    ("[key]\naxis = 'x'\nkeys = []", "keys"),
    ("[key]\naxis = 'x'\nkeys = 'C'", "keys"),
    ("[key]\naxis = 'x'\nrange = [0, 1]", "range"),
    ("[key]\naxis = 'x'\ndead_zone = nan", "dead_zone"),
])
def test_new_keys_are_checked_at_load_one_line_naming_the_key(tmp_path, text, key):
    test_out_of_range_or_mistyped_values_are_one_line_naming_the_key(tmp_path, text, key)


def test_a_bad_new_key_is_exit_2_with_one_line_from_play(tiny_charrnn, tmp_path, capsys):
    from instrument.cli import main

    path = tmp_path / "bad.toml"
    path.write_text("[cc.74]\naxis = 'x'\nrange = [0, 300]\n")
    code = main(["play", "--model", str(tiny_charrnn), "--controller", "demo", "--no-midi", "--duration", "0.5",
                 "--record", str(tmp_path / "takes"), "--mapping", str(path)])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "bad.toml" in lines[0] and "[cc.74] range" in lines[0], lines


def test_every_shipped_mapping_loads_and_myo_mappings_play_dynamics():
    for name in ("charrnn_camera.toml", "charrnn_emg.toml", "dcrnn.toml", "seqae.toml", "seqae_emg.toml"):
        Mapping.packaged(name)
    for name in ("charrnn_emg.toml", "seqae_emg.toml"):  # a Myo: how hard the forearm works -> loudness
        m = Mapping.packaged(name)
        soft, hard = m.map(frame(0, emg=(0.05,) * 8)), m.map(frame(1, emg=(0.9,) * 8))
        assert soft.velocity < 80 < hard.velocity
    camera = Mapping.packaged("charrnn_camera.toml")  # a camera: the hand closer -> louder
    assert camera.map(frame(0, x=0.5, y=0.5, size=0.1)).velocity < camera.map(frame(1, x=0.5, y=0.5, size=0.9)).velocity


def test_the_response_section_says_which_moves_strike():
    assert Mapping.default().response.strike == 0.5  # the shipped default, written in default_mapping.toml
    assert Mapping.from_text("[register]\naxis = 'y'\nrange = [48, 84]\n", "plain.toml").response.strike == 0.5  # absent
    assert Mapping.from_text("[response]\nstrike = 1.25\n", "r.toml").response.strike == 1.25
    assert Mapping.from_text("[response]\nstrike = 'never'\n", "r.toml").response.strike == float("inf")
    for bad, says in (("strike = -0.5", ">= 0"), ("strike = 'sometimes'", "never"), ("strike = true", "number"),
                      ("when = 0.5", "unknown key 'when'")):
        with pytest.raises(MappingError, match=says):
            Mapping.from_text(f"[response]\n{bad}\n", "r.toml")
