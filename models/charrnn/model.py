"""Conditional Char-RNN over performance events: the instrument's main, streamable voice.

An LSTM (or GRU) language model over the 388 performance events (models/events.py).
Every step's input is the event's embedding concatenated with a condition vector
(models/conditioning.py: register, density, pitch-class histogram of the music about
to be played), so the hand can steer it while it plays. With ``cond_dim=0`` the same
code is the plain Char-RNN baseline of the original Deep Symphony study.

References:
- Oore et al., "This Time with Feeling: Learning Expressive Musical Performance" (2018),
  Performance RNN: the event vocabulary and the conditioning windows.
- Karpathy, char-rnn (2015), and nanoGPT's file layout.

Two ways to run the same weights:
- ``forward(tokens, cond, targets)`` over whole sequences, for training and NLL;
- ``init_state()`` then ``step(token, cond, state)`` one event at a time, for live play.
  A state is a tuple of tensors that is never modified in place, so a snapshot is just
  keeping a reference and rollback is assigning it back.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

State = tuple[torch.Tensor, ...]  # LSTM: (h, c), GRU: (h,); each (num_layers, B, hidden)

# Issue #16's candidates, each in its own file; the LSTM and GRU paths below do not use them.
# attn-lstm: models/charrnn/attention.py; transformer: models/charrnn/transformer.py (hidden = width).
CORE_CELLS = ("attn-lstm", "transformer")
CORE_DEFAULTS = {"attn-lstm": {"heads": 4, "window": 32, "ff_size": 0},
                 "transformer": {"heads": 4, "window": 64, "ff_size": 4}}  # ff_size <= 16: a multiple of the width
CORE_FIELDS = ("heads", "window", "ff_size")  # not written for lstm/gru: their configs stay as they were


@dataclass
class CharRNNConfig:
    """Hyperparameters; saved as JSON beside the weights so a checkpoint rebuilds its model."""

    vocab_size: int = 388   # performance events (models.events.CODEC.size)
    embed_dim: int = 64     # event embedding; 388 classes need few dimensions
    hidden_size: int = 256  # per layer: ~0.3 ms per step on one CPU thread; ~1.6 s per 64x128 train step on one core
    num_layers: int = 2     # 2 layers train in ~90 min on 2 CPU cores; the study used 3 x 512
    cell: str = "lstm"      # "lstm", "gru", or issue 16's "attn-lstm" / "transformer" (CORE_CELLS)
    cond_dim: int = 14      # condition vector size (models.conditioning.COND_DIM); 0 = unconditioned baseline
    dropout: float = 0.1    # between recurrent layers and before the output head
    heads: int = 0          # attn-lstm / transformer only: attention heads (0: the cell's default)
    window: int = 0         # attn-lstm / transformer only: positions each attention sees, itself included
    ff_size: int = 0        # transformer only: MLP width (a multiple of hidden_size when <= 16)

    def __post_init__(self) -> None:
        if self.cell not in ("lstm", "gru") + CORE_CELLS:
            raise ValueError(f"cell must be one of {', '.join(('lstm', 'gru') + CORE_CELLS)}, got {self.cell!r}")
        if self.cell in CORE_CELLS:
            for name, default in CORE_DEFAULTS[self.cell].items():
                if not getattr(self, name):
                    setattr(self, name, default)
            if 0 < self.ff_size <= 16:
                self.ff_size *= self.hidden_size
            if self.heads < 1 or self.hidden_size % self.heads or self.window < 2:
                raise ValueError(f"{self.cell} needs hidden_size divisible by heads and window >= 2, "
                                 f"got {self.hidden_size}, {self.heads}, {self.window}")
        for name in ("vocab_size", "embed_dim", "hidden_size", "num_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.cond_dim < 0 or not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"cond_dim must be >= 0 and dropout in [0, 1), got {self.cond_dim}, {self.dropout}")

    def to_dict(self) -> dict:
        """JSON-ready form."""
        record = asdict(self)
        if self.cell not in CORE_CELLS:
            for name in CORE_FIELDS:
                record.pop(name)
        return record


class CharRNN(nn.Module):
    """Embedding + condition -> stacked LSTM/GRU -> logits over the next event."""

    config_class = CharRNNConfig  # lets models.checkpoint rebuild the model from JSON

    def __init__(self, config: CharRNNConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim)
        self.core = None  # lstm/gru: self.rnn; the issue-16 cells: a core with forward/step/init_state
        if config.cell in CORE_CELLS:
            self.core = _build_core(config)
            self.drop = nn.Dropout(config.dropout)
            self.head = nn.Linear(config.hidden_size, config.vocab_size)
            nn.init.normal_(self.embed.weight, std=0.1)
            return
        rnn = nn.LSTM if config.cell == "lstm" else nn.GRU
        self.rnn = rnn(
            input_size=config.embed_dim + config.cond_dim,
            hidden_size=config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.embed.weight, std=0.1)
        if self.config.cell == "lstm":
            # Forget-gate bias 1 (Jozefowicz et al. 2015): remember by default early in training.
            h = self.config.hidden_size
            for name, p in self.rnn.named_parameters():
                if name.startswith("bias_ih"):
                    with torch.no_grad():
                        p[h:2 * h].fill_(1.0)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters())

    def _inputs(self, tokens: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        x = self.embed(tokens)  # (..., E)
        if self.config.cond_dim:
            if cond is None:
                raise ValueError(f"this model is conditioned: pass cond with last dimension {self.config.cond_dim}")
            if cond.shape[-1] != self.config.cond_dim or cond.shape[:-1] != tokens.shape:
                raise ValueError(f"cond must have shape {tuple(tokens.shape) + (self.config.cond_dim,)}, got {tuple(cond.shape)}")
            x = torch.cat([x, cond.to(x.dtype)], dim=-1)  # (..., E + C)
        return x

    def forward(
        self, tokens: torch.Tensor, cond: torch.Tensor | None = None, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """tokens (B, T) long, cond (B, T, C) -> logits (B, T, V) and mean cross-entropy (nats/event) if targets."""
        x = self._inputs(tokens, cond)  # (B, T, E + C)
        if self.core is not None:
            y, _ = self.core(x, self.core.init_state(x.size(0), x.device))  # (B, T, H), from the zero state
        else:
            y, _ = self.rnn(x)  # (B, T, H), from the zero state
        logits = self.head(self.drop(y))  # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1))
        return logits, loss

    # ----------------------------------------------------------------- streaming
    def init_state(self, batch_size: int = 1, device: torch.device | str | None = None) -> State:
        """The zero state that ``forward`` starts from: (h, c) for LSTM, (h,) for GRU."""
        if device is None:
            device = self.embed.weight.device  # the embedding is never quantized
        if self.core is not None:
            return self.core.init_state(batch_size, device)
        shape = (self.config.num_layers, batch_size, self.config.hidden_size)
        h = torch.zeros(shape, device=device)
        return (h, torch.zeros(shape, device=device)) if self.config.cell == "lstm" else (h,)

    def step(self, token: torch.Tensor, cond: torch.Tensor | None, state: State) -> tuple[torch.Tensor, State]:
        """One event: token (B,) long, cond (B, C) -> logits (B, V) and a new state (the old one is untouched)."""
        x = self._inputs(token.unsqueeze(1), None if cond is None else cond.unsqueeze(1))  # (B, 1, E + C)
        if self.core is not None:
            y, new = self.core.step(x[:, 0], state)  # (B, H)
            return self.head(self.drop(y)), new
        y, new = self.rnn(x, state if self.config.cell == "lstm" else state[0])  # (B, 1, H)
        logits = self.head(self.drop(y[:, 0]))  # (B, V)
        return logits, (tuple(new) if self.config.cell == "lstm" else (new,))

    def forward_with_state(self, tokens: torch.Tensor, cond: torch.Tensor | None, state: State) -> tuple[torch.Tensor, State]:
        """tokens (B, T), cond (B, T, C), starting from `state` -> logits (B, T, V) and the state after T steps."""
        x = self._inputs(tokens, cond)  # (B, T, E + C)
        if self.core is not None:
            y, new = self.core(x, state)  # (B, T, H)
            return self.head(self.drop(y)), new
        y, new = self.rnn(x, state if self.config.cell == "lstm" else state[0])  # (B, T, H)
        return self.head(self.drop(y)), (tuple(new) if self.config.cell == "lstm" else (new,))


def _build_core(config: CharRNNConfig) -> nn.Module:
    """The attention-LSTM or streaming-transformer core of an issue-16 cell (imported only when used)."""
    inputs = config.embed_dim + config.cond_dim
    if config.cell == "attn-lstm":
        from models.charrnn.attention import AttentionLSTMCore

        return AttentionLSTMCore(inputs, config.hidden_size, config.num_layers, config.heads, config.window, config.dropout)
    from models.charrnn.transformer import TransformerCore

    return TransformerCore(inputs, config.hidden_size, config.num_layers, config.heads, config.window, config.ff_size, config.dropout)


class Prepared(NamedTuple):
    """The part of a step's LSTM gates that the control condition does not change, made ahead of the step."""

    gates: tuple[torch.Tensor, ...]  # per layer (1, 4H): layer 0 bias + W_ih[embed] embed(token) + W_hh h_0; layer k bias + W_hh h_k


