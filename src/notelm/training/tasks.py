"""The Lightning tasks, one per kind of model (`notelm.models.registry.KINDS`), on one base.

`Task` owns what every kind shares: the optimiser (Adam or AdamW, weight decay on matrices
only for AdamW), the learning-rate schedule (with the model width passed explicitly, for
Noam), the dropout seed of every step, validation sums, and the auxiliary losses a network
may return beside its logits. A kind says only how a batch becomes a loss:

- `LanguageModelTask` ("lm"): batches (x, y) of windows, y = x shifted by one; the
  cross-entropy of every position's next token. A network may return logits for its last n
  positions only (Perceiver AR's latents): they are scored against the last n targets.
- `Seq2SeqTask` ("seq2seq"): batches (source, source_padding, target_in, target_out); the
  cross-entropy of every target token given the source and the targets before it (teacher
  forcing).
- `SegmentTask` ("segments"): batches (x, y, starts) of consecutive segments, one stream of
  pieces per batch row; the network's state after a batch is carried into the next, and the
  rows in ``starts`` (a new piece begins there) have theirs reset first. The carried state is
  part of the resume checkpoint (gathered from every process), so a resumed run carries on
  exactly; validation streams every piece of the split from its start the same way.

The loss is over the tokens a model may emit (`notelm.models.neural.allowed_tokens`: never
PAD, BOS or UNK), so the validation loss in nats is the test figure in bits times ln 2.
Validation sums loss, tokens and correct argmaxes on every process, then adds them up, so the
figure does not depend on how windows were shared between processes. Dropout draws from a
generator seeded by (seed, global step, rank) at every step: a resumed run makes the same
random choices as one that never stopped.

Legend: b batch, t time, v vocabulary, a allowed tokens, s source length.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from notelm.models.neural import allowed_tokens
from notelm.training.config import TrainConfig
from notelm.training.data import IGNORE
from notelm.training.schedules import schedule

LN2 = math.log(2.0)


def split_output(out: tuple) -> tuple[torch.Tensor, Any, dict[str, torch.Tensor]]:
    """A network's (logits, state) or (logits, state, auxiliary losses) as all three."""
    logits, state, *rest = out
    return logits, state, (rest[0] if rest else {}) or {}


class Task(L.LightningModule):
    """Trains ``network`` with `TrainConfig` ``train`` for ``total_steps`` steps; ``width`` is
    the model width the Noam schedule scales by."""

    def __init__(self, network: nn.Module, *, train: TrainConfig, total_steps: int, width: int) -> None:
        super().__init__()
        self.network = network
        self.train_config, self.total_steps, self.width = train, total_steps, width
        allowed = getattr(network, "allowed_targets", None)
        allowed = allowed() if callable(allowed) else allowed_tokens(network.config.vocab_size)
        remap = torch.full((len(allowed),), IGNORE, dtype=torch.long)
        remap[allowed] = torch.arange(int(allowed.sum()))
        self.register_buffer("allowed", allowed, persistent=False)
        self.register_buffer("remap", remap, persistent=False)  # vocabulary id -> allowed index
        self._sums = torch.zeros(3, dtype=torch.float64)  # validation: nll, tokens, correct
        self._clock, self._tokens = time.perf_counter(), 0

    # ---- the loss: each kind says how a batch becomes logits and targets ----------------------------

    def forward_batch(self, batch: Any, *, training: bool) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Logits (b, n, v), targets (b, n) and auxiliary losses of a batch."""
        raise NotImplementedError

    def cross_entropy(self, logits: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Summed loss over target positions, the number of targets, and the correct argmaxes."""
        y = y[:, -logits.shape[1]:]  # a network may predict only its last positions
        z = logits[..., self.allowed].float()  # (b, n, a)
        target = torch.where(y == IGNORE, IGNORE, self.remap[y.clamp(min=0)])
        loss = F.cross_entropy(z.reshape(-1, z.shape[-1]), target.reshape(-1), ignore_index=IGNORE,
                               label_smoothing=smoothing, reduction="sum")
        valid = target != IGNORE
        correct = ((z.argmax(-1) == target) & valid).sum()
        return loss, valid.sum(), correct

    def losses(self, batch: Any, smoothing: float = 0.0, *, training: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        logits, y, aux = self.forward_batch(batch, training=training)
        return (*self.cross_entropy(logits, y, smoothing), aux)

    # ---- training ---------------------------------------------------------------------------------

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        torch.manual_seed(hash((self.train_config.seed, self.global_step, self.global_rank)) % 2**63)
        anneal = getattr(self.network, "anneal", None)  # e.g. a DCSTM's Gumbel temperature
        if callable(anneal):
            anneal(self.global_step / max(self.total_steps, 1))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        total, count, _, aux = self.losses(batch, self.train_config.label_smoothing, training=True)
        # mean over this process's targets; windows have equal lengths, so the mean over
        # processes that DDP takes is the mean over the global batch
        loss = total / count.clamp(min=1)
        b = _rows(batch)
        for name, value in aux.items():
            loss = loss + value
            self.log(f"train_{name}", value.detach(), on_step=True, on_epoch=False, batch_size=b)
        self._tokens += int(count) * self.trainer.world_size
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=b)
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False, batch_size=b)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self.global_step % 20 == 0:
            now = time.perf_counter()
            self.log("tokens_per_s", self._tokens / max(now - self._clock, 1e-9), on_step=True, on_epoch=False)
            self._clock, self._tokens = now, 0

    def configure_optimizers(self):
        cfg = self.train_config
        decay, no_decay = [], []
        for name, p in self.network.named_parameters():
            (decay if p.dim() >= 2 and "embed" not in name else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        opt_class = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        if cfg.optimizer == "adam":  # Adam's weight decay is an L2 term; apply it to every weight
            groups = [{"params": decay + no_decay, "weight_decay": cfg.weight_decay}]
        optimizer = opt_class(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps)
        f = schedule(cfg.schedule, warmup=cfg.warmup_steps, total=self.total_steps, min_ratio=cfg.min_lr_ratio,
                     dim=self.width)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, f)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- validation -------------------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        self._sums = torch.zeros(3, dtype=torch.float64, device=self.device)

    def validation_step(self, batch, batch_idx: int) -> None:
        total, count, correct, _ = self.losses(batch)
        self._sums += torch.stack([total.double(), count.double(), correct.double()])

    def on_validation_epoch_end(self) -> None:
        sums = self.trainer.strategy.reduce(self._sums, reduce_op="sum")
        nll, count, correct = (float(v) for v in sums)
        loss = nll / max(count, 1.0)
        # every process holds the same summed figures, so no further sync is needed
        self.log("val_loss", loss, prog_bar=True, sync_dist=False)
        self.log("val_bits", loss / LN2, sync_dist=False)
        self.log("val_accuracy", correct / max(count, 1.0), sync_dist=False)


