"""``perceiver-ar-pytorch`` 0.0.10 (lucidrains), as published, measured.

What the library does (``perceiver_ar_pytorch/perceiver_ar_pytorch.py``, cited as ``par.py:LINE``;
``autoregressive_wrapper.py`` as ``aw.py:LINE``):

- ``PerceiverAR(num_tokens, dim, depth, max_seq_len, cross_attn_seq_len, dim_head=64, heads=8,
  dropout=0., cross_attn_dropout=0., ff_mult=4, perceive_depth=1, perceive_max_heads_process=2)``
  (par.py:223-238). ``cross_attn_seq_len`` is the length of the *prefix*, the positions that are
  only cross-attended to (par.py:284); the latents -- the positions that get predictions and
  self-attention -- are the remaining ``seq_len - cross_attn_seq_len`` (so 512 latents at a
  2,048 context means ``cross_attn_seq_len=1536``; `build` takes ``latents``). The input must be
  longer than the prefix (assert, par.py:273).
- Positions: learned absolute embeddings over ``max_seq_len`` (par.py:245, :276) plus rotary on
  ``max(32, dim_head // 2)`` dims of each head (par.py:247; so ``dim_head`` below 32 fails at
  par.py:49). One causal cross-attention from the
  latents to prefix + latents (par.py:164-190), then ``depth`` causal self-attention layers over
  the latents only (par.py:294-296; those get no attention dropout, par.py:260).
- ``cross_attn_dropout`` keeps a random ``1 - p`` of the prefix in training (par.py:135-153).
- The loss is cross-entropy over the latent positions only, ``ignore_index=0`` (par.py:307-308).
- ``generate`` (aw.py:42-80) runs the whole network on the whole window
  ``out[:, -max_seq_len:]`` for every new token (aw.py:57-61): no cache; top-k filtering only
  (aw.py:63 and :27-32, k = 10% of the vocabulary at the default ``filter_thres=0.9``).

What the seed project (perceiver-ar-piano) did with it: Oore events with note-on at id 0, END
388, PAD 389 (vocabulary 390), so the library's ``ignore_index=0`` skips note-on pitch 0 (never
played on a piano) and *counts* every PAD target -- its reported losses include padding. notelm's
PAD is id 0, so here padding is ignored as it should be (`loss_ignores`). It trained with Adam
betas (0.1, 0.999), cross_attn_dropout 0.7, and generated with its own loop (temperature 0.7,
top-p 0.9, 1,024 primer tokens from a random place) that also re-runs the model on the whole
sequence for every token, with ``cross_attn_seq_len`` set to half the primer (512; its train.py
as stored uses 1,024) -- a split the weights do not fix, so nothing catches a mismatch.

No bug of the library is worked around here; the module times it as it is.

Legend: b batch, n sequence (prefix + latents), v vocabulary.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from perceiver_ar_pytorch import PerceiverAR
from perceiver_ar_pytorch.autoregressive_wrapper import AutoregressiveWrapper

BENCH_CONFIG: dict[str, Any] = {"context": 2048, "latents": 512, "dim": 512, "depth": 8, "heads": 8, "dim_head": 64}


def build(vocab_size: int, *, context: int = 2048, latents: int = 512, seed: int = 0, **overrides: Any) -> PerceiverAR:
    """The library's model with ``latents`` predicted positions at the end of a ``context``-token
    window: ``max_seq_len=context``, ``cross_attn_seq_len=context - latents``."""
    if not 0 < latents < context:
        raise ValueError(f"latents must be between 1 and context - 1 ({context - 1}); got {latents}")
    torch.manual_seed(seed)
    cfg = {k: v for k, v in BENCH_CONFIG.items() if k not in ("context", "latents")}
    return PerceiverAR(num_tokens=vocab_size, max_seq_len=context, cross_attn_seq_len=context - latents, **{**cfg, **overrides})


def generation_speed(model: PerceiverAR, *, new_tokens: int = 16, primer: int | None = None, seed: int = 0) -> dict[str, Any]:
    """Tokens per second of the library's ``generate`` after a random primer that fills the
    context (``primer`` defaults to ``max_seq_len``): every token is a full forward pass.
    ``tokens_per_cpu_s`` divides by this process's CPU time instead (steadier on a shared CPU)."""
    vocab = model.token_emb.num_embeddings
    primer = model.max_seq_len if primer is None else primer
    torch.manual_seed(seed)
    start = torch.randint(4, vocab, (1, primer))
    t0, c0 = time.perf_counter(), time.process_time()
    out = AutoregressiveWrapper(model).generate(start, new_tokens)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"context": model.max_seq_len, "latents": model.max_seq_len - model.cross_attn_seq_len, "primer": primer,
            "new_tokens": int(out.shape[-1]), "seconds": seconds, "tokens_per_s": out.shape[-1] / seconds,
            "cpu_seconds": cpu, "tokens_per_cpu_s": out.shape[-1] / cpu}


def training_speed(model: PerceiverAR, *, batch: int = 1, steps: int = 3, warmup: int = 1, lr: float = 2e-4,
                   seed: int = 0) -> dict[str, Any]:
    """Forward + backward + Adam step on random tokens of the full context (``max_seq_len + 1``
    per row: the wrapper's inputs [:-1], labels [1:], aw.py:82-84). Per second: ``tokens_per_s``
    counts the input tokens, ``predicted_tokens_per_s`` the latent positions the loss covers;
    ``tokens_per_cpu_s`` divides by this process's CPU time instead of the wall clock."""
    model.train()
    vocab, n = model.token_emb.num_embeddings, model.max_seq_len
    wrapper = AutoregressiveWrapper(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    losses, seconds, cpu = [], 0.0, 0.0
    for i in range(warmup + steps):
        x = torch.randint(4, vocab, (batch, n + 1), generator=gen)
        t0, c0 = time.perf_counter(), time.process_time()
        loss = wrapper(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            seconds += time.perf_counter() - t0
            cpu += time.process_time() - c0
            losses.append(float(loss.detach()))
    latents = n - model.cross_attn_seq_len
    return {"context": n, "latents": latents, "batch": batch, "steps": steps, "seconds_per_step": seconds / steps,
            "tokens_per_s": batch * n * steps / seconds, "predicted_tokens_per_s": batch * latents * steps / seconds,
            "tokens_per_cpu_s": batch * n * steps / cpu,
            "losses": losses, "parameters": sum(p.numel() for p in model.parameters())}


@torch.no_grad()
def loss_ignores(model: PerceiverAR, pad_id: int, *, seed: int = 0) -> bool:
    """Whether the library's loss skips targets equal to ``pad_id``: the loss of a window whose
    last latent targets are ``pad_id`` equals the mean over its other latent targets."""
    model.eval()
    vocab, n, prefix = model.token_emb.num_embeddings, model.max_seq_len, model.cross_attn_seq_len
    x = torch.randint(4, vocab, (1, n + 1), generator=torch.Generator().manual_seed(seed))
    x[:, -((n - prefix) // 2) :] = pad_id
    inputs, labels = x[:, :-1], x[:, 1:]
    logits = model(inputs)  # b latents v
    nll = -logits.log_softmax(-1).gather(-1, labels[:, prefix:, None])[..., 0]
    real = labels[:, prefix:] != pad_id
    return bool(torch.isclose(model(inputs, labels=labels), nll[real].mean(), atol=1e-5))
