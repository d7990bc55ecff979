"""Differentiable short-term models (DSTM; Bjare, Lattner & Widmer, TISMIR 2022; REFERENCE §2)
and the WaveNet-style long-term model that shares their encoder.

A DSTM learns *within* a piece, like PPM's short-term model, but over learned codes instead of
exact n-grams:

- An encoder (causal dilated convolutions over the one-hot frames) turns the past into a code
  h_t: continuous, h = elu(z) + 1 (CCSTM), or discrete, a one-hot code drawn by Gumbel-softmax
  or straight-through one-hot in training and the argmax code otherwise (DCSTM).
- A fast-weight matrix W (codes x classes), initialised to 1/(100 d) (``init_scale / d``),
  predicts p_t = h_tᵀW / |h_tᵀW|₁ and then learns the frame that came: W += h_t ⊗ onehot(x_{t+1}).

Written out, p_t ∝ c Σh_t + Σ_{s<t} (h_t·h_s) onehot(x_{s+1}): causal linear attention with
keys = queries = h and values = the next frame. `DSTM.forward` computes it for a whole
sequence at once, chunk by chunk (within a chunk a masked h hᵀ product, across chunks the
summed W), from any state; the step-by-step form behind `NeuralModel.start/predict/observe`
is the same call with one frame at a time. The encoder carries, per layer, the inputs its
dilated kernel still needs (zeros at a piece's start, as the parallel form's padding), so
both forms compute the same numbers.

The encoder (`CausalEncoder`): a first convolution of kernel 2 over the whole one-hot class
axis, then kernel-2 convolutions with dilations 2, 4, ..., 2^(layers-1), each followed by the
activation (selu, relu, or WaveNet's gated tanh·sigmoid) and dropout, with residual
connections after the first. Its receptive field is 2^layers frames: 5 layers see 32, 9 see
512.

`WaveNet` is the long-term baseline on the same encoder: a 1x1 convolution to the logits.

Predictions never put mass on PAD, BOS or UNK (`NEVER_PREDICTED`): W has a column per class
that may be emitted, and the returned "logits" are log p there and -inf elsewhere, so the
softmax that every consumer applies gives p back.

Legend: b batch, t time, v vocabulary, a classes that may be emitted, f filters, d code size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from notelm.config import Config, SettingsError, require_positive_ints, require_rates
from notelm.encodings.vocab import PAD_ID
from notelm.errors import NotelmError
from notelm.models.neural import allowed_tokens

ACTIVATIONS = ("selu", "relu", "gated")
CODES = ("continuous", "gumbel", "straight-through")
CHUNK = 256  # frames per masked hhᵀ block of the parallel form


# ---- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncoderSettings(Config):
    """vocab_size: the encoding's vocabulary. filters: channels per convolution. layers:
    convolutions (receptive field 2^layers frames). activation: selu, relu or gated.
    dropout: after every convolution. context: training window length in frames."""

    vocab_size: int = 0
    filters: int = 64
    layers: int = 9
    activation: str = "selu"
    dropout: float = 0.1
    context: int = 512

    def _check(self, family: str) -> None:
        require_positive_ints(self, family, ("vocab_size", "filters", "layers", "context"), zero_ok=("vocab_size",))
        if self.activation not in ACTIVATIONS:
            raise SettingsError(f"{family}: activation must be one of {', '.join(ACTIVATIONS)}; got {self.activation!r}")
        require_rates(self, family)

    @property
    def receptive_field(self) -> int:
        return 2 ** self.layers


@dataclass(frozen=True)
class DSTMConfig(EncoderSettings):
    """A DSTM: the encoder settings, and code_size: d, the length of a code. codes:
    "continuous" (CCSTM, elu + 1), "gumbel" (DCSTM: Gumbel-softmax samples in training) or
    "straight-through" (DCSTM: one-hot samples, softmax gradients). tau_start, tau_end: the
    Gumbel temperature, annealed geometrically over training. init_scale: W starts at
    init_scale / d (the paper's 1/(100 d))."""

    code_size: int = 64
    codes: str = "continuous"
    tau_start: float = 1.0
    tau_end: float = 0.1
    init_scale: float = 0.01

    def __post_init__(self) -> None:
        self._check("dstm")
        require_positive_ints(self, "dstm", ("code_size",))
        if self.codes not in CODES:
            raise SettingsError(f"dstm: codes must be one of {', '.join(CODES)}; got {self.codes!r}")
        if not (self.tau_start > 0 and self.tau_end > 0 and self.init_scale > 0):
            raise SettingsError("dstm: tau_start, tau_end and init_scale must be > 0")


@dataclass(frozen=True)
class CCSTMConfig(DSTMConfig):
    """A continuous-code DSTM (see `DSTMConfig`); codes must be "continuous"."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.codes != "continuous":
            raise SettingsError(f"ccstm: codes are continuous; got {self.codes!r} (train dcstm for discrete codes)")


@dataclass(frozen=True)
class DCSTMConfig(DSTMConfig):
    """A discrete-code DSTM (see `DSTMConfig`); codes "gumbel" or "straight-through"."""

    codes: str = "gumbel"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.codes == "continuous":
            raise SettingsError("dcstm: codes are discrete (gumbel or straight-through); train ccstm for continuous codes")


@dataclass(frozen=True)
class WaveNetConfig(EncoderSettings):
    """The long-term convolutional baseline: the encoder settings (see `EncoderSettings`)."""

    def __post_init__(self) -> None:
        self._check("wavenet")


# Presets. "small" has the paper's receptive field (512 frames) and a CPU-sized width; "base"
# is the paper's best model's size (512 filters, code 512, SELU, dropout 0.1, Adam 1e-4,
# batch 16). DSTMs train on windows that start at a piece's beginning: the fast weights
# learn a piece from its first frame.
_TRAIN = {"windows": "piece", "schedule": "cosine", "warmup_steps": 50, "grad_clip": 1.0}
DSTM_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "debug": {"model": {"filters": 16, "layers": 3, "code_size": 16, "dropout": 0.0, "context": 64},
              "train": {"batch_size": 8, "lr": 3e-3, "windows": "piece"}},
    "small": {"model": {"filters": 64, "layers": 9, "code_size": 64, "dropout": 0.1, "context": 512},
              "train": {**_TRAIN, "batch_size": 8, "lr": 2e-3}},
    "base": {"model": {"filters": 512, "layers": 9, "code_size": 512, "dropout": 0.1, "context": 1024},
             "train": {**_TRAIN, "batch_size": 16, "lr": 1e-4, "warmup_steps": 0, "schedule": "constant"}},
}
WAVENET_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "debug": {"model": {"filters": 16, "layers": 3, "dropout": 0.0, "context": 64},
              "train": {"batch_size": 8, "lr": 3e-3}},
    "small": {"model": {"filters": 64, "layers": 9, "dropout": 0.1, "context": 512},
              "train": {"batch_size": 8, "lr": 2e-3, "schedule": "cosine", "warmup_steps": 50}},
    "base": {"model": {"filters": 512, "layers": 9, "dropout": 0.1, "context": 1024},
             "train": {"batch_size": 16, "lr": 1e-4}},
}


# ---- the encoder ------------------------------------------------------------------------------


class CausalEncoder(nn.Module):
    """One-hot frames (b, v, t) -> features (b, f, t); ``cache`` holds, per layer, the last
    `dilation` inputs of that layer (None: a piece's start, zeros)."""

    def __init__(self, s: EncoderSettings) -> None:
        super().__init__()
        width = 2 * s.filters if s.activation == "gated" else s.filters
        self.activation = s.activation
        self.convs = nn.ModuleList([nn.Conv1d(s.vocab_size, width, kernel_size=2)]
                                   + [nn.Conv1d(s.filters, width, kernel_size=2, dilation=2 ** i)
                                      for i in range(1, s.layers)])
        self.drop = nn.Dropout(s.dropout)

    def act(self, z: torch.Tensor) -> torch.Tensor:
        if self.activation == "gated":
            a, g = z.chunk(2, dim=1)
            return torch.tanh(a) * torch.sigmoid(g)
        return F.selu(z) if self.activation == "selu" else F.relu(z)

    def forward(self, x: torch.Tensor, cache: list[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        new_cache = []
        h = x
        for i, conv in enumerate(self.convs):
            pad = conv.dilation[0]  # kernel 2: each output also sees the input `dilation` back
            left = cache[i] if cache is not None else h.new_zeros(h.shape[0], h.shape[1], pad)
            full = torch.cat([left, h], dim=2)
            new_cache.append(full[:, :, -pad:])
            y = self.drop(self.act(conv(full)))
            h = y if i == 0 else h + y
        return h, new_cache


def _one_hot_frames(idx: torch.Tensor, vocab_size: int, dtype: torch.dtype) -> torch.Tensor:
    """Token ids (b, t) -> one-hot (b, v, t); PAD is all zeros (nothing sounds)."""
    x = F.one_hot(idx, vocab_size).to(dtype)
    x[..., PAD_ID] = 0
    return x.transpose(1, 2)


# ---- the DSTM ---------------------------------------------------------------------------------


@dataclass
class DSTMState:
    """A piece in progress: the encoder's per-layer inputs, the learned part of the fast
    weights (W - W0: (b, d, a); None until something is learned) and the last code, which
    learns the next frame when it comes (None at a piece's start)."""

    conv: list[torch.Tensor] | None = None
    fast: torch.Tensor | None = None
    code: torch.Tensor | None = None


class DSTM(nn.Module):
    """Token ids (b, t) -> next-frame log-probabilities (b, t, v) through the fast weights."""

    def __init__(self, config: DSTMConfig) -> None:
        super().__init__()
        if config.vocab_size < 1:
            raise NotelmError("dstm: vocab_size must be set (the encoding's vocabulary size)")
        self.config = config
        self.encoder = CausalEncoder(config)
        self.to_code = nn.Conv1d(config.filters, config.code_size, kernel_size=1)
        allowed = allowed_tokens(config.vocab_size)
        column = torch.full((config.vocab_size,), -1, dtype=torch.long)
        column[allowed] = torch.arange(int(allowed.sum()))
        self.register_buffer("allowed", allowed, persistent=False)
        self.register_buffer("column", column, persistent=False)  # token id -> W column, -1: none
        self.tau = config.tau_start

    def anneal(self, progress: float) -> None:
        """Set the Gumbel temperature for the fraction ``progress`` of training done."""
        c = self.config
        self.tau = c.tau_start * (c.tau_end / c.tau_start) ** min(max(progress, 0.0), 1.0)

    def new_cache(self, batch: int = 1, capacity: int | None = None) -> DSTMState:
        return DSTMState()

    def codes(self, features: torch.Tensor) -> torch.Tensor:
        """Encoder features (b, f, t) -> codes h (b, t, d)."""
        z = self.to_code(features).transpose(1, 2)
        if self.config.codes == "continuous":
            return F.elu(z) + 1.0
        if not self.training:
            return F.one_hot(z.argmax(-1), z.shape[-1]).to(z.dtype)
        return F.gumbel_softmax(z, tau=self.tau, hard=self.config.codes == "straight-through")

    def targets(self, idx: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """One-hot W columns of token ids (b, t) -> (b, t, a); zeros for PAD, BOS, UNK."""
        col = self.column[idx]
        return F.one_hot(col.clamp(min=0), int(self.allowed.sum())).to(dtype) * (col >= 0).unsqueeze(-1).to(dtype)

    def forward(self, idx: torch.Tensor, state: DSTMState | None = None) -> tuple[torch.Tensor, DSTMState]:
        """Log-probabilities (b, t, v) of the frame after each input, continuing ``state``
        (None: a piece's start), and the state after the last input."""
        state = state or DSTMState()
        dtype = self.to_code.weight.dtype
        features, conv = self.encoder(_one_hot_frames(idx, self.config.vocab_size, dtype), state.conv)
        h = self.codes(features)  # (b, t, d)
        y = self.targets(idx, dtype)  # (b, t, a): the frame each input is; code s learns y[s + 1]
        fast, code = state.fast, state.code
        if code is not None:  # the previous call's last code learns this call's first frame
            fast = _learn(fast, code.unsqueeze(1), y[:, :1])
        w0 = self.config.init_scale / self.config.code_size
        scores = []
        for a in range(0, h.shape[1], CHUNK):
            hc, yc = h[:, a:a + CHUNK], y[:, a + 1:a + CHUNK + 1]  # yc: one frame fewer at the end
            q = w0 * hc.sum(-1, keepdim=True)  # hᵀW0: the same for every class
            if fast is not None:
                q = q + hc @ fast
            n = yc.shape[1]
            if n:
                within = torch.tril(hc @ hc.transpose(1, 2), diagonal=-1)[:, :, :n]  # (b, c, n): s < t
                q = q + within @ yc
                fast = _learn(fast, hc[:, :n], yc)
            scores.append(q)
        q = torch.cat(scores, dim=1)
        logp = torch.log(q) - torch.log(q.sum(-1, keepdim=True))
        logits = logp.new_full((*logp.shape[:2], self.config.vocab_size), float("-inf"))
        logits[..., self.allowed] = logp
        return logits, DSTMState(conv=conv, fast=fast, code=h[:, -1])


def _learn(fast: torch.Tensor | None, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """W += Σ_s h_s ⊗ y_s for codes h (b, n, d) and the frames they learn y (b, n, a)."""
    delta = h.transpose(1, 2) @ y
    return delta if fast is None else fast + delta


# ---- the long-term baseline ---------------------------------------------------------------------


class WaveNet(nn.Module):
    """Token ids (b, t) -> next-frame logits (b, t, v): the DSTM encoder, then a 1x1 convolution."""

    def __init__(self, config: WaveNetConfig) -> None:
        super().__init__()
        if config.vocab_size < 1:
            raise NotelmError("wavenet: vocab_size must be set (the encoding's vocabulary size)")
        self.config = config
        self.encoder = CausalEncoder(config)
        self.head = nn.Conv1d(config.filters, config.vocab_size, kernel_size=1)

    def new_cache(self, batch: int = 1, capacity: int | None = None) -> list[torch.Tensor] | None:
        return None  # None is a piece's start: zeros before it

    def forward(self, idx: torch.Tensor, state: list[torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = _one_hot_frames(idx, self.config.vocab_size, self.head.weight.dtype)
        features, conv = self.encoder(x, state)
        return self.head(features).transpose(1, 2), conv
