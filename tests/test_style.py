"""The Char-RNN's style condition (issue 16): one style per training folder, chosen live by the mapping."""
import json
import shutil

import numpy as np
import pytest
import torch

from instrument.controls import Controls
from instrument.errors import UsageError
from instrument.mapping import Mapping, MappingError
from controllers.frame import ControlFrame
from models.charrnn.model import CharRNN, CharRNNConfig
from models.charrnn.train import _widen_condition, main, piece_styles
from models.charrnn.windows import WindowSampler
from models.checkpoint import load_charrnn, save_checkpoint
from models.conditioning import (COND_DIM, DEFAULT_SPEC, ConditionSpec, condition_vector, extract_conditions,
                                 neutral_conditions, past_conditions)
from models.data import Corpus
from tests.test_train_charrnn import TINY, corpus_dir  # noqa: F401  (the module's corpus fixture)

STYLED = ConditionSpec(styles=("classical", "jazz", "easy"))
EVENTS = np.array([355, 60, 270, 64, 276, 188, 192, 300, 67, 290, 195], dtype=np.int64)  # a few notes and shifts


def test_every_condition_builder_appends_the_styles_one_hot():
    music = extract_conditions(EVENTS, DEFAULT_SPEC)
    assert STYLED.dim == COND_DIM + 3
    for build in (extract_conditions, past_conditions, neutral_conditions):
        cond = build(EVENTS, STYLED, style="jazz")
        assert cond.shape == (len(EVENTS), 17) and cond.dtype == np.float32
        assert (cond[:, COND_DIM:] == [0, 1, 0]).all()
        np.testing.assert_array_equal(cond[:, :COND_DIM], build(EVENTS, DEFAULT_SPEC))
    np.testing.assert_array_equal(extract_conditions(EVENTS, STYLED)[:, :COND_DIM], music)
    assert (extract_conditions(EVENTS, STYLED)[:, COND_DIM:] == [1, 0, 0]).all()  # no style named: the first
    played_as_easy = ConditionSpec(styles=STYLED.styles, default_style="easy")
    assert (condition_vector(spec=played_as_easy)[COND_DIM:] == [0, 0, 1]).all()
    assert list(condition_vector(spec=STYLED, style="easy")[COND_DIM:]) == [0, 0, 1]
    with pytest.raises(ValueError, match="unknown style 'rock'.*classical, jazz, easy"):
        condition_vector(spec=STYLED, style="rock")
    assert ConditionSpec.from_dict(json.loads(json.dumps(STYLED.to_dict()))) == STYLED


def test_widening_a_checkpoint_for_styles_changes_nothing_it_played():
    """A warm start adds zero style columns: at step 0 every style plays exactly as the source model did."""
    torch.manual_seed(0)
    source = CharRNN(CharRNNConfig(embed_dim=8, hidden_size=16, num_layers=2, dropout=0.0))
    target = CharRNN(CharRNNConfig(embed_dim=8, hidden_size=16, num_layers=2, dropout=0.0, cond_dim=17))
    target.load_state_dict(_widen_condition(source.state_dict(), target.state_dict(), 3))
    tokens = torch.from_numpy(EVENTS[None])  # (1, T)
    music = torch.from_numpy(extract_conditions(EVENTS, DEFAULT_SPEC)[None])  # (1, T, 14)
    expected, _ = source.eval()(tokens, music)
    for style in STYLED.styles:
        logits, _ = target.eval()(tokens, torch.from_numpy(extract_conditions(EVENTS, STYLED, style=style)[None]))
        torch.testing.assert_close(logits, expected)


def test_a_run_over_two_folders_learns_each_folders_style(corpus_dir, tmp_path):  # noqa: F811
    jazz = tmp_path / "jazz"
    shutil.copytree(corpus_dir, jazz)  # the same file names: the same train/valid split in both folders
    first = tmp_path / "plain"
    common = ["--cache-dir", str(tmp_path / "cache"), *TINY]
    assert main(["--data", str(corpus_dir), "--out", str(first), *common, "--epochs", "2"]) == 0
    out = tmp_path / "styled"
    assert main(["--data", str(corpus_dir), str(jazz), "--styles", "classical", "jazz", "--out", str(out), *common,
                 "--epochs", "3", "--init-from", str(first / "charrnn.pt")]) == 0
    model, config, meta = load_charrnn(out / "charrnn.pt")
    assert config.cond_dim == COND_DIM + 2 and meta["conditioning"]["styles"] == ["classical", "jazz"]
    corpus = Corpus.load([corpus_dir, jazz], cache_dir=tmp_path / "cache")
    styles = piece_styles(corpus.pieces, [str(corpus_dir), str(jazz)], ("classical", "jazz"))
    assert sorted(set(styles)) == ["classical", "jazz"] and styles.count("jazz") == len(styles) // 2
    assert all(s == ("jazz" if p.path.is_relative_to(jazz) else "classical") for p, s in zip(corpus.pieces, styles))
    spec = ConditionSpec.from_dict(meta["conditioning"])
    two = [corpus.pieces[0].events, corpus.pieces[1].events]  # different melodies: a window names its piece
    sampler = WindowSampler(two, 16, spec, augment=False, seed=3, styles=["classical", "jazz"])
    for _ in range(20):
        tokens, cond = sampler.sample()
        piece = next(i for i, e in enumerate(two) if any((e[j:j + 17] == tokens).all() for j in range(len(e) - 16)))
        assert (cond[:, COND_DIM:] == spec.style_vector(("classical", "jazz")[piece])).all()
    from models.errors import ModelError

    with pytest.raises(ModelError, match="one distinct name per --data folder"):
        main(["--data", str(corpus_dir), str(jazz), "--styles", "classical", "--out", str(out), *common])
    with pytest.raises(ModelError, match=r"styles \['classical', 'jazz'\].*--styles"):  # a styled source needs them
        main(["--data", str(corpus_dir), "--out", str(tmp_path / "again"), *common, "--epochs", "4",
              "--init-from", str(out / "charrnn.pt")])


