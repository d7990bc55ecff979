"""`train`: the importable entry point behind ``notelm train`` — a model on an encoded corpus,
into a run directory (see `notelm.runs`).

Counting models (ppm, markov, repetition) are built in one pass by
`notelm.training.symbolic`. A neural model is trained by Lightning with the task of its kind
(`notelm.training.tasks`): the run directory is prepared (`notelm.training.prepare`), then
every validation keeps it current (`notelm.training.callbacks.RunKeeper`).

Distributed runs (``devices``/``num_nodes``/``strategy``) are Lightning's: with ``ddp`` the
launcher starts the other processes by running the same command again; those find the run
directory already prepared by process 0 and read it instead of preparing it (as ``--resume``
does).

``resume=True`` continues a run exactly where it stopped: from ``checkpoints/last.safetensors``
the weights, optimiser, schedule, early-stopping state, step counters, metrics history and (for
a segments model) the state carried between batches come back, and the batches drawn from then
on are those the run would have drawn had it never stopped (`notelm.training.data`). The
checkpoint holds tensors and JSON only (`notelm.training.checkpoints`): resuming a run someone
else made runs none of their code. A run stopped before its first validation has no checkpoint
yet: ``--resume`` then starts it from step 0 on the data already prepared. ``--resume`` keeps the
run's settings; options that would change them are refused, except ``--max-steps`` /
``--max-epochs``, which extend it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from notelm.errors import NotelmError
from notelm.runs import BEST_CHECKPOINT as BEST
from notelm.runs import (
    CONFIG,
    METRICS,
    RunError,
    check_format,
    clear_run_directory,
    read_json,
    write_card,
    write_json,
)
from notelm.runs import LAST_CHECKPOINT as LAST
from notelm.training.config import SettingsError, TrainConfig

NEURAL_ONLY = {"preset": None, "max_steps": None, "max_epochs": None, "devices": "auto", "accelerator": "auto",
               "strategy": "auto", "num_nodes": 1, "precision": None, "resume": False}  # flag -> its default
DEFAULT_EPOCHS = 10  # when neither max_steps nor max_epochs is given
OLD_CHECKPOINT = Path("checkpoints") / "last.ckpt"  # run format 1's pickled checkpoint: never read


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
    # validation figures are summed over processes before they are logged (training/tasks.py)
    warnings.filterwarnings("ignore", message=".*when logging on epoch level in distributed setting.*")


def _process_is_secondary() -> bool:
    """A process started by Lightning's DDP launcher (or on another node), not process 0."""
    return os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0"


# ---- the run directory: a new one, or one to continue -------------------------------------------


def _existing_config(out: Path, *, resume: bool) -> dict:
    if not (out / CONFIG).is_file():
        raise RunError(f"{out}: not a run directory made by notelm train (no {CONFIG}); cannot resume it")
    config = read_json(out / CONFIG)
    if not isinstance(config, dict) or not isinstance(config.get("model"), dict):
        raise RunError(f"{out / CONFIG}: not a run's config (expected an object with a model section)")
    check_format(config, out)
    if resume and (out / OLD_CHECKPOINT).is_file() and not (out / LAST).is_file():
        raise RunError(f"{out}: its resume checkpoint is an older notelm's pickle ({OLD_CHECKPOINT}), which "
                       "notelm no longer reads (a pickle can run code); start a new run")
    return config


def _refuse_changes_on_resume(given: dict[str, Any]) -> None:
    if changed := [f"--{k.replace('_', '-')}" for k, v in given.items() if v]:
        raise SettingsError(f"{', '.join(changed)}: --resume continues the run with the settings it was made "
                            "with (only --max-steps/--max-epochs can extend it); drop them or start a new --out")


def _checkpoint_step(out: Path) -> int:
    """The step of the run's resume checkpoint (0 when it has none yet)."""
    from notelm.training.checkpoints import read_checkpoint

    return int(read_checkpoint(out / LAST).get("global_step", 0)) if (out / LAST).is_file() else 0


