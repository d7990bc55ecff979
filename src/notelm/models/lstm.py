"""An LSTM language model over token ids: the grid tutorial's network (REFERENCE §3).

embedding -> LSTM (``layers`` x ``hidden``) -> dropout -> linear, as in the tutorial, with
one difference in how it is trained (notelm.training): the tutorial predicts only the token
after each 64-token window, we predict at every position of the window, which gives 64
training targets per window instead of one for the same forward pass.

The recurrent state (h, c) is the network's state; `notelm.models.neural.NeuralModel` keeps
it between generation steps, so each step costs one token's work.

Legend: b batch, t time, e embedding dim, n hidden size, l layers, v vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from notelm.config import Config, require_positive_ints, require_rates
from notelm.errors import NotelmError

State = tuple[torch.Tensor, torch.Tensor]  # h, c: (l, b, n) each


@dataclass(frozen=True)
class LSTMConfig(Config):
    """vocab_size: output classes (the encoding's vocabulary). embed_dim: token embedding
    size. hidden: LSTM units per layer. layers: stacked LSTM layers. dropout: after the LSTM
    (and between layers). context: training window length (the LSTM itself is unbounded)."""

    vocab_size: int = 0
    embed_dim: int = 64
    hidden: int = 128
    layers: int = 1
    dropout: float = 0.2
    context: int = 64

    def __post_init__(self) -> None:
        require_positive_ints(self, "lstm", ("vocab_size", "embed_dim", "hidden", "layers", "context"), zero_ok=("vocab_size",))
        require_rates(self, "lstm")


# Presets: model settings and the training settings that go with them. "small" is the
# tutorial's network (1 x 128 units, dropout 0.2, windows of 64) trained with batches of 16 and
# Adam at 5e-3 (then a cosine decay) instead of the tutorial's 64 and 1e-3: a target at every
# position makes the gradient far less noisy, so it bears small batches (four times the
# updates per second on a CPU) and a larger step; the tutorial's last-position loss does not
# (bench/bench_tutorial.py).
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "debug": {"model": {"embed_dim": 16, "hidden": 16, "layers": 2, "dropout": 0.0, "context": 32},
              "train": {"batch_size": 8, "lr": 3e-3}},
    "small": {"model": {"embed_dim": 64, "hidden": 128, "layers": 1, "dropout": 0.2, "context": 64},
              "train": {"batch_size": 16, "lr": 5e-3, "schedule": "cosine", "warmup_steps": 50}},
    "base": {"model": {"embed_dim": 256, "hidden": 512, "layers": 2, "dropout": 0.3, "context": 256},
             "train": {"batch_size": 32, "lr": 1e-3, "schedule": "cosine", "warmup_steps": 200}},
}


class LSTM(nn.Module):
    """Token ids (b, t) -> next-token logits (b, t, v), carrying the recurrent state."""

    def __init__(self, config: LSTMConfig) -> None:
        super().__init__()
        if config.vocab_size < 1:
            raise NotelmError("lstm: vocab_size must be set (the encoding's vocabulary size)")
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.embed_dim)
        self.lstm = nn.LSTM(config.embed_dim, config.hidden, num_layers=config.layers, batch_first=True,
                            dropout=config.dropout if config.layers > 1 else 0.0)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden, config.vocab_size)

    def body(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Embedded tokens (b, t, e) -> logits (b, t, v) and the new state."""
        y, state = self.lstm(x, state)
        return self.head(self.drop(y)), state

    def forward(self, idx: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Logits (b, t, v) for token ids (b, t), starting from ``state`` (zeros when None)."""
        return self.body(self.embed(idx), state)

    def new_cache(self, batch: int = 1, capacity: int | None = None) -> None:
        """The LSTM starts from zeros: no cache object is needed (None)."""
        return None
