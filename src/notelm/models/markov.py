"""Baselines: a fixed-order Markov chain with additive smoothing, and a repetition model.

Markov chain: counts of every n-gram up to length order+1, in one of two modes (as PPM's):

- ``"ltm"``: counted in the training pieces (`fit`), frozen while predicting;
- ``"stm"``: counted in the piece being predicted only, each event learned after it is
  predicted, starting empty for every piece (the short-term "MC-n" baseline of Bjare et al.
  2022, REFERENCE §2).

Near the start of a piece the context is the whole (shorter) history. Two smoothings:

- additive (``backoff=False``): p(x|s) = (c(s,x) + alpha) / (c(s) + alpha*A), Laplace for
  alpha = 1 (Chen & Goodman 1999, §2.1);
- backoff (``backoff=True``, the default): the pseudo-counts follow the next shorter context,
  p_o(x|s) = (c(s,x) + alpha*A*p_{o-1}(x|s')) / (c(s) + alpha*A), down to a uniform order -1
  (a hierarchical Dirichlet prior, MacKay & Peto 1995). An unseen context falls back exactly
  to the shorter one; a seen one is pulled towards it with strength alpha*A.

Repetition: predicts that the previous symbol comes again, with probability 1 - eps, and
spreads eps over the other symbols (uniform at the first event).

Legend: A alphabet size, N events, n events of one piece, o context order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from notelm.config import Config
from notelm.models.base import SequenceModel

MODES = ("ltm", "stm")


@dataclass(frozen=True)
class MarkovConfig(Config):
    """order: context length n of an order-n chain; alpha: pseudo-count per symbol (> 0);
    backoff: centre the pseudo-counts on the order n-1 estimate instead of uniform."""

    order: int = 2
    alpha: float = 1.0
    backoff: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.order, bool) or not isinstance(self.order, int) or self.order < 0:
            raise ValueError(f"order must be an int >= 0; got {self.order!r}")
        if not isinstance(self.alpha, int | float) or not self.alpha > 0:
            raise ValueError(f"alpha must be a number > 0 (no zero probabilities); got {self.alpha!r}")
        if not isinstance(self.backoff, bool):
            raise ValueError(f"backoff must be True or False; got {self.backoff!r}")



def _check_symbols(flat: np.ndarray, alphabet_size: int) -> None:
    if flat.size and (flat.min() < 0 or flat.max() >= alphabet_size):
        bad = flat[(flat < 0) | (flat >= alphabet_size)][0]
        raise ValueError(f"symbol {bad} is outside the alphabet 0..{alphabet_size - 1}")


class _Table:
    """Counts keyed by integer codes, sorted for vectorised look-up."""

    def __init__(self) -> None:
        self.keys = np.zeros(0, np.int64)
        self.counts = np.zeros(0, np.int64)

    def add(self, keys: np.ndarray) -> None:
        keys, inverse = np.unique(np.concatenate([self.keys, keys]), return_inverse=True)
        weights = np.concatenate([self.counts, np.ones(len(inverse) - len(self.counts), np.int64)])
        self.keys, self.counts = keys, np.bincount(inverse, weights=weights).astype(np.int64)

    def get(self, keys: np.ndarray) -> np.ndarray:
        if len(self.keys) == 0:
            return np.zeros(keys.shape, np.int64)
        at = np.searchsorted(self.keys, keys).clip(max=len(self.keys) - 1)
        return np.where(self.keys[at] == keys, self.counts[at], 0)


def _earlier_counts(code: np.ndarray, onehot: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(n, A): how often each symbol followed event i's context code at the valid events
    before i in the same piece (an exclusive cumulative sum within each context)."""
    counts = np.zeros_like(onehot)
    at = np.flatnonzero(valid)
    if len(at) == 0:
        return counts
    order = np.argsort(code[at], kind="stable")  # grouped by context, in time order within
    rows, grouped = at[order], code[at][order]
    cum = np.cumsum(onehot[rows], axis=0) - onehot[rows]  # events strictly before, all contexts
    head = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    first = np.repeat(head, np.diff(np.r_[head, len(rows)]))  # first row of each row's context
    counts[rows] = cum - cum[first]
    return counts


