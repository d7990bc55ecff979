"""Perceiver AR (Hawthorne et al. 2022): one causal cross-attention from the last N positions
(the latents) to the whole context, then causal self-attention over the latents only, so the
cost of a window grows with the latents, not with the context (REFERENCE §5).

The network, as in the paper and ``perceiver-ar-pytorch`` 0.0.10 (``par.py:223-308``):

- Token embeddings; the inputs of a window are layer-normalised once, and the last N of them
  are the latents' queries; keys and values come from every input up to each latent (the
  prefix and the latents before it). Rotary positions (RoFormer Eq. 34) on queries and keys,
  so a score depends on the distance only; no learned absolute positions.
- Prefix dropout (the paper's "cross-attend dropout"; ``par.py:135-153``): in training, a
  random share ``prefix_dropout`` of the prefix is left out of the cross-attention, each row
  its own, the kept keys at their own positions. Never in eval mode.
- ``n_layers`` pre-norm causal self-attention blocks over the latents (the library's
  ``depth``), a final LayerNorm and output weights tied to the embedding. Logits for the
  latent positions only: the training task scores the last N targets of each window.

Blocks of latents (what generation and scoring compute, and why). A prediction depends on
which latents it shares self-attention with, so the batched path and the cached step path
must agree on that. Here the latent set of position i is ``[c(i), i]`` with
``c(i) = s * ceil(max(0, i - N + 1) / s)``: latents restart every ``refill`` = s positions once
N are held (`block_starts`), and every latent cross-attends to the last ``context`` = L
inputs up to itself (a sliding window; inside a training window of L this is every input).
s = N (the default) tiles the piece into blocks of N, each latent seeing 1..N latents exactly
as the N latents of a training window do, and costs nothing to restart: the latent caches
are simply emptied. s = N / 2 is the original's half refill (google-research/perceiver-ar
re-runs the network when the latent cache is full, keeping half): every prediction then has
at least N / 2 latents before it, for a restart that recomputes the N - s kept latents'
self-attention stack (their cross-attention outputs are kept, since a sliding window does
not depend on the block). Either way the step path, the batched path and a from-scratch
computation of each prediction agree (tests/test_perceiver_ar.py).

State of a piece in progress (`PerceiverARCache`): a sliding `KVCache` of the last L inputs'
cross-attention keys, one append-only `KVCache` per latent layer for the current block, and
for s < N the current block's cross-attention outputs. A new token costs one position's work.

Legend: b batch, t inputs, n latents, s keys, d dim, v vocabulary, L context, N latents.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from notelm.config import (
    Config,
    SettingsError,
    require_positive_ints,
    require_rates,
    require_rotary_heads,
)
from notelm.encodings.vocab import BOS_ID, PAD_ID
from notelm.errors import NotelmError
from notelm.models.layers import Attention, KVCache
from notelm.models.neural import NeuralModel, NeuralState, probabilities
from notelm.models.transformer import Block


@dataclass(frozen=True)
class PerceiverARConfig(Config):
    """vocab_size: output classes (the encoding's vocabulary). dim: width. n_layers: causal
    self-attention blocks over the latents, after the one cross-attention block. n_heads:
    attention heads (dim divisible, even head size). context: inputs a latent cross-attends
    to (training windows are this long). latents: positions that get predictions (<=
    context). prefix_dropout: share of the prefix left out of the cross-attention in
    training. dropout: on attention weights and residual branches. ff_mult: MLP width / dim.
    rope_base: rotary frequency base."""

    vocab_size: int = 0
    dim: int = 128
    n_layers: int = 4
    n_heads: int = 4
    context: int = 1024
    latents: int = 256
    prefix_dropout: float = 0.25
    dropout: float = 0.1
    ff_mult: int = 4
    rope_base: float = 10000.0

    def __post_init__(self) -> None:
        require_positive_ints(self, "perceiver-ar", ("vocab_size", "dim", "n_layers", "n_heads", "context", "latents",
                                                     "ff_mult"), zero_ok=("vocab_size",))
        require_rotary_heads(self, "perceiver-ar")
        if self.latents > self.context:
            raise SettingsError(f"perceiver-ar: latents ({self.latents}) must be <= context ({self.context})")
        require_rates(self, "perceiver-ar", ("prefix_dropout", "dropout"))


# Presets. v1-v4 are the seed's four sizes (context/width/heads/layers). Latents: 512 for all.
# The seed never fixed a latent count: the library's `cross_attn_seq_len` is the *prefix*
# length, latents = input length - prefix, so its 512-token prefix gave 512 latents on its
# 1,024-token primer and ever more as the sample grew; 512 is that first split and the issue's
# speed configuration. Prefix dropout 0.7 is the seed's `cross_attn_dropout`.
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "debug": {"model": {"dim": 16, "n_layers": 2, "n_heads": 2, "context": 64, "latents": 16, "dropout": 0.0,
                        "prefix_dropout": 0.25},
              "train": {"batch_size": 8, "lr": 3e-3, "schedule": "constant", "warmup_steps": 0, "windows": "in-piece"}},
    # small: what trains in an hour or two on one thread of a 2-core CPU (the built-in). No
    # dropout: such a run sees less than an epoch, and dropout on the attention weights costs a
    # third of a step on CPU (SDPA's masked path draws a Bernoulli mask per weight)
    "small": {"model": {"dim": 128, "n_layers": 4, "n_heads": 4, "context": 1024, "latents": 256, "dropout": 0.0,
                        "prefix_dropout": 0.25},
              "train": {"batch_size": 4, "lr": 1.5e-3, "schedule": "cosine", "warmup_steps": 100, "optimizer": "adamw",
                        "weight_decay": 0.01, "windows": "in-piece"}},
    **{name: {"model": {"dim": dim, "n_layers": 8, "n_heads": heads, "context": context, "latents": 512,
                        "dropout": 0.1, "prefix_dropout": 0.7},
              "train": {"batch_size": 8, "lr": 3e-4, "schedule": "cosine", "warmup_steps": 1000, "optimizer": "adamw",
                        "weight_decay": 0.1, "windows": "in-piece"}}
       for name, context, dim, heads in (("v1", 2048, 512, 8), ("v2", 4096, 512, 8), ("v3", 8192, 1024, 8),
                                         ("v4", 16384, 512, 4))},
}


def block_starts(n: int, latents: int, refill: int) -> np.ndarray:
    """c(i) for i = 0..n-1: the first latent position input i shares self-attention with."""
    i = np.arange(n)
    return refill * -(-np.maximum(0, i - latents + 1) // refill)


# ---- blocks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PerceiverARCache:
    """A piece in progress: ``cross`` the last L inputs' cross-attention keys (sliding);
    ``latents`` one append-only cache per self-attention layer, of the block that starts at
    ``start``; ``hidden`` that block's cross-attention outputs (b, 1, n, d) as keys of a
    cache (``held``: all of them, (b, n, d)), kept only when ``refill`` < N; ``written``
    inputs seen."""

    cross: KVCache
    latents: tuple[KVCache, ...]
    refill: int
    start: int = 0
    written: int = 0
    hidden: KVCache | None = None
    held: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return self.written


class CrossBlock(nn.Module):
    """Latents' causal cross-attention to the last L inputs up to each (plus residual), then
    the MLP (Perceiver AR's first layer)."""

    def __init__(self, config: PerceiverARConfig) -> None:
        super().__init__()
        d = config.dim
        self.norm = nn.LayerNorm(d)
        self.attn = Attention(dim=d, heads=config.n_heads, dropout=config.dropout, rope_base=config.rope_base,
                              window=config.context)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, config.ff_mult * d), nn.GELU(), nn.Linear(config.ff_mult * d, d),
                                 nn.Dropout(config.dropout))

    def forward(self, x: torch.Tensor, n: int, positions: torch.Tensor, *, keep: torch.Tensor | None = None,
                cache: KVCache | None = None) -> tuple[torch.Tensor, KVCache | None]:
        """Inputs x (b, t, d) at positions (t,) or (b, t) -> the last n as latents (b, n, d).
        keep: (b, k) indices of the prefix inputs to attend to (prefix dropout); cache: a
        sliding cache of earlier inputs' keys (the step path), extended by these t."""
        h = self.norm(x)
        context, context_pos = h, positions
        if keep is not None:
            p = x.shape[1] - n
            positions = positions.expand(x.shape[0], -1)
            context = torch.cat([h[:, :p].gather(1, keep[..., None].expand(-1, -1, h.shape[-1])), h[:, p:]], dim=1)
            context_pos = torch.cat([positions[:, :p].gather(1, keep), positions[:, p:]], dim=1)
        y, cache = self.attn(h[:, -n:], context=context, positions=positions[..., -n:], context_positions=context_pos,
                             cache=cache)
        z = x[:, -n:] + y
        return z + self.mlp(self.norm2(z)), cache


