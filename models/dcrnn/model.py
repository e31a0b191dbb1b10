"""DCRNN: a WGAN-GP piano-roll generator whose noise slots the performer's muscles drive.

Rebuilds the "deconvolutional RNN" GAN of the Deep Symphony study (see ORIGINAL_STUDY.md):

    z (B, 32) ─┬─► RNNa (GRU, one step per beat) ─► hierarchical repeats [4, 2, 1] ─┐
    cond (B,12)┘   EMG slots 0-7 enter at every beat                                  │
                                                                                       ▼
    EMG slots, step position ───────────────────────────────► RNNb (GRU, one step per 16th)
                                                                                       │
                                   strip deconvolution: one 12-semitone kernel shared  ▼
                                   across octaves (a hand on the keyboard) ─► logits (B, 16, 128, 2)

Output channels per (step, pitch): 0 = "sounding" logit, 1 = "onset given sounding" logit, so a
binarized bar is the roll encoding of ``models.roll`` (0 off, 1 held, 2 onset) with re-strikes.

Critic (``models/dcrnn/critic.py``, training only): a CNN on the roll plus a CNN on its self-similarity matrix, with an InfoGAN-style head Q
that recovers the EMG slots from the roll. Training maximizes that mutual information, so the EMG
slots steer the music by design, not by luck (Chen et al. 2016). Loss: WGAN-GP (Gulrajani et al.
2017), lambda 10, Adam(0.5, 0.9).

The critic is shown the binarized roll the instrument will play (``roll_hard``: straight-through
gradients, as in BinaryMuseGAN), and a training-only ``Encoder`` adds a VAE-GAN reconstruction term
(Larsen et al. 2016) that teaches note shapes quickly and keeps the generator from ignoring z.

Fixed defects of the original: fresh noise every step (see ``train_dcrnn.py``); the RNN state is
carried between chunks, so consecutive bars connect; the hierarchical repeats are on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.roll import HELD, N_PITCHES, OFF, ONSET

SOUNDING, ONSET_CH = 0, 1  # output channels of the roll logits


# ----------------------------------------------------------------------------- config


@dataclass
class DCRNNConfig:
    """Everything needed to rebuild a DCRNN; saved as JSON beside the weights."""

    z_dim: int = 32  # noise vector size
    n_emg_slots: int = 8  # slots 0..n-1 are driven by the EMG channels
    cond_dim: int = 12  # pitch-class histogram condition (C first); 0 = unconditional
    steps_per_bar: int = 16  # sixteenth notes per chunk
    repeats: tuple[int, ...] = (4, 2, 1)  # hierarchical repeats; repeats[0] = steps per RNNa step
    rnn_a_hidden: int = 96  # coarse RNN (one step per beat)
    rnn_b_hidden: int = 128  # fine RNN (one step per sixteenth)
    level_dim: int = 24  # features per hierarchy level handed to RNNb
    octave_channels: int = 24  # channels per octave fed to the strip deconvolution
    critic_channels: int = 16  # width of the critic CNNs
    bars_per_sample: int = 2  # bars per training segment the critic judges
    slot_names: tuple[str, ...] = field(default=())  # filled in __post_init__ when empty

    def __post_init__(self) -> None:
        self.repeats = tuple(int(r) for r in self.repeats)
        self.slot_names = tuple(self.slot_names)
        if not 0 <= self.n_emg_slots <= self.z_dim:
            raise ValueError(f"n_emg_slots must be in 0..z_dim, got {self.n_emg_slots}")
        coarse = self.repeats[0] if self.repeats else 0
        if not self.repeats or self.steps_per_bar % coarse or any(coarse % r for r in self.repeats):
            raise ValueError(f"repeats {self.repeats} must divide each other and steps_per_bar")
        if not self.slot_names:
            self.slot_names = tuple(f"emg{i}" for i in range(self.n_emg_slots)) + tuple(
                f"style{i}" for i in range(self.z_dim - self.n_emg_slots)
            )
        if len(self.slot_names) != self.z_dim:
            raise ValueError(f"{len(self.slot_names)} slot names for z_dim {self.z_dim}")

    @property
    def coarse_len(self) -> int:
        """Sixteenth steps covered by one RNNa step."""
        return self.repeats[0]

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        d = asdict(self)
        d["repeats"] = list(self.repeats)
        d["slot_names"] = list(self.slot_names)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> DCRNNConfig:
        """Inverse of ``to_dict``; unknown keys are an error (a newer checkpoint)."""
        return cls(**d)


class DCRNNState(NamedTuple):
    """Recurrent state carried from one bar to the next."""

    a: torch.Tensor  # (1, B, rnn_a_hidden)
    b: torch.Tensor  # (1, B, rnn_b_hidden)


# ----------------------------------------------------------------------------- noise


def sample_z(batch: int, config: DCRNNConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw z from the prior: EMG slots ~ U(-1, 1) (InfoGAN continuous codes), others ~ N(0, 1)."""
    z = torch.randn(batch, config.z_dim, generator=generator)
    k = config.n_emg_slots
    z[:, :k] = torch.rand(batch, k, generator=generator) * 2 - 1
    return z


