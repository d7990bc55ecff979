"""lucidrains' ``compressive-transformer-pytorch`` 0.4.0, as published, and one fix of it.

What the library does (``compressive_transformer_pytorch/compressive_transformer_pytorch.py``,
cited below as ``ctp.py:LINE``; ``autoregressive_wrapper.py`` as ``aw.py:LINE``): a
Transformer-XL whose per-layer memories are the layers' normalised inputs (PreNorm, ctp.py:123,
queued at :252), detached between segments (:396); what a full segment evicts from the memory
is compressed by ``Conv1d(dim, dim, ratio, stride=ratio)`` (:129, :261) into a second memory
(:262); an auxiliary MSE between attention over the evicted memories and over their
compression (:282) trains the compressor. Residuals are GRU-gated by default (:305, :341).

What the seed project (the Compressive Transformer music study, REFERENCE §5) used it for:
6 layers, 8 heads, dim 64, segment 64, memory 64, compressed memory 256 (ratio 4), memory in
layers 5-6, dropout 0.1 -- `SEED_CONFIG` -- trained the way the library's wrapper and its
enwik8 example train: consecutive segments in order, memories carried, one Adam step per
segment, gradients clipped to 0.5, loss = cross-entropy + auxiliary loss.

Its bugs, and what this module does with each:

- **Frozen key/value projections** (reproduced by default; ``fixed=True`` undoes it).
  ctp.py:269 ``self.to_kv.weight.detach_()`` runs inside every training forward of a memory
  layer that compresses, to keep the auxiliary loss from training ``to_kv``. It detaches the
  *parameter itself*: ``requires_grad`` becomes False for good, and autograd then drops even
  the gradient of the main loss already recorded at :210 in that same forward (torch checks
  ``requires_grad`` when it accumulates). From the first compressing segment on -- the second
  segment of training, since the first only fills the empty memory (:252-259) -- the keys and
  values of every memory layer (5 and 6; layers with ``calc_memory=False`` return at :247-248
  before :269) stop learning. `freeze_report` measures it. The fix (`build(fixed=True)`) is a
  forward hook that sets ``requires_grad`` back on after each attention forward: the main
  loss's gradient (recorded at :210 while it was on) reaches ``to_kv`` again, while the
  auxiliary path (:271, recorded while it was off) still has no edge to it, so the auxiliary
  loss trains only the compressor -- what :269 meant. Nothing in site-packages is edited.
- **Reconstruction keys span the whole memory** (reproduced; `reconstruction_check`): the
  old-memory keys are ``k[:, :, -min(mem_len, self.mem_len) - seq_len : -seq_len]`` (:275), all
  of the memory, while only the evicted ``mem + seq - mem_len`` positions are compressed
  (:252); the two agree only when ``mem_len == seq_len`` (the seed config: both 64).
- **Padding** (reproduced; `reconstruction_check`): the evicted memories are padded at the front
  by ``len % ratio`` (:253-256), not ``ratio - len % ratio``, so e.g. 5 evicted memories give 1
  compressed memory instead of 2. Full segments of a length divisible by the ratio (the seed
  config) never pad.
- **Enhanced recurrence in generation** (reproduced; `rotation_check`): with the default
  ``enhanced_recurrence=True`` every forward rolls the memory stack by one layer (:370-372: layer
  5 reads layer 6's memory, layer 6 layer 5's); a forward on less than a full segment hands the
  memories back unchanged (:247-248) -- that is, rolled. ``generate`` feeds 1..seq_len-token
  windows (aw.py:80-95), so the memories change layers at every generated token, while training
  saw them rolled exactly once per segment.
- ``generate`` recomputes the whole current window (up to ``seq_len`` tokens) for every token
  (aw.py:81), with memories updated once per full window; it filters with top-k only (aw.py:46);
  after a primer longer than ``seq_len`` it returns fewer tokens than it sampled (aw.py:70 vs
  :100; `generation_speed` counts what it sampled).

Training is driven here rather than through ``AutoregressiveWrapper.forward`` (aw.py:108-155)
because the wrapper starts every call from empty memories (aw.py:139) and takes no memories in:
`train_steps` runs the same per-segment loop (aw.py:141-153) but carries the memories across
calls, so whole pieces stream through in order (`lanes`).

Legend: b batch (lanes), t segment length, m memory, c compressed memory, d model width.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from compressive_transformer_pytorch import AutoregressiveWrapper, CompressiveTransformer
from compressive_transformer_pytorch import compressive_transformer_pytorch as ctp

PAD, BOS, EOS = 0, 1, 2  # notelm's specials (notelm.encodings.vocab)

SEED_CONFIG: dict[str, Any] = {
    "dim": 64, "depth": 6, "heads": 8, "seq_len": 64, "mem_len": 64, "cmem_len": 256, "cmem_ratio": 4,
    "memory_layers": (5, 6), "attn_dropout": 0.1, "ff_dropout": 0.1, "attn_layer_dropout": 0.1,
}


def attention_layers(model: CompressiveTransformer) -> dict[int, ctp.SelfAttention]:
    """Each layer's SelfAttention by 1-based layer number (wrapped as GRUGating/Residual(PreNorm(.)), ctp.py:343)."""
    return {i + 1: layer.fn.fn for i, layer in enumerate(model.attn_layers)}


