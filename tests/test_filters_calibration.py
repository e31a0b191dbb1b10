"""The 1€ filter and calibration profiles (TOML in the user config directory)."""

from __future__ import annotations

import numpy as np
import pytest

from controllers.calibration import (EmgCalibration, Profile, ReachBox, load_profile, profile_path, profiles_dir,
                                     save_profile)
from controllers.errors import ProfileError
from controllers.frame import ControlFrame
from controllers.filters import CameraConditioner, OneEuroConfig, OneEuroFilter


def test_one_euro_smooths_jitter_at_rest():
    rng = np.random.default_rng(1)
    f = OneEuroFilter()
    noisy = 0.5 + rng.normal(0, 0.02, 600)
    out = np.array([f(v, i / 60) for i, v in enumerate(noisy)])
    assert np.std(out[100:]) < np.std(noisy[100:]) / 3


def test_one_euro_follows_fast_moves_with_less_lag_than_a_fixed_low_pass():
    adaptive, fixed = OneEuroFilter(OneEuroConfig(beta=4.0)), OneEuroFilter(OneEuroConfig(beta=0.0))
    ramp = [(i / 60, i / 30) for i in range(31)]  # across the frame in 0.5 s
    a = [adaptive(v, t) for t, v in ramp][-1]
    b = [fixed(v, t) for t, v in ramp][-1]
    assert 1.0 - a < (1.0 - b) / 2  # less than half the lag at the end of the sweep


def test_one_euro_uses_real_timestamps():
    # the same samples: a long gap lets the output move further than a short one
    short, long = OneEuroFilter(), OneEuroFilter()
    short(0.0, 0.0), long(0.0, 0.0)
    assert long(1.0, 1.0) > short(1.0, 0.01)
    same = OneEuroFilter()
    same(0.3, 1.0)
    assert same(0.9, 1.0) == 0.3  # no time passed: nothing to integrate


def test_reset_lets_the_next_value_through():
    f = OneEuroFilter()
    f(0.0, 0.0), f(0.0, 0.1)
    f.reset()
    assert f(0.8, 0.2) == 0.8


def test_emg_calibration_clips_to_unit_range():
    cal = EmgCalibration(rest=(0.1,) * 8, max=(0.5,) * 8)
    assert cal.apply((0.0, 0.1, 0.3, 0.5, 0.9, 0.1, 0.1, 0.1)) == pytest.approx((0, 0, 0.5, 1, 1, 0, 0, 0))
    with pytest.raises(ValueError):
        EmgCalibration(rest=(0.5,) * 8, max=(0.5,) * 8)


def test_reach_box_stretches_comfortable_reach_to_full_range():
    box = ReachBox(x=(0.2, 0.8), y=(0.1, 0.6))
    assert box.apply(0.5, 0.35) == pytest.approx((0.5, 0.5))
    assert box.apply(0.0, 1.0) == (0.0, 1.0)
    cond = CameraConditioner(reach=box)
    assert cond(0.8, 0.6, 0.3, 0.0) == pytest.approx((1.0, 1.0, 0.3))


def test_conditioned_frames_carry_what_the_filter_was_given():
    """The monitor's raw tick: the calibrated position before the 1€ filter, leading it on a fast move."""
    cond = CameraConditioner(reach=ReachBox(x=(0.0, 0.5), y=(0.0, 1.0)))
    first = cond.frame(0.1, 0.5, 0.2, 0.0)
    assert (first.x, first.unfiltered.x, first.unfiltered.y) == pytest.approx((0.2, 0.2, 0.5))  # first value passes
    jump = cond.frame(0.4, 0.5, 0.2, 1 / 30)  # one video frame later the hand is at 0.8 of the reach
    assert jump.unfiltered.x == pytest.approx(0.8)
    assert 0.2 < jump.x < jump.unfiltered.x  # the filter lags behind what it was given
    assert jump == ControlFrame(t=jump.t, x=jump.x, y=jump.y, size=jump.size)  # not part of the reading itself
    assert CameraConditioner(raw=True).frame(0.4, 0.5, None, 0.0).unfiltered is None  # nothing filtered


def test_profile_round_trip_in_xdg_config_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    profile = Profile(
        name="alice",
        emg=EmgCalibration(rest=tuple(0.01 * i + 0.01 for i in range(8)), max=tuple(0.3 + 0.01 * i for i in range(8))),
        reach=ReachBox(x=(0.15, 0.9), y=(0.2, 0.85)),
        poses={"rest": [(0.0,) * 8, (0.05,) * 8], "wave_in": [(0.9,) * 8]},
    )
    path = save_profile(profile)
    assert path == tmp_path / "deep-symphony" / "profiles" / "alice.toml" == profile_path("alice")
    assert profiles_dir() == path.parent
    loaded = load_profile("alice")
    assert loaded.emg.rest == pytest.approx(profile.emg.rest) and loaded.emg.max == pytest.approx(profile.emg.max)
    assert loaded.reach == profile.reach
    assert {k: len(v) for k, v in loaded.poses.items()} == {"rest": 2, "wave_in": 1}


def test_profile_errors_are_one_line_and_name_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    with pytest.raises(ProfileError, match="no calibration profile .*bob.toml.*instrument calibrate"):
        load_profile("bob")
    bad = profile_path("bad")
    bad.parent.mkdir(parents=True)
    bad.write_text("[emg]\nrest = [1, 2\n")
    with pytest.raises(ProfileError, match="bad.toml") as err:
        load_profile("bad")
    assert "\n" not in str(err.value)
    bad.write_text("[emg]\nrest = [0.1]\nmax = [0.2]\n")
    with pytest.raises(ProfileError, match="emg.rest must be a list of 8"):
        load_profile("bad")
    with pytest.raises(ProfileError, match="invalid profile name"):
        profile_path("../etc/passwd")


def test_a_named_profile_must_exist_whatever_the_controller(tmp_path, monkeypatch):
    from controllers import open_controller

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    with pytest.raises(ProfileError, match="no calibration profile .*alcie.toml"):
        open_controller("demo", profile="alcie")  # the demo uses no profile, but the typo must not pass unseen
    open_controller("demo").close()
