"""`train`: the importable entry point behind ``notelm train`` — a neural model on an encoded
corpus with Lightning, into a run directory (see `notelm.runs`). Counting models (ppm, markov,
repetition) go to `notelm.training.symbolic` instead: no gradients, one pass.

What happens, in order:

1. Settings are assembled (family defaults < preset < ``--config`` file < ``--set`` < flags).
2. The corpus is read, the encoding fitted (if it learns) on the training split, and the
   train and valid splits are encoded into memory-mapped arrays under ``RUN/data``.
3. ``config.json``, ``encoding.json`` and the model card are written; then Lightning trains.
   Every validation writes ``metrics.json``, and ``checkpoints/last.ckpt``; when the
   validation loss is the best so far, also ``model.safetensors`` and ``checkpoints/best.ckpt``
   (Lightning checkpoints are written under a temporary name and renamed into place).

Distributed runs (``devices``/``num_nodes``/``strategy``) are Lightning's: with ``ddp`` the
launcher starts the other processes by running the same command again; those find the run
directory already prepared by process 0 and read it instead of preparing it (as ``--resume``
does).

``resume=True`` continues a run from ``checkpoints/last.ckpt``: the weights, optimiser,
schedule, early-stopping state, step counters and the metrics history come back, and the
batches drawn from then on are those the run would have drawn had it never stopped
(`notelm.training.data.RandomWindows`). This is the only place notelm unpickles anything:
Lightning's own checkpoint, in a directory that ``notelm train`` created (it must hold our
``config.json``). Never pass --resume on a run directory you did not make yourself.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from notelm import __version__
from notelm.errors import NotelmError
from notelm.runs import (
    CONFIG,
    ENCODING,
    METRICS,
    RUN_FORMAT,
    WEIGHTS,
    RunError,
    check_format,
    read_json,
    save_weights,
    write_card,
    write_json,
)
from notelm.training.config import (
    SettingsError,
    TrainConfig,
    check_known,
    merge,
    parse_set,
    read_config_file,
)

PRESETS = ("debug", "small", "base")
LAST = Path("checkpoints") / "last.ckpt"
BEST = Path("checkpoints") / "best.ckpt"
NEURAL_ONLY = {"preset": None, "max_steps": None, "max_epochs": None, "devices": "auto", "accelerator": "auto",
               "strategy": "auto", "num_nodes": 1, "precision": None, "resume": False}  # flag -> its default
DEFAULT_EPOCHS = 10  # when neither max_steps nor max_epochs is given


def _quiet_lightning(verbose: bool) -> None:
    """Drop Lightning's advertisements and a deprecation notice it raises against itself;
    without ``verbose``, its informational lines too (errors and warnings stay)."""
    import logging
    import warnings

    class NoTips(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "Tip:" not in record.getMessage()

    for name in ("lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero"):
        log = logging.getLogger(name)
        log.addFilter(NoTips())
        if not verbose:
            log.setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")  # our loaders slice memory maps
    # validation figures are summed over processes before they are logged (training/task.py)
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")


def _process_is_secondary() -> bool:
    """A process started by Lightning's DDP launcher (or on another node), not process 0."""
    return os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"


# ---- settings -----------------------------------------------------------------------------------


def assemble_settings(model: str, *, preset: str, config_file: str | Path | None, overrides: list[str],
                      max_steps: int | None, max_epochs: int | None) -> dict[str, dict[str, Any]]:
    """The model/train/encoding settings of a new run, validated."""
    from dataclasses import fields

    from notelm.models.neural import family

    fam = family(model)
    if preset not in fam.presets:
        raise SettingsError(f"unknown preset {preset!r} for {model}; presets: {', '.join(fam.presets)}")
    flags = {"train": {k: v for k, v in (("max_steps", max_steps), ("max_epochs", max_epochs)) if v is not None}}
    if flags["train"]:  # an explicit flag replaces the other limit too
        flags["train"].setdefault("max_steps", None)
        flags["train"].setdefault("max_epochs", None)
    settings = merge(fam.presets[preset], read_config_file(config_file) if config_file else {},
                     parse_set(overrides), flags)
    check_known("model", settings["model"], [f.name for f in fields(fam.config_class) if f.name != "vocab_size"])
    fam.config_class.from_dict(settings["model"])  # validate now, before reading any corpus
    TrainConfig.from_dict(settings["train"])
    return settings


# ---- preparing a run directory ------------------------------------------------------------------


