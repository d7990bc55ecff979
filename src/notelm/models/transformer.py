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
- `KVCache` keeps every layer's keys and values in preallocated buffers (doubled when full),
  so a generation step costs one token's work instead of the whole context's.

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

from notelm.config import Config, SettingsError, require_positive_ints
from notelm.errors import NotelmError


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
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise SettingsError(f"transformer: dim ({self.dim}) must be n_heads ({self.n_heads}) times an even head size")
        if not 0 <= self.dropout < 1:
            raise SettingsError(f"transformer: dropout must be in [0, 1); got {self.dropout!r}")


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


# ---- helpers -------------------------------------------------------------------------------


def rotate(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """Rotary embedding of x (b, h, t, k) at integer positions (t,): pairs (x_i, x_{i+k/2})
    are rotated by position * base^(-2i/k)."""
    half = x.shape[-1] // 2
    inv_freq = base ** (-torch.arange(half, device=x.device, dtype=torch.float64) / half)
    angle = (positions.to(torch.float64)[:, None] * inv_freq[None, :]).to(x.dtype)  # (t, k/2)
    cos, sin = angle.cos(), angle.sin()
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class KVCache:
    """Keys and values of every layer for a batch: buffers (layers, b, h, capacity, k) and the
    number of positions filled. Appending past the capacity doubles it."""

    def __init__(self, *, layers: int, batch: int, heads: int, head_dim: int, capacity: int,
                 dtype: torch.dtype, device: torch.device | str) -> None:
        shape = (layers, batch, heads, capacity, head_dim)
        self.k = torch.empty(shape, dtype=dtype, device=device)
        self.v = torch.empty(shape, dtype=dtype, device=device)
        self.length = 0
        self._pending = 0  # tokens being appended by the current forward pass

    @property
    def capacity(self) -> int:
        return self.k.shape[3]

    def reserve(self, t: int) -> None:
        """Make room for t more positions (called once per forward pass, before the layers)."""
        need = self.length + t
        if need > self.capacity:
            new = max(need, 2 * self.capacity)
            grow = (*self.k.shape[:3], new - self.capacity, self.k.shape[4])
            self.k = torch.cat([self.k, self.k.new_empty(grow)], dim=3)
            self.v = torch.cat([self.v, self.v.new_empty(grow)], dim=3)
        self._pending = t

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's new keys/values (b, h, t, k); return all so far (b, h, s, k)."""
        end = self.length + k.shape[2]
        self.k[layer, :, :, self.length:end] = k
        self.v[layer, :, :, self.length:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]

    def advance(self) -> None:
        self.length += self._pending
        self._pending = 0


# ---- blocks --------------------------------------------------------------------------------


class Attention(nn.Module):
    def __init__(self, *, dim: int, heads: int, dropout: float, rope_base: float) -> None:
        super().__init__()
        self.heads, self.rope_base, self.dropout = heads, rope_base, dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.resid_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, cache: KVCache | None, layer: int) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3 x (b, h, t, k)
        q, k = rotate(q, positions, self.rope_base), rotate(k, positions, self.rope_base)
        past = 0
        if cache is not None:
            past = cache.length
            k, v = cache.update(layer, k, v)
        mask, causal = None, past == 0 and t > 1
        if past and t > 1:  # a chunk after cached positions: query i sees keys up to past + i
            s = past + t
            mask = torch.arange(s, device=x.device)[None, :] <= (past + torch.arange(t, device=x.device))[:, None]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.resid_drop(self.out(y.transpose(1, 2).reshape(b, t, d)))


class Block(nn.Module):
    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        d = config.dim
        self.norm1 = nn.LayerNorm(d)
        self.attn = Attention(dim=d, heads=config.n_heads, dropout=config.dropout, rope_base=config.rope_base)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, config.ff_mult * d), nn.GELU(), nn.Linear(config.ff_mult * d, d),
                                 nn.Dropout(config.dropout))

    def forward(self, x: torch.Tensor, positions: torch.Tensor, cache: KVCache | None, layer: int) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), positions, cache, layer)
        return x + self.mlp(self.norm2(x))


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

    def new_cache(self, batch: int = 1, capacity: int | None = None) -> KVCache:
        c = self.config
        p = self.embed.weight
        return KVCache(layers=c.n_layers, batch=batch, heads=c.n_heads, head_dim=c.dim // c.n_heads,
                       capacity=capacity or c.context, dtype=p.dtype, device=p.device)

    def body(self, x: torch.Tensor, cache: KVCache | None = None) -> tuple[torch.Tensor, KVCache | None]:
        """Embedded tokens (b, t, d) -> logits (b, t, v) and the cache. Split from `forward` so
        a test can differentiate with respect to the inputs (the causality test)."""
        past = cache.length if cache is not None else 0
        positions = torch.arange(past, past + x.shape[1], device=x.device)
        if cache is not None:
            cache.reserve(x.shape[1])
        x = self.drop(x)
        for i, block in enumerate(self.blocks):
            x = block(x, positions, cache, i)
        if cache is not None:
            cache.advance()
        return self.head(self.norm(x)), cache

    def forward(self, idx: torch.Tensor, state: KVCache | None = None) -> tuple[torch.Tensor, KVCache | None]:
        """Logits (b, t, v) for token ids (b, t); ``state`` is a `KVCache` to extend, or None."""
        return self.body(self.embed(idx), state)
