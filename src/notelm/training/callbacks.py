"""`RunKeeper`: the Lightning callback that keeps a run directory current while it trains.

After every validation it writes ``metrics.json`` and the model card; when the validation loss
is the best so far, ``model.safetensors`` (the weights every command loads); during `fit`, the
resume checkpoint ``checkpoints/last.safetensors`` and, on a best step, a copy of it as
``checkpoints/best.safetensors`` (the same state: copied, not dumped twice). Checkpoints are
`notelm.training.checkpoints` files (safetensors and JSON: nothing in them can run code),
written to a temporary name and renamed, so an interrupted save leaves the previous one whole.
A best step found by the validation after `fit` (when the last steps were not validated)
leaves ``best_pending``: `train` copies last to best then.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from pathlib import Path

import lightning as L

from notelm.runs import BEST_CHECKPOINT as BEST
from notelm.runs import LAST_CHECKPOINT as LAST
from notelm.runs import METRICS, WEIGHTS, save_weights, write_card, write_json


def save_checkpoint(trainer: L.Trainer, path: Path) -> None:
    """The trainer's checkpoint at ``path``. Every process calls it (Lightning gathers on every
    process and writes on process 0, through `SafeCheckpointIO`, atomically)."""
    trainer.save_checkpoint(path)


def copy_atomically(source: Path, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, path)


class RunKeeper(L.Callback):
    """Keeps ``out`` current (module docstring); ``config`` is the run's config.json."""

    def __init__(self, out: Path, config: dict, parameters: int) -> None:
        self.out, self.config, self.parameters = out, config, parameters
        self.best, self.best_step, self.history = math.inf, None, []
        self.seconds_before, self.started = 0.0, time.perf_counter()
        self.tokens_before, self.tokens_now = 0, 0
        self.last_val_step = -1
        self.best_pending = False

    @property
    def state_key(self) -> str:
        return "RunKeeper"

    def state_dict(self) -> dict:
        return {"best": self.best, "best_step": self.best_step, "history": self.history,
                "seconds": self.seconds(), "tokens": self.tokens_before + self.tokens_now}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_step, self.history = state["best"], state["best_step"], state["history"]
        self.seconds_before, self.tokens_before = state["seconds"], state["tokens"]
        self.started = time.perf_counter()

    def on_train_start(self, trainer, module) -> None:
        self.started = time.perf_counter()

    def seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.tokens_now += batch[0].numel() * trainer.world_size

    def metrics(self, trainer) -> dict:
        secs = self.seconds()
        tokens = self.tokens_before + self.tokens_now
        best = None if math.isinf(self.best) else self.best
        return {"global_step": trainer.global_step, "epoch": trainer.current_epoch,
                "best_val_loss": best, "best_val_bits": None if best is None else best / math.log(2),
                "best_step": self.best_step, "val_history": self.history,
                "train_seconds": secs, "train_tokens": tokens, "tokens_per_second": tokens / max(secs, 1e-9),
                "parameters": self.parameters}

    def on_validation_end(self, trainer, module) -> None:
        if trainer.sanity_checking or "val_loss" not in trainer.callback_metrics:
            return
        loss = float(trainer.callback_metrics["val_loss"])
        acc = float(trainer.callback_metrics.get("val_accuracy", float("nan")))
        step = trainer.global_step
        self.last_val_step = step
        if not self.history or self.history[-1]["step"] != step:
            self.history.append({"step": step, "val_loss": loss, "val_accuracy": acc, "seconds": self.seconds()})
        improved = loss < self.best
        if improved:
            self.best, self.best_step = loss, step
        if trainer.is_global_zero:
            if improved:
                save_weights(module.network, self.out / WEIGHTS)
            metrics = self.metrics(trainer)
            write_json(self.out / METRICS, metrics)
            write_card(self.out, self.config, metrics)
        if trainer.state.fn == "fit":
            save_checkpoint(trainer, self.out / LAST)
            if improved and trainer.is_global_zero:
                copy_atomically(self.out / LAST, self.out / BEST)
        elif improved:
            self.best_pending = True