def _kv_trains_again(attn: ctp.SelfAttention, inputs: Any, output: Any) -> None:
    attn.to_kv.weight.requires_grad_(True)  # undo ctp.py:269 once the auxiliary path is recorded


def build(vocab_size: int, *, fixed: bool = False, seed: int = 0, **overrides: Any) -> CompressiveTransformer:
    """The library's model in `SEED_CONFIG` (``overrides`` replace its keys); ``fixed=True``
    keeps the memory layers' key/value projections learning (see the module docstring)."""
    torch.manual_seed(seed)
    cfg = {**SEED_CONFIG, **overrides}
    model = CompressiveTransformer(num_tokens=vocab_size, **{**cfg, "memory_layers": list(cfg["memory_layers"])})
    if fixed:
        for attn in attention_layers(model).values():
            attn.register_forward_hook(_kv_trains_again)
    return model


# ---- data: consecutive segments of whole pieces ---------------------------------------------------

def stream(pieces: Iterable[Sequence[int]]) -> np.ndarray:
    """All pieces in order, each as BOS, its tokens, EOS: int64 (n,)."""
    return np.concatenate([np.r_[BOS, np.asarray(p, dtype=np.int64), EOS] for p in pieces])


def lanes(pieces: Iterable[Sequence[int]], *, batch: int, seq_len: int) -> Iterator[torch.Tensor]:
    """Transformer-XL batching: the stream of pieces cut into ``batch`` contiguous lanes, then
    consecutive (b, t + 1) windows that overlap by one token (inputs [:-1], targets [1:]). Each
    lane reads whole pieces in order; memories carried across windows cross piece boundaries
    (the library cannot reset one row's memory), marked by EOS, BOS. The tail is dropped."""
    tokens = stream(pieces)
    n = len(tokens) // batch
    grid = torch.from_numpy(tokens[: n * batch].reshape(batch, n))  # b n
    for start in range(0, n - seq_len, seq_len):
        yield grid[:, start : start + seq_len + 1]


# ---- training --------------------------------------------------------------------------------------

def _relative_change(w: torch.Tensor, w0: torch.Tensor) -> float:
    return float((w - w0).norm() / w0.norm())


def train_steps(model: CompressiveTransformer, batches: Iterable[torch.Tensor], steps: int, *, lr: float = 1e-4,
                clip: float = 0.5, track_kv: bool = True, set_to_none: bool = True) -> dict[str, Any]:
    """``steps`` Adam steps, one per (b, t + 1) window, memories carried from window to window
    (the loop of aw.py:141-153 and the enwik8 example: loss = cross-entropy + auxiliary loss,
    clip 0.5, lr 1e-4). PAD targets are ignored. ``set_to_none=False`` zeroes gradients in place
    instead, as ``zero_grad()`` did before torch 2.0: a frozen weight then keeps its zero
    ``.grad`` and Adam goes on moving it on its momentum alone.

    Returns per-step ``losses`` (cross-entropy, nats/token) and ``aux_losses``, ``seconds``,
    ``tokens_per_s`` (target tokens; ``cpu_seconds`` and ``tokens_per_cpu_s`` count this process's
    CPU time, steadier than the wall clock on a shared CPU with one thread) and, with ``track_kv``, ``kv_change``: for every layer the
    relative Frobenius change of ``to_kv.weight`` from its initial value after each step, and
    ``kv_frozen_at``: the step in whose forward a layer's ``to_kv`` stopped requiring grad."""
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    layers = attention_layers(model)
    w0 = {i: a.to_kv.weight.detach().clone() for i, a in layers.items()}
    out: dict[str, Any] = {"losses": [], "aux_losses": [], "kv_change": {i: [] for i in layers}, "kv_frozen_at": {}}
    mem, tokens, t0, c0 = None, 0, time.perf_counter(), time.process_time()
    for step, window in enumerate(batches, start=1):
        if step > steps:
            break
        x, y = window[:, :-1], window[:, 1:]
        logits, mem, aux = model(x, memories=mem)  # b t v; mem: Memory of (layers, b, m|c, d), detached (ctp.py:396)
        loss = F.cross_entropy(logits.transpose(1, 2), y, ignore_index=PAD)
        opt.zero_grad(set_to_none=set_to_none)
        (loss + aux).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        tokens += int((y != PAD).sum())
        out["losses"].append(float(loss.detach()))
        out["aux_losses"].append(float(aux.detach()))
        if track_kv:
            for i, a in layers.items():
                out["kv_change"][i].append(_relative_change(a.to_kv.weight.detach(), w0[i]))
                if not a.to_kv.weight.requires_grad and i not in out["kv_frozen_at"]:
                    out["kv_frozen_at"][i] = step
    out["steps"] = len(out["losses"])
    out["seconds"], out["cpu_seconds"] = time.perf_counter() - t0, time.process_time() - c0
    out["tokens_per_s"], out["tokens_per_cpu_s"] = tokens / out["seconds"], tokens / out["cpu_seconds"]
    if not track_kv:
        del out["kv_change"], out["kv_frozen_at"]
    return out


