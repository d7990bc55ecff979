"""Speed of the neural engine, measured the same way by ``notelm bench`` and ``bench/``.

- `generation_speed`: tokens per second of sampling from one Transformer at a given
  context, with the KV cache (one token's work per step) and without it (the whole window
  recomputed every step), through the same sampler; plus the largest difference between the
  two paths' next-token log-probabilities (they must agree).
- `perceiver_generation_speed`: the same for Perceiver AR (cached: one position's work a
  token; uncached: each prediction's latent block recomputed), and `peer_generation_speed`:
  ``perceiver-ar-pytorch``'s ``generate`` at the same configuration, measured by
  ``bench/bench_perceiver_ar.py`` in a process of its own (peer libraries are never imported
  under ``src/``), when that script and the ``[bench]`` extra are there.
- `training_speed`: training tokens per second (forward, backward, optimiser step) of a
  network family's preset on random tokens.

Weights are random: speed does not depend on them.
"""

from __future__ import annotations

import os
import platform
import time
from typing import Any

import numpy as np

from notelm.errors import NotelmError, UnknownNameError

GRID_VOCAB = 134  # the grid encoding's vocabulary (pitches 0-127, rest, hold, 4 specials)


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": cpu, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


MAX_CONTEXT = 16_384  # the uncached path recomputes the whole window for every token: past this, hours


class BenchError(NotelmError, ValueError):
    """A benchmark setting that cannot be used."""


def check_device(device: str) -> str:
    """``device`` if torch can use it here (cpu, cuda, cuda:N, mps), else `BenchError`."""
    import torch

    try:
        kind = torch.device(device)
    except (RuntimeError, TypeError):
        raise BenchError(f"--device must be cpu, cuda, cuda:N or mps; got {device!r}") from None
    if kind.type == "cuda" and (not torch.cuda.is_available() or (kind.index or 0) >= torch.cuda.device_count()):
        raise BenchError(f"--device {device}: no such CUDA device here "
                         f"({torch.cuda.device_count()} found{'' if torch.cuda.is_available() else '; torch has no CUDA'})")
    if kind.type == "mps" and not torch.backends.mps.is_available():
        raise BenchError(f"--device {device}: MPS is not available here")
    if kind.type not in ("cpu", "cuda", "mps"):
        raise BenchError(f"--device must be cpu, cuda, cuda:N or mps; got {device!r}")
    return device


def check_generation_settings(*, context: int, new_tokens: int, preset: str, device: str) -> None:
    """Refuse, before any work, what `generation_speed` cannot measure, in one line each."""
    from notelm.models.transformer import PRESETS

    if new_tokens < 1:
        raise BenchError(f"--tokens must be >= 1; got {new_tokens}")
    if not new_tokens + 2 <= context <= MAX_CONTEXT:
        raise BenchError(f"--context must be from --tokens + 2 ({new_tokens + 2}) to {MAX_CONTEXT:,}; got {context}")
    if preset not in PRESETS:
        raise UnknownNameError("preset", preset, list(PRESETS))
    check_device(device)


def generation_speed(*, context: int = 2048, new_tokens: int = 64, preset: str = "small", seed: int = 0,
                     device: str = "cpu") -> dict[str, Any]:
    """Sample ``new_tokens`` after a primer that fills the context up to ``context``, with and
    without the cache, from one randomly initialised Transformer (``preset`` sizes)."""
    import torch

    from notelm.models.neural import NeuralModel, build_network
    from notelm.models.transformer import PRESETS

    check_generation_settings(context=context, new_tokens=new_tokens, preset=preset, device=device)
    torch.manual_seed(seed)
    cfg = {**PRESETS[preset]["model"], "context": context, "vocab_size": GRID_VOCAB, "dropout": 0.0}
    net = build_network("transformer", cfg)
    primer = np.random.default_rng(seed).integers(4, GRID_VOCAB, size=context - new_tokens - 1).tolist()
    result: dict[str, Any] = {"context": context, "new_tokens": new_tokens, "preset": preset, "model": cfg,
                              "device": device, "dtype": "float32"}
    models = {name: NeuralModel(net, context=context, dtype=torch.float32, device=device, use_cache=cached)
              for name, cached in (("cached", True), ("uncached", False))}
    return {**result, **_cached_against_uncached(models, primer, new_tokens=new_tokens, seed=seed, device=device, compare=16)}


