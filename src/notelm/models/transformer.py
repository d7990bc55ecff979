"""A decoder-only Transformer over token ids, nanoGPT-shaped: pre-norm blocks, rotary
positions, PyTorch's scaled-dot-product attention and a key/value cache for generation.

- Pre-norm residual blocks (LayerNorm before attention and before the MLP), GELU MLP of
  width ``ff_mult * dim``, a final LayerNorm, output weights tied to the embedding.
- Rotary position embeddings (Su et al. 2021, RoFormer, Eq. 34): queries and keys are rotated
  by an angle proportional to their position, so attention scores depend only on the
  *relative* distance i - j. Positions count from the start of the current window.
- Attention is ``torch.nn.functional.scaled_dot_product_attention`` (the fused kernel on
  GPU, the math one on CPU); ``is_causal`` when there is no cache, an explicit mask when a
  chunk of several tokens is appended to a cache.
- Attention, rotary positions and the key/value cache are `notelm.models.layers`'; the state
  of a piece in progress is one append-only `KVCache` per layer (`TransformerCache`), so a
  generation step costs one token's work instead of the whole context's.

The network maps tokens to logits; `notelm.models.neural.NeuralModel` turns it into a
`SequenceModel` and owns the windowing, the cache between steps and the probabilities.

Legend: b batch, t time (new tokens), s time (cached + new), d dim, h heads, k head dim,
v vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from notelm.config import (
    Config,
    require_positive_ints,
    require_rates,
    require_rotary_heads,
)
from notelm.errors import NotelmError
from notelm.models.layers import Attention, KVCache, rotary_rotation


@dataclass(frozen=True)
class TransformerConfig(Config):
    """vocab_size: output classes (the encoding's vocabulary). dim: model width. n_layers,
    n_heads: blocks and attention heads (dim divisible by n_heads). context: the longest
    window the model attends over (training crops and evaluation windows). dropout: on
    attention weights and residual branches. ff_mult: MLP width / dim. rope_base: rotary
    frequency base."""

    vocab_size: int = 0
    dim: int = 128
    n_layers: int = 4
    n_heads: int = 4
    context: int = 256
    dropout: float = 0.1
    ff_mult: int = 4
    rope_base: float = 10000.0

    def __post_init__(self) -> None:
        require_positive_ints(self, "transformer", ("vocab_size", "dim", "n_layers", "n_heads", "context", "ff_mult"), zero_ok=("vocab_size",))
        require_rotary_heads(self, "transformer")
        require_rates(self, "transformer")


# Presets: model settings and the training settings that go with them.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "debug": {"model": {"dim": 16, "n_layers": 2, "n_heads": 2, "context": 64, "dropout": 0.0},
              "train": {"batch_size": 8, "lr": 3e-3, "schedule": "constant", "warmup_steps": 0}},
    # small batches: on a CPU, more updates per second beat less noisy ones (bench/bench_tutorial.py)
    "small": {"model": {"dim": 128, "n_layers": 4, "n_heads": 4, "context": 256, "dropout": 0.1},
              "train": {"batch_size": 8, "lr": 2e-3, "schedule": "cosine", "warmup_steps": 100,
                        "optimizer": "adamw", "weight_decay": 0.01}},
    "base": {"model": {"dim": 512, "n_layers": 8, "n_heads": 8, "context": 1024, "dropout": 0.1},
             "train": {"batch_size": 16, "lr": 3e-4, "schedule": "cosine", "warmup_steps": 1000,
                       "optimizer": "adamw", "weight_decay": 0.1}},
}


# ---- blocks --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransformerCache:
    """The state of a piece in progress: one append-only `KVCache` per layer."""

    layers: tuple[KVCache, ...]

    @property
    def length(self) -> int:
        """Positions cached."""
        return self.layers[0].written if self.layers else 0


class Block(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        d = config.dim
        self.norm1 = nn.LayerNorm(d)
        self.attn = Attention(dim=d, heads=config.n_heads, dropout=config.dropout, rope_base=config.rope_base)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, config.ff_mult * d), nn.GELU(), nn.Linear(config.ff_mult * d, d),
                                 nn.Dropout(config.dropout))

    def forward(self, x: torch.Tensor, positions: torch.Tensor | None, cache: KVCache | None
                ) -> tuple[torch.Tensor, KVCache | None]:
        y, cache = self.attn(self.norm1(x), positions=positions, cache=cache)
        x = x + y
        return x + self.feed_forward(self.norm2(x)), cache

    def step(self, x: torch.Tensor, positions: torch.Tensor, cache: KVCache,
             rotation: torch.Tensor | None = None) -> tuple[torch.Tensor, KVCache, torch.Tensor]:
        """`forward` of one token per row, x (b, 1, d), after every key in ``cache``
        (`Attention.step`), with no module calls and 2-D operands: a generation step's path,
        where each call costs more than a 1-token op. Returns the output, the extended cache
        and the attention's input (the normed x, which the Compressive Transformer keeps as
        memory), (b, 1, d) each."""
        b, _, d = x.shape
        h = x.view(b, d)
        a = layer_norm(self.norm1, h)
        y, cache = self.attn.step(a, positions, cache, rotation)
        h = h + y
        h = h + self.feed_forward(layer_norm(self.norm2, h))
        return h.view(b, 1, d), cache, a.view(b, 1, d)

    def feed_forward(self, h: torch.Tensor) -> torch.Tensor:
        """The MLP ``mlp`` holds (linear, GELU, linear, dropout), applied as functions."""
        up, gelu, down, drop = self.mlp
        h = F.linear(F.gelu(F.linear(h, up.weight, up.bias), approximate=gelu.approximate), down.weight, down.bias)
        return F.dropout(h, drop.p, True) if self.training else h


def layer_norm(norm: nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)`` as a function call (no module call)."""
    return torch.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)  # F.layer_norm's own op


