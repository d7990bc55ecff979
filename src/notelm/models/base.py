"""The one model interface that evaluation, combination and generation are written against.

Every model, counting or neural, predicts the next token of a sequence of integer ids in
``range(alphabet_size)``:

- ``start(primer=())`` begins a piece and returns a state (a short-term model starts empty);
- ``predict(state)`` returns the distribution over the next token: float64, sums to 1, no zeros;
- ``observe(state, token)`` appends a token (online models learn from it) and returns the new
  state; the state it was given stays valid, so a piece can be branched (beam search, several
  continuations of one primer);
- ``distributions(sequences)`` is the batched fast path: the distribution before every event of
  every sequence, equal to the start/predict/observe path to 1e-6; ``score(sequences)`` gives
  the log2 probabilities of the events that came.

A sequence-to-sequence model (the velocity model) is a `ConditionalModel`: the same protocol
given a source sequence — ``start(source)``, and pairs of (source, target) to score. Its
``given(source)`` is a plain `SequenceModel` of the targets of one source, so the one sampler
and the one evaluation serve it too.
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
        """Append ``token`` to the piece (online models learn from it); return the new state,
        leaving ``state`` as it was."""

    def distributions(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """The distribution before every event of each sequence, each piece started afresh:
        one (n, A) float64 array per sequence.

        The default walks start/predict/observe; models override it with a faster path
        that must agree to 1e-6.
        """
        out = []
        for seq in sequences:
            state = self.start()
            rows = np.empty((len(seq), self.alphabet_size), dtype=np.float64)
            for i, tok in enumerate(seq):
                rows[i] = self.predict(state)
                state = self.observe(state, int(tok))
            out.append(rows)
        return out

    def score(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Per-event log2 probabilities of each sequence, each piece started afresh."""
        out = []
        for seq, dist in zip(sequences, self.distributions(sequences), strict=True):
            seq = np.asarray(seq, dtype=np.int64).reshape(-1)
            out.append(np.log2(dist[np.arange(len(seq)), seq]))
        return out


class ConditionalModel(ABC):
    """A model of target sequences given a source sequence (sequence to sequence), over an
    alphabet of ``alphabet_size`` target ids: `SequenceModel`'s protocol with a source."""

    alphabet_size: int

    @abstractmethod
    def start(self, source: Sequence[int], primer: Sequence[int] = ()) -> Any:
        """Begin the target of ``source``, conditioned on the target tokens ``primer``."""

    @abstractmethod
    def predict(self, state: Any) -> np.ndarray:
        """Distribution over the next target token (float64, sums to 1, strictly positive)."""

    @abstractmethod
    def observe(self, state: Any, token: int) -> Any:
        """Append a target token; return the new state, leaving ``state`` as it was."""

    def distributions(self, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Teacher-forced distributions before every target token of each pair: (n, A) each.
        The default walks start/predict/observe; models override it with a faster path."""
        out = []
        for source, target in zip(sources, targets, strict=True):
            state = self.start(source)
            rows = np.empty((len(target), self.alphabet_size), dtype=np.float64)
            for i, tok in enumerate(target):
                rows[i] = self.predict(state)
                state = self.observe(state, int(tok))
            out.append(rows)
        return out

    def score(self, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Per-token log2 probabilities of each target given its source."""
        out = []
        for target, dist in zip(targets, self.distributions(sources, targets), strict=True):
            target = np.asarray(target, dtype=np.int64).reshape(-1)
            out.append(np.log2(dist[np.arange(len(target)), target]))
        return out

    def given(self, source: Sequence[int]) -> SequenceModel:
        """The targets of one source as a plain `SequenceModel` (for the sampler)."""
        return _Given(self, source)


class _Given(SequenceModel):
    """A `ConditionalModel` with its source fixed."""

    def __init__(self, model: ConditionalModel, source: Sequence[int]) -> None:
        self.model, self.source = model, list(source)
        self.alphabet_size = model.alphabet_size

    def start(self, primer: Sequence[int] = ()) -> Any:
        return self.model.start(self.source, primer)

    def predict(self, state: Any) -> np.ndarray:
        return self.model.predict(state)

    def observe(self, state: Any, token: int) -> Any:
        return self.model.observe(state, token)

    def distributions(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        return self.model.distributions([self.source] * len(sequences), sequences)
