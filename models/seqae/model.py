"""Continuous Sequential AutoEncoder (SeqAE): 8-event subsequences <-> 16-bit codes, and a random walk between them.

The original Deep Symphony study's smoothest engine (see ../shared/ORIGINAL_STUDY.md):
a seq2seq autoencoder compresses a subsequence of L performance events (models/events.py)
into a real code ``c = tanh(W h)`` of D dimensions, whose binary code is ``b = sign(c)``.
Two GRU decoders rebuild the L events teacher-forced, one from ``c`` and one from ``b``
(straight-through gradient for the sign). Training adds
- a quantization loss ``||c - sign(c)||^2`` so that ``c`` sits near a corner of the cube;
- a continuity loss ``||sign(c_i) - c_{i+1}||^2 + ||c_i - sign(c_{i+1})||^2`` between
  neighbouring subsequences, with a small weight, so that music that follows itself has
  codes a few bit flips apart.
Generation is a random walk over binary codes (``walk_step``: flip about k bits, sometimes
jump; ``ThemeReset``: return to a stored theme code), each code decoded by the binary decoder.

References:
- Sutskever et al., "Sequence to Sequence Learning with Neural Networks" (2014).
- Bengio et al., "Estimating or Propagating Gradients Through Stochastic Neurons" (2013): straight-through.
- nanoGPT's file layout: config dataclass, model, then generation.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from models.events import NOTE_OFF_OFFSET, NOTE_ON_OFFSET


@dataclass
class SeqAEConfig:
    """Hyperparameters; saved as JSON beside the weights so a checkpoint rebuilds its model."""

    vocab_size: int = 388   # performance events (models.events.CODEC.size); index vocab_size is the decoders' start token
    seq_len: int = 8        # events per subsequence (the study's L); one code per 8 events
    code_dim: int = 16      # bits per code (the study's D): 65,536 binary codes
    embed_dim: int = 64     # event embedding, shared by the encoder and both decoders
    hidden_size: int = 192  # GRU width: 8 decoder steps ~0.5 ms on one CPU thread, ~30 ms per 128x4 train step

    def __post_init__(self) -> None:
        for name in ("vocab_size", "seq_len", "code_dim", "embed_dim", "hidden_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return asdict(self)


def binarize(code: torch.Tensor) -> torch.Tensor:
    """sign(code) in {-1, +1} (0 counts as +1, so every code is a corner of the cube)."""
    return torch.where(code >= 0, 1.0, -1.0).to(code.dtype)


def straight_through_sign(code: torch.Tensor) -> torch.Tensor:
    """sign(code) forward, identity gradient backward."""
    return code + (binarize(code) - code).detach()


class Decoder(nn.Module):
    """A GRU that rebuilds L events from a code: hidden starts at tanh(W code), every input is [embed(prev), code]."""

    def __init__(self, config: SeqAEConfig):
        super().__init__()
        self.init = nn.Linear(config.code_dim, config.hidden_size)
        self.rnn = nn.GRU(config.embed_dim + config.code_dim, config.hidden_size, batch_first=True)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)

    def start(self, code: torch.Tensor) -> torch.Tensor:
        """Initial hidden state (1, B, H) from code (B, D)."""
        return torch.tanh(self.init(code)).unsqueeze(0)

    def forward(self, code: torch.Tensor, prev_embedded: torch.Tensor) -> torch.Tensor:
        """Teacher-forced logits (B, L, V) from code (B, D) and the embedded previous events (B, L, E)."""
        inputs = torch.cat([prev_embedded, code.unsqueeze(1).expand(-1, prev_embedded.size(1), -1)], dim=-1)  # (B, L, E+D)
        out, _ = self.rnn(inputs, self.start(code))  # (B, L, H)
        return self.head(out)

    def step(self, code: torch.Tensor, prev_embedded: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One event: logits (B, V) and the new hidden (B, H) from code (B, D), embedded previous event (B, E), hidden (B, H).

        The GRU's own weights through one fused cell op: at batch 1 this is half the time of an nn.GRU call.
        """
        rnn = self.rnn
        hidden = torch.gru_cell(torch.cat([prev_embedded, code], dim=-1), hidden,
                                rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)  # (B, H)
        return self.head(hidden), hidden