def _continue_config(out: Path, model: str, *, resume: bool, max_steps: int | None,
                     max_epochs: int | None) -> dict:
    config = _existing_config(out, resume=resume)
    if config["model"].get("name") != model:
        raise RunError(f"{out} holds a {config['model'].get('name')} run, not {model}")
    if max_steps is not None or max_epochs is not None:  # e.g. extend a finished run
        step = _checkpoint_step(out) if resume else 0
        if max_steps is not None and max_steps <= step:
            raise SettingsError(f"--max-steps {max_steps}: the run is at step {step} already; give more steps")
        config["train"].update(max_steps=max_steps, max_epochs=max_epochs)
    return config


def _new_config(out: Path, model: str, *, corpus: str | None, root, encoding: str | None, config_file,
                overrides, preset: str, max_steps, max_epochs, force: bool) -> dict:
    from notelm.training.prepare import assemble_settings, prepare_run

    if corpus is None:
        raise SettingsError("--corpus is needed to start a run")
    if out.exists() and not out.is_dir():
        raise NotelmError(f"{out} exists and is not a folder; choose another --out")
    occupied = out.exists() and any(out.iterdir())
    if occupied and not force:
        raise NotelmError(f"{out} exists and is not empty; pass --resume to continue that run, "
                          "--force to replace it, or choose another --out")
    settings = assemble_settings(model, preset=preset, config_file=config_file, overrides=list(overrides),
                                 max_steps=max_steps, max_epochs=max_epochs)
    if occupied:
        clear_run_directory(out)
    out.mkdir(parents=True, exist_ok=True)
    return prepare_run(out, model, corpus=corpus, root=root, encoding=encoding or "grid", settings=settings,
                       preset=preset)


# ---- Lightning ----------------------------------------------------------------------------------


def _trainer(out: Path, *, steps: int, val_every: int, cfg: TrainConfig, callbacks: list, progress: bool,
             **hardware: Any):
    """The Lightning Trainer; hardware options Lightning refuses become one-line errors."""
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from notelm.training.checkpoints import SafeCheckpointIO

    csv_version = next(v for v in (f"csv{f'-{i}' if i else ''}" for i in range(10**6))
                       if not (out / "logs" / v).exists())  # a resumed run logs beside, not over, the first
    loggers = [TensorBoardLogger(save_dir=out / "logs", name="", version="tensorboard", default_hp_metric=False),
               CSVLogger(save_dir=out / "logs", name="", version=csv_version)]
    try:
        return L.Trainer(
            **hardware, max_steps=steps, max_epochs=-1, val_check_interval=val_every, check_val_every_n_epoch=None,
            num_sanity_val_steps=0, gradient_clip_val=cfg.grad_clip, callbacks=callbacks, logger=loggers,
            log_every_n_steps=min(50, val_every), enable_checkpointing=False, plugins=[SafeCheckpointIO()],
            enable_progress_bar=progress, enable_model_summary=progress, default_root_dir=out)
    except (ValueError, TypeError, RuntimeError) as e:  # Lightning's MisconfigurationException is a ValueError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SettingsError(f"cannot train with {_describe(hardware)}: {first}") from None


def _describe(hardware: dict[str, Any]) -> str:
    return ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in hardware.items() if v not in (None, "auto", 1))  or "these settings"


