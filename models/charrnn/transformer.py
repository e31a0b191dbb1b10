"""A small streaming transformer for the Char-RNN's events (issue #16): ``--arch transformer:4x256``.

Pre-LayerNorm decoder blocks (GPT-2 style) over the same inputs as the LSTM (event embedding
concatenated with the condition vector, projected to the model width). Every layer attends to
its last ``window`` positions only (itself included), with ALiBi biases (Press et al. 2022:
a fixed per-head penalty proportional to the lag) as its only notion of position, so a step
costs the same at event 10 and at event 10 million.

Streaming state: one tensor per layer, the keys and values of its last ``window - 1`` positions,
(2, B, heads, window-1, D/heads); the cache never grows past that bound. A fresh state is
zero vectors and ``forward`` starts from that same cache, so steps and whole sequences agree.
A step builds new tensors and never writes into the old ones: a snapshot is a reference.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.charrnn.attention import merge_heads, split_heads, step_attention, windowed_attention

State = tuple[torch.Tensor, ...]  # one (2, B, heads, window-1, D/heads) key/value cache per layer


def alibi_slot_bias(heads: int, window: int) -> torch.Tensor:
    """(heads, window) ALiBi bias, oldest slot first: -slope_h * lag, slopes 2^(-8 (h+1) / heads)."""
    slopes = torch.tensor([2.0 ** (-8.0 * (i + 1) / heads) for i in range(heads)])  # (heads,)
    lags = torch.arange(window - 1, -1, -1, dtype=torch.float32)  # (window,): window-1 .. 0
    return -slopes[:, None] * lags[None, :]


class Block(nn.Module):
    """LayerNorm -> windowed self-attention -> residual; LayerNorm -> MLP -> residual."""

    def __init__(self, width: int, heads: int, ff_size: int, dropout: float) -> None:
        super().__init__()
        self.width, self.heads = width, heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.ff1, self.ff2 = nn.Linear(width, ff_size), nn.Linear(ff_size, width)
        self.drop = nn.Dropout(dropout)

    def forward(self, z: torch.Tensor, cache: torch.Tensor, slot_bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, T, D), cache (2, B, h, P, d) -> z (B, T, D) and the new cache (its last P keys and values)."""
        q, k, v = (split_heads(part, self.heads) for part in self.qkv(self.norm1(z)).chunk(3, -1))  # each (B, h, T, d)
        keys, values = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)  # (B, h, P + T, d)
        context = windowed_attention(q, keys, values, slot_bias)  # (B, h, T, d)
        z = z + self.drop(self.proj(merge_heads(context)))
        z = z + self.drop(self.ff2(F.gelu(self.ff1(self.norm2(z)))))
        prefix = cache.size(3)
        return z, torch.stack([keys[:, :, keys.size(2) - prefix:], values[:, :, values.size(2) - prefix:]])

    def step(self, z: torch.Tensor, cache: torch.Tensor, slot_bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, D), cache (2, B, h, P, d) -> z (B, D) and the new cache (a new tensor).

        The live path: functional LayerNorms and no dropout calls in eval mode, because at batch 1
        each op's ~5 us of dispatch costs more than its arithmetic (4 layers: ~60 ops a step).
        """
        b, width = z.size(0), self.width
        d = width // self.heads
        n1, n2 = self.norm1, self.norm2
        qkv = self.qkv(F.layer_norm(z, (width,), n1.weight, n1.bias, n1.eps))  # (B, 3D)
        kv = torch.cat([cache, qkv[:, width:].view(b, 2, self.heads, 1, d).transpose(0, 1)], 3)  # (2, B, h, window, d)
        context = step_attention(qkv[:, :width].reshape(b * self.heads, 1, d), kv, slot_bias)  # (B*h, 1, d)
        attended = self.proj(context.view(b, width))  # (B, D)
        z = z + (self.drop(attended) if self.training else attended)
        fed = self.ff2(F.gelu(self.ff1(F.layer_norm(z, (width,), n2.weight, n2.bias, n2.eps))))  # (B, D)
        z = z + (self.drop(fed) if self.training else fed)
        return z, kv[:, :, :, 1:]


class TransformerCore(nn.Module):
    """Input projection -> ``num_layers`` windowed pre-LN blocks -> final LayerNorm: (B, T, I) -> (B, T, D)."""

    def __init__(self, input_size: int, width: int, num_layers: int, heads: int, window: int, ff_size: int, dropout: float) -> None:
        super().__init__()
        self.width, self.heads, self.window = width, heads, window
        self.inp = nn.Linear(input_size, width)
        self.blocks = nn.ModuleList(Block(width, heads, ff_size, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)
        self.register_buffer("slot_bias", alibi_slot_bias(heads, window), persistent=False)  # (h, window), not a weight
        for name, p in self.named_parameters():  # GPT-2 init: small weights, residual outputs scaled by depth
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * num_layers) if name.endswith(("proj.weight", "ff2.weight")) else 0.02
                nn.init.normal_(p, std=std)
            elif name.endswith("bias") and "norm" not in name:
                nn.init.zeros_(p)

    def init_state(self, batch_size: int, device: torch.device | str) -> State:
        """One zero key/value cache per layer, each (2, B, heads, window-1, D/heads)."""
        shape = (2, batch_size, self.heads, self.window - 1, self.width // self.heads)
        return tuple(torch.zeros(shape, device=device) for _ in self.blocks)

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """x (B, T, I) from `state` -> features (B, T, D) and the state after T steps."""
        z = self.drop(self.inp(x))  # (B, T, D)
        caches = []
        for block, cache in zip(self.blocks, state):
            z, cache = block(z, cache, self.slot_bias)
            caches.append(cache)
        return self.norm(z), tuple(caches)

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """x (B, I) -> features (B, D) and the new state (the old one untouched)."""
        z = self.inp(x)  # (B, D)
        if self.training:
            z = self.drop(z)
        caches = []
        for block, cache in zip(self.blocks, state):
            z, cache = block.step(z, cache, self.slot_bias)
            caches.append(cache)
        return self.norm(z), tuple(caches)
