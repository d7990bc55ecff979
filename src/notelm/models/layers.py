"""Attention and the caches behind it, shared by every attention-based family.

`Attention` is one module for the three uses the families need:

- causal self-attention (decoder-only Transformer, Perceiver AR's latent stack, the
  Compressive Transformer's segments over their memories);
- bidirectional self-attention (the velocity model's encoder), with a key-padding mask;
- cross-attention (``context=``: the velocity decoder over the encoder's output; Perceiver
  AR's latents over the whole context).

Its projection is one fused ``qkv`` weight (dim -> 3 dim): queries come from ``x``, keys and
values from ``context`` (default ``x``), so a self-attention computes all three in one matrix
product, and a query subset (Perceiver AR's latents) costs only its own rows.

Positions are explicit: ``positions`` (queries) and ``context_positions`` (keys), integers,
(t,) or (b, t). Rotary embeddings (Su et al. 2021, RoFormer, Eq. 34) rotate queries and keys
by their *absolute* positions, so a score depends only on the distance i - j; keys therefore
stay valid in a cache however far the window moves. A causal mask is the rule
``key position <= query position`` (and ``> query position - window`` for a sliding window),
which covers a chunk appended to a cache, memories before a segment and latents after a prefix
alike. Masks go to PyTorch's ``scaled_dot_product_attention`` as booleans (True = attend);
with no cache, no padding and default positions it gets ``is_causal`` instead. One new token
after a cache that it sees whole (a generation step) takes `Attention.step`: no mask, no
module calls, the rotary rotation computed once for every layer of the step (one matmul each).

Caches (per layer; a network keeps one per layer in its state):

- `KVCache`: keys, values and their positions. ``window=None`` appends forever (buffers
  doubled when full); ``window=W`` keeps the last W positions (its buffer holds 2W slots and
  is compacted when full, so a step costs one position and, every W steps, one copy of W).
  ``append`` returns a new cache object and leaves the old one valid: storage is shared and
  never overwritten; a cache appending where another already did copies what it holds first
  (copy-on-write), so a state can be branched (beam search) and a linear walk stays cheap.
- `Memory`: Transformer-XL's FIFO of a layer's last ``size`` input hidden states, detached
  (no gradient across segments); ``push`` returns the new memory and what it evicted (the
  Compressive Transformer compresses that).

Legend: b batch, t queries, s keys, d dim, h heads, k head dim, W window, m memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# ---- rotary positions ---------------------------------------------------------------------


def rotate(x: torch.Tensor, positions: torch.Tensor, base: float, rotation: torch.Tensor | None = None) -> torch.Tensor:
    """Rotary embedding of x (..., b, h, t, k) at integer positions (t,) or (b, t): pairs
    (x_i, x_{i+k/2}) are rotated by position * base^(-2i/k). ``rotation``: `rotary_rotation`
    of these positions (one token per row), when several rotations share it (every layer of a
    generation step)."""
    if rotation is not None:
        return x @ rotation
    half = x.shape[-1] // 2
    cos, sin = _angles(positions, base, half, x.dtype)  # (t, k) or (b, t, k)
    if cos.dim() == 3:
        cos, sin = cos[:, None], sin[:, None]  # (b, 1, t, k): the same for every head
    # [x1 cos - x2 sin, x1 sin + x2 cos] with the signs in the table: four operations (the roll
    # swaps the halves)
    return x * cos + x.roll(half, dims=-1) * sin


_ANGLES: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}  # (base, half, dtype) -> CPU cos, sin tables


def rotary_rotation(positions: torch.Tensor, attn: Attention, dtype: torch.dtype) -> torch.Tensor:
    """The rotation `rotate` turns ``attn``'s heads by at ``positions`` ((1,) or (b, 1): one
    token per row) as matrices (1 or b, 1, k, k) that ``x @`` applies: computed once for every
    layer of a generation step (``Attention.step``), it makes each layer's rotation one matmul
    instead of two multiplies, a roll and an add. (The same numbers up to rounding: a matmul
    may fuse a multiply and an add.)"""
    half = attn.qkv.weight.shape[1] // attn.heads // 2
    cos, sin = _angles(positions.reshape(-1), attn.rope_base, half, dtype)  # (b, k)
    # y_i = x_i cos_i + x_{i - k/2 mod k} sin_i: cos on the diagonal, sin k/2 rows above it
    return (torch.diag_embed(cos) + torch.diag_embed(sin).roll(-half, dims=-2))[:, None]


def _angles(positions: torch.Tensor, base: float, half: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """[cos, cos] and [-sin, sin] of position * base^(-i/half), i < half. On the CPU they are
    looked up in tables of every position so far (doubled when a larger one comes): one token's
    step then costs an index, not the trigonometry. On an accelerator they are computed (a table
    would need the largest position on the host: a sync per call). Computed in float64 either
    way, then cast: a float32 angle near position 60,000 is off by ~4e-3 rad, enough to move
    float32 log-probabilities by ~1e-2 (Perceiver AR counts positions from the piece's start)."""
    if positions.device.type == "cpu" and positions.numel():
        low, top = (int(v) for v in torch.aminmax(positions))
        if low >= 0:  # (empty slots sit at -1: those are computed)
            key = (float(base), half, dtype)
            cos, sin = _ANGLES.get(key, (None, None))
            if cos is None or top >= len(cos):
                cos, sin = _ANGLES[key] = _signed(torch.arange(max(1024, 1 << top.bit_length())), base, half, dtype)
            return cos[positions], sin[positions]
    return _signed(positions, base, half, dtype)


def _signed(positions: torch.Tensor, base: float, half: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    inv_freq = base ** (-torch.arange(half, device=positions.device, dtype=torch.float64) / half)
    angle = positions.to(torch.float64)[..., None] * inv_freq
    c, s = angle.cos().to(dtype), angle.sin().to(dtype)
    return torch.cat([c, c], dim=-1), torch.cat([-s, s], dim=-1)


# ---- caches -------------------------------------------------------------------------------


class _Slots:
    """Storage shared by caches forked from one another: keys, values (b, h, n, k) and
    positions (b, n) of appended positions ``base`` .. ``base + n - 1`` (counted from the
    piece's first), of which ``filled`` have been written. Slots are never overwritten: a
    cache that needs room copies what it holds into new storage."""

    def __init__(self, k: torch.Tensor, v: torch.Tensor, pos: torch.Tensor, base: int, filled: int) -> None:
        self.k, self.v, self.pos, self.base, self.filled = k, v, pos, base, filled

    @classmethod
    def empty(cls, like: torch.Tensor, slots: int, base: int) -> _Slots:
        b, h, _, k = like.shape
        pos = torch.full((b, slots), -1, dtype=torch.long, device=like.device)
        return cls(like.new_empty(b, h, slots, k), like.new_empty(b, h, slots, k), pos, base, base)

    def copy(self, lo: int, hi: int, slots: int) -> _Slots:
        """New storage of ``slots`` slots from position ``lo``, holding ``lo .. hi - 1``."""
        new = _Slots.empty(self.k, slots, lo)
        a, b = lo - self.base, hi - self.base
        new.k[:, :, : b - a], new.v[:, :, : b - a], new.pos[:, : b - a] = \
            self.k[:, :, a:b], self.v[:, :, a:b], self.pos[:, a:b]
        new.filled = hi
        return new


class KVCache:
    """One layer's keys and values with their positions (see the module docstring).

    ``window``: None appends without limit; an int keeps the last ``window`` positions (each
    query then sees the keys of the last ``window`` positions up to its own). ``written``
    counts every position ever appended. ``capacity``: slots to allocate at first.
    """

    def __init__(self, window: int | None = None, *, capacity: int = 0,
                 _slots: _Slots | None = None, _written: int = 0) -> None:
        if window is not None and window < 1:
            raise ValueError(f"a sliding cache needs a window >= 1; got {window}")
        self.window, self.capacity = window, capacity
        self._slots, self.written = _slots, _written

    @property
    def length(self) -> int:
        """Positions held now (at most ``window``)."""
        return self.written if self.window is None else min(self.written, self.window)

    def fork(self) -> KVCache:
        """Another handle on the same keys; appending to either never changes the other."""
        return KVCache(self.window, capacity=self.capacity, _slots=self._slots, _written=self.written)

    def append(self, k: torch.Tensor, v: torch.Tensor, positions: torch.Tensor
               ) -> tuple[KVCache, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Add keys/values (b, h, t, k) at positions (b, t); return the new cache and the keys,
        values (b, h, s, k) and positions (b, s) to attend over: those held before and the t
        new ones (a sliding window's mask then picks each query's own)."""
        t = k.shape[2]
        lo, hi = self.written - self.length, self.written + t
        slots = self._writable(k, lo, hi)
        a, b = self.written - slots.base, hi - slots.base
        slots.k.narrow(2, a, t).copy_(k)  # narrow: a generation step's appends cost less than slicing
        slots.v.narrow(2, a, t).copy_(v)
        slots.pos.narrow(1, a, t).copy_(positions)
        slots.filled = hi
        new = KVCache(self.window, capacity=self.capacity, _slots=slots, _written=hi)
        first = lo - slots.base if t > 1 or self.window is None else hi - new.length - slots.base
        return new, slots.k.narrow(2, first, b - first), slots.v.narrow(2, first, b - first), slots.pos.narrow(1, first, b - first)

    def _writable(self, like: torch.Tensor, lo: int, hi: int) -> _Slots:
        """Storage to write positions ``written .. hi - 1`` into, holding ``lo .. written - 1``:
        its own when this cache is the last that wrote to it and it has room; else a copy (a
        fork wrote on: copy-on-write; or it is full: grown, or for a window compacted)."""
        slots = self._slots
        if slots is None:
            room = max(hi - lo, self.capacity) if self.window is None else max(2 * self.window, hi - lo)
            return _Slots.empty(like, room, lo)
        if slots.filled == self.written and hi - slots.base <= slots.k.shape[2]:
            return slots
        if self.window is None:
            return slots.copy(slots.base, self.written, max(hi - slots.base, 2 * slots.k.shape[2]))
        return slots.copy(lo, self.written, max(2 * self.window, hi - lo))


@dataclass(frozen=True)
class Memory:
    """Transformer-XL memory of one layer: its last ``size`` input hidden states (b, m, d) at
    positions (b, m), gradient stopped. Empty: ``h`` None."""

    size: int
    h: torch.Tensor | None = None
    pos: torch.Tensor | None = None

    def push(self, h: torch.Tensor, positions: torch.Tensor) -> tuple[Memory, torch.Tensor | None, torch.Tensor | None]:
        """Append states (b, t, d) at positions (b, t); return the new memory and what fell
        out of it, oldest first ((b, e, d) and (b, e); None when nothing did)."""
        h, positions = h.detach(), positions.detach()
        all_h = h if self.h is None else torch.cat([self.h, h], dim=1)
        all_pos = positions if self.pos is None else torch.cat([self.pos, positions], dim=1)
        cut = max(0, all_h.shape[1] - self.size)
        kept = Memory(self.size, all_h[:, cut:], all_pos[:, cut:]) if self.size else Memory(0)
        if not cut:
            return kept, None, None
        return kept, all_h[:, :cut], all_pos[:, :cut]

    @property
    def length(self) -> int:
        return 0 if self.h is None else self.h.shape[1]


# ---- attention ----------------------------------------------------------------------------


def _as_batch(positions: torch.Tensor, b: int) -> torch.Tensor:
    return positions.expand(b, -1) if positions.dim() == 1 else positions


def attention_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, *, causal: bool, window: int | None = None,
                   key_padding: torch.Tensor | None = None) -> torch.Tensor | None:
    """Boolean mask (b, 1, t, s), True where query i may attend to key j: j's position <= i's
    (causal), > i's - window (sliding window), and j not padding; None when all may."""
    mask = None
    if causal or window is not None:
        diff = q_pos[:, :, None] - k_pos[:, None, :]  # (b, t, s): query position - key position
        mask = diff >= 0 if causal else torch.ones_like(diff, dtype=torch.bool)
        if window is not None:
            mask = mask & (diff < window)
        mask = mask[:, None]
    if key_padding is not None:
        keep = ~key_padding[:, None, None, :]  # (b, 1, 1, s)
        mask = keep if mask is None else mask & keep
    return mask


class Attention(nn.Module):
    """Multi-head attention with rotary positions (see the module docstring).

    rotary: rotate queries and keys by their positions (off for an encoder-decoder's
    cross-attention, whose two sequences share no time axis). window: a causal attention
    sees only the last ``window`` positions (None: all).
    """

    def __init__(self, *, dim: int, heads: int, dropout: float = 0.0, rope_base: float = 10000.0,
                 rotary: bool = True, window: int | None = None) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be divisible by heads ({heads})")
        self.heads, self.dropout, self.rope_base, self.rotary, self.window = heads, dropout, rope_base, rotary, window
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def project(self, x: torch.Tensor, context: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """Queries from x (b, t, d), keys and values from context (b, s, d) (default x):
        three (b, h, ., k) tensors, not rotated."""
        b, t, d = x.shape
        k_dim = d // self.heads
        if context is None:
            return self.qkv(x).view(b, t, 3, self.heads, k_dim).permute(2, 0, 3, 1, 4).unbind(0)
        return self.queries(x), *self._kv(context)

    def queries(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return F.linear(x, self.qkv.weight[:d]).view(b, t, self.heads, d // self.heads).transpose(1, 2)

    def _kv(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, s, d = context.shape
        kv = F.linear(context, self.qkv.weight[d:]).view(b, s, 2, self.heads, d // self.heads)
        return kv[:, :, 0].transpose(1, 2), kv[:, :, 1].transpose(1, 2)

    def keys(self, context: torch.Tensor, positions: torch.Tensor | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keys, values (b, h, s, k) and positions (b, s) of a context attended to many times
        (an encoder's output for every decoding step), to pass as ``keys=``."""
        k, v = self._kv(context)
        if positions is None:
            positions = torch.arange(context.shape[1], device=context.device)
        if self.rotary:
            k = rotate(k, positions, self.rope_base)
        return k, v, _as_batch(positions, context.shape[0])

    def forward(self, x: torch.Tensor, *, context: torch.Tensor | None = None,
                keys: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
                positions: torch.Tensor | None = None, context_positions: torch.Tensor | None = None,
                causal: bool = True, key_padding: torch.Tensor | None = None, cache: KVCache | None = None
                ) -> tuple[torch.Tensor, KVCache | None]:
        """Attend from x (b, t, d) to ``context`` (b, s, d; default x), after the keys already
        in ``cache``; returns (b, t, d) and the cache with the new keys appended.

        keys: precomputed ``self.keys(context)`` instead of ``context`` (no cache then).
        positions: of the queries, (t,) or (b, t) (default 0..t-1, after the cache's keys).
        context_positions: of the new keys (default: ``positions`` for self-attention, else
        0..s-1). key_padding: (b, s) True where a key is padding, never attended to (with a
        cache, s counts the new keys only; an append-only cache's older keys are not padding)."""
        b, t, _ = x.shape
        plain = positions is None and context is None and keys is None and cache is None and key_padding is None
        past = cache.written if cache is not None else 0
        if positions is None:
            positions = torch.arange(past, past + t, device=x.device)
        if (t == 1 and causal and cache is not None and context is None and keys is None and context_positions is None
                and key_padding is None and self.sees_all(cache)):
            y, cache = self.step(x.view(b, -1), positions, cache)
            return y.view(b, 1, -1), cache
        q_pos = _as_batch(positions, b)
        q_rotated = not self.rotary
        if keys is not None:
            if cache is not None:
                raise ValueError("precomputed keys are not appended to a cache")
            q = self.queries(x)
            k, v, k_pos = keys
        elif context is None and context_positions is None:  # self-attention: q and k rotated at once
            qkv = self.qkv(x).view(b, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # (3, b, h, t, k)
            qk, v = qkv[:2], qkv[2]
            q, k = (qk if q_rotated else rotate(qk, positions, self.rope_base)).unbind(0)
            k_pos, q_rotated = q_pos, True
        else:
            q, k, v = self.project(x, context)
            if context_positions is None:
                context_positions = torch.arange(k.shape[2], device=x.device)
            k_pos = _as_batch(context_positions, b)
            if self.rotary:
                k = rotate(k, context_positions, self.rope_base)
        if not q_rotated:
            q = rotate(q, positions, self.rope_base)
        if cache is not None:
            if key_padding is not None and cache.window is not None:
                raise ValueError("key padding with a sliding cache is not supported")
            held = cache.length
            cache, k, v, k_pos = cache.append(k, v, k_pos)
            if key_padding is not None:
                key_padding = torch.cat([key_padding.new_zeros(b, held), key_padding], dim=1)
        window = self.window
        if cache is not None and cache.window is not None:
            window = cache.window if window is None else min(window, cache.window)
        drop = self.dropout if self.training else 0.0
        if plain and causal and window is None and t > 1:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop)
        else:
            # one new query after its cached past sees every key (a cross-attention's too): no mask needed
            everything_before = causal and t == 1 and key_padding is None and cache is not None and (
                window is None or window == cache.window)
            mask = None if everything_before else attention_mask(q_pos, k_pos, causal=causal, window=window,
                                                                 key_padding=key_padding)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
        return self._output(y), cache

    def sees_all(self, cache: KVCache) -> bool:
        """Whether one new query after ``cache`` may attend to every key the cache gives back
        (this attention's window, if any, reaches at least as far as the cache's)."""
        return self.window is None or (cache.window is not None and self.window >= cache.window)

    def step(self, x: torch.Tensor, positions: torch.Tensor, cache: KVCache,
             rotation: torch.Tensor | None = None) -> tuple[torch.Tensor, KVCache]:
        """Causal self-attention of one new token per row, x (b, d) at positions (1,) or (b, 1),
        over itself and every key in ``cache`` (`sees_all`): no mask to build, and 2-D inputs
        to the projections (fewer operations than (b, 1, d) ones). The path of a generation step
        (`forward` takes it too); ``rotation``: `rotary_rotation(positions)`, which every layer
        of a step shares. Returns (b, d) and the extended cache."""
        b, d = x.shape
        qkv = F.linear(x, self.qkv.weight).view(b, 3, self.heads, 1, d // self.heads).transpose(0, 1)  # (3, b, h, 1, k)
        qk, v = qkv[:2], qkv[2]
        q, k = (rotate(qk, positions, self.rope_base, rotation) if self.rotary else qk).unbind(0)
        cache, k, v, _ = cache.append(k, v, _as_batch(positions, b))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        y = F.linear(y.reshape(b, d), self.out.weight)  # (b, h, 1, k) -> (b, d)
        return (F.dropout(y, self.dropout, True) if self.training else y), cache

    def _output(self, y: torch.Tensor) -> torch.Tensor:
        """Heads (b, h, t, k) -> the output projection (b, t, d), residual dropout applied."""
        b, _, t, _ = y.shape
        y = F.linear(y.transpose(1, 2).reshape(b, t, -1), self.out.weight)
        return F.dropout(y, self.dropout, True) if self.training else y