# ---- the network ------------------------------------------------------------------------------


class PerceiverAR(nn.Module):
    """Token ids (b, t) -> logits (b, n, v) for the last n = min(t, latents) inputs; with a
    `PerceiverARCache`, logits for every new input and the extended cache."""

    def __init__(self, config: PerceiverARConfig) -> None:
        super().__init__()
        if config.vocab_size < 1:
            raise NotelmError("perceiver-ar: vocab_size must be set (the encoding's vocabulary size)")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.drop = nn.Dropout(config.dropout)
        self.cross = CrossBlock(config)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))  # the Transformer's block
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.vocab_size, bias=False)
        self.head.weight = self.embed.weight  # tied input and output embeddings (Press & Wolf 2017)
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2's scaled init of residual projections
            if name.endswith("attn.out.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * (config.n_layers + 1)))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def new_cache(self, batch: int = 1, *, refill: int | None = None) -> PerceiverARCache:
        """An empty state; ``refill`` = s, the period of latent restarts (default N)."""
        n = self.config.latents
        s = n if refill is None else refill
        if isinstance(s, bool) or not isinstance(s, int) or not 1 <= s <= n:
            raise SettingsError(f"perceiver-ar: refill must be an int in 1..latents ({n}); got {refill!r}")
        return PerceiverARCache(cross=KVCache(window=self.config.context),
                                latents=tuple(KVCache(capacity=n) for _ in self.blocks), refill=s,
                                hidden=KVCache(capacity=n) if s < n else None)

    def _keep(self, b: int, p: int, device: torch.device) -> torch.Tensor | None:
        """Prefix dropout: per row, the indices of the p - floor(p * rate) prefix inputs kept."""
        rate = self.config.prefix_dropout
        if not (self.training and rate > 0 and p > 0):
            return None
        kept = p - int(p * rate)
        return torch.rand(b, p, device=device).topk(kept, dim=-1).indices.sort(dim=-1).values

    def latent_stack(self, z: torch.Tensor, positions: torch.Tensor | None = None,
                     caches: tuple[KVCache, ...] | None = None) -> tuple[torch.Tensor, tuple[KVCache, ...] | None]:
        """Latents (b, n, d) through the self-attention blocks; positions count from the block's
        first latent (None: 0..n-1 without a cache); logits (b, n, v) and the extended caches."""
        new = []
        for i, block in enumerate(self.blocks):
            z, cache = block(z, positions, None if caches is None else caches[i])
            new.append(cache)
        return self.head(self.norm(z)), None if caches is None else tuple(new)

    def body(self, x: torch.Tensor, *, latents: int | None = None, positions: torch.Tensor | None = None
             ) -> torch.Tensor:
        """Embedded inputs (b, t, d) -> logits (b, n, v) of the last n = min(t, latents), all of
        one block. positions: of the inputs, (t,) or (b, t) (default 0..t-1). Split from
        `forward` so a test can differentiate with respect to the inputs (causality)."""
        b, t, _ = x.shape
        n = min(t, latents or self.config.latents)
        if positions is None:
            positions = torch.arange(t, device=x.device)
        z, _ = self.cross(self.drop(x), n, positions, keep=self._keep(b, t - n, x.device))
        return self.latent_stack(z)[0]

    def forward(self, idx: torch.Tensor, state: PerceiverARCache | None = None, *, latents: int | None = None,
                positions: torch.Tensor | None = None) -> tuple[torch.Tensor, PerceiverARCache | None]:
        """Without ``state``: logits (b, n, v) of the last n = min(t, latents) inputs, taken as
        one block (training windows; the batched path). With it: logits (b, t, v) of every new
        input, extending the state (the old one stays valid)."""
        if state is None:
            return self.body(self.embed(idx), latents=latents, positions=positions), None
        return self._steps(idx, state)

    # ---- the step path --------------------------------------------------------------------------

    def _restart(self, state: PerceiverARCache, start: int) -> PerceiverARCache:
        """The state with its latent block restarted at ``start``: empty latent caches, or for
        refill < N the kept latents' self-attention recomputed from their cross outputs."""
        n = self.config.latents
        latents = tuple(KVCache(capacity=n) for _ in self.blocks)
        hidden, held = (KVCache(capacity=n) if state.hidden is not None else None), None
        kept = state.written - start
        if kept > 0:
            z = state.held[:, state.held.shape[1] - kept:]
            _, latents = self.latent_stack(z, torch.arange(kept, device=z.device), latents)
            hidden, held, _, _ = hidden.append(z[:, None], z[:, None], torch.arange(start, state.written).expand(z.shape[0], -1))
            held = held[:, 0]
        return PerceiverARCache(cross=state.cross, latents=latents, refill=state.refill, start=start,
                                written=state.written, hidden=hidden, held=held)

    def _steps(self, idx: torch.Tensor, state: PerceiverARCache) -> tuple[torch.Tensor, PerceiverARCache]:
        b, t = idx.shape
        x = self.drop(self.embed(idx))
        first = state.written
        starts = block_starts(first + t, self.config.latents, state.refill)[first:]
        out = []
        cuts = [0, *(np.flatnonzero(np.diff(starts)) + 1).tolist(), t]
        for lo, hi in zip(cuts[:-1], cuts[1:]):  # runs of inputs in one latent block
            c = int(starts[lo])
            if c != state.start:
                state = self._restart(state, c)
            pos = torch.arange(first + lo, first + hi, device=idx.device)
            z, cross = self.cross(x[:, lo:hi], hi - lo, pos, cache=state.cross)
            hidden, held = state.hidden, state.held
            if hidden is not None:
                hidden, held, _, _ = hidden.append(z[:, None], z[:, None], pos.expand(b, -1))
                held = held[:, 0]
            logits, latents = self.latent_stack(z, pos - c, state.latents)
            out.append(logits)
            state = PerceiverARCache(cross=cross, latents=latents, refill=state.refill, start=c,
                                     written=first + hi, hidden=hidden, held=held)
        return torch.cat(out, dim=1), state


# ---- the model ----------------------------------------------------------------------------------


class PerceiverARModel(NeuralModel):
    """A `PerceiverAR` network as a `SequenceModel` (BOS first, probabilities and options as
    `NeuralModel`'s). The prediction after input i comes from the latent block
    ``[c(i), i]`` cross-attending to the last ``context`` inputs (module docstring), on every
    path: ``start``/``observe`` with the cache (one position's work a token), without it
    (``use_cache=False``: that block recomputed from its inputs every step, the generation
    benchmark's baseline), and `distributions` (one forward pass per block, blocks of one
    shape batched). ``refill``: the latent restart period s (default N)."""

    def __init__(self, network: PerceiverAR, *, refill: int | None = None, max_attention: int = 1 << 25,
                 **options: Any) -> None:
        options.pop("context", None)
        options.pop("stride", None)
        super().__init__(network, context=None, **options)
        cfg = network.config
        self.context, self.latents = cfg.context, cfg.latents
        self.refill = network.new_cache(1, refill=refill).refill  # validated there
        self.max_attention = max_attention  # attention weights one batched forward pass may hold

    def __repr__(self) -> str:
        return f"PerceiverARModel(context={self.context}, latents={self.latents}, refill={self.refill})"

    def _start_of(self, m: int) -> int:
        return 0  # the state carries the whole piece (the caches slide and restart by themselves)

    def _block(self, end: int) -> tuple[int, int]:
        """(first input, first latent) of the forward pass that predicts after input end - 1."""
        c = int(block_starts(end, self.latents, self.refill)[-1])
        return max(0, c - self.context + 1), c

    def _refill(self, history: tuple[int, ...]) -> NeuralState:
        if self.use_cache:
            logits, cache = self._run(history, self.network.new_cache(1, refill=self.refill))
            return NeuralState(history=history, cache=cache, logits=logits)
        a, c = self._block(len(history))
        x = torch.tensor([history[a:]], dtype=torch.long, device=self.device)
        pos = torch.arange(a, len(history), device=self.device)
        logits, _ = self.network(x, None, latents=len(history) - c, positions=pos)
        return NeuralState(history=history, logits=logits[0, -1])

    @torch.inference_mode()
    def distributions(self, sequences) -> list[np.ndarray]:
        """The distribution before every event of every piece, (n, v) float64 each: one forward
        pass per latent block (inputs: the L - 1 before its first latent, then its latents),
        passes of one shape batched."""
        seqs = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
        out = [np.empty((len(s), self.alphabet_size)) for s in seqs]
        jobs: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}  # (inputs, latents) -> (piece, a, c, owned)
        for i, s in enumerate(seqs):
            starts = block_starts(len(s), self.latents, self.refill)
            for c in np.unique(starts):
                owned = np.flatnonzero(starts == c)
                end = int(owned[-1]) + 1
                a = max(0, int(c) - self.context + 1)
                jobs.setdefault((end - a, end - int(c)), []).append((i, a, int(c), int(owned[0])))
        heads = self.network.config.n_heads
        for (t, n), group in jobs.items():
            rows = max(1, min(self.max_batch_tokens // t, self.max_attention // (heads * n * t)))
            for k in range(0, len(group), rows):
                batch = group[k: k + rows]
                x = torch.full((len(batch), t), PAD_ID, dtype=torch.long)
                pos = torch.empty((len(batch), t), dtype=torch.long)
                for row, (i, a, _, _) in enumerate(batch):
                    x[row] = torch.from_numpy(np.r_[BOS_ID, seqs[i][:-1]][a: a + t])
                    pos[row] = torch.arange(a, a + t)
                logits, _ = self.network(x.to(self.device), None, latents=n, positions=pos.to(self.device))
                for row, (i, a, c, first) in enumerate(batch):
                    out[i][first: a + t] = probabilities(logits[row, first - c:], self._allowed)
        return out
