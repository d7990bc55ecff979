"""The next-token language-model task: a Lightning module around any network of
`notelm.models.neural.NETWORKS`.

The loss is the cross-entropy of every position's next token (label-smoothed in training),
over the tokens a model may emit (PAD, BOS and UNK never are, as in `NeuralModel`), so the
validation loss in nats is the test figure in bits times ln 2. Validation sums the loss and
counts tokens and correct argmax predictions on every process, then adds them up, so the
figure does not depend on how windows were shared between processes.

Dropout draws from a generator seeded by (seed, global step, rank) at every step: a run
resumed from a checkpoint makes the same random choices as one that never stopped.

Legend: b batch, t time, v vocabulary, a allowed tokens.
"""

from __future__ import annotations

import math
import time

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from notelm.models.neural import allowed_tokens
from notelm.training.config import TrainConfig
from notelm.training.data import IGNORE
from notelm.training.schedules import schedule


class LanguageModelTask(L.LightningModule):
    """Trains ``network`` (token ids -> logits) with `TrainConfig` for ``total_steps`` steps."""

    def __init__(self, network: nn.Module, *, train: TrainConfig, total_steps: int) -> None:
        super().__init__()
        self.network = network
        self.train_config = train
        self.total_steps = total_steps
        v = network.config.vocab_size
        allowed = allowed_tokens(v)
        remap = torch.full((v,), IGNORE, dtype=torch.long)
        remap[allowed] = torch.arange(int(allowed.sum()))
        self.register_buffer("allowed", allowed, persistent=False)
        self.register_buffer("remap", remap, persistent=False)  # vocabulary id -> allowed index
        self._sums = torch.zeros(3, dtype=torch.float64)  # validation: nll, tokens, correct
        self._clock = time.perf_counter()
        self._tokens = 0

    # ---- loss -------------------------------------------------------------------------------------

    def losses(self, x: torch.Tensor, y: torch.Tensor, smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Summed loss over target positions, the number of targets, and the correct argmaxes."""
        logits, _ = self.network(x, None)  # (b, t, v)
        z = logits[..., self.allowed].float()  # (b, t, a)
        target = torch.where(y == IGNORE, IGNORE, self.remap[y.clamp(min=0)])
        loss = F.cross_entropy(z.reshape(-1, z.shape[-1]), target.reshape(-1), ignore_index=IGNORE,
                               label_smoothing=smoothing, reduction="sum")
        valid = target != IGNORE
        correct = ((z.argmax(-1) == target) & valid).sum()
        return loss, valid.sum(), correct

    # ---- training ---------------------------------------------------------------------------------

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        torch.manual_seed(hash((self.train_config.seed, self.global_step, self.global_rank)) % 2**63)
        anneal = getattr(self.network, "anneal", None)  # e.g. a DCSTM's Gumbel temperature
        if callable(anneal):
            anneal(self.global_step / max(self.total_steps, 1))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        total, count, _ = self.losses(x, y, self.train_config.label_smoothing)
        # mean over this process's targets; windows have equal lengths in "random" mode, so
        # the mean over processes that DDP takes is the mean over the global batch
        loss = total / count.clamp(min=1)
        self._tokens += int(count) * self.trainer.world_size
        self.log("train_loss", loss, prog_bar=True, on_step=True, on_epoch=False, batch_size=x.shape[0])
        self.log("lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False, batch_size=x.shape[0])
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
        optimizer = opt_class(groups, lr=cfg.lr, betas=tuple(cfg.betas))
        dim = getattr(self.network.config, "dim", None) or getattr(self.network.config, "hidden", 1)
        f = schedule(cfg.schedule, warmup=cfg.warmup_steps, total=self.total_steps, min_ratio=cfg.min_lr_ratio, dim=dim)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, f)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---- validation -------------------------------------------------------------------------------

    def on_validation_epoch_start(self) -> None:
        self._sums = torch.zeros(3, dtype=torch.float64, device=self.device)

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        total, count, correct = self.losses(x, y)
        self._sums += torch.stack([total.double(), count.double(), correct.double()])

    def on_validation_epoch_end(self) -> None:
        sums = self.trainer.strategy.reduce(self._sums, reduce_op="sum")
        nll, count, correct = (float(v) for v in sums)
        loss = nll / max(count, 1.0)
        # every process holds the same summed figures, so no further sync is needed
        self.log("val_loss", loss, prog_bar=True, sync_dist=False)
        self.log("val_bits", loss / math.log(2), sync_dist=False)
        self.log("val_accuracy", correct / max(count, 1.0), sync_dist=False)
