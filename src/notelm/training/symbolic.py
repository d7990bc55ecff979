"""`train_counting`: a counting model (ppm, markov, repetition) on an encoded corpus, into a run
directory that every command reads as it reads a neural run (see `notelm.runs`).

What happens, in order:

1. Settings are assembled (the family's defaults < ``--config`` file < ``--set``) and checked
   before the corpus is read: ``model.*`` as `notelm.models.symbolic` describes, ``encoding.*``
   as for any run; ``train.*`` is refused (nothing is optimised).
2. The corpus is read and encoded exactly as for a neural run (`notelm.training.prepare.prepare_data`:
   the same splits, the same ``data/`` arrays, encoding.json).
3. The model counts the training split in one pass (a PPM in mode "stm" and the repetition
   model learn nothing from it) and is saved as ``counts.safetensors``; config.json is written.
4. The run is opened again as any reader would, and the reloaded model is scored on the valid
   split: metrics.json and the model card give its bits per token. (Scoring the reloaded model
   also leaves the saved one untouched by an LTM+, which learns what it predicts.)
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import numpy as np

from notelm import __version__
from notelm.config import SettingsError
from notelm.errors import NotelmError
from notelm.runs import (
    CONFIG,
    COUNTS,
    METRICS,
    RUN_FORMAT,
    clear_run_directory,
    open_run,
    save_counts,
    write_card,
    write_json,
)
from notelm.training.config import merge, parse_set, read_config_file


def assemble_counting_settings(model: str, *, config_file: str | Path | None, overrides: list[str]) -> dict:
    """The model and encoding settings of a new counting run; the model's already resolved."""
    from notelm.models.symbolic import model_settings

    settings = merge(read_config_file(config_file) if config_file else {}, parse_set(overrides))
    if settings.get("train"):
        keys = ", ".join(f"train.{k}" for k in sorted(settings["train"]))
        raise SettingsError(f"{keys}: {model} is a counting model and takes no train.* settings "
                            "(it counts the training split in one pass)")
    settings["model"] = model_settings(model, settings.get("model", {}))
    return settings


def valid_figures(model, sequences: list[np.ndarray]) -> dict:
    """Bits per token and argmax accuracy of ``model`` on ``sequences`` (each piece afresh)."""
    from notelm.evaluation import predict_distributions

    dists = predict_distributions(model, sequences)
    events = int(sum(len(s) for s in sequences))
    bits = -sum(float(np.log2(d[np.arange(len(s)), s]).sum()) for d, s in zip(dists, sequences)) / max(events, 1)
    correct = sum(int((d.argmax(axis=1) == s).sum()) for d, s in zip(dists, sequences))
    return {"valid_bits_per_event": bits, "valid_accuracy": correct / max(events, 1), "valid_tokens": events}


def train_counting(model: str, *, out: str | Path, corpus: str, root: str | Path | None = None,
                   encoding: str = "grid", config_file: str | Path | None = None,
                   overrides: list[str] | tuple = (), force: bool = False) -> Path:
    """Build counting model ``model`` on ``corpus``'s training split into run directory ``out``
    (see the module docstring); return its path. ``out`` must be new or empty, or with
    ``force`` a run directory notelm wrote (it is replaced once the settings are checked)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotelmError(f"{out} exists and is not a folder; choose another --out")
    occupied = out.exists() and any(out.iterdir())
    if occupied and not force:
        raise NotelmError(f"{out} exists and is not empty; pass --force to replace it or choose another --out "
                          f"(a {model} run is built in one pass, there is nothing to resume)")
    settings = assemble_counting_settings(model, config_file=config_file, overrides=list(overrides))
    if occupied:
        clear_run_directory(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return _build(model, out, corpus=corpus, root=root, encoding=encoding, settings=settings)
    except BaseException:  # leave no half-made run behind (out was new or empty)
        _remove(out, itself=created)
        raise


def _remove(out: Path, *, itself: bool) -> None:
    if itself:
        shutil.rmtree(out, ignore_errors=True)
        return
    for path in out.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _build(model: str, out: Path, *, corpus: str, root: str | Path | None, encoding: str, settings: dict) -> Path:
    from notelm.models.registry import spec
    from notelm.models.serialize import count_entries
    from notelm.models.symbolic import build_counting
    from notelm.training.prepare import prepare_data

    enc, train_ids, valid_ids, data = prepare_data(out, corpus=corpus, root=root, encoding=encoding,
                                                   settings=settings["encoding"])
    config = {
        "format": RUN_FORMAT,
        "notelm_version": __version__,
        "model": {"name": model, "description": spec(model).description,
                  "config": {**settings["model"], "vocab_size": len(enc.vocab)}},
        "encoding": {"name": encoding, "settings": settings["encoding"]},
        "data": data,
    }
    build_counting(model, config["model"]["config"]).fit([train_ids[0][:8]])  # compile numba kernels, untimed
    started = time.perf_counter()
    counted = build_counting(model, config["model"]["config"]).fit(train_ids)
    seconds = time.perf_counter() - started
    save_counts(counted, out / COUNTS)
    write_json(out / CONFIG, config)
    figures = valid_figures(open_run(out).model(), valid_ids)
    metrics = {**figures,
               "best_val_loss": figures["valid_bits_per_event"] * math.log(2),  # nats, as a neural run's
               "best_val_bits": figures["valid_bits_per_event"],
               "train_seconds": seconds, "train_tokens": data["tokens"]["train"],
               "counts": count_entries(counted), "parameters": None, "global_step": None}
    write_json(out / METRICS, metrics)
    write_card(out, config, metrics)
    return out
