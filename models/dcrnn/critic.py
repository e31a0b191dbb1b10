"""The DCRNN's training-only networks and losses: the WGAN critic with its EMG head, the VAE-GAN
encoder, the reconstruction loss and the gradient penalty.

The instrument never loads these (it plays the ``models.dcrnn.Generator`` alone); ``train_dcrnn``
and the tests do. See ``models/dcrnn/model.py`` for the architecture and the references.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.dcrnn.model import ONSET_CH, SOUNDING, DCRNNConfig


class Critic(nn.Module):
    """WGAN critic on (B, 2, T, 128) rolls: roll CNN + self-similarity CNN, plus the EMG-code head Q."""

    def __init__(self, config: DCRNNConfig) -> None:
        super().__init__()
        self.config = c = config
        ch = c.critic_channels
        t = c.steps_per_bar * c.bars_per_sample
        act = nn.LeakyReLU(0.2)
        self.roll_cnn = nn.Sequential(
            nn.Conv2d(2, ch, (1, 12), stride=(1, 6)), act,  # hand shapes within an octave: (T, 20)
            nn.Conv2d(ch, 2 * ch, (4, 1), stride=(4, 1)), act,  # rhythm within a beat: (T/4, 20)
            nn.Conv2d(2 * ch, 4 * ch, (2, 4), stride=(2, 2)), act,  # half bars, wider pitch: (T/8, 9)
            nn.Flatten(),
        )
        self.ssm_cnn = nn.Sequential(
            nn.Conv2d(1, ch // 2, 4, stride=2, padding=1), act,  # (T/2, T/2)
            nn.Conv2d(ch // 2, ch, 4, stride=2, padding=1), act,  # (T/4, T/4)
            nn.Flatten(),
        )
        roll_feats = 4 * ch * (t // 8) * 9
        ssm_feats = ch * (t // 4) ** 2
        self.cond = nn.Linear(c.cond_dim, 64) if c.cond_dim else None
        feat = roll_feats + ssm_feats + (64 if c.cond_dim else 0)
        self.body = nn.Sequential(nn.Linear(feat, 128), act)
        self.score = nn.Linear(128, 1)
        # Q: recovers each bar's EMG slots from that bar alone. A separate net (not a head on the
        # critic body), so the Wasserstein gradients cannot drown the mutual-information signal.
        self.q = nn.Sequential(
            nn.Conv2d(2, ch, (1, 12), stride=(1, 6)), act,  # (16, 20)
            nn.Conv2d(ch, 2 * ch, (4, 1), stride=(4, 1)), act,  # (4, 20)
            nn.Flatten(),
            nn.Linear(2 * ch * (c.steps_per_bar // 4) * 20, 64), act,
            nn.Linear(64, c.n_emg_slots), nn.Tanh(),
        )

    @staticmethod
    def self_similarity(x: torch.Tensor) -> torch.Tensor:
        """(B, 2, T, 128) -> (B, 1, T, T) cosine similarity between steps of the sounding channel."""
        s = x[:, 0]
        s = s / (s.norm(dim=-1, keepdim=True) + 1e-4)
        return (s @ s.transpose(1, 2)).unsqueeze(1)

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor | None, with_slots: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, 2, T, 128) -> (score (B,), predicted EMG slots (B, bars, n_emg) or None)."""
        feats = [self.roll_cnn(x), self.ssm_cnn(self.self_similarity(x))]
        if self.cond is not None:
            feats.append(F.leaky_relu(self.cond(cond if cond is not None else x.new_zeros(x.shape[0], self.config.cond_dim)), 0.2))
        score = self.score(self.body(torch.cat(feats, dim=1))).squeeze(1)
        return score, (self.predict_slots(x) if with_slots else None)

    def predict_slots(self, x: torch.Tensor) -> torch.Tensor:
        """Q: (B, 2, bars*16, 128) -> the EMG slots each bar was generated with (B, bars, n_emg)."""
        b, ch, t, p = x.shape
        bars = t // self.config.steps_per_bar
        per_bar = x.view(b, ch, bars, self.config.steps_per_bar, p).transpose(1, 2).reshape(b * bars, ch, -1, p)
        return self.q(per_bar).view(b, bars, self.config.n_emg_slots)


class Encoder(nn.Module):
    """Training-only posterior q(z | bar): (B, 2, bars*16, 128) -> mu, logvar (B, bars, Z).

    Its reconstruction loss (VAE-GAN, Larsen et al. 2016) teaches the generator what real bars look
    like from the first step, which a bar-level GAN alone learns slowly on two CPU cores; the
    adversarial loss on prior samples keeps the prior's bars sharp.
    """

    def __init__(self, config: DCRNNConfig) -> None:
        super().__init__()
        self.config = c = config
        ch, act = c.critic_channels, nn.LeakyReLU(0.2)
        self.net = nn.Sequential(
            nn.Conv2d(2, ch, (1, 12), stride=(1, 6)), act,  # (16, 20)
            nn.Conv2d(ch, 2 * ch, (4, 1), stride=(4, 1)), act,  # (4, 20)
            nn.Flatten(),
            nn.Linear(2 * ch * (c.steps_per_bar // 4) * 20, 128), act,
            nn.Linear(128, 2 * c.z_dim),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, ch, t, p = x.shape
        bars = t // self.config.steps_per_bar
        per_bar = x.view(b, ch, bars, self.config.steps_per_bar, p).transpose(1, 2).reshape(b * bars, ch, -1, p)
        mu, logvar = self.net(per_bar).view(b, bars, 2, self.config.z_dim).unbind(2)
        return mu, logvar.clamp(-8.0, 4.0)


def reconstruction_loss(logits: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Bernoulli NLL per step (nats, summed over keys): sounding everywhere, onset where sounding.

    logits (B, T, 128, 2); real (B, 2, T, 128) as from ``roll_channels``."""
    sound_t, onset_t = real[:, 0], real[:, 1]  # (B, T, 128)
    nll = F.binary_cross_entropy_with_logits(logits[..., SOUNDING], sound_t, reduction="none")
    nll = nll + sound_t * F.binary_cross_entropy_with_logits(logits[..., ONSET_CH], onset_t, reduction="none")
    return nll.sum(dim=2).mean()


def gradient_penalty(critic: Critic, real: torch.Tensor, fake: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    """WGAN-GP: E[(||grad critic(x_hat)|| - 1)^2] on random interpolates of real and fake."""
    eps = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x_hat = (eps * real + (1 - eps) * fake).requires_grad_(True)
    score, _ = critic(x_hat, cond, with_slots=False)
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()
