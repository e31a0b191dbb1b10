"""Attention over a bounded window of recent states, and the attention-LSTM built on it (issue #16).

The attention-LSTM (``--arch attn-lstm:2x256``) is the Char-RNN's stacked LSTM with a small
multi-head attention over its last ``window`` top-layer states, added back to the LSTM's
output (a residual) before the output head. Position is relative only: one learned score
per head and lag (0 .. window-1), added to the attention logits.

Streaming: the state is ``(h, c, kv)``: the LSTM's (layers, B, H) pair and the keys and
values of the last ``window - 1`` steps, ``kv`` (2, B, heads, window-1, H/heads). A fresh
state's cache holds zero vectors, and ``forward`` starts from that same cache, so the two
agree step for step; the zeros act as a fixed "nothing yet" slot the attention can rest on.
Every step makes new tensors (never writes in place), so a snapshot is a reference.

``windowed_attention`` is shared with the streaming transformer (models/charrnn/transformer.py).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

State = tuple[torch.Tensor, ...]


def lag_index(queries: int, window: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(slot, valid), each (queries, queries + window - 1): which bias slot a (query, key) pair uses, and whether it may attend.

    Query i sits at key index i + window - 1 (after the window-1 cached keys); it sees the keys
    at lags 0 .. window-1 behind it. Slot window-1-lag orders the bias oldest first, as a step's keys are.
    """
    prefix = window - 1
    lag = prefix + torch.arange(queries, device=device)[:, None] - torch.arange(queries + prefix, device=device)[None, :]
    valid = (lag >= 0) & (lag <= prefix)
    return (prefix - lag).clamp(0, prefix), valid


def windowed_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slot_bias: torch.Tensor,
                       chunk: int = 128) -> torch.Tensor:
    """q (B, h, T, d); k, v (B, h, P + T, d) with P = window-1 cached keys first; slot_bias (h, window) -> (B, h, T, d).

    Each query attends to exactly ``window`` keys (itself and the P before it). Queries go in
    chunks so a long evaluation segment costs O(T * (chunk + window)), not O(T^2).
    """
    heads, window = slot_bias.shape
    prefix, steps = window - 1, q.size(2)
    if k.size(2) != prefix + steps:
        raise ValueError(f"keys must be the {prefix} cached ones plus the {steps} new ones, got {k.size(2)}")
    outputs = []
    for start in range(0, steps, chunk):
        stop = min(start + chunk, steps)
        slot, valid = lag_index(stop - start, window, q.device)  # (Tc, Tc + P)
        mask = slot_bias[:, slot].masked_fill(~valid, float("-inf"))  # (h, Tc, Tc + P)
        outputs.append(F.scaled_dot_product_attention(
            q[:, :, start:stop], k[:, :, start:stop + prefix], v[:, :, start:stop + prefix],
            attn_mask=mask.to(q.dtype).unsqueeze(0)))  # (B, h, Tc, d)
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, 2)


def step_attention(q: torch.Tensor, kv: torch.Tensor, slot_bias: torch.Tensor) -> torch.Tensor:
    """One query per batch row: q (B*h, 1, d), kv (2, B, h, window, d) oldest first, slot_bias (h, window) -> (B*h, 1, d).

    Batched matmuls on merged (B*h) views: a live step is a handful of ops (each costs ~5 us of
    Python and dispatch at batch 1, more than its arithmetic).
    """
    two, b, h, window, d = kv.shape
    keys, values = kv[0].reshape(b * h, window, d), kv[1].reshape(b * h, window, d)  # views when B = 1
    bias = slot_bias.unsqueeze(1).repeat(b, 1, 1) if b > 1 else slot_bias.unsqueeze(1)  # (B*h, 1, window)
    scores = torch.baddbmm(bias, q, keys.transpose(1, 2), alpha=d ** -0.5)  # (B*h, 1, window)
    return torch.bmm(torch.softmax(scores, -1), values)


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    """(B, T, h * d) -> (B, h, T, d)."""
    b, t, width = x.shape
    return x.view(b, t, heads, width // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, h, T, d) -> (B, T, h * d)."""
    b, h, t, d = x.shape
    return x.transpose(1, 2).reshape(b, t, h * d)


class AttentionLSTMCore(nn.Module):
    """Stacked LSTM + multi-head attention over its last ``window`` top-layer states -> (B, T, H) features."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, heads: int, window: int, dropout: float) -> None:
        super().__init__()
        self.hidden_size, self.num_layers, self.heads, self.window = hidden_size, num_layers, heads, window
        self.rnn = nn.LSTM(input_size, hidden_size, num_layers, dropout=dropout if num_layers > 1 else 0.0, batch_first=True)
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)  # query, key, value of each top-layer state
        self.out = nn.Linear(hidden_size, hidden_size)
        self.slot_bias = nn.Parameter(torch.zeros(heads, window))  # relative position: one score per head and lag, oldest first
        self.drop = nn.Dropout(dropout)
        with torch.no_grad():
            for name, p in self.rnn.named_parameters():
                if name.startswith("bias_ih"):
                    p[hidden_size:2 * hidden_size].fill_(1.0)  # forget-gate bias 1, as the plain LSTM
            self.out.weight.mul_(0.5)  # start close to the plain LSTM: the attention's share grows as it learns

    def init_state(self, batch_size: int, device: torch.device | str) -> State:
        """(h, c) each (layers, B, H) and kv (2, B, heads, window-1, H/heads), all zeros."""
        shape = (self.num_layers, batch_size, self.hidden_size)
        kv = torch.zeros(2, batch_size, self.heads, self.window - 1, self.hidden_size // self.heads, device=device)
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device), kv

    def forward(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """x (B, T, I) from `state` -> features (B, T, H) and the state after T steps."""
        h0, c0, cache = state
        y, (h, c) = self.rnn(x, (h0, c0))  # (B, T, H)
        q, k, v = (split_heads(part, self.heads) for part in self.qkv(y).chunk(3, -1))  # each (B, h, T, d)
        keys = torch.cat([cache[0], k], 2)  # (B, h, P + T, d)
        values = torch.cat([cache[1], v], 2)
        context = windowed_attention(q, keys, values, self.slot_bias)  # (B, h, T, d)
        features = y + self.drop(self.out(merge_heads(context)))  # (B, T, H)
        prefix = self.window - 1
        return features, (h, c, torch.stack([keys[:, :, keys.size(2) - prefix:], values[:, :, values.size(2) - prefix:]]))

    def step(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """x (B, I) -> features (B, H) and the new state (the old one untouched)."""
        h0, c0, cache = state
        y, (h, c) = self.rnn(x.unsqueeze(1), (h0, c0))  # (B, 1, H)
        b, width = x.size(0), self.hidden_size
        d = width // self.heads
        qkv = self.qkv(y[:, 0])  # (B, 3H)
        new = qkv[:, width:].view(b, 2, self.heads, 1, d).transpose(0, 1)  # (2, B, h, 1, d)
        kv = torch.cat([cache, new], 3)  # (2, B, h, window, d): the window with this step
        context = step_attention(qkv[:, :width].reshape(b * self.heads, 1, d), kv, self.slot_bias)  # (B*h, 1, d)
        out = self.out(context.view(b, width))
        features = y[:, 0] + (self.drop(out) if self.training else out)  # (B, H)
        return features, (h, c, kv[:, :, :, 1:])