def _batches_per_epoch(kind: str, out: Path, cfg: TrainConfig, context: int) -> int:
    """Optimiser steps in one pass over the training data."""
    from notelm.training import data as d

    if kind == "seq2seq":
        train = d.PairArray(out / "data", "train")
        return max(1, d.count_pair_windows(train, context, cfg.window_step or max(1, context // 3)) // cfg.batch_size)
    return max(1, d.TokenArray(out / "data", "train").n_tokens // (cfg.batch_size * context))


def _loaders(kind: str, out: Path, cfg: TrainConfig, context: int, *, per_epoch: int, windowed: bool,
             position, rank: int, world: int):
    """(train loader, valid loader) for a model of ``kind`` (`notelm.training.data`)."""
    from notelm.training import data as d

    common = dict(batch_size=cfg.batch_size, seed=cfg.seed, batches_per_epoch=per_epoch, position=position,
                  rank=rank, world_size=world)
    if kind == "seq2seq":
        step = cfg.window_step or max(1, context // 3)
        train, valid = d.PairArray(out / "data", "train"), d.PairArray(out / "data", "valid")
        return (d.PairWindows(train, length=context, step=step, **common),
                d.PairEvalWindows(valid, length=context, step=step, rank=rank, world_size=world))
    train, valid = d.TokenArray(out / "data", "train"), d.TokenArray(out / "data", "valid")
    if kind == "segments":
        return (d.SegmentStream(train, length=context, **common),
                d.SegmentEval(valid, length=context, rank=rank, world_size=world))
    return (d.RandomWindows(train, length=context, windows=cfg.windows, **common),
            d.EvalWindows(valid, context=context if windowed else None, stride=max(1, context // 2),
                          rank=rank, world_size=world))


def _fit(out: Path, model: str, config: dict, *, resume: bool, secondary: bool, progress: bool,
         threads: int | None, hardware: dict[str, Any]) -> None:
    import lightning as L
    import torch
    from lightning.pytorch.callbacks import EarlyStopping

    from notelm.models.neural import build_network, network_spec
    from notelm.training.callbacks import RunKeeper, copy_atomically, save_checkpoint
    from notelm.training.tasks import TASKS

    record = network_spec(model)
    cfg = TrainConfig.from_dict(config["train"])
    _quiet_lightning(progress)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    network = build_network(model, config["model"]["config"])
    parameters = sum(p.numel() for p in network.parameters())
    keeper = RunKeeper(out, config, parameters)
    callbacks: list = [keeper]
    if cfg.patience:
        callbacks.append(EarlyStopping(monitor="val_loss", mode="min", patience=cfg.patience,
                                       check_on_train_epoch_end=False))
    context = config["model"]["config"]["context"]
    per_epoch = _batches_per_epoch(record.kind, out, cfg, context)
    steps = cfg.max_steps or (cfg.max_epochs or DEFAULT_EPOCHS) * per_epoch
    trainer = _trainer(out, steps=steps, val_every=min(cfg.val_every, steps), cfg=cfg, callbacks=callbacks,
                       progress=progress, **hardware)
    if threads is None and trainer.world_size > 1 and trainer.strategy.root_device.type == "cpu":
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // trainer.num_devices))
    config["trainer"] = {"accelerator": type(trainer.accelerator).__name__.removesuffix("Accelerator").lower(),
                         "devices": trainer.num_devices, "num_nodes": trainer.num_nodes,
                         "strategy": type(trainer.strategy).__name__, "precision": str(trainer.precision),
                         "threads": torch.get_num_threads()}
    if not secondary and trainer.is_global_zero:
        write_card(out, config, keeper.metrics(trainer))
        write_json(out / CONFIG, config)
    task = TASKS[record.kind](network, train=cfg, total_steps=steps,
                              width=record.model_width(network.config))
    train_loader, valid_loader = _loaders(record.kind, out, cfg, context, per_epoch=per_epoch,
                                          windowed=record.windowed, position=lambda: trainer.global_step,
                                          rank=trainer.global_rank, world=trainer.world_size)
    ckpt = str(out / LAST) if resume and (out / LAST).is_file() else None
    trainer.fit(task, train_dataloaders=train_loader, val_dataloaders=valid_loader, ckpt_path=ckpt)
    if keeper.last_val_step != trainer.global_step:  # the last steps were not validated yet
        trainer.validate(task, dataloaders=valid_loader, verbose=False)
    save_checkpoint(trainer, out / LAST)
    if trainer.is_global_zero:
        if keeper.best_pending:  # the last step was the best: its checkpoint is the last one
            copy_atomically(out / LAST, out / BEST)
        metrics = keeper.metrics(trainer)
        write_json(out / METRICS, metrics)
        write_card(out, config, metrics)


# ---- the entry point ----------------------------------------------------------------------------


def train(model: str, *, out: str | Path, corpus: str | None = None, root: str | Path | None = None,
          encoding: str | None = None, config_file: str | Path | None = None, overrides: list[str] | tuple = (),
          preset: str | None = None, max_steps: int | None = None, max_epochs: int | None = None,
          devices: int | str = "auto", accelerator: str = "auto", strategy: str = "auto", num_nodes: int = 1,
          precision: str | None = None, resume: bool = False, force: bool = False, progress: bool = True,
          threads: int | None = None) -> Path:
    """Train model ``model`` into run directory ``out``; return its path. See the module
    docstring; every argument has the meaning of the ``notelm train`` option of the same name.
    ``encoding``: default "grid" for a new run. ``preset``: of a neural model (default "small").
    ``threads``: torch's intra-op threads per process (default: torch's choice, one per core;
    on a CPU shared with other work, 1 avoids OpenMP's spin-waiting, often by a factor of 10).

    A counting model (ppm, markov, repetition) is built by `notelm.training.symbolic.train_counting`
    in one pass; the flags of gradient training (``NEURAL_ONLY``) are refused for it, in one line."""
    from notelm.models.registry import spec

    record = spec(model)
    out = Path(out)
    if not record.neural:
        return _train_counting(model, out=out, corpus=corpus, root=root, encoding=encoding, config_file=config_file,
                               overrides=overrides, force=force,
                               flags=dict(preset=preset, max_steps=max_steps, max_epochs=max_epochs, devices=devices,
                                          accelerator=accelerator, strategy=strategy, num_nodes=num_nodes,
                                          precision=precision, resume=resume))
    import torch

    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise SettingsError(f"--threads must be an int >= 1; got {threads!r}")
        torch.set_num_threads(threads)
    if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
        raise SettingsError(f"--num-nodes must be an int >= 1; got {num_nodes!r}")
    secondary = _process_is_secondary()
    if resume or secondary:
        if resume and not secondary:
            _refuse_changes_on_resume({"corpus": corpus, "root": root, "encoding": encoding, "config": config_file,
                                       "set": list(overrides), "preset": preset, "force": force})
        config = _continue_config(out, model, resume=resume, max_steps=max_steps, max_epochs=max_epochs)
    else:
        config = _new_config(out, model, corpus=corpus, root=root, encoding=encoding, config_file=config_file,
                             overrides=overrides, preset="small" if preset is None else preset,
                             max_steps=max_steps, max_epochs=max_epochs, force=force)
    hardware = dict(accelerator=accelerator, devices=devices, strategy=strategy, num_nodes=num_nodes,
                    precision=precision)
    _fit(out, model, config, resume=resume, secondary=secondary, progress=progress, threads=threads,
         hardware=hardware)
    return out


def _train_counting(model: str, *, out: Path, flags: dict, force: bool, **options: Any) -> Path:
    from notelm.training.symbolic import train_counting

    if given := [f"--{k.replace('_', '-')}" for k, default in NEURAL_ONLY.items() if flags[k] != default]:
        raise SettingsError(f"{', '.join(given)}: for neural models only; {model} is a counting model, "
                            f"built in one pass over the training split on one CPU (drop {'it' if len(given) == 1 else 'them'})")
    if options["corpus"] is None:
        raise SettingsError("--corpus is needed to start a run")
    options["encoding"] = options["encoding"] or "grid"
    return train_counting(model, out=out, force=force, **options)