def emg_to_slots(emg: torch.Tensor | list[float] | tuple[float, ...]) -> torch.Tensor:
    """Calibrated EMG values in 0..1 -> EMG-slot values in the prior's range -1..1."""
    return torch.as_tensor(emg, dtype=torch.float32).clamp(0.0, 1.0) * 2 - 1


def z_with_slots(base: torch.Tensor, slots: torch.Tensor | tuple[float, ...] | None) -> torch.Tensor:
    """Return a copy of ``base`` (Z,) or (B, Z) with its first len(slots) values replaced.

    Use with ``Controls.noise_slots`` (already in the prior's range): the style slots keep the
    theme's values and the performer's muscles overwrite slots 0..7.
    """
    z = base.clone()
    if slots is not None:
        s = torch.as_tensor(slots, dtype=z.dtype)
        z[..., : s.shape[-1]] = s
    return z


# ----------------------------------------------------------------------------- generator


class StripDeconv(nn.Module):
    """Per-step features -> 128 pitch logits through one 12-semitone kernel shared by all octaves."""

    def __init__(self, in_dim: int, octave_channels: int, out_channels: int) -> None:
        super().__init__()
        self.n_octaves = -(-N_PITCHES // 12)  # 11 octaves cover 0..131
        self.octave_channels = octave_channels
        self.to_octaves = nn.Linear(in_dim, octave_channels * self.n_octaves)
        # stride = kernel = 12: each octave's feature vector "plays" the same 12-key kernel
        self.deconv = nn.ConvTranspose1d(octave_channels, out_channels, kernel_size=12, stride=12)
        # register preference; start with few keys down (sigmoid(-4) ~ 2%) so the GAN starts sparse
        self.pitch_bias = nn.Parameter(torch.zeros(out_channels, N_PITCHES))
        with torch.no_grad():
            self.pitch_bias[0] = -4.0

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n = h.shape[0]  # h: (N, in_dim)
        oct_feats = F.leaky_relu(self.to_octaves(h), 0.2).view(n, self.octave_channels, self.n_octaves)
        # The transposed convolution with stride == kernel is one matmul per octave; written as a
        # single matmul it is ~10x faster at batch 1 than the conv kernel (same weights).
        w = self.deconv.weight  # (C_oct, C_out, 12)
        c_out = w.shape[1]
        out = oct_feats.transpose(1, 2) @ w.reshape(self.octave_channels, c_out * 12)  # (N, 11, C_out*12)
        out = out.view(n, self.n_octaves, c_out, 12).permute(0, 2, 1, 3).reshape(n, c_out, self.n_octaves * 12)
        return out[:, :, :N_PITCHES] + self.deconv.bias.unsqueeze(1) + self.pitch_bias  # (N, C_out, 128)


class Generator(nn.Module):
    """Streams one bar of roll logits per call, carrying its RNN state between bars."""

    config_class = DCRNNConfig  # rebuilt from a checkpoint's JSON by models.checkpoint

    def __init__(self, config: DCRNNConfig) -> None:
        super().__init__()
        self.config = c = config
        self.n_coarse = c.steps_per_bar // c.coarse_len  # RNNa steps per bar (beats)
        a_in = c.z_dim + c.cond_dim + self.n_coarse
        self.rnn_a = nn.GRU(a_in, c.rnn_a_hidden, batch_first=True)
        # level r gives coarse_len // r codes per beat, each repeated r sixteenth steps
        self.levels = nn.ModuleList(nn.Linear(c.rnn_a_hidden, (c.coarse_len // r) * c.level_dim) for r in c.repeats)
        b_in = len(c.repeats) * c.level_dim + c.n_emg_slots + c.steps_per_bar
        self.rnn_b = nn.GRU(b_in, c.rnn_b_hidden, batch_first=True)
        self.head = StripDeconv(c.rnn_b_hidden, c.octave_channels, 2)
        self.threshold = 0.5  # binarization threshold to play with; calibrated and saved by training
        self.register_buffer("beat_pos", torch.eye(self.n_coarse), persistent=False)
        self.register_buffer("step_pos", torch.eye(c.steps_per_bar), persistent=False)

    def init_state(self, batch: int) -> DCRNNState:
        """The state before the first bar."""
        p = next(self.parameters())
        return DCRNNState(
            torch.zeros(1, batch, self.config.rnn_a_hidden, device=p.device),
            torch.zeros(1, batch, self.config.rnn_b_hidden, device=p.device),
        )

    def generate_chunk(
        self, z: torch.Tensor, cond: torch.Tensor | None, state: DCRNNState
    ) -> tuple[torch.Tensor, DCRNNState]:
        """One bar: z (B, Z), cond (B, 12) or None (= unconditioned) -> logits (B, 16, 128, 2), state."""
        c = self.config
        b = z.shape[0]
        beats = self.n_coarse
        # EMG slots live in their U(-1, 1) prior; clamp so an uncalibrated input cannot extrapolate
        z = torch.cat([z[:, : c.n_emg_slots].clamp(-1.0, 1.0), z[:, c.n_emg_slots:]], dim=1)
        parts = [z.unsqueeze(1).expand(b, beats, c.z_dim)]
        if c.cond_dim:
            if cond is None:  # trained with condition dropout: zeros mean "no condition"
                cond = z.new_zeros(b, c.cond_dim)
            parts.append(cond.unsqueeze(1).expand(b, beats, c.cond_dim))
        parts.append(self.beat_pos.unsqueeze(0).expand(b, beats, beats))
        a_out, a_state = self.rnn_a(torch.cat(parts, dim=-1), state.a)  # (B, beats, Ha)

        levels = []
        for r, proj in zip(c.repeats, self.levels):
            codes = proj(a_out).view(b, beats * (c.coarse_len // r), c.level_dim)
            levels.append(codes.repeat_interleave(r, dim=1))  # (B, 16, level_dim)
        emg = z[:, : c.n_emg_slots].unsqueeze(1).expand(b, c.steps_per_bar, c.n_emg_slots)
        pos = self.step_pos.unsqueeze(0).expand(b, c.steps_per_bar, c.steps_per_bar)
        b_out, b_state = self.rnn_b(torch.cat(levels + [emg, pos], dim=-1), state.b)  # (B, 16, Hb)

        logits = self.head(b_out.reshape(b * c.steps_per_bar, -1))  # (B*16, 2, 128)
        logits = logits.view(b, c.steps_per_bar, 2, N_PITCHES).transpose(2, 3)  # (B, 16, 128, 2)
        return logits, DCRNNState(a_state, b_state)

    def forward(self, zs: torch.Tensor, cond: torch.Tensor | None, state: DCRNNState | None = None) -> torch.Tensor:
        """Several bars: zs (B, n_bars, Z) -> logits (B, n_bars * 16, 128, 2), state carried."""
        state = self.init_state(zs.shape[0]) if state is None else state
        out = []
        for i in range(zs.shape[1]):
            logits, state = self.generate_chunk(zs[:, i], cond, state)
            out.append(logits)
        return torch.cat(out, dim=1)


def roll_probs(logits: torch.Tensor) -> torch.Tensor:
    """Logits (..., T, 128, 2) -> critic input (..., 2, T, 128): P(sounding), P(onset)."""
    p_sound = torch.sigmoid(logits[..., SOUNDING])
    p_onset = p_sound * torch.sigmoid(logits[..., ONSET_CH])
    return torch.stack([p_sound, p_onset], dim=-3)


def roll_hard(logits: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Logits (B, T, 128, 2) -> binary critic input (B, 2, T, 128) with straight-through gradients.

    The forward pass is exactly ``binarize`` (thresholded keys, onset where a note starts or is
    re-struck), so the critic judges the music the instrument will play, not soft probabilities
    it could tell from real rolls by their values alone (Dong & Yang 2018, BinaryMuseGAN). The
    backward pass uses the sigmoid's gradient.
    """
    p = torch.sigmoid(logits)
    hard = (p > threshold).float()
    st = p + (hard - p).detach()  # (B, T, 128, 2): forward hard, backward sigmoid
    on, strike = st[..., SOUNDING], st[..., ONSET_CH]
    was_on = torch.cat([torch.zeros_like(on[:, :1]), on[:, :-1]], dim=1)
    onset = on * (1 - (1 - strike) * was_on)  # on AND (strike OR NOT was_on), for 0/1 values
    return torch.stack([on, onset], dim=1)


def roll_channels(roll: torch.Tensor) -> torch.Tensor:
    """A uint8 roll batch (B, T, 128) -> float critic input (B, 2, T, 128)."""
    return torch.stack([(roll != OFF).float(), (roll == ONSET).float()], dim=1)


# ----------------------------------------------------------------------------- binarization


def binarize(
    logits: torch.Tensor,
    threshold: float = 0.5,
    generator: torch.Generator | None = None,
    prev: torch.Tensor | None = None,
) -> torch.Tensor:
    """Logits (B, T, 128, 2) -> uint8 roll (B, T, 128) of OFF/HELD/ONSET.

    With ``generator`` the keys are Bernoulli-sampled (deterministic for a seeded generator),
    otherwise thresholded. ``prev`` (B, 128) is the last step of the previous bar, so a note that
    was sounding continues as HELD across the bar line unless the model asks for a re-strike.
    A note-off is a transition to OFF; a re-strike is an ONSET right after a sounding step.
    """
    p = torch.sigmoid(logits.detach().float())
    if generator is None:
        hit = p > threshold
    else:
        hit = torch.rand(p.shape, generator=generator) < p
    on, strike = hit[..., SOUNDING], hit[..., ONSET_CH]  # (B, T, 128)
    before = torch.zeros_like(on[:, :1]) if prev is None else (prev != OFF).unsqueeze(1)
    was_on = torch.cat([before, on[:, :-1]], dim=1)
    roll = torch.full(on.shape, OFF, dtype=torch.uint8)
    roll[on] = HELD
    roll[on & (strike | ~was_on)] = ONSET
    return roll


# ----------------------------------------------------------------------------- long-term form


def hold(z: torch.Tensor, n_bars: int) -> torch.Tensor:
    """The same code for ``n_bars`` bars: (Z,) -> (n_bars, Z)."""
    return z.unsqueeze(0).repeat(n_bars, 1)


def interpolate(z_a: torch.Tensor, z_b: torch.Tensor, n_bars: int) -> torch.Tensor:
    """A gradual transition from z_a (first bar) to z_b (last bar): (n_bars, Z)."""
    w = torch.linspace(0.0, 1.0, n_bars).unsqueeze(1) if n_bars > 1 else torch.zeros(1, 1)
    return (1 - w) * z_a.unsqueeze(0) + w * z_b.unsqueeze(0)


def form_schedule(codes: dict[str, torch.Tensor], form: str = "ABCAB", bars_per_section: int = 4) -> torch.Tensor:
    """A song form from theme codes, e.g. ``ABCAB`` with 4 bars each -> (20, Z)."""
    missing = sorted(set(form) - set(codes))
    if missing:
        raise ValueError(f"form {form!r} names sections without a code: {missing}")
    return torch.cat([hold(codes[s], bars_per_section) for s in form], dim=0)


@torch.no_grad()
def generate_bars(
    gen: Generator,
    zs: torch.Tensor,
    cond: torch.Tensor | None = None,
    threshold: float = 0.5,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Stream a schedule of codes zs (n_bars, Z) into one binarized roll (n_bars * 16, 128)."""
    state = gen.init_state(1)
    c = None if cond is None else cond.view(1, -1)
    prev = None
    bars = []
    for z in zs:
        logits, state = gen.generate_chunk(z.view(1, -1), c, state)
        bar = binarize(logits, threshold, generator, prev)[0]
        prev = bar[-1:].clone()
        bars.append(bar)
    return torch.cat(bars, dim=0)


# ----------------------------------------------------------------------------- checkpoints

def save_generator(path: Path, gen: Generator, meta: dict | None = None) -> None:
    """Write the generator in the one checkpoint format (NAME.pt + NAME.json), its threshold in meta."""
    from models.checkpoint import save_checkpoint

    save_checkpoint(path, gen, gen.config, {**(meta or {}), "threshold": gen.threshold})


def load_generator(path: Path | str | None = None) -> Generator:
    """Load a generator (default: the shipped one) in eval mode; weights_only, never unpickles."""
    from models.checkpoint import CheckpointError, checkpoint_paths, load_checkpoint, shipped_checkpoint

    path = shipped_checkpoint("dcrnn") if path is None else Path(path)
    gen, _, meta = load_checkpoint(path, Generator)
    threshold = meta.get("threshold", 0.5)
    if not (isinstance(threshold, (int, float)) and 0.0 < threshold < 1.0):
        raise CheckpointError(f"{checkpoint_paths(path)[1]}: threshold must be a number in (0, 1), got {threshold!r}")
    gen.threshold = float(threshold)
    return gen


@torch.no_grad()
def calibrate_threshold(gen: Generator, real_bars: torch.Tensor, cond: torch.Tensor | None, seed: int = 0) -> float:
    """The threshold at which generated bars have the real bars' share of keys down.

    real_bars (N, 16, 128) uint8; cond (N, 12) or None, one generated bar per real bar.
    """
    target = (real_bars != OFF).float().mean().item()
    z = sample_z(real_bars.shape[0], gen.config, torch.Generator().manual_seed(seed))
    logits, _ = gen.generate_chunk(z, cond, gen.init_state(real_bars.shape[0]))
    p = torch.sigmoid(logits[..., SOUNDING])
    grid = torch.linspace(0.05, 0.95, 91)
    density = torch.stack([(p > t).float().mean() for t in grid])
    return float(grid[(density - target).abs().argmin()])


def theme_codes(config: DCRNNConfig, names: str = "ABCD", seed: int = 2017) -> dict[str, torch.Tensor]:
    """Stored theme codes (deterministic for a seed) that pose or a form schedule can switch between."""
    noise = torch.Generator().manual_seed(seed)
    return {name: z for name, z in zip(names, sample_z(len(names), config, noise))}