def _tokens_per_second(encoding, sequences: list[np.ndarray], limit: int = 200) -> float | None:
    """Tokens per second of music in the training data (for ``generate --seconds``)."""
    from notelm.encodings.base import to_seconds

    tokens = seconds = 0.0
    for ids in sequences[:limit]:
        try:
            end = to_seconds(encoding.decode(ids)).end
        except NotelmError:
            continue
        tokens, seconds = tokens + len(ids), seconds + end
    return tokens / seconds if seconds > 0 else None


def prepare_data(out: Path, *, corpus: str, root: str | Path | None, encoding: str,
                 settings: dict[str, Any]) -> tuple[Any, list[np.ndarray], list[np.ndarray], dict]:
    """Read the corpus, fit the encoding (if it learns) on the training split, encode the train
    and valid splits into ``out/data`` and write encoding.json. Returns the encoding, the
    train and valid token ids, and the ``data`` section of config.json."""
    from notelm.corpora import load_corpus
    from notelm.encodings import get_encoding
    from notelm.training.data import encode_pieces, write_split

    enc = get_encoding(encoding, **settings)
    c = load_corpus(corpus, root)
    train_pieces, valid_pieces = c.split("train"), c.split("valid")
    if c.spec.melodic:
        train_pieces, valid_pieces = [p.melody() for p in train_pieces], [p.melody() for p in valid_pieces]
    if getattr(enc, "learns", False):
        enc.fit(train_pieces)
    train_ids, train_skip = encode_pieces(enc, train_pieces)
    valid_ids, valid_skip = encode_pieces(enc, valid_pieces)
    if not train_ids or not valid_ids:
        raise NotelmError(f"{corpus}: the {encoding} encoding could represent no piece of the "
                          f"{'train' if not train_ids else 'valid'} split (skipped: {dict(train_skip + valid_skip)})")
    write_split(out / "data", "train", train_ids, len(enc.vocab))
    write_split(out / "data", "valid", valid_ids, len(enc.vocab))
    write_json(out / ENCODING, enc.to_dict())
    data = {"corpus": corpus, "root": None if root is None else str(root), "melodic": c.spec.melodic,
            "pieces": {"train": len(train_ids), "valid": len(valid_ids)},
            "tokens": {"train": int(sum(len(s) for s in train_ids)), "valid": int(sum(len(s) for s in valid_ids))},
            "skipped": dict(train_skip + valid_skip),
            "tokens_per_second": _tokens_per_second(enc, train_ids)}
    return enc, train_ids, valid_ids, data


def prepare_run(out: Path, model: str, *, corpus: str, root: str | Path | None, encoding: str,
                settings: dict[str, dict[str, Any]], preset: str, progress: bool) -> dict:
    """Read and encode the corpus into ``out/data`` and write config.json and encoding.json."""
    from notelm.models.neural import family

    enc, _, _, data = prepare_data(out, corpus=corpus, root=root, encoding=encoding, settings=settings["encoding"])
    fam = family(model)
    config = {
        "format": RUN_FORMAT,
        "notelm_version": __version__,
        "model": {"name": model, "preset": preset, "description": fam.description,
                  "config": {**fam.config_class.from_dict(settings["model"]).to_dict(), "vocab_size": len(enc.vocab)}},
        "encoding": {"name": encoding, "settings": settings["encoding"]},
        "data": data,
        "train": TrainConfig.from_dict(settings["train"]).to_dict(),
    }
    write_json(out / CONFIG, config)
    return config


def _open_existing(out: Path, *, resume: bool) -> dict:
    if not (out / CONFIG).is_file():
        raise RunError(f"{out}: not a run directory made by notelm train (no {CONFIG}); cannot resume it")
    config = read_json(out / CONFIG)
    check_format(config, out)
    if resume and not (out / LAST).is_file():
        raise RunError(f"{out}: no {LAST} to resume from")
    return config


# ---- the callback that keeps the run directory current --------------------------------------------


def save_checkpoint(trainer, path: Path) -> None:
    """Lightning's checkpoint of the trainer, written to a temporary name and renamed, so an
    interrupted save leaves the previous checkpoint whole. Every process calls it (Lightning
    writes on process 0 and waits for the others); process 0 renames."""
    tmp = path.with_name(f".{path.name}.tmp")
    trainer.save_checkpoint(tmp, weights_only=False)
    if trainer.is_global_zero:
        os.replace(tmp, path)