class SeqAE(nn.Module):
    """Embedding -> GRU encoder -> tanh code; a decoder from the real code and one from its sign."""

    config_class = SeqAEConfig  # lets models.checkpoint rebuild the model from JSON

    def __init__(self, config: SeqAEConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size + 1, config.embed_dim)  # +1: the decoders' start token
        self.encoder = nn.GRU(config.embed_dim, config.hidden_size, batch_first=True)
        self.to_code = nn.Linear(config.hidden_size, config.code_dim)
        self.dec_real = Decoder(config)
        self.dec_bin = Decoder(config)
        nn.init.normal_(self.embed.weight, std=0.1)

    @property
    def start_token(self) -> int:
        """The decoders' first input (an index past the event vocabulary)."""
        return self.config.vocab_size

    def num_parameters(self) -> int:
        """Number of weights."""
        return sum(p.numel() for p in self.parameters())

    def encode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Real codes c (B, D) in (-1, 1) of subsequences tokens (B, L)."""
        _, hidden = self.encoder(self.embed(tokens))  # hidden (1, B, H): the last step sums up the subsequence
        return torch.tanh(self.to_code(hidden[0]))

    def _shifted(self, tokens: torch.Tensor) -> torch.Tensor:
        """Teacher forcing input: [start, x_0 .. x_{L-2}] embedded, (B, L, E)."""
        start = torch.full_like(tokens[:, :1], self.start_token)
        return self.embed(torch.cat([start, tokens[:, :-1]], dim=1))

    def forward(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Subsequences (B, N, L) of N neighbours -> (logits from c, logits from sign(c), both (B, N, L, V); c (B, N, D))."""
        batch, n, length = tokens.shape
        flat = tokens.reshape(batch * n, length)  # (B*N, L)
        code = self.encode(flat)  # (B*N, D)
        prev = self._shifted(flat)  # (B*N, L, E)
        logits_real = self.dec_real(code, prev)  # (B*N, L, V)
        logits_bin = self.dec_bin(straight_through_sign(code), prev)
        shape = (batch, n, length, -1)
        return logits_real.reshape(shape), logits_bin.reshape(shape), code.reshape(batch, n, -1)


def seqae_losses(model: SeqAE, tokens: torch.Tensor, quantization: float, continuity: float) -> tuple[torch.Tensor, dict[str, float]]:
    """(total loss, its parts as floats) for neighbour subsequences tokens (B, N, L).

    Reconstruction is the cross-entropy (nats/event) of each decoder. The quantization and
    continuity terms are squared distances averaged over the D bits, with sign() as a
    constant target (it has no gradient): a bit that flips between neighbours costs 0.5.
    """
    logits_real, logits_bin, code = model(tokens)
    vocab = logits_real.size(-1)
    rec_real = F.cross_entropy(logits_real.reshape(-1, vocab), tokens.reshape(-1))
    rec_bin = F.cross_entropy(logits_bin.reshape(-1, vocab), tokens.reshape(-1))
    sign = binarize(code).detach()  # (B, N, D)
    quant = (code - sign).pow(2).mean()
    if code.size(1) > 1:  # neighbours i, i+1 along N
        cont = ((sign[:, :-1] - code[:, 1:]).pow(2) + (code[:, :-1] - sign[:, 1:]).pow(2)).mean()
    else:
        cont = code.new_zeros(())
    total = rec_real + rec_bin + quantization * quant + continuity * cont
    flips = (sign[:, :-1] != sign[:, 1:]).float().sum(-1).mean() if code.size(1) > 1 else code.new_zeros(())
    return total, {"rec_real": rec_real.item(), "rec_bin": rec_bin.item(), "quant": quant.item(),
                   "cont": cont.item(), "flips": flips.item()}