def _cached_against_uncached(models: dict, primer: list[int], *, new_tokens: int, seed: int, device: str,
                             compare: int) -> dict[str, Any]:
    """Time ``new_tokens`` samples from each of ``models`` ("cached", "uncached") after the same
    primer (the prefill not timed: both paths do it once), and the largest difference of their
    log-probabilities along the cached path's first ``compare`` tokens."""
    import torch

    from notelm.generation import sample

    result: dict[str, Any] = {}
    tokens = {}
    for name, model in models.items():
        state = model.start(primer)
        t0 = time.perf_counter()
        tokens[name] = sample(model, length=new_tokens, seed=seed, state=state)
        if device != "cpu":
            torch.cuda.synchronize()
        result[f"{name}_tokens_per_s"] = new_tokens / (time.perf_counter() - t0)
    result["speedup"] = result["cached_tokens_per_s"] / result["uncached_tokens_per_s"]
    states = {name: m.start(primer) for name, m in models.items()}
    diff = 0.0
    for tok in tokens["cached"][:compare]:
        p = {name: np.log(models[name].predict(s)) for name, s in states.items()}
        diff = max(diff, float(np.abs(p["cached"] - p["uncached"]).max()))
        states = {name: models[name].observe(s, tok) for name, s in states.items()}
    result["max_abs_log_prob_diff"] = diff
    result["same_tokens"] = tokens["cached"] == tokens["uncached"]
    return result


PERCEIVER_BENCH = {"latents": 512, "dim": 512, "n_layers": 8, "n_heads": 8}  # the configuration, at any context
PERFORMANCE_VOCAB = 392  # the performance encoding's vocabulary (388 events, 4 specials)


def perceiver_generation_speed(*, context: int = 2048, new_tokens: int = 32, seed: int = 0, device: str = "cpu",
                               **config: Any) -> dict[str, Any]:
    """Perceiver AR sampling speed after a primer that fills the context up to ``context``:
    cached (one position's work a token: `notelm.models.perceiver_ar`) and uncached (each
    prediction's latent block recomputed), same network, same sampler; the largest difference
    of their log-probabilities along the cached path's first tokens. ``config`` overrides
    `PERCEIVER_BENCH` (latents, dim, n_layers, n_heads)."""
    import torch

    from notelm.models.perceiver_ar import PerceiverAR, PerceiverARConfig, PerceiverARModel

    if context < new_tokens + 2:
        raise ValueError(f"context must exceed new_tokens + 1 ({new_tokens + 1}); got {context}")
    torch.manual_seed(seed)
    cfg = {**PERCEIVER_BENCH, **config, "context": context, "vocab_size": PERFORMANCE_VOCAB, "dropout": 0.0,
           "prefix_dropout": 0.0}
    cfg["latents"] = min(cfg["latents"], context)  # a short context is all latents
    net = PerceiverAR(PerceiverARConfig(**cfg))
    primer = np.random.default_rng(seed).integers(4, PERFORMANCE_VOCAB, size=context - new_tokens - 1).tolist()
    result: dict[str, Any] = {"family": "perceiver-ar", "context": context, "new_tokens": new_tokens, "model": cfg,
                              "parameters": sum(p.numel() for p in net.parameters()), "device": device,
                              "dtype": "float32"}
    models = {name: PerceiverARModel(net, dtype=torch.float32, device=device, use_cache=cached)
              for name, cached in (("cached", True), ("uncached", False))}
    return {**result, **_cached_against_uncached(models, primer, new_tokens=new_tokens, seed=seed, device=device, compare=8)}