def copy_atomically(source: Path, path: Path) -> None:
    import shutil

    tmp = path.with_name(f".{path.name}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, path)


def _callback_class():
    import lightning as L

    class RunKeeper(L.Callback):
        """After every validation: metrics.json, the best weights and best.ckpt, the model card,
        last.ckpt. A best step found by the validation after `fit` (when the last steps were not
        validated) leaves ``best_pending``: `train` copies last.ckpt to best.ckpt then."""

        def __init__(self, out: Path, config: dict, parameters: int) -> None:
            self.out, self.config, self.parameters = out, config, parameters
            self.best, self.best_step, self.history = math.inf, None, []
            self.seconds_before, self.started = 0.0, time.perf_counter()
            self.tokens_before = 0
            self.last_val_step = -1
            self.best_pending = False

        def state_dict(self) -> dict:
            return {"best": self.best, "best_step": self.best_step, "history": self.history,
                    "seconds": self.seconds(), "tokens": self.tokens_before + self._tokens_now}

        def load_state_dict(self, state: dict) -> None:
            self.best, self.best_step, self.history = state["best"], state["best_step"], state["history"]
            self.seconds_before, self.tokens_before = state["seconds"], state["tokens"]
            self.started = time.perf_counter()

        _tokens_now = 0

        def on_train_start(self, trainer, module) -> None:
            self.started = time.perf_counter()

        def seconds(self) -> float:
            return self.seconds_before + time.perf_counter() - self.started

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
            x = batch[0]
            self._tokens_now += x.numel() * trainer.world_size

        def metrics(self, trainer) -> dict:
            secs = self.seconds()
            tokens = self.tokens_before + self._tokens_now
            return {"global_step": trainer.global_step, "epoch": trainer.current_epoch,
                    "best_val_loss": None if math.isinf(self.best) else self.best,
                    "best_val_bits": None if math.isinf(self.best) else self.best / math.log(2),
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
                if improved and trainer.is_global_zero:  # the same state: copy, not dump it twice
                    copy_atomically(self.out / LAST, self.out / BEST)
            elif improved:
                self.best_pending = True

    return RunKeeper


# ---- training -----------------------------------------------------------------------------------


def train(model: str, *, out: str | Path, corpus: str | None = None, root: str | Path | None = None,
          encoding: str = "grid", config_file: str | Path | None = None, overrides: list[str] | tuple = (),
          preset: str | None = None, max_steps: int | None = None, max_epochs: int | None = None,
          devices: int | str = "auto", accelerator: str = "auto", strategy: str = "auto", num_nodes: int = 1,
          precision: str | None = None, resume: bool = False, progress: bool = True,
          threads: int | None = None) -> Path:
    """Train model ``model`` into run directory ``out``; return its path. See the module
    docstring; every argument has the meaning of the ``notelm train`` option of the same name.
    ``preset``: of a neural model (default "small"). ``threads``: torch's intra-op threads per
    process (default: torch's choice, one per core; on a CPU shared with other work, 1 avoids
    OpenMP's spin-waiting, often by a factor of 10).

    A counting model (ppm, markov, repetition) is built by `notelm.training.symbolic.train_counting`
    in one pass; the flags of gradient training (``NEURAL_ONLY``) are refused for it, in one line."""
    from notelm.errors import UnknownNameError
    from notelm.models.registry import COUNTING, MODELS

    if model in COUNTING:
        from notelm.training.symbolic import train_counting

        flags = dict(preset=preset, max_steps=max_steps, max_epochs=max_epochs, devices=devices,
                     accelerator=accelerator, strategy=strategy, num_nodes=num_nodes, precision=precision,
                     resume=resume)
        if given := [f"--{k.replace('_', '-')}" for k, default in NEURAL_ONLY.items() if flags[k] != default]:
            raise SettingsError(f"{', '.join(given)}: for neural models only; {model} is a counting model, "
                                f"built in one pass over the training split on one CPU (drop {'it' if len(given) == 1 else 'them'})")
        if corpus is None:
            raise SettingsError("--corpus is needed to start a run")
        return train_counting(model, out=out, corpus=corpus, root=root, encoding=encoding,
                              config_file=config_file, overrides=overrides)
    if model not in MODELS:
        raise UnknownNameError("model", model, list(MODELS))

    import torch

    from notelm.models.neural import build_network, family
    from notelm.training.data import EvalWindows, RandomWindows, TokenArray

    preset = "small" if preset is None else preset
    if threads is not None:
        if threads < 1:
            raise SettingsError(f"--threads must be >= 1; got {threads}")
        torch.set_num_threads(threads)
    out = Path(out)
    fam = family(model)
    secondary = _process_is_secondary()
    if resume or secondary:
        config = _open_existing(out, resume=resume)
        if config["model"]["name"] != model:
            raise RunError(f"{out} holds a {config['model']['name']} run, not {model}")
        if max_steps is not None or max_epochs is not None:  # e.g. extend a finished run
            config["train"].update(max_steps=max_steps, max_epochs=max_epochs)
    else:
        if corpus is None:
            raise SettingsError("--corpus is needed to start a run")
        if out.exists() and any(out.iterdir()):
            raise NotelmError(f"{out} exists and is not empty; pass --resume to continue that run, or choose another --out")
        settings = assemble_settings(model, preset=preset, config_file=config_file, overrides=list(overrides),
                                     max_steps=max_steps, max_epochs=max_epochs)
        out.mkdir(parents=True, exist_ok=True)
        config = prepare_run(out, model, corpus=corpus, root=root, encoding=encoding, settings=settings,
                             preset=preset, progress=progress)
    cfg = TrainConfig.from_dict(config["train"])
    model_cfg = config["model"]["config"]

    import lightning as L  # imported late: a mistyped setting fails without waiting for it
    from lightning.pytorch.callbacks import EarlyStopping
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from notelm.training.task import LanguageModelTask

    _quiet_lightning(progress)

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    network = build_network(model, model_cfg)
    parameters = sum(p.numel() for p in network.parameters())
    context = model_cfg["context"]
    train_data, valid_data = TokenArray(out / "data", "train"), TokenArray(out / "data", "valid")
    batches_per_epoch = max(1, train_data.n_tokens // (cfg.batch_size * context))
    max_steps_total = cfg.max_steps or (cfg.max_epochs or DEFAULT_EPOCHS) * batches_per_epoch
    task = LanguageModelTask(network, train=cfg, total_steps=max_steps_total)
    val_every = min(cfg.val_every, max_steps_total)

    keeper = _callback_class()(out, config, parameters)
    callbacks = [keeper]
    if cfg.patience:
        callbacks.append(EarlyStopping(monitor="val_loss", mode="min", patience=cfg.patience,
                                       check_on_train_epoch_end=False))
    csv_version = next(v for v in (f"csv{f'-{i}' if i else ''}" for i in range(10**6))
                       if not (out / "logs" / v).exists())  # a resumed run logs beside, not over, the first
    loggers = [TensorBoardLogger(save_dir=out / "logs", name="", version="tensorboard", default_hp_metric=False),
               CSVLogger(save_dir=out / "logs", name="", version=csv_version)]
    trainer = L.Trainer(
        accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes,
        precision=precision, max_steps=max_steps_total, max_epochs=-1,
        val_check_interval=val_every, check_val_every_n_epoch=None, num_sanity_val_steps=0,
        gradient_clip_val=cfg.grad_clip, callbacks=callbacks, logger=loggers,
        log_every_n_steps=min(50, val_every), enable_checkpointing=False,
        enable_progress_bar=progress, enable_model_summary=progress, default_root_dir=out,
    )
    if threads is None and trainer.world_size > 1 and trainer.strategy.root_device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // trainer.num_devices))
    config["trainer"] = {"accelerator": type(trainer.accelerator).__name__.removesuffix("Accelerator").lower(),
                         "devices": trainer.num_devices, "num_nodes": trainer.num_nodes,
                         "strategy": type(trainer.strategy).__name__, "precision": str(trainer.precision),
                         "threads": torch.get_num_threads()}
    if not secondary and trainer.is_global_zero:
        write_card(out, config, keeper.metrics(trainer))
        write_json(out / CONFIG, config)

    def position() -> int:
        return trainer.global_step

    rank, world = trainer.global_rank, trainer.world_size
    train_loader = RandomWindows(train_data, length=context, batch_size=cfg.batch_size, seed=cfg.seed,
                                 batches_per_epoch=batches_per_epoch, position=position, rank=rank,
                                 world_size=world, windows=cfg.windows)
    windowed = fam.windowed
    valid_loader = EvalWindows(valid_data, context=context if windowed else None,
                               stride=max(1, context // 2), rank=rank, world_size=world)
    # our own checkpoint, in a run directory that notelm train made (see the module docstring)
    trainer.fit(task, train_dataloaders=train_loader, val_dataloaders=valid_loader,
                ckpt_path=str(out / LAST) if resume else None, weights_only=False)
    if keeper.last_val_step != trainer.global_step:  # the last steps were not validated yet
        trainer.validate(task, dataloaders=valid_loader, verbose=False)
    save_checkpoint(trainer, out / LAST)
    if trainer.is_global_zero:
        if keeper.best_pending:  # the last step was the best: its checkpoint is last.ckpt
            copy_atomically(out / LAST, out / BEST)
        metrics = keeper.metrics(trainer)
        write_json(out / METRICS, metrics)
        write_card(out, config, metrics)
    return out
