"""The one model interface that evaluation, combination and generation are written against.

Every model, counting or neural, predicts the next token of a sequence of integer ids in
``range(alphabet_size)``:

- ``start(primer=())`` begins a piece and returns a state (a short-term model starts empty);
- ``predict(state)`` returns the distribution over the next token: float64, sums to 1, no zeros;
- ``observe(state, token)`` appends a token (online models learn from it) and returns the state;
- ``score(sequences)`` is the batched fast path: per-event log2 probabilities for each
  sequence, equal to the start/predict/observe path to 1e-6.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np


class SequenceModel(ABC):
    """A model of token sequences over an alphabet of ``alphabet_size`` ids."""

    alphabet_size: int

    @abstractmethod
    def start(self, primer: Sequence[int] = ()) -> Any:
        """Begin a new piece, conditioned on ``primer``; return the state."""

    @abstractmethod
    def predict(self, state: Any) -> np.ndarray:
        """Distribution over the next token (float64, sums to 1, strictly positive)."""

    @abstractmethod
    def observe(self, state: Any, token: int) -> Any:
        """Append ``token`` to the piece (online models learn from it); return the state."""

    def score(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Per-event log2 probabilities of each sequence, each piece started afresh.

        The default walks start/predict/observe; models override it with a faster path
        that must agree to 1e-6.
        """
        out = []
        for seq in sequences:
            state = self.start()
            logp = np.empty(len(seq), dtype=np.float64)
            for i, tok in enumerate(seq):
                logp[i] = np.log2(self.predict(state)[tok])
                state = self.observe(state, int(tok))
            out.append(logp)
        return out