@torch.no_grad()
def decode(model: SeqAE, code: torch.Tensor, binary: bool = True, generator: torch.Generator | None = None,
           temperature: float = 0.0, top_p: float = 1.0, allowed_pitch_classes: frozenset[int] | None = None,
           note_on_bias: torch.Tensor | None = None, first_note_ons: list | None = None) -> torch.Tensor:
    """Event indices (B, L) decoded from codes (B, D); temperature 0 is greedy, otherwise sampled with `generator`.

    `note_on_bias` (128,) reshapes the NOTE_ON distribution (a soft prior toward a key or register the
    walk cannot express) without changing how likely a NOTE_ON is at all: the rhythm stays the model's.
    `first_note_ons`, when given, receives the first step's unbiased NOTE_ON logits (B, 128): what
    `first_note_on_logits` computes, here at no extra cost (a voice keeps them for strikes).
    """
    from models.sampling import sample_token

    decoder = model.dec_bin if binary else model.dec_real
    code = binarize(code) if binary else code
    batch = code.size(0)
    hidden = decoder.start(code)[0]  # (B, H)
    table = model.embed.weight  # (V+1, E): rows indexed directly, no module call per step
    token = torch.full((batch,), model.start_token, dtype=torch.long, device=code.device)  # (B,)
    length = model.config.seq_len
    out = torch.empty(batch, length, dtype=torch.long, device=code.device)
    for t in range(length):
        logits, hidden = decoder.step(code, table[token], hidden)  # (B, V)
        if t == 0 and first_note_ons is not None:
            first_note_ons.append(logits[:, NOTE_ON_OFFSET:NOTE_OFF_OFFSET])
        if note_on_bias is not None:
            on = logits[:, NOTE_ON_OFFSET:NOTE_OFF_OFFSET]  # (B, 128)
            moved = on + note_on_bias
            moved = moved + (torch.logsumexp(on, -1, keepdim=True) - torch.logsumexp(moved, -1, keepdim=True))
            logits = torch.cat([logits[:, :NOTE_ON_OFFSET], moved, logits[:, NOTE_OFF_OFFSET:]], dim=-1)
        if temperature == 0 and allowed_pitch_classes is None:
            token = logits.argmax(-1)
        else:
            token = torch.tensor([sample_token(logits[b], generator, temperature, top_p, allowed_pitch_classes)
                                  for b in range(batch)], dtype=torch.long, device=code.device)
        out[:, t] = token
    return out


@torch.no_grad()
def first_note_on_logits(model: SeqAE, code: torch.Tensor, binary: bool = True) -> torch.Tensor:
    """(B, 128) logits of each code's first event, restricted to the NOTE_ON classes: a strike's distribution.

    The first event depends on the code alone (the decoder starts from it and from the start token),
    so a voice computes this once per code, when it decodes it, and a strike needs no model call.
    """
    decoder = model.dec_bin if binary else model.dec_real
    code = binarize(code) if binary else code
    start = model.embed.weight[model.start_token].expand(code.size(0), -1)  # (B, E)
    hidden = decoder.start(code)[0]  # (B, H)
    rnn, head = decoder.rnn, decoder.head
    hidden = torch.gru_cell(torch.cat([start, code], dim=-1), hidden,
                            rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)  # (B, H)
    return F.linear(hidden, head.weight[NOTE_ON_OFFSET:NOTE_OFF_OFFSET], head.bias[NOTE_ON_OFFSET:NOTE_OFF_OFFSET])


# ----------------------------------------------------------------------------- the random walk
def walk_step(code: np.ndarray, rng: np.random.Generator, flip_k: float, jump_p: float) -> np.ndarray:
    """The next binary code (D,) of +-1: a random code with probability jump_p, else `code` with about flip_k bits flipped.

    The number of flips is floor(k) or ceil(k), with mean exactly k (clipped to 0..D),
    so the walk's speed follows the knob without the spread of a Poisson draw.
    """
    code = np.where(np.asarray(code) >= 0, 1.0, -1.0)  # (D,)
    dim = code.shape[0]
    if rng.random() < jump_p:
        return rng.choice(np.array([-1.0, 1.0]), size=dim)
    k = float(np.clip(flip_k, 0.0, dim))
    count = int(np.floor(k)) + int(rng.random() < k - np.floor(k))
    flipped = code.copy()
    if count:
        flipped[rng.choice(dim, size=count, replace=False)] *= -1.0
    return flipped


@dataclass(frozen=True)
class ThemeReset:
    """A stored theme code; every `every` steps the walk returns to it with probability `p` (the study's "theme reset")."""

    theme: tuple[float, ...] | None = None  # (D,) of +-1; None: no theme stored yet
    every: int = 8                         # steps between chances to return (8 codes = 64 events)
    p: float = 0.8                         # probability of returning at each chance

    def capture(self, code: np.ndarray) -> "ThemeReset":
        """A copy that stores `code` as the theme."""
        return ThemeReset(tuple(float(v) for v in np.where(np.asarray(code) >= 0, 1.0, -1.0)), self.every, self.p)

    def apply(self, code: np.ndarray, step: int, rng: np.random.Generator) -> np.ndarray:
        """`code`, or the theme when step is a multiple of `every` and the draw (probability p) says so."""
        if self.theme is None or self.every < 1 or step % self.every != 0 or rng.random() >= self.p:
            return np.asarray(code, dtype=np.float64)
        return np.asarray(self.theme, dtype=np.float64)


def bit_flips(codes: np.ndarray) -> float:
    """Mean number of bits that differ between neighbouring binary codes (N, D) (NaN for fewer than 2)."""
    signs = np.asarray(codes) >= 0
    if len(signs) < 2:
        return float("nan")
    return float((signs[1:] != signs[:-1]).sum(-1).mean())