# ---- the model -----------------------------------------------------------------------------


class Transformer(nn.Module):
    """Token ids (b, t) -> next-token logits (b, t, v); with a `KVCache`, only the new tokens
    are computed and the cache is extended."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        if config.vocab_size < 1:
            raise NotelmError("transformer: vocab_size must be set (the encoding's vocabulary size)")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied input and output embeddings (Press & Wolf 2017)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2's scaled init of residual projections
            if name.endswith("attn.out.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def new_cache(self, batch: int = 1, capacity: int | None = None) -> TransformerCache:
        """An empty state: the first call fills it (``capacity`` positions preallocated)."""
        return TransformerCache(tuple(KVCache(capacity=capacity or self.config.context)
                                      for _ in range(self.config.n_layers)))

    def body(self, x: torch.Tensor, cache: TransformerCache | None = None
             ) -> tuple[torch.Tensor, TransformerCache | None]:
        """Embedded tokens (b, t, d) -> logits (b, t, v) and the extended cache. Split from
        `forward` so a test can differentiate with respect to the inputs (the causality test)."""
        x = self.drop(x)
        if cache is None:
            for block in self.blocks:
                x, _ = block(x, None, None)
            return self.head(self.norm(x)), None
        past = cache.length
        positions = torch.arange(past, past + x.shape[1], device=x.device)
        layers = []
        if x.shape[1] == 1:  # a generation step: one rotation matrix for every layer
            rotation = rotary_rotation(positions, self.blocks[0].attn, x.dtype)
            for block, layer in zip(self.blocks, cache.layers):
                x, layer, _ = block.step(x, positions, layer, rotation)
                layers.append(layer)
        else:
            for block, layer in zip(self.blocks, cache.layers):
                x, layer = block(x, positions, layer)
                layers.append(layer)
        return self.head(self.norm(x)), TransformerCache(tuple(layers))

    def forward(self, idx: torch.Tensor, state: TransformerCache | None = None
                ) -> tuple[torch.Tensor, TransformerCache | None]:
        """Logits (b, t, v) for token ids (b, t); ``state``: a cache to extend (the old one stays
        valid), or None."""
        return self.body(self.embed(idx), state)
