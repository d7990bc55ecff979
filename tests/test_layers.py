"""The shared attention module and its caches against naive reference computations."""

from __future__ import annotations

import math

import pytest
import torch

from notelm.models.layers import Attention, KVCache, Memory, rotate

D, H = 16, 2


def attention(seed=0, **options):
    torch.manual_seed(seed)
    return Attention(dim=D, heads=H, **options).double().eval()


def naive(att: Attention, x, context, q_pos, k_pos, allowed):
    """softmax(q kᵀ / sqrt(k)) v, written out head by head, with allowed (t, s) or (b, t, s)."""
    d = x.shape[-1]
    k_dim = d // att.heads
    w = att.qkv.weight
    q = (x @ w[:d].T).view(*x.shape[:2], att.heads, k_dim).transpose(1, 2)
    k = (context @ w[d:2 * d].T).view(*context.shape[:2], att.heads, k_dim).transpose(1, 2)
    v = (context @ w[2 * d:].T).view(*context.shape[:2], att.heads, k_dim).transpose(1, 2)
    if att.rotary:
        q, k = rotate(q, q_pos, att.rope_base), rotate(k, k_pos, att.rope_base)
    scores = q @ k.transpose(-1, -2) / math.sqrt(k_dim)
    allowed = allowed if allowed.dim() == 3 else allowed[None]
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    y = torch.softmax(scores, dim=-1) @ v
    return att.out(y.transpose(1, 2).reshape(*x.shape[:2], d))


def test_causal_attention_with_offset_positions_equals_the_naive_computation():
    att = attention()
    keys = torch.randn(2, 15, D, dtype=torch.float64)
    x = keys[:, 10:]  # queries are the last 5 positions, keys all 15 (a chunk after a prefix)
    q_pos, k_pos = torch.arange(10, 15), torch.arange(15)
    got, _ = att(x, context=keys, positions=q_pos, context_positions=k_pos)
    want = naive(att, x, keys, q_pos, k_pos, k_pos[None, :] <= q_pos[:, None])
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)


def test_plain_causal_self_attention_equals_the_naive_computation():
    att = attention(1)
    x = torch.randn(3, 9, D, dtype=torch.float64)
    pos = torch.arange(9)
    got, _ = att(x)
    torch.testing.assert_close(got, naive(att, x, x, pos, pos, pos[None, :] <= pos[:, None]), atol=1e-12, rtol=0)


def test_bidirectional_and_cross_attention_respect_key_padding():
    att = attention(2, rotary=False)
    x = torch.randn(2, 6, D, dtype=torch.float64)
    memory = torch.randn(2, 8, D, dtype=torch.float64)
    padding = torch.zeros(2, 8, dtype=torch.bool)
    padding[1, 5:] = True  # the second source is 5 long
    got, _ = att(x, context=memory, causal=False, key_padding=padding)
    allowed = (~padding)[:, None, :].expand(2, 6, 8)
    want = naive(att, x, memory, torch.arange(6), torch.arange(8), allowed)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    # the same through precomputed keys (an encoder's output attended to at every decoding step)
    again, _ = att(x, keys=att.keys(memory), causal=False, key_padding=padding)
    torch.testing.assert_close(again, got, atol=1e-12, rtol=0)
    # and padding changes nothing for the first row, whose keys are all real
    enc = attention(3)
    y, _ = enc(memory, causal=False, key_padding=padding)
    y0, _ = enc(memory[:1], causal=False)
    torch.testing.assert_close(y[:1], y0, atol=1e-12, rtol=0)
    y1, _ = enc(memory[1:, :5], causal=False)
    torch.testing.assert_close(y[1:, :5], y1, atol=1e-12, rtol=0)


@pytest.mark.parametrize("chunks", [[1] * 20, [7, 1, 1, 5, 6], [20]])
def test_append_cache_equals_recomputation(chunks):
    att = attention(4)
    x = torch.randn(2, 20, D, dtype=torch.float64)
    full, _ = att(x)
    cache, parts, at = KVCache(capacity=2), [], 0
    for n in chunks:
        y, cache = att(x[:, at:at + n], cache=cache)
        parts.append(y)
        at += n
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-12, rtol=0)
    assert cache.length == 20


@pytest.mark.parametrize("chunks", [[1] * 24, [5, 1, 9, 1, 8]])
def test_sliding_cache_equals_recomputation_within_its_window(chunks):
    w = 6
    att = attention(5, window=w)
    x = torch.randn(2, 24, D, dtype=torch.float64)
    pos = torch.arange(24)
    band = (pos[None, :] <= pos[:, None]) & (pos[None, :] > pos[:, None] - w)
    want = naive(att, x, x, pos, pos, band)
    torch.testing.assert_close(att(x)[0], want, atol=1e-12, rtol=0)  # the windowed mask itself
    cache, parts, at = KVCache(window=w), [], 0
    for n in chunks:
        y, cache = att(x[:, at:at + n], cache=cache)
        parts.append(y)
        at += n
        assert cache.length == min(at, w)
    torch.testing.assert_close(torch.cat(parts, 1), want, atol=1e-12, rtol=0)
    # each step of a plain attention over the ring of the last w keys is attention over them
    plain = attention(5)
    ring, steps = KVCache(window=w), []
    for i in range(24):
        y, ring = plain(x[:, i:i + 1], cache=ring)
        lo = max(0, i - w + 1)
        ref = naive(plain, x[:, i:i + 1], x[:, lo:i + 1], pos[i:i + 1], pos[lo:i + 1],
                    torch.ones(1, i + 1 - lo, dtype=torch.bool))
        steps.append((y, ref))
    for y, ref in steps:
        torch.testing.assert_close(y, ref, atol=1e-12, rtol=0)