class PackedStep:
    """`CharRNN.step` for a batch-1 LSTM on the CPU, its weights packed once, split in two halves.

    nn.LSTM's Python wrapper and generic kernel cost more than the arithmetic at batch 1, and
    more still when the step runs cold (a gesture's strike after the thread slept): this does
    the same sums (equal to ~1e-5) in about half the time, warm or cold.

    The sums are split where a gesture enters. `prepare(token, state)` makes everything the
    condition does not touch: the first layer's input and recurrent products and every other
    layer's recurrent product. `finish(prepared, cond, state)` adds the condition's product, the
    nonlinearities, the upper layers' input products and the head. A voice prepares the next
    step as soon as it has drawn this one's event, so a gesture that restores a state and sets
    new controls pays only `finish` (cold, p50: 0.88 -> 0.58 ms). The packed tensors are built
    from the model's at construction: rebuild after changing its weights.
    """

    def __init__(self, model: CharRNN) -> None:
        if model.config.cell != "lstm":
            raise ValueError("PackedStep packs LSTM layers only")
        rnn, embed_dim, cond_dim = model.rnn, model.config.embed_dim, model.config.cond_dim
        with torch.no_grad():
            def weights(name: str, k: int) -> torch.Tensor:
                return getattr(rnn, f"{name}_l{k}").detach()

            self.biases = tuple(weights("bias_ih", k) + weights("bias_hh", k) for k in range(model.config.num_layers))  # (4H,)
            # layer 0: [embed, h_0] -> gates (E + H, 4H), and cond -> gates (C, 4H)
            w_ih = weights("weight_ih", 0)  # (4H, E + C)
            self.first = torch.cat([w_ih[:, :embed_dim], weights("weight_hh", 0)], 1).t().contiguous()
            self.cond_weight = w_ih[:, embed_dim:].t().contiguous() if cond_dim else None
            # layers 1..: input h_{k-1} -> gates (H, 4H), and recurrent h_k -> gates (H, 4H)
            self.inputs = tuple(weights("weight_ih", k).t().contiguous() for k in range(1, model.config.num_layers))
            self.recurrent = tuple(weights("weight_hh", k).t().contiguous() for k in range(1, model.config.num_layers))
            self.embed = model.embed.weight.detach()  # (V, E)
            self.head_weight = model.head.weight.detach().t().contiguous()  # (H, V)
            self.head_bias = model.head.bias.detach().clone()  # (V,)

    def prepare(self, token: torch.Tensor, state: State) -> Prepared:
        """token (1,) long and state (h, c) -> the gates' parts that do not depend on the condition."""
        h = state[0]
        first = torch.addmm(self.biases[0], torch.cat([self.embed[token], h[0]], 1), self.first)  # (1, 4H)
        return Prepared((first,) + tuple(torch.addmm(bias, h[k + 1], weight) for k, (bias, weight)
                                         in enumerate(zip(self.biases[1:], self.recurrent))))

    def finish(self, prepared: Prepared, cond: torch.Tensor | None, state: State) -> tuple[torch.Tensor, State]:
        """The step from its prepared part and cond (1, C) -> logits (1, V) and a new (h, c), each (layers, 1, H)."""
        c = state[1]
        hs, cs = [], []
        x = cond  # what each layer still has to add: layer 0 the condition (if any), layer k the output of k - 1
        for k, (gates, weight) in enumerate(zip(prepared.gates, (self.cond_weight,) + self.inputs)):
            if weight is not None:
                gates = torch.addmm(gates, x, weight)  # (1, 4H): input, forget, cell, output
            i, f, g, o = gates.chunk(4, 1)
            c_k = torch.sigmoid(f) * c[k] + torch.sigmoid(i) * torch.tanh(g)  # (1, H)
            x = torch.sigmoid(o) * torch.tanh(c_k)  # (1, H), the next layer's input
            hs.append(x)
            cs.append(c_k)
        return torch.addmm(self.head_bias, x, self.head_weight), (torch.stack(hs), torch.stack(cs))

    def __call__(self, token: torch.Tensor, cond: torch.Tensor | None, state: State) -> tuple[torch.Tensor, State]:
        """token (1,) long, cond (1, C) -> logits (1, V) and a new (h, c), each (layers, 1, H); the old state is untouched."""
        return self.finish(self.prepare(token, state), cond, state)


def quantize_for_cpu(model: CharRNN) -> CharRNN:
    """int8 dynamic quantization of the recurrent layers and head, for fast batch-1 CPU steps."""
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(model.eval(), {nn.LSTM, nn.GRU, nn.Linear}, dtype=torch.qint8)


def time_steps(model: CharRNN, steps: int = 2000, warmup: int = 200, threads: int = 1) -> dict[str, float]:
    """Batch-1 ``step`` latency in ms (p50/p99/max) on CPU, ``threads`` threads, mkldnn off as in live play."""
    import time

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    times = []
    try:
        with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=False):
            state = model.init_state(1, "cpu")
            token = torch.zeros(1, dtype=torch.long)
            cond = torch.zeros(1, model.config.cond_dim) if model.config.cond_dim else None
            for i in range(warmup + steps):
                start = time.perf_counter()
                logits, state = model.step(token, cond, state)
                times.append(time.perf_counter() - start)
                token = logits.argmax(-1)
    finally:
        torch.set_num_threads(previous)
    ms = torch.tensor(times[warmup:], dtype=torch.float64) * 1e3
    return {"p50_ms": float(ms.quantile(0.5)), "p99_ms": float(ms.quantile(0.99)), "max_ms": float(ms.max()), "steps": steps}