@pytest.fixture(scope="module")
def styled_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = CharRNNConfig(embed_dim=8, hidden_size=32, num_layers=1, dropout=0.0, cond_dim=STYLED.dim)
    return save_checkpoint(tmp_path_factory.mktemp("styled") / "styled", CharRNN(config), config,
                           meta={"conditioning": STYLED.to_dict()})


def test_the_voice_plays_the_style_the_controls_name(styled_checkpoint, tiny_charrnn):
    from instrument.voices import VoiceOptions, open_voice

    voice = open_voice("charrnn", VoiceOptions(checkpoint=styled_checkpoint, device="cpu", style="jazz"))
    assert "style" in voice.listens and voice.styles == STYLED.styles
    cond = voice._cond[0].numpy()
    assert list(cond[COND_DIM:]) == [0, 1, 0]  # --style: the default
    voice.set_controls(Controls(style="easy", register=70.0))
    assert list(cond[COND_DIM:]) == [0, 0, 1]
    voice.next_events()  # the own-key rebuild keeps the style
    voice.set_controls(Controls(register=60.0))
    assert list(cond[COND_DIM:]) == [0, 1, 0]
    voice.set_controls(Controls(style="classical", key_histogram=(1.0,) + (0.0,) * 11))
    assert list(cond[COND_DIM:]) == [1, 0, 0]
    with pytest.raises(ValueError, match="unknown style 'rock'"):
        open_voice("charrnn", VoiceOptions(checkpoint=styled_checkpoint, device="cpu", style="rock"))
    plain = open_voice("charrnn", VoiceOptions(checkpoint=tiny_charrnn, device="cpu"))
    assert "style" not in plain.listens  # a checkpoint without styles does not listen to one
    shipped = open_voice("charrnn", VoiceOptions(device="cpu", style="jazz"))  # the shipped weights have styles
    assert shipped.styles == STYLED.styles and list(shipped._cond[0].numpy()[COND_DIM:]) == [0, 1, 0]


def test_the_mapping_chooses_a_style_along_an_axis_or_fixes_one():
    mapping = Mapping.from_text('[style]\nstyles = ["classical", "jazz", "easy"]\naxis = "y"\n', "t.toml")
    assert [mapping.map(ControlFrame(t=0.0, y=y)).style for y in (0.1, 0.5, 0.9)] == ["classical", "jazz", "easy"]
    assert mapping.map(ControlFrame(t=0.1, y=0.64)).style == "easy"  # holds near the edge it came from
    assert mapping.targets() == {"style"} and mapping.sources() == {"style": "y"}
    fixed = Mapping.from_text('[style]\nstyles = ["jazz"]\n', "t.toml")
    assert fixed.map(ControlFrame(t=0.0, x=0.3)).style == "jazz"
    for text, message in (('[style]\naxis = "y"\n', "styles must list"), ('[style]\nstyles = []\n', "styles must list"),
                          ('[style]\nstyles = ["a"]\nrange = [0, 2]\n', "unknown key 'range'")):
        with pytest.raises(MappingError, match=message):
            Mapping.from_text(text, "t.toml")


def test_render_takes_a_style_and_refuses_one_the_model_lacks(styled_checkpoint, tiny_charrnn, tmp_path):
    from instrument.commands.render import render
    from instrument.session import SessionConfig

    take = tmp_path / "take.jsonl"
    take.write_text("".join(json.dumps({"t": i * 0.1, "present": True, "x": 0.5, "y": i / 20}) + "\n" for i in range(20)))
    mapping = tmp_path / "style.toml"
    mapping.write_text('[style]\nstyles = ["classical", "jazz"]\naxis = "y"\n')
    stats = render(str(take), tmp_path / "out.mid", config=SessionConfig(model=str(styled_checkpoint), device="cpu",
                                                                          mapping=str(mapping), seed=1), duration=2.0)
    assert stats["sent"] > 0
    mapping.write_text('[style]\nstyles = ["jazz", "rock"]\naxis = "y"\n')
    with pytest.raises(MappingError, match="'rock'; this model's styles are classical, jazz, easy"):
        render(str(take), tmp_path / "out.mid", config=SessionConfig(model=str(styled_checkpoint), device="cpu",
                                                                      mapping=str(mapping)), duration=1.0)
    with pytest.raises(UsageError, match="--style: .* has no style condition"):
        render(str(take), tmp_path / "out.mid", config=SessionConfig(model=str(tiny_charrnn), device="cpu", style="jazz"),
               duration=1.0)