def peer_generation_speed(*, context: int, new_tokens: int = 4, seed: int = 0, **config: Any) -> dict[str, Any] | None:
    """``perceiver-ar-pytorch``'s ``generate`` tokens per second, or None with the reason in
    ``{"peer": None, "why": ...}`` when the [bench] extra or the repository's bench/ is absent."""
    import importlib.util
    import json
    import subprocess
    import sys
    from pathlib import Path

    import notelm

    scripts = [Path.cwd() / "bench" / "bench_perceiver_ar.py",
               Path(notelm.__file__).resolve().parents[2] / "bench" / "bench_perceiver_ar.py"]
    script = next((p for p in scripts if p.is_file()), None)
    if script is None:
        return {"peer_tokens_per_s": None, "peer_note": "bench/bench_perceiver_ar.py not found (a repository checkout has it)"}
    if importlib.util.find_spec("perceiver_ar_pytorch") is None:
        return {"peer_tokens_per_s": None, "peer_note": "perceiver-ar-pytorch not installed (the [bench] extra)"}
    cfg = {**PERCEIVER_BENCH, **config}
    cfg["latents"] = min(cfg["latents"], context - 1)  # the library needs a prefix of at least one
    args = [sys.executable, str(script), "peer-generation", "--context", str(context), "--tokens", str(new_tokens),
            "--seed", str(seed), "--config", json.dumps(cfg)]
    done = subprocess.run(args, capture_output=True, text=True, cwd=script.parents[1])
    if done.returncode:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"peer_tokens_per_s": None, "peer_note": f"the peer benchmark failed: {tail}"}
    peer = json.loads(done.stdout)
    return {"peer_tokens_per_s": peer["tokens_per_s"], "peer": peer}


def training_speed(model: str, preset: str, *, steps: int = 10, warmup: int = 2, seed: int = 0,
                   overrides: dict[str, Any] | None = None, batch_size: int | None = None,
                   vocab: int = GRID_VOCAB) -> dict[str, Any]:
    """Training tokens per second of ``model`` at ``preset`` (its batch size and context) on CPU;
    ``overrides`` of its model settings, another ``batch_size``. ``tokens_per_s`` counts the
    input tokens, ``predicted_tokens_per_s`` the targets the loss covers (Perceiver AR's latents)."""
    import torch

    from notelm.models.neural import build_network, network_spec
    from notelm.training.config import TrainConfig
    from notelm.training.tasks import LanguageModelTask

    torch.manual_seed(seed)
    record = network_spec(model)
    p = record.preset_table[preset]
    cfg = {**p["model"], **(overrides or {}), "vocab_size": vocab}
    net = build_network(model, cfg)
    train = TrainConfig.from_dict({**p["train"], **({"batch_size": batch_size} if batch_size else {})})
    task = LanguageModelTask(net, train=train, total_steps=steps + warmup, width=record.model_width(net.config))
    optimizer = task.configure_optimizers()["optimizer"]
    b, t = train.batch_size, cfg["context"]
    rng = torch.Generator().manual_seed(seed)
    task.train()
    elapsed, predicted = 0.0, 0
    for i in range(warmup + steps):
        x = torch.randint(4, vocab, (b, t + 1), generator=rng)
        t0 = time.perf_counter()
        total, count, _, _ = task.losses((x[:, :-1], x[:, 1:]), training=True)
        loss = total / count
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimizer.step()
        if i >= warmup:
            elapsed += time.perf_counter() - t0
            predicted += int(count)
    return {"model": model, "preset": preset, "config": cfg, "parameters": sum(q.numel() for q in net.parameters()),
            "batch_size": b, "context": t, "steps": steps, "tokens_per_s": steps * b * t / elapsed,
            "predicted_tokens_per_s": predicted / elapsed, "seconds_per_step": elapsed / steps}
