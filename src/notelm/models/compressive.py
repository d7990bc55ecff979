"""The Compressive Transformer (Rae et al. 2019) and its special case Transformer-XL (Dai et
al. 2019): a decoder-only Transformer read segment by segment, each layer attending over its
own memories of earlier segments as well as the segment so far (REFERENCE §5).

Per memory layer (all layers, or the 1-based ``memory_layers``):

- ``mem``: a FIFO (`notelm.models.layers.Memory`) of the layer's last ``mem_len`` attention
  inputs (the LayerNorm'd residual stream: what the key/value projection reads), with no
  gradient across segments (Dai et al. §3.2: SG(h) in Eq. 1).
- ``cmem``: a second FIFO of ``cmem_len`` compressed memories. What a full segment pushes out of
  ``mem`` (n_s states) is compressed with ratio c into n_s / c slots (Rae et al. §3.1, Alg. 1):
  "conv", a 1-D convolution with kernel = stride = c (the seed's library's only one; ours starts
  as mean pooling); "max" / "mean" pooling with kernel = stride = c;
  "dilated", log2(c) convolutions of kernel 2 with dilations 1, 2, ..., c/2 (GELU between),
  read every c-th output, so a slot sees exactly its own c states as "conv" does, through a
  deeper, nonlinear map (the paper names dilated convolutions without giving their shape).
- The attention-reconstruction loss (Rae et al. §3.3, Alg. 2): the current segment's
  content-based attention (no positions) over the evicted memories against the same over
  their compression, with the layer's own projections: the mean squared error, averaged over
  memory layers (a scale at which its gradient leaves the shared gradient-norm clip to the
  main loss: see `reconstruction_loss`). It trains the
  compression function and nothing else: every other input of the loss is detached — the
  queries' inputs, the old memories, and the projection weights themselves (``weight.detach()``
  in the loss's own matmul), while the parameters stay trainable for the main loss. (The
  library the seed used detaches the key/value *parameter* in place instead, freezing it for
  every loss from the first compressing segment on: REFERENCE §5, bench/results/compressive.json.)
  Pooling has no parameters: no loss. Compressed memories reach later segments detached, so
  the main loss never trains the compressor either.

Positions: rotary embeddings (Su et al. 2021) at *absolute* positions within the piece (BOS at 0),
rotating queries and keys of the segment, its memories and its compressed memories alike, so a
score depends only on the distance i - j. We chose this over Transformer-XL's relative encoding
(Dai et al. Eq. 2: a learned projection of sinusoids with two global biases and the "relative
shift") because it is the same `Attention` every notelm family uses, needs no extra parameters,
and keeps keys valid in a KV cache (a key is rotated once, by its own position, however far the
queries move on). A compressed slot takes the position of the *latest* of its c states: it
stays before every later query, and the distance to it is the distance to its most recent
content. Empty slots (a row reset at a piece boundary while the others go on) have position -1
and are key padding.

Layers without memory attend within the segment only. The block layout is
`notelm.models.transformer`'s (this class is a subclass), so a Transformer's weights load into a
Compressive Transformer as they are (``load_state_dict(strict=False)``; the compressors are the
only extra weights), and with no memory one segment of it *is* that Transformer.

State (`CompressiveState`): per layer the memories, the current segment's attention inputs so
far and, for generation, a key/value cache (`KVCache`) over compressed memory, memory and the
segment so far, built when a segment starts and extended one token at a time: a step costs
attention over at most cmem_len + mem_len + context keys, whatever the piece's length. When the
segment fills, its inputs go to memory, what falls out is compressed, and the cache is dropped.
`forward` takes any number of tokens from any state (a whole piece, one segment, one token): it
cuts them at segment boundaries, so a piece read at once, segment by segment or token by token
gives the same numbers. With gradients on, keys are recomputed from the stored inputs instead of
cached (the cache writes into shared storage in place, which autograd cannot go back through).

Legend: b batch, t time (new tokens), T segment (context), s keys, d dim, h heads, k head dim,
v vocabulary, m memory (mem_len), c compression ratio, n compressed memory (cmem_len), e evicted.
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
    SettingsError,
    require_positive_ints,
    require_rates,
    require_rotary_heads,
)
from notelm.errors import NotelmError
from notelm.models.layers import Attention, KVCache, Memory, rotary_rotation
from notelm.models.transformer import Transformer

COMPRESSIONS = ("conv", "max", "mean", "dilated")


# ---- settings -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompressiveConfig(Config):
    """vocab_size: the encoding's vocabulary. dim, n_layers, n_heads, ff_mult, dropout, rope_base:
    as `TransformerConfig`'s. context: the segment length T (tokens per training window and per
    memory update). mem_len: memories per memory layer. cmem_len: compressed memories per memory
    layer (0: Transformer-XL). ratio: compression rate c. compression: conv, max, mean or
    dilated. memory_layers: 1-based layers with memories (empty: all). reconstruction_weight:
    factor of the attention-reconstruction loss (it trains only the compressor, whose Adam
    steps do not depend on it; a large one takes over the gradient-norm clip: see
    `reconstruction_loss`)."""

    vocab_size: int = 0
    dim: int = 64
    n_layers: int = 6
    n_heads: int = 8
    context: int = 64
    mem_len: int = 64
    cmem_len: int = 256
    ratio: int = 4
    compression: str = "conv"
    memory_layers: tuple[int, ...] = ()
    dropout: float = 0.1
    ff_mult: int = 4
    rope_base: float = 10000.0
    reconstruction_weight: float = 1.0

    family = "compressive"

    def __post_init__(self) -> None:
        f = self.family
        require_positive_ints(self, f, ("vocab_size", "dim", "n_layers", "n_heads", "context", "ff_mult", "ratio",
                                        "mem_len", "cmem_len"), zero_ok=("vocab_size", "mem_len", "cmem_len"))
        require_rotary_heads(self, f)
        if self.compression not in COMPRESSIONS:
            raise SettingsError(f"{f}: compression must be one of {', '.join(COMPRESSIONS)}; got {self.compression!r}")
        if self.cmem_len and (self.context % self.ratio or self.mem_len % self.ratio):
            # then every eviction is a whole number of groups of c (memories fill T at a time)
            raise SettingsError(f"{f}: context ({self.context}) and mem_len ({self.mem_len}) must be multiples "
                                f"of ratio ({self.ratio})")
        if self.compression == "dilated" and self.ratio & (self.ratio - 1):
            raise SettingsError(f"{f}: dilated compression needs a ratio that is a power of 2; got {self.ratio}")
        layers = self.memory_layers
        if not all(isinstance(i, int) and 1 <= i <= self.n_layers for i in layers) or len(set(layers)) != len(layers):
            raise SettingsError(f"{f}: memory_layers must be distinct layer numbers in 1..{self.n_layers}; got {list(layers)}")
        require_rates(self, f)
        if not (isinstance(self.reconstruction_weight, (int, float)) and self.reconstruction_weight >= 0):
            raise SettingsError(f"{f}: reconstruction_weight must be >= 0; got {self.reconstruction_weight!r}")

    @property
    def memory_layer_indices(self) -> tuple[int, ...]:
        """0-based indices of the layers with memories."""
        if not self.mem_len and not self.cmem_len:
            return ()
        return tuple(sorted(i - 1 for i in self.memory_layers)) if self.memory_layers else tuple(range(self.n_layers))

    @property
    def span(self) -> int:
        """Tokens one memory layer can reach back: segment + memory + c x compressed memory."""
        return self.context + self.mem_len + self.ratio * self.cmem_len


@dataclass(frozen=True)
class XLConfig(CompressiveConfig):
    """Transformer-XL: a `CompressiveConfig` without compressed memory (cmem_len 0)."""

    cmem_len: int = 0
    family = "xl"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cmem_len:
            raise SettingsError(f"xl: cmem_len must be 0 (train compressive for compressed memories); got {self.cmem_len}")


# Presets: model settings and the training settings that go with them.
_TRAIN = {"batch_size": 8, "lr": 2e-3, "schedule": "cosine", "warmup_steps": 100, "optimizer": "adamw",
          "weight_decay": 0.01, "grad_clip": 1.0}
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "debug": {"model": {"dim": 16, "n_layers": 2, "n_heads": 2, "context": 16, "mem_len": 16, "cmem_len": 16,
                        "dropout": 0.0},
              "train": {"batch_size": 4, "lr": 3e-3, "schedule": "constant", "warmup_steps": 0}},
    # the seed study's model (REFERENCE §5) and its library's training (enwik8 example: Adam 1e-4, clip 0.5)
    "seed": {"model": {"dim": 64, "n_layers": 6, "n_heads": 8, "context": 64, "mem_len": 64, "cmem_len": 256,
                       "ratio": 4, "memory_layers": (5, 6), "dropout": 0.1},
             "train": {"batch_size": 16, "lr": 1e-4, "schedule": "constant", "grad_clip": 0.5}},
    # a CPU size: 128-token segments, memories reaching 128 + 128 + 4 x 128 = 768 tokens back per layer
    "small": {"model": {"dim": 96, "n_layers": 4, "n_heads": 4, "context": 128, "mem_len": 128, "cmem_len": 128,
                        "ratio": 4, "dropout": 0.1},
              "train": dict(_TRAIN)},
}
XL_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    name: {"model": {**p["model"], "cmem_len": 0}, "train": p["train"]} for name, p in PRESETS.items()}


# ---- compression functions (Rae et al. §3.1) ---------------------------------------------------------


class DilatedCompression(nn.Module):
    """log2(c) convolutions of kernel 2, dilations 1, 2, ..., c/2, GELU between; output j is read
    where its receptive field is exactly states jc .. jc + c - 1."""

    def __init__(self, dim: int, ratio: int) -> None:
        super().__init__()
        self.ratio = ratio
        self.convs = nn.ModuleList(nn.Conv1d(dim, dim, 2, dilation=2 ** i) for i in range(int(math.log2(ratio))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (b, d, e) -> (b, d, e / c)
        for i, conv in enumerate(self.convs):
            x = conv(x) if i == 0 else conv(F.gelu(x))
        return x[:, :, :: self.ratio]  # the valid convolutions shortened x by c - 1: index 0 is state c - 1


def compression(kind: str, dim: int, ratio: int) -> nn.Module:
    """The compression function f_c: (b, d, e) -> (b, d, e / c)."""
    if kind == "max":
        return nn.MaxPool1d(ratio)
    if kind == "mean":
        return nn.AvgPool1d(ratio)
    if kind == "dilated":
        return DilatedCompression(dim, ratio) if ratio > 1 else nn.Identity()
    conv = nn.Conv1d(dim, dim, ratio, stride=ratio)
    with torch.no_grad():  # starts as mean pooling (our choice; the paper gives no initialisation)
        conv.weight.copy_(torch.eye(dim)[:, :, None].expand(dim, dim, ratio) / ratio)
        conv.bias.zero_()
    return conv


def reconstruction_loss(attn: Attention, queries_in: torch.Tensor, old: torch.Tensor, old_pos: torch.Tensor,
                        compressed: torch.Tensor, compressed_pos: torch.Tensor) -> torch.Tensor:
    """Rae et al. Alg. 2: || attn(h, old_mem) - attn(h, f_c(old_mem)) ||², content-based, with
    the layer's projections, as the mean squared error over queries, heads and features (and
    rows). Only ``compressed`` carries a gradient: queries_in (b, t, d), old (b, e, d) and the
    projection weights enter detached. Rows whose evicted states are all empty slots (reset
    rows) count for nothing.

    The mean, not the paper's squared norm (d times larger): Adam makes the compressor's steps
    independent of the loss's scale, but the gradient-norm clip is taken over every parameter
    at once, and at the norm's scale the compressor's gradient outgrew the main network's (3.2
    against 0.6 by step 400 at the seed config), so the clip shrank every main step 3-6 times
    (train loss 3.07 against 2.94 at step 400 with the mean; bench/bench_compressive.py's loop)."""
    b, t, d = queries_in.shape
    w = attn.qkv.weight.detach()

    def heads(z: torch.Tensor) -> torch.Tensor:  # (b, s, d) -> (b, h, s, k)
        return z.view(z.shape[0], z.shape[1], attn.heads, -1).transpose(1, 2)

    def kv(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = F.linear(z, w[d:]).chunk(2, dim=-1)
        return heads(k), heads(v)

    rows = (old_pos >= 0).any(dim=1)  # (b,)
    q = heads(F.linear(queries_in.detach(), w[:d]))

    def attend(z: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        k, v = kv(z)
        keep = (pos >= 0) | ~rows[:, None]  # an all-empty row attends to everything (then ignored), not to nothing
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])

    with torch.no_grad():
        target = attend(old.detach(), old_pos)
    err = (attend(compressed, compressed_pos) - target).pow(2).mean(dim=(1, 2, 3))  # (b,)
    return (err * rows).sum() / rows.sum().clamp(min=1)


# ---- state ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LayerState:
    """One layer's part of a piece in progress: memories (empty `Memory` for a layer without),
    the current segment's attention inputs and positions so far as the parts they came in
    (``parts``: (b, f_i, d) and (b, f_i) each; ``seg``/``seg_pos`` join them, None while the
    segment is empty: a generation step adds a part, not a copy of all of them), and the
    key/value cache over [cmem, mem, segment so far] (None: built when needed; padded: it holds
    empty slots)."""

    mem: Memory
    cmem: Memory
    parts: tuple[tuple[torch.Tensor, torch.Tensor], ...] = ()
    cache: KVCache | None = None
    padded: bool = False

    @property
    def filled(self) -> int:
        """Tokens of the segment so far."""
        return sum(h.shape[1] for h, _ in self.parts)

    @property
    def seg(self) -> torch.Tensor | None:
        return _joined([h for h, _ in self.parts])

    @property
    def seg_pos(self) -> torch.Tensor | None:
        return _joined([p for _, p in self.parts])

    def added(self, h: torch.Tensor, pos: torch.Tensor, cache: KVCache | None, padded: bool = False) -> LayerState:
        """This state with inputs h (b, t, d) at pos (b, t) added to the segment and ``cache``."""
        return LayerState(self.mem, self.cmem, (*self.parts, (h, pos)), cache, padded)


def _joined(parts: list[torch.Tensor]) -> torch.Tensor | None:
    return None if not parts else parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


@dataclass(frozen=True)
class CompressiveState:
    """A batch of pieces in progress: per-layer states and the next position of each row (b,)."""

    layers: tuple[LayerState, ...]
    next_pos: torch.Tensor

    @property
    def filled(self) -> int:
        """Tokens of the current segment so far (the same for every row)."""
        return self.layers[0].filled


def _full(m: Memory, b: int, d: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A memory's states (b, size, d) and positions (b, size), empty slots (-1) in front."""
    gap = m.size - m.length
    h = like.new_zeros(b, gap, d) if m.h is None else torch.cat([m.h.new_zeros(b, gap, d), m.h], dim=1)
    pos = torch.full((b, gap), -1, dtype=torch.long, device=like.device)
    return h, pos if m.pos is None else torch.cat([pos, m.pos], dim=1)


def _trimmed(size: int, h: torch.Tensor | None, pos: torch.Tensor | None) -> Memory:
    """A `Memory` of states h (b, s, d) at pos (b, s) without the leading slots empty in every row."""
    if h is None:
        return Memory(size)
    used = (pos >= 0).any(dim=0).nonzero()
    if not len(used):
        return Memory(size)
    first = int(used[0])
    return Memory(size, h[:, first:], pos[:, first:])


def _forget(t: torch.Tensor | None, rows: torch.Tensor, fill: float) -> torch.Tensor | None:
    """t (b, ...) with the rows ``rows`` set to ``fill``."""
    if t is None:
        return None
    return torch.where(rows.view(-1, *([1] * (t.dim() - 1))), torch.full_like(t, fill), t)


# ---- the model ------------------------------------------------------------------------------------


class CompressiveTransformer(Transformer):
    """Token ids (b, t) -> (next-token logits (b, t, v), state, aux) where aux holds the
    reconstruction loss of this call (see the module docstring)."""

    def __init__(self, config: CompressiveConfig) -> None:
        if config.vocab_size < 1:
            raise NotelmError(f"{config.family}: vocab_size must be set (the encoding's vocabulary size)")
        super().__init__(config)  # embed, blocks (norm1, attn, norm2, mlp), norm, tied head
        self.memory = config.memory_layer_indices
        if config.cmem_len:
            for i in self.memory:
                self.blocks[i].compress = compression(config.compression, config.dim, config.ratio)
        self.learns_compression = bool(config.cmem_len) and config.compression in ("conv", "dilated") \
            and config.ratio > 1 and config.reconstruction_weight > 0

    # ---- state ------------------------------------------------------------------------------------

    def new_cache(self, batch: int = 1, capacity: int | None = None) -> None:
        """None: a piece starts with empty memories (the first call makes the state)."""
        return None

    def empty_state(self, batch: int, device: torch.device | str = "cpu") -> CompressiveState:
        c = self.config
        layers = tuple(LayerState(Memory(c.mem_len if i in self.memory else 0), Memory(c.cmem_len if i in self.memory else 0))
                       for i in range(c.n_layers))
        return CompressiveState(layers, torch.zeros(batch, dtype=torch.long, device=device))

    def reset(self, state: CompressiveState | None, rows: torch.Tensor) -> CompressiveState | None:
        """Forget what rows ``rows`` (b,) bool carried: their memories become empty slots and their
        positions restart at 0, so their next segment starts a new piece (as a fresh state would,
        when reset at a segment boundary, as the segment task does)."""
        if state is None or not bool(rows.any()):
            return state
        layers = []
        for ls in state.layers:
            mem, cmem = (Memory(m.size, _forget(m.h, rows, 0.0), _forget(m.pos, rows, -1)) for m in (ls.mem, ls.cmem))
            seg, seg_pos = ls.seg, ls.seg_pos
            layers.append(LayerState(mem, cmem, () if seg is None else ((_forget(seg, rows, 0.0), _forget(seg_pos, rows, -1)),)))
        return CompressiveState(tuple(layers), torch.where(rows, 0, state.next_pos))

    def state_tensors(self, state: CompressiveState | None) -> dict[str, torch.Tensor]:
        """The state as named tensors, batch first, of the same shapes whatever the state: every
        memory at its full size, empty slots (position -1) in front, so the segment task can
        gather it across processes whose rows started pieces at different times. (A memory
        grows from empty in a fresh state; padded, it holds and evicts the same states, since
        lengths are multiples of the ratio.) Caches are left out: they are rebuilt."""
        if state is None:
            return {}
        out = {"next_pos": state.next_pos}
        b = state.next_pos.shape[0]
        for i, ls in enumerate(state.layers):
            if i in self.memory:
                for name, m in (("mem", ls.mem), ("cmem", ls.cmem)):
                    h, pos = _full(m, b, self.config.dim, self.embed.weight)
                    out[f"layer{i}.{name}"], out[f"layer{i}.{name}_pos"] = h, pos
            if ls.seg is not None:
                out[f"layer{i}.seg"], out[f"layer{i}.seg_pos"] = ls.seg, ls.seg_pos
        return out

    def state_from_tensors(self, tensors: dict[str, torch.Tensor]) -> CompressiveState | None:
        """The state `state_tensors` gave (None from {}); memories lose the empty slots in front
        that every row has, so they are as long as they were (the keys a training step's
        attention dropout draws for must be the same in a resumed run)."""
        if not tensors:
            return None
        c, layers = self.config, []
        for i in range(c.n_layers):
            get = lambda name, i=i: tensors.get(f"layer{i}.{name}")  # noqa: E731
            size, csize = (c.mem_len, c.cmem_len) if i in self.memory else (0, 0)
            seg = () if get("seg") is None else ((get("seg"), get("seg_pos")),)
            layers.append(LayerState(_trimmed(size, get("mem"), get("mem_pos")), _trimmed(csize, get("cmem"), get("cmem_pos")),
                                     seg))
        return CompressiveState(tuple(layers), tensors["next_pos"])

    # ---- one layer ----------------------------------------------------------------------------------

    def _held(self, ls: LayerState) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Attention inputs (b, s, d) and positions (b, s) of [cmem, mem, segment so far]."""
        held = [(z, p) for z, p in ((ls.cmem.h, ls.cmem.pos), (ls.mem.h, ls.mem.pos), *ls.parts) if z is not None]
        return _joined([z for z, _ in held]), _joined([p for _, p in held])

    def _attend(self, i: int, ls: LayerState, a: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, LayerState]:
        """Layer i's attention from a (b, t, d) at pos (b, t) over [cmem, mem, segment so far, a]."""
        attn = self.blocks[i].attn
        if torch.is_grad_enabled():  # keys recomputed from the stored inputs (see the module docstring)
            held, held_pos = self._held(ls)
            context = a if held is None else torch.cat([held, a], dim=1)
            context_pos = pos if held is None else torch.cat([held_pos, pos], dim=1)
            y, _ = attn(a, context=context, positions=pos, context_positions=context_pos, key_padding=context_pos < 0)
            return y, ls
        cache, padded = ls.cache, ls.padded
        if cache is None:  # a segment starts: the keys of the memories, once
            c = self.config
            cache = KVCache(capacity=(c.cmem_len + c.mem_len if i in self.memory else 0) + c.context)
            held, held_pos = self._held(ls)
            if held is not None:
                cache, *_ = cache.append(*attn.keys(held, held_pos))
                padded = bool((held_pos < 0).any())
        if padded:  # empty slots are key padding, which a cache's older keys cannot be
            cache, k, v, p = cache.append(*attn.keys(a, pos))
            y, _ = attn(a, keys=(k, v, p), positions=pos, key_padding=p < 0)
        else:  # the new tokens see every key before them: the cache's own causal mask
            y, cache = attn(a, positions=pos, cache=cache)
        return y, LayerState(ls.mem, ls.cmem, ls.parts, cache, padded)

    def _layer(self, i: int, ls: LayerState, x: torch.Tensor, pos: torch.Tensor,
               rotation: torch.Tensor | None = None) -> tuple[torch.Tensor, LayerState]:
        """Layer i over x (b, t, d) at pos (b, t). ``rotation`` (a generation step: one token, no
        gradient): the step's `rotary_rotation`, and the block's own one-token path when its
        cache holds no empty slots (`Block.step`: the same numbers, up to rounding, without
        module calls)."""
        block = self.blocks[i]
        if rotation is not None and ls.cache is not None and not ls.padded:
            x, cache, a = block.step(x, pos, ls.cache, rotation)
            return x, ls.added(a, pos, cache)
        a = block.norm1(x)
        y, ls = self._attend(i, ls, a, pos)
        x = x + y
        x = x + block.feed_forward(block.norm2(x))
        return x, ls.added(a, pos, ls.cache, ls.padded)

    def _end_segment(self, i: int, ls: LayerState) -> tuple[LayerState, torch.Tensor | None]:
        """The full segment's inputs go to memory; what falls out is compressed into cmem.
        Returns the new layer state and this layer's reconstruction loss (None: none)."""
        empty = LayerState(ls.mem, ls.cmem)
        if i not in self.memory:
            return empty, None
        seg = ls.seg
        mem, old, old_pos = ls.mem.push(seg, ls.seg_pos)
        if old is None or not self.config.cmem_len:
            return LayerState(mem, ls.cmem), None
        b, e, d = old.shape
        c = self.config.ratio
        compressed = self.blocks[i].compress(old.transpose(1, 2)).transpose(1, 2)  # (b, e / c, d)
        compressed_pos = old_pos.view(b, e // c, c).amax(dim=-1)  # the latest state of each group
        loss = None
        if self.training and self.learns_compression and torch.is_grad_enabled():
            loss = reconstruction_loss(self.blocks[i].attn, seg, old, old_pos, compressed, compressed_pos)
        cmem, _, _ = ls.cmem.push(compressed, compressed_pos)  # detached
        return LayerState(mem, cmem), loss

    # ---- the network --------------------------------------------------------------------------------

    def body(self, x: torch.Tensor, state: CompressiveState | None = None
             ) -> tuple[torch.Tensor, CompressiveState, dict[str, torch.Tensor]]:
        """Embedded tokens (b, t, d) -> logits (b, t, v), the state after them and the aux losses;
        cut at segment boundaries. Split from `forward` for the causality test."""
        b, t, _ = x.shape
        state = state or self.empty_state(b, x.device)
        x = self.drop(x)
        outs, losses, done = [], [], 0
        while done < t:
            filled = state.filled
            n = min(t - done, self.config.context - filled)
            h = x[:, done: done + n]
            pos = state.next_pos[:, None] + torch.arange(n, device=x.device)
            step = n == 1 and filled and not torch.is_grad_enabled()  # a generation step in a segment
            rotation = rotary_rotation(pos, self.blocks[0].attn, x.dtype) if step else None
            layers = []
            for i, ls in enumerate(state.layers):
                h, ls = self._layer(i, ls, h, pos, rotation)
                layers.append(ls)
            state = CompressiveState(tuple(layers), state.next_pos + n)
            if filled + n == self.config.context:
                ended = [self._end_segment(i, ls) for i, ls in enumerate(state.layers)]
                state = CompressiveState(tuple(ls for ls, _ in ended), state.next_pos)
                losses += [loss for _, loss in ended if loss is not None]
            outs.append(self.head(self.norm(h)))
            done += n
        aux = {}
        if self.learns_compression:
            total = sum(losses) / max(len(self.memory), 1) if losses else x.new_zeros(())
            if self.training and torch.is_grad_enabled():
                # every compressor in the graph, with a zero gradient when nothing was evicted
                # (a piece's first segment): DDP requires every parameter to take part
                total = total + 0.0 * sum(p.sum() for i in self.memory for p in self.blocks[i].compress.parameters())
            aux["reconstruction"] = self.config.reconstruction_weight * total
        return (outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)), state, aux

    def forward(self, idx: torch.Tensor, state: CompressiveState | None = None
                ) -> tuple[torch.Tensor, CompressiveState, dict[str, torch.Tensor]]:
        """Logits (b, t, v) for token ids (b, t) continuing ``state`` (None: pieces start), the
        state after them (the old one stays valid) and {"reconstruction": loss} when it learns."""
        return self.body(self.embed(idx), state)