class MarkovChain(SequenceModel):
    """An order-n Markov chain over ``0..alphabet_size-1``: mode "ltm" is trained with `fit`
    (counts add up), mode "stm" learns each piece as it predicts it."""

    def __init__(self, *, alphabet_size: int, config: MarkovConfig | None = None, mode: str = "ltm") -> None:
        if isinstance(alphabet_size, bool) or not isinstance(alphabet_size, int | np.integer) or alphabet_size < 1:
            raise ValueError(f"alphabet_size must be a positive int; got {alphabet_size!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        self.alphabet_size = int(alphabet_size)
        self.config = config or MarkovConfig()
        self.mode = mode
        if (self.config.order + 1) * math.log2(max(self.alphabet_size, 1)) >= 62:
            raise ValueError(f"alphabet_size**(order+1) must fit in 62 bits to key the counts; "
                             f"got {self.alphabet_size}**{self.config.order + 1}")
        # Per order o: n-gram counts keyed by (context code)*A + symbol, and context totals.
        self._ngrams = [_Table() for _ in range(self.config.order + 1)]
        self._contexts = [_Table() for _ in range(self.config.order + 1)]

    @property
    def trainable(self) -> bool:
        """Whether `fit` applies (an STM always starts empty)."""
        return self.mode == "ltm"

    def fit(self, sequences: Sequence[Sequence[int]]) -> MarkovChain:
        """Add the n-grams of ``sequences`` to the counts."""
        if not self.trainable:
            raise ValueError("an STM starts empty for every piece and cannot be trained; use mode='ltm'")
        flat, position, _ = self._flatten(sequences)
        for o, code in enumerate(self._context_codes(flat, position)):
            valid = position >= o
            self._ngrams[o].add(code[valid] * self.alphabet_size + flat[valid])
            self._contexts[o].add(code[valid])
        return self

    def start(self, primer: Sequence[int] = ()) -> tuple[int, ...]:
        state: tuple[int, ...] = ()
        for token in primer:
            state = self.observe(state, token)
        return state

    def predict(self, state: tuple[int, ...]) -> np.ndarray:
        flat = np.array([*state, 0], np.int64)  # the 0 stands for the event to come
        if self.mode == "stm":
            return self._online(flat)[-1]
        position = np.arange(len(flat), dtype=np.int64)
        return self._probabilities(flat, position, all_symbols=True)[-1]

    def observe(self, state: tuple[int, ...], token: int) -> tuple[int, ...]:
        """The context so far: the last ``order`` tokens ("ltm"), the whole piece ("stm")."""
        _check_symbols(np.array([token]), self.alphabet_size)
        keep = self.config.order
        if self.mode == "stm":
            return (*state, int(token))
        return (*state, int(token))[-keep:] if keep else ()

    def score(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        if len(sequences) == 0:
            return []
        if self.mode == "stm":
            return [np.log2(d[np.arange(len(d)), np.asarray(s, np.int64).reshape(-1)])
                    for d, s in zip(self.distributions(sequences), sequences, strict=True)]
        flat, position, cuts = self._flatten(sequences)
        return np.split(np.log2(self._probabilities(flat, position, all_symbols=False)), cuts)

    def distributions(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """The predicted distribution before every event, one (length, A) array per piece."""
        if len(sequences) == 0:
            return []
        if self.mode == "stm":
            return [self._online(np.asarray(s, np.int64).reshape(-1)) for s in sequences]
        flat, position, cuts = self._flatten(sequences)
        return np.split(self._probabilities(flat, position, all_symbols=True), cuts)

    # -- what it learned, as arrays ----------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Per order o, its n-gram and context count tables: ``ngrams.o.keys``/``.counts`` and
        ``contexts.o.keys``/``.counts`` (sorted int64 keys, int64 counts)."""
        out = {}
        for what, tables in (("ngrams", self._ngrams), ("contexts", self._contexts)):
            for o, table in enumerate(tables):
                out[f"{what}.{o}.keys"], out[f"{what}.{o}.counts"] = table.keys, table.counts
        return out

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> MarkovChain:
        """Take stored count tables, checked (`check_table`)."""
        for what, tables in (("ngrams", self._ngrams), ("contexts", self._contexts)):
            for o, table in enumerate(tables):
                limit = self.alphabet_size ** (o + 1) if what == "ngrams" else self.alphabet_size ** o
                table.keys, table.counts = check_table(arrays[f"{what}.{o}.keys"], arrays[f"{what}.{o}.counts"], limit)
        return self

    # -- internals ---------------------------------------------------------------------------

    def _flatten(self, sequences):
        """All events in one array, each event's position in its piece, and the piece cuts."""
        arrays = [np.asarray(s, np.int64).reshape(-1) for s in sequences]
        if not arrays:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
        flat = np.concatenate(arrays)
        _check_symbols(flat, self.alphabet_size)
        position = np.concatenate([np.arange(len(a)) for a in arrays])
        return flat, position, np.cumsum([len(a) for a in arrays])[:-1]

    def _context_codes(self, flat, position):
        """For each order o, the code of the o symbols before every event (recent = low digit)."""
        code = np.zeros(len(flat), np.int64)
        codes = [code]
        for o in range(1, self.config.order + 1):
            previous = np.zeros(len(flat), np.int64)
            previous[o:] = flat[: len(flat) - o]
            code = code + np.where(position >= o, previous, 0) * self.alphabet_size ** (o - 1)
            codes.append(code)
        return codes

    def _smooth(self, counts, total, shorter):
        """p(x|s) from the counts after context s and the order o-1 estimate (module docstring)."""
        size, alpha = self.alphabet_size, self.config.alpha
        prior = shorter if self.config.backoff else 1.0 / size
        return (counts + alpha * size * prior) / (total + alpha * size)

    def _probabilities(self, flat, position, *, all_symbols):
        """p of every symbol (N, A) or of the actual event (N,), per the chosen smoothing."""
        size = self.alphabet_size
        symbols = np.arange(size)[None, :] if all_symbols else flat[:, None]
        p = np.full((len(flat), symbols.shape[1]), 1.0 / size)
        for o, code in enumerate(self._context_codes(flat, position)):
            valid = position >= o  # a context of this order exists; else keep the shorter one
            targets = symbols if all_symbols else symbols[valid]
            counts = self._ngrams[o].get(code[valid, None] * size + targets)
            total = self._contexts[o].get(code[valid])[:, None]
            p[valid] = self._smooth(counts, total, p[valid])
        if all_symbols:
            p /= p.sum(axis=1, keepdims=True)  # exact already; removes rounding drift
        return p if all_symbols else p[:, 0]

    def _online(self, seq):
        """(n, A): the "stm" distributions of one piece, counting only its earlier events."""
        _check_symbols(seq, self.alphabet_size)
        position = np.arange(len(seq), dtype=np.int64)
        onehot = np.eye(self.alphabet_size)[seq]  # (n, A)
        p = np.full(onehot.shape, 1.0 / self.alphabet_size)
        for o, code in enumerate(self._context_codes(seq, position)):
            valid = position >= o
            counts = _earlier_counts(code, onehot, valid)
            p[valid] = self._smooth(counts[valid], counts[valid].sum(axis=1, keepdims=True), p[valid])
        return p / p.sum(axis=1, keepdims=True)


def check_table(keys: np.ndarray, counts: np.ndarray, key_limit: int) -> tuple[np.ndarray, np.ndarray]:
    """A stored count table: sorted unique int64 keys below ``key_limit``, counts >= 1."""
    ok = (keys.dtype == np.int64 and counts.dtype == np.int64 and keys.ndim == counts.ndim == 1
          and len(keys) == len(counts) and (np.diff(keys) > 0).all() and (counts >= 1).all()
          and (len(keys) == 0 or (keys[0] >= 0 and keys[-1] < key_limit)))
    if not ok:
        raise ValueError("a Markov count table is damaged (keys must be sorted, unique and in range; counts >= 1)")
    return keys, counts


@dataclass(frozen=True)
class RepetitionConfig(Config):
    """eps: probability that the next symbol differs from the previous one (0 < eps < 1)."""

    eps: float = 0.1

    def __post_init__(self) -> None:
        if not isinstance(self.eps, int | float) or not 0 < self.eps < 1:
            raise ValueError(f"eps must be a number strictly between 0 and 1; got {self.eps!r}")



class Repetition(SequenceModel):
    """Predicts the previous symbol again with probability 1 - eps; nothing to train."""

    trainable = False

    def __init__(self, *, alphabet_size: int, config: RepetitionConfig | None = None) -> None:
        if isinstance(alphabet_size, bool) or not isinstance(alphabet_size, int | np.integer) or alphabet_size < 1:
            raise ValueError(f"alphabet_size must be a positive int; got {alphabet_size!r}")
        self.alphabet_size = int(alphabet_size)
        self.config = config or RepetitionConfig()

    def start(self, primer: Sequence[int] = ()) -> int | None:
        state = None
        for token in primer:
            state = self.observe(state, token)
        return state

    def predict(self, state: int | None) -> np.ndarray:
        size = self.alphabet_size
        if state is None or size == 1:
            return np.full(size, 1.0 / size)
        p = np.full(size, self.config.eps / (size - 1))
        p[state] = 1.0 - self.config.eps
        return p

    def observe(self, state: int | None, token: int) -> int:
        _check_symbols(np.array([token]), self.alphabet_size)
        return int(token)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {}  # nothing learned

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> Repetition:
        return self

    def distributions(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """The predicted distribution before every event, one (length, A) array per piece."""
        size, out = self.alphabet_size, []
        for seq in sequences:
            seq = np.asarray(seq, np.int64).reshape(-1)
            _check_symbols(seq, size)
            d = np.full((len(seq), size), 1.0 / size)
            if size > 1 and len(seq) > 1:
                d[1:] = self.config.eps / (size - 1)
                d[np.arange(1, len(seq)), seq[:-1]] = 1.0 - self.config.eps
            out.append(d)
        return out

    def score(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        size, eps = self.alphabet_size, self.config.eps
        out = []
        for seq in sequences:
            seq = np.asarray(seq, np.int64).reshape(-1)
            _check_symbols(seq, size)
            p = np.full(len(seq), 1.0 / size)
            if size > 1 and len(seq) > 1:
                p[1:] = np.where(seq[1:] == seq[:-1], 1.0 - eps, eps / (size - 1))
            out.append(np.log2(p))
        return out