def freeze_report(vocab_size: int, pieces: Sequence[Sequence[int]], *, steps: int = 50, batch: int = 4,
                  lr: float = 1e-4, seed: int = 0, test: Sequence[Sequence[int]] = (), **overrides: Any) -> dict[str, Any]:
    """How far each layer's ``to_kv`` moves over the first ``steps`` steps, published vs fixed,
    from the same initial weights on the same windows; "published-old-zero-grad" is the
    published model under torch < 2.0's in-place ``zero_grad`` (see `train_steps`). Per variant:
    ``kv_change`` after steps 1, 2, 10 and the last (relative Frobenius norm), ``kv_frozen_at``,
    the losses, and with ``test`` pieces the trained model's `evaluate` figures."""
    cfg = {**SEED_CONFIG, **overrides}
    report: dict[str, Any] = {"steps": steps, "batch": batch, "lr": lr, "memory_layers": list(cfg["memory_layers"])}
    for name, fixed, to_none in (("published", False, True), ("fixed", True, True), ("published-old-zero-grad", False, False)):
        model = build(vocab_size, fixed=fixed, seed=seed, **overrides)
        torch.manual_seed(seed)  # the same dropout draws for every variant
        r = train_steps(model, lanes(pieces, batch=batch, seq_len=cfg["seq_len"]), steps, lr=lr, set_to_none=to_none)
        marks = sorted({1, 2, min(10, r["steps"]), r["steps"]})
        report[name] = {
            "kv_change": {f"layer {i}": {f"step {s}": round(c[s - 1], 6) for s in marks} for i, c in r["kv_change"].items()},
            "kv_frozen_at": {f"layer {i}": s for i, s in r["kv_frozen_at"].items()},
            "first_loss": r["losses"][0], "last_loss": r["losses"][-1],
            "mean_loss_last_10": float(np.mean(r["losses"][-10:])), "tokens_per_s": r["tokens_per_s"],
            "tokens_per_cpu_s": r["tokens_per_cpu_s"],
        }
        if test:
            report[name]["test"] = evaluate(model, test)
    return report


# ---- evaluation and generation ---------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: CompressiveTransformer, pieces: Sequence[Sequence[int]], *, batch: int = 8) -> dict[str, Any]:
    """Test nats per token: each piece (BOS, tokens, EOS) streamed from empty memories, segment by
    segment with memories carried; every token after BOS is predicted. Pieces are batched by
    length and padded at the end with PAD (ignored; causal attention keeps it from the real
    tokens); a last segment shorter than ``seq_len`` is scored without updating memories
    (ctp.py:247)."""
    model.eval()
    seq_len = model.seq_len
    rows = sorted((np.r_[BOS, np.asarray(p, dtype=np.int64), EOS] for p in pieces), key=len)
    nll, count = 0.0, 0
    for i in range(0, len(rows), batch):
        group = rows[i : i + batch]
        width = max(map(len, group))
        grid = torch.full((len(group), width), PAD, dtype=torch.long)
        for r, row in enumerate(group):
            grid[r, : len(row)] = torch.from_numpy(row)
        mem = None
        for start in range(0, width - 1, seq_len):
            x, y = grid[:, start : start + seq_len], grid[:, start + 1 : start + seq_len + 1]
            x = x[:, : y.shape[1]]
            logits, mem, _ = model(x, memories=mem)
            nll += float(F.cross_entropy(logits.transpose(1, 2), y, ignore_index=PAD, reduction="sum"))
            count += int((y != PAD).sum())
    return {"nats_per_token": nll / count, "tokens": count, "pieces": len(rows)}