class LanguageModelTask(Task):
    """Next-token prediction over windows (x, y)."""

    def forward_batch(self, batch, *, training: bool):
        x, y = batch
        logits, _, aux = split_output(self.network(x, None))
        return logits, y, aux if training else {}


class Seq2SeqTask(Task):
    """Target tokens given a source, with teacher forcing: batches (source, source_padding,
    target_in, target_out)."""

    def forward_batch(self, batch, *, training: bool):
        source, padding, target_in, target_out = batch
        logits = self.network(source, target_in, source_padding=padding)
        return logits, target_out, {}


class SegmentTask(Task):
    """Consecutive segments of pieces, the network's state carried between batches (module
    docstring). The network implements ``reset(state, rows)``, ``state_tensors(state)`` and
    ``state_from_tensors(tensors)``."""

    STATE_KEY = "notelm_segment_state"

    def __init__(self, network: nn.Module, **options: Any) -> None:
        super().__init__(network, **options)
        self._state: Any = None  # carried between training batches
        self._val_state: Any = None

    def _step(self, batch, state):
        x, y, starts = batch
        if state is not None and bool(starts.all()):
            state = None  # every row starts a piece (and the batch may have other rows)
        elif state is not None and bool(starts.any()):
            state = self.network.reset(state, starts.to(x.device))
        logits, state, aux = split_output(self.network(x, state))
        return logits, y, aux, state

    def forward_batch(self, batch, *, training: bool):
        if training:
            logits, y, aux, self._state = self._step(batch, self._state)
            return logits, y, aux
        logits, y, _, self._val_state = self._step(batch, self._val_state)
        return logits, y, {}

    def on_validation_epoch_start(self) -> None:
        super().on_validation_epoch_start()
        self._val_state = None

    # the carried state is part of the checkpoint: the global batch's, every process's rows
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self._state is None:
            return
        tensors = self.network.state_tensors(self._state)
        world = self.trainer.world_size if self._trainer is not None else 1
        if world > 1:  # rows r, r + w, ... of the global batch live on process r
            with warnings.catch_warnings():  # Lightning's all_gather calls a torch function torch deprecates
                warnings.filterwarnings("ignore", message=".*all_gather is deprecated")
                tensors = {k: _interleave(self.all_gather(v), world) for k, v in tensors.items()}
        checkpoint[self.STATE_KEY] = {k: v.detach().cpu() for k, v in tensors.items()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        tensors = checkpoint.get(self.STATE_KEY)
        if not tensors:
            self._state = None
            return
        world = self.trainer.world_size if self._trainer is not None else 1
        rank = self.trainer.global_rank if self._trainer is not None else 0
        mine = {k: v[rank::world] for k, v in tensors.items()}
        self._pending = mine

    def on_train_start(self) -> None:
        pending = getattr(self, "_pending", None)
        if pending is not None:
            self._state = self.network.state_from_tensors({k: v.to(self.device) for k, v in pending.items()})
            self._pending = None


def _rows(batch) -> int:
    """Rows of a batch (its first tensor's first dimension)."""
    return int(batch[0].shape[0])


def _interleave(gathered: torch.Tensor, world: int) -> torch.Tensor:
    """(w, b/w, ...) rows of every process -> (b, ...) in global row order (row i on i mod w)."""
    w, n = gathered.shape[:2]
    return gathered.transpose(0, 1).reshape(w * n, *gathered.shape[2:])


TASKS: dict[str, type[Task]] = {"lm": LanguageModelTask, "seq2seq": Seq2SeqTask, "segments": SegmentTask}
