"""Hugging Face ``transformers`` T5 as the seed's comparison for the velocity model (REFERENCE §4).

What the library does (``transformers/models/t5/``, cited as ``modeling_t5.py:LINE``,
``configuration_t5.py:LINE``; ``transformers/training_args.py`` as ``training_args.py:LINE``):
an encoder-decoder with relative position buckets, RMS layer norms, no 1/sqrt(d) attention
scaling (``scaling = 1.0``, modeling_t5.py:198), one embedding shared by encoder, decoder and
output (tied; the decoder output is scaled by d_model^-0.5 first, modeling_t5.py:1047-1048,
configuration_t5.py:81-82). Given ``labels`` it builds the decoder input by shifting them right
behind ``decoder_start_token_id`` (modeling_t5.py:622-641, :1029-1031) and returns plain
cross-entropy with ``ignore_index=-100`` (modeling_t5.py:1053-1057): no label smoothing there.
Specials by configuration: pad 0, eos 1 (configuration_t5.py:58-59); this version's T5Config has
no default ``decoder_start_token_id`` and ``_shift_right`` raises without one
(modeling_t5.py:626-630), so `build` sets it to pad (0), T5's convention. Nothing is downloaded:
the model is built from a config, and ``peers/__init__.py`` sets ``HF_HUB_OFFLINE=1`` first.

What the seed did with it: the same MAESTRO windows through T5 with one shared vocabulary,
constant learning rate 3e-6, plain cross-entropy, 25 epochs -- mean velocity error 11.72 and flat
predictions (the mean velocity), against 4.68 for midi-translation's own Transformer; the widths
and depths of the "compared" run are `COMPARED`. Its optimiser is not recorded: `SETTINGS["seed"]`
uses what a ``Trainer`` would, AdamW (0.9, 0.999, eps 1e-8, no weight decay) with gradients
clipped to norm 1.0 (training_args.py:812-869; the Trainer's default schedule is a linear decay,
training_args.py:788, replaced here by the constant rate the seed reports). The other settings
are midi-translation's recipe: Adam (0.9, 0.98, eps 1e-9), Noam schedule
``factor * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5)`` (steps from 1), warmup 4,000, with
and without label smoothing 0.1. Label smoothing here is torch's (epsilon spread over the whole
vocabulary), not the Annotated Transformer's KL form that spreads it over all but pad and the
true class; the two differ by a constant and a sliver of mass on pad.

The shared vocabulary (`to_t5`): 0 pad = decoder start (the CLS role), 1 eos, 2 unk, then the 128
velocities (``VELOCITY0 + v``), then the note tokens (``SOURCE0 + id - 4`` for notelm's
``note-tokens`` ids from 4). A window of 128 notes becomes 129 encoder ids (notes, eos) and 129
labels (velocities, eos); the decoder reads (start, v1 .. v128).

Legend: b batch, n notes per window (128), v T5 vocabulary.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import T5Config, T5ForConditionalGeneration

from notelm.encodings.vocab import BOS_ID, N_SPECIAL

PAD, EOS, UNK = 0, 1, 2  # T5's; PAD is also the decoder start
VELOCITY0 = 3  # T5 id of velocity 0; velocities 0..127 -> 3..130
SOURCE0 = VELOCITY0 + 128  # T5 id of notelm's first note token (id N_SPECIAL)

COMPARED: dict[str, Any] = {"d_model": 256, "d_ff": 1024, "num_layers": 4, "num_heads": 4, "d_kv": 64, "dropout_rate": 0.1}

SETTINGS: dict[str, dict[str, Any]] = {
    "seed": {"optimizer": "adamw", "schedule": "constant", "lr": 3e-6, "label_smoothing": 0.0, "clip": 1.0},
    "noam": {"optimizer": "adam", "schedule": "noam", "factor": 1.0, "warmup": 4000, "label_smoothing": 0.0, "clip": None},
    "noam-ls": {"optimizer": "adam", "schedule": "noam", "factor": 1.0, "warmup": 4000, "label_smoothing": 0.1, "clip": None},
}


def vocab_size(source_vocab_size: int) -> int:
    """T5 vocabulary for a note-token vocabulary of ``source_vocab_size`` (notelm's, specials included)."""
    return SOURCE0 + source_vocab_size - N_SPECIAL


def build(source_vocab_size: int, *, seed: int = 0, **overrides: Any) -> T5ForConditionalGeneration:
    """A randomly initialised T5 in the `COMPARED` widths (``overrides`` replace them)."""
    torch.manual_seed(seed)
    config = T5Config(vocab_size=vocab_size(source_vocab_size), pad_token_id=PAD, eos_token_id=EOS,
                      decoder_start_token_id=PAD, **{**COMPARED, **overrides})
    return T5ForConditionalGeneration(config)


# ---- data ------------------------------------------------------------------------------------------

def to_t5(source: Sequence[int], target: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """notelm's (source, target) ids of one window -> T5 (input ids, labels), each (n + 1,).
    A leading BOS (midi-translation's CLS) is dropped from both: T5's decoder start takes its role."""
    src, tgt = np.asarray(source, dtype=np.int64), np.asarray(target, dtype=np.int64)
    if len(src) and src[0] == BOS_ID:
        src, tgt = src[1:], tgt[1:]
    if len(src) != len(tgt) or (src < N_SPECIAL).any() or (tgt < N_SPECIAL).any() or (tgt >= N_SPECIAL + 128).any():
        raise ValueError("expected one content source id and one velocity target id per note")
    return np.r_[SOURCE0 + src - N_SPECIAL, EOS], np.r_[VELOCITY0 + tgt - N_SPECIAL, EOS]


def windows(pairs: Iterable[tuple[np.ndarray, np.ndarray]], *, size: int = 128, step: int = 42) -> list[tuple[np.ndarray, np.ndarray]]:
    """(input ids, labels) of every ``size``-note window, ``step`` notes apart; tails are dropped (as the original)."""
    out = []
    for src, tgt in pairs:
        for start in range(0, len(src) - size + 1, step):
            out.append(to_t5(src[start : start + size], tgt[start : start + size]))
    return out


def batches(wins: Sequence[tuple[np.ndarray, np.ndarray]], *, batch: int = 16, seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless shuffled (input ids (b, n + 1), labels (b, n + 1)) batches, a new order each epoch."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(wins))
        for i in range(0, len(order) - batch + 1, batch):
            rows = [wins[j] for j in order[i : i + batch]]
            yield torch.from_numpy(np.stack([r[0] for r in rows])), torch.from_numpy(np.stack([r[1] for r in rows]))


# ---- training --------------------------------------------------------------------------------------

def noam(step: int, *, d_model: int, warmup: int, factor: float = 1.0) -> float:
    """midi-translation's (the Annotated Transformer's) rate at optimiser step ``step`` (from 1)."""
    step = max(step, 1)
    return factor * d_model**-0.5 * min(step**-0.5, step * warmup**-1.5)


def train_steps(model: T5ForConditionalGeneration, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], steps: int,
                *, setting: str = "seed", after: Any = None, **overrides: Any) -> dict[str, Any]:
    """``steps`` optimiser steps in one of `SETTINGS` (``overrides`` replace its keys, e.g.
    ``warmup=400``); ``after(step)`` is called after each (an evaluation on the way, which puts
    the model back in training mode). Returns per-step ``losses`` (the objective), ``nll`` (plain cross-entropy,
    nats per label, eos included), ``lrs``, and ``seconds``, ``notes_per_s``, with their CPU-time
    versions ``cpu_seconds``, ``notes_per_cpu_s`` (steadier on a shared CPU)."""
    if setting not in SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; choose from {sorted(SETTINGS)}")
    s = {**SETTINGS[setting], **overrides}
    d_model = model.config.d_model
    if s["optimizer"] == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=1.0, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    rate = (lambda step: s["lr"]) if s["schedule"] == "constant" else (  # noqa: E731
        lambda step: noam(step, d_model=d_model, warmup=s["warmup"], factor=s["factor"]))
    model.train()
    out: dict[str, Any] = {"setting": setting, **s, "losses": [], "nll": [], "lrs": []}
    notes, t0, c0 = 0, time.perf_counter(), time.process_time()
    for step, (inputs, labels) in enumerate(batches, start=1):
        if step > steps:
            break
        for group in opt.param_groups:
            group["lr"] = rate(step)
        logits = model(input_ids=inputs, labels=labels).logits  # b n+1 v
        flat, target = logits.flatten(0, 1), labels.flatten()
        loss = F.cross_entropy(flat, target, label_smoothing=s["label_smoothing"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if s["clip"]:
            torch.nn.utils.clip_grad_norm_(model.parameters(), s["clip"])
        opt.step()
        if after is not None:
            after(step)
        notes += int(labels.shape[0] * (labels.shape[1] - 1))
        out["losses"].append(float(loss.detach()))
        out["nll"].append(float(F.cross_entropy(flat.detach(), target)))
        out["lrs"].append(rate(step))
    out["seconds"], out["cpu_seconds"] = time.perf_counter() - t0, time.process_time() - c0
    out["notes_per_s"], out["notes_per_cpu_s"] = notes / out["seconds"], notes / out["cpu_seconds"]
    return out


# ---- predictions -----------------------------------------------------------------------------------

@torch.no_grad()
def predict(model: T5ForConditionalGeneration, inputs: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
    """Teacher-forced predictions for (input ids, labels) windows, each (b, n + 1): for every note,
    ``argmax`` (the most probable velocity) and ``expected`` (the mean velocity of the predicted
    distribution), both over the 128 velocity ids renormalised; ``true``; ``previous``, the
    previous note's true velocity -- what the decoder reads at that position (-1 for the first
    note, which reads the start token); and ``other_mass``, the probability the full softmax put
    outside the velocities. Arrays (b, n); eos is left out.

    Compare against copying ``previous``, not only against a flat prediction: the embeddings are
    tied (always, in this version: configuration_t5.py:76-82) and initialised with std 1
    (modeling_t5.py:577), so an untrained T5's teacher-forced argmax is its own decoder input --
    the previous true velocity -- on every note (measured on MAESTRO-mini windows with `COMPARED`),
    and that copy already scores a fair MAE, while free-running it repeats one velocity."""
    model.eval()
    logits = model(input_ids=inputs, labels=labels).logits[:, :-1]  # b n v
    full = logits.log_softmax(-1)
    vel = logits[..., VELOCITY0 : VELOCITY0 + 128].softmax(-1)  # b n 128
    values = torch.arange(128, dtype=vel.dtype)
    return {
        "argmax": vel.argmax(-1).numpy(),
        "expected": (vel * values).sum(-1).numpy(),
        "true": (labels[:, :-1] - VELOCITY0).numpy(),
        "previous": F.pad(labels[:, :-2] - VELOCITY0, (1, 0), value=-1).numpy(),
        "other_mass": (1 - full[..., VELOCITY0 : VELOCITY0 + 128].exp().sum(-1)).numpy(),
    }