def generation_speed(model: CompressiveTransformer, *, primer: int = 512, new_tokens: int = 128, vocab_size: int,
                     seed: int = 0) -> dict[str, Any]:
    """Tokens per second of the library's own ``generate`` (aw.py:46-106: primer segments feed the
    memories, then the current window is recomputed for every token) after a random primer.

    It samples ``new_tokens`` tokens (aw.py:80) but returns ``out[:, t:]`` (aw.py:100), with ``t``
    the whole primer's length while ``out`` holds only the primer's last segment (aw.py:70): a
    primer longer than ``seq_len`` loses that many tokens from the front of what it returns
    (``returned_tokens``). The speed counts the tokens sampled."""
    torch.manual_seed(seed)
    start = torch.randint(4, vocab_size, (1, primer))
    wrapper = AutoregressiveWrapper(model)
    t0, c0 = time.perf_counter(), time.process_time()
    out = wrapper.generate(start, new_tokens)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"primer": primer, "new_tokens": new_tokens, "returned_tokens": int(out.shape[-1]), "seconds": seconds,
            "tokens_per_s": new_tokens / seconds, "cpu_seconds": cpu, "tokens_per_cpu_s": new_tokens / cpu}


# ---- checks of the behaviours the docstring describes ---------------------------------------------

@torch.no_grad()
def rotation_check(model: CompressiveTransformer) -> dict[str, Any]:
    """Whether a forward on less than a full segment hands back the memory stack rolled by one
    layer (ctp.py:370-372 then :247-248), as every generated token's forward does."""
    model.eval()
    x = torch.randint(4, model.token_emb.num_embeddings, (1, model.seq_len))
    _, mem, _ = model(x)
    _, after, _ = model(x[:, :1], memories=mem)
    rolled = torch.roll(mem.mem, -1, 0)
    return {"enhanced_recurrence": model.enhanced_recurrence,
            "partial_forward_returns_rolled_memories": bool(torch.equal(after.mem, rolled)) and not torch.equal(rolled, mem.mem)}


def reconstruction_check(*, seq_len: int, mem_len: int, ratio: int = 4, dim: int = 16) -> dict[str, Any]:
    """One attention layer's second segment (memory full): how many evicted memories it
    compresses, how many compressed memories that gives, and how many old-memory keys the
    reconstruction loss attends over (read by wrapping ctp.full_attn, which :280 looks up)."""
    attn = ctp.SelfAttention(dim, seq_len, mem_len, cmem_len=4 * mem_len, cmem_ratio=ratio, heads=2).train()
    seen: list[int] = []
    original = ctp.full_attn

    def spy(q, k, v, dropout_fn=None):
        seen.append(k.shape[-2])
        return original(q, k, v, dropout_fn)

    ctp.full_attn = spy
    try:
        mem = cmem = torch.empty(1, 0, dim)
        evicted = 0
        while not seen:  # segments until the first one that compresses
            evicted = max(mem.shape[1] + seq_len - mem_len, 0)
            _, (mem, cmem), _ = attn(torch.randn(1, seq_len, dim), memories=(mem, cmem))
    finally:
        ctp.full_attn = original
    return {"seq_len": seq_len, "mem_len": mem_len, "ratio": ratio, "evicted": evicted,
            "compressed": int(cmem.shape[1]), "expected_compressed": -(-evicted // ratio),
            "old_memory_keys": seen[0], "compressed_keys": seen[1]}


def gradient_check(model: CompressiveTransformer) -> dict[str, Any]:
    """On a compressing segment (the second), which parameters of each memory layer get a gradient
    from the main loss and which from the auxiliary loss. Changes ``model``'s weights' flags: use
    a fresh model."""
    model.train()
    layers = {i: a for i, a in attention_layers(model).items() if i in model.memory_layers}
    vocab = model.token_emb.num_embeddings
    x = torch.randint(4, vocab, (2, 2 * model.seq_len + 1))
    result = {}
    for which in ("main", "aux"):
        model.zero_grad(set_to_none=True)
        _, mem, _ = model(x[:, : model.seq_len])
        logits, _, aux = model(x[:, model.seq_len : 2 * model.seq_len], memories=mem)
        main = F.cross_entropy(logits.transpose(1, 2), x[:, model.seq_len + 1 :])
        (main if which == "main" else aux).backward()
        has = lambda p: p.grad is not None and bool(p.grad.abs().sum() > 0)  # noqa: E731
        result[which] = {f"layer {i}": {"to_kv": has(a.to_kv.weight), "compressor": has(a.compress_mem_fn.conv.weight)}
                         for i, a in layers.items()}
    return result