def test_a_forked_cache_is_not_changed_by_its_twin():
    att = attention(6)
    x = torch.randn(1, 12, D, dtype=torch.float64)
    _, root = att(x[:, :8], cache=KVCache())
    ya, _ = att(x[:, 8:10], cache=root)
    other = torch.randn(1, 2, D, dtype=torch.float64)
    yb, branch = att(other, cache=root)  # writes the same slots the first branch wrote
    ya2, _ = att(x[:, 8:10], cache=root)
    torch.testing.assert_close(ya2, ya, atol=0, rtol=0)
    full, _ = att(torch.cat([x[:, :8], other], 1))
    torch.testing.assert_close(yb, full[:, 8:], atol=1e-12, rtol=0)
    assert root.length == 8 and branch.length == 10


def test_rotary_scores_depend_only_on_the_distance():
    att = attention(7)
    x = torch.randn(1, 5, D, dtype=torch.float64)
    a, _ = att(x, positions=torch.arange(5))
    b, _ = att(x, positions=torch.arange(1000, 1005))
    torch.testing.assert_close(a, b, atol=1e-9, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_rotary_tables_equal_the_formula_bit_for_bit(dtype):
    """The looked-up angles (tables grown as positions come) against pairs rotated by hand,
    for positions past any table so far, per-row positions, and empty slots at -1."""
    def by_hand(x, positions, base):
        half = x.shape[-1] // 2
        angle = positions.to(torch.float64)[..., None] * base ** (-torch.arange(half, dtype=torch.float64) / half)
        angle = angle[:, None] if angle.dim() == 3 else angle
        cos, sin = angle.cos().to(dtype), angle.sin().to(dtype)
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)

    x = torch.randn(2, 3, 40, 8, dtype=dtype)
    for positions in (torch.arange(40), torch.randint(0, 90_000, (40,)), torch.randint(0, 3000, (2, 40)),
                      torch.cat([torch.full((2, 4), -1), torch.randint(0, 50, (2, 36))], dim=1)):
        for base in (10000.0, 500.0):
            assert torch.equal(rotate(x, positions, base), by_hand(x, positions, base))


def test_memory_fifo_keeps_the_last_states_and_evicts_the_oldest():
    mem = Memory(size=5)
    seen = []
    for step in range(4):
        h = torch.arange(3 * step, 3 * step + 3, dtype=torch.float64).view(1, 3, 1).requires_grad_(True)
        mem, evicted, evicted_pos = mem.push(h, torch.arange(3 * step, 3 * step + 3)[None])
        seen.append(None if evicted is None else evicted.flatten().tolist())
        assert not mem.h.requires_grad  # no gradient across segments
    assert seen == [None, [0.0], [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert mem.h.flatten().tolist() == [7.0, 8.0, 9.0, 10.0, 11.0] and mem.pos.flatten().tolist() == [7, 8, 9, 10, 11]
    nothing, out, _ = Memory(size=0).push(torch.ones(1, 2, 1), torch.arange(2)[None])
    assert nothing.length == 0 and out.shape == (1, 2, 1)


def test_a_block_step_equals_its_forward_with_rows_at_different_positions():
    """`Block.step` (a generation step: functional norms, a shared rotary rotation matrix, 2-D operands)
    gives `Block.forward`'s numbers, with each row at its own position (b, 1)."""
    from notelm.models.layers import rotary_rotation
    from notelm.models.transformer import Block, TransformerConfig

    torch.manual_seed(6)
    block = Block(TransformerConfig(vocab_size=8, dim=D, n_heads=H, dropout=0.0)).double().eval()
    x = torch.randn(2, 7, D, dtype=torch.float64)
    pos = torch.tensor([[0, 1, 2, 3, 4, 5, 6], [30, 31, 32, 33, 34, 35, 36]])  # row 2 deep in a piece
    want, _ = block(x, pos, KVCache())
    _, cache = block(x[:, :6], pos[:, :6], KVCache())
    rotation = rotary_rotation(pos[:, 6:], block.attn, x.dtype)
    got, cache, a = block.step(x[:, 6:], pos[:, 6:], cache, rotation)
    torch.testing.assert_close(got, want[:, 6:], atol=1e-12, rtol=0)
    torch.testing.assert_close(a, block.norm1(x[:, 6:]), atol=0, rtol=0)
    assert cache.written == 7
