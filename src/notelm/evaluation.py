"""Information content and entropy of any `SequenceModel`, and k-fold cross-validation.

The information content of an event is -log2 p(event) in bits; the entropy of a prediction
is -sum_x p(x) log2 p(x). IDyOM's usual figure is the mean information content of each piece,
then the mean over pieces (`apps/resampling.lisp`, `output-information-content`); the mean over
all events is also given. Cross-validation is over pieces: piece i (0-based, in corpus order)
is in fold i mod k, each fold is predicted by a model built from the other k-1 folds.

Every model's ``distributions(sequences)`` gives one (length, A) array per piece (its fast path,
or the start/predict/observe walk of `SequenceModel`); combinations also offer
``component_distributions(sequences)`` with ``combine_pieces(components)``, which give each
component's p(event) too. Sequences
reach the model as given (a `notelm.viewpoints.Melody` carries its timing along); the
events are ``np.asarray(sequence)``.

`frame_metrics` gives the DSTM paper's figures for frame sequences (Bjare, Lattner & Widmer
2022; REFERENCE §2): NLL in nats and bits and precision (argmax accuracy) over all events
pooled, and again only where the frame changes (the paper's "EVT" rows).

Legend: P pieces, n events of a piece, A alphabet size.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from notelm.io.files import atomic_write_text
from notelm.models.base import SequenceModel


def information_content(probability: np.ndarray) -> np.ndarray:
    """-log2 p, in bits."""
    return -np.log2(probability)


def entropy(distributions: np.ndarray) -> np.ndarray:
    """Entropy in bits of distributions over the last axis (0 log 0 = 0)."""
    p = np.asarray(distributions, dtype=np.float64)
    positive = p > 0
    return -np.where(positive, p * np.log2(np.where(positive, p, 1.0)), 0.0).sum(axis=-1)


def predict_distributions(model: SequenceModel, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
    """The model's distribution before every event: one (n, A) float64 array per piece."""
    return [np.asarray(d, dtype=np.float64) for d in model.distributions(sequences)]


def by_position(information: Sequence[np.ndarray], bucket: int = 256) -> dict[str, Any]:
    """Mean information content by position within the piece, in buckets of ``bucket`` events
    (events 0..bucket-1 of every piece, then bucket..2 bucket-1, ...): whether a model predicts
    better late in a piece than early, as one with a memory of the piece should. ``information``:
    one array of IC (bits) per piece. Buckets no piece reaches are not listed."""
    if bucket < 1:
        raise ValueError(f"bucket must be >= 1; got {bucket}")
    longest = max((len(ic) for ic in information), default=0)
    k = -(-longest // bucket)
    total, count = np.zeros(k), np.zeros(k, dtype=np.int64)
    for ic in information:
        b = np.arange(len(ic)) // bucket
        total += np.bincount(b, weights=ic, minlength=k)
        count += np.bincount(b, minlength=k)
    bits = total / np.maximum(count, 1)
    return {"bucket": bucket, "start": [i * bucket for i in range(k)], "events": count.tolist(),
            "bits_per_event": bits.tolist(), "nats_per_event": (bits * np.log(2)).tolist()}


def frame_metrics(sequences: Sequence[Sequence[int]], distributions: Sequence[np.ndarray]) -> dict[str, float | int]:
    """Pooled over every event of every piece: ``nll_nats`` (mean -ln p(event)), ``nll_bits``,
    ``precision`` (how often the most probable token is the event; ties go to the lowest id),
    ``events``; and ``evt_*``, the same at the events whose token differs from the previous
    one in the piece (a piece's first event counts as a change): the DSTM paper's "EVT"
    figures, where a held note's repeated frames, easy to predict, are left out.

    ``distributions``: one (n, A) array per piece, row i the prediction of event i. Empty
    selections give None.
    """
    if len(sequences) != len(distributions):
        raise ValueError(f"{len(sequences)} sequences but {len(distributions)} distribution arrays")
    nll, hit, change = [], [], []
    for seq, dist in zip(sequences, distributions):
        seq = np.asarray(seq, dtype=np.int64).reshape(-1)
        dist = np.asarray(dist, dtype=np.float64)
        if dist.shape[:1] != seq.shape or dist.ndim != 2:
            raise ValueError(f"a piece of {len(seq)} events needs ({len(seq)}, A) distributions; got {dist.shape}")
        with np.errstate(divide="ignore"):
            nll.append(-np.log(dist[np.arange(len(seq)), seq]))
        hit.append(dist.argmax(axis=1) == seq)
        change.append(np.r_[True, seq[1:] != seq[:-1]][: len(seq)])  # the first event is a change
    nll_all, hit_all, change_all = (np.concatenate(x) if x else np.zeros(0) for x in (nll, hit, change))
    change_all = change_all.astype(bool)
    out: dict[str, float | int] = {}
    for prefix, keep in (("", np.ones(len(nll_all), bool)), ("evt_", change_all)):
        n = int(keep.sum())
        nats = float(nll_all[keep].mean()) if n else None
        out |= {f"{prefix}nll_nats": nats, f"{prefix}nll_bits": nats / float(np.log(2)) if n else None,
                f"{prefix}precision": float(hit_all[keep].mean()) if n else None, f"{prefix}events": n}
    return out


def fold_of(n_pieces: int, k: int) -> np.ndarray:
    """The fold of every piece: piece i goes to fold i mod k."""
    if isinstance(k, bool) or not isinstance(k, int) or not 2 <= k <= n_pieces:
        raise ValueError(f"k must be an int between 2 and the number of pieces ({n_pieces}); got {k!r}")
    return np.arange(n_pieces) % k


@dataclass(frozen=True)
class Evaluation:
    """Per-event results for a list of pieces.

    piece: index of each piece in the corpus (P,); symbols, probability, entropy: one array
    per piece; components: each component model's p(event), by name; fold: each piece's fold;
    columns: more per-event columns for the table (e.g. the MIDI pitch), by name.
    """

    piece: np.ndarray
    symbols: list[np.ndarray]
    probability: list[np.ndarray]
    entropy: list[np.ndarray]
    components: dict[str, list[np.ndarray]] = field(default_factory=dict)
    fold: np.ndarray | None = None
    columns: dict[str, list[np.ndarray]] = field(default_factory=dict)

    @property
    def information_content(self) -> list[np.ndarray]:
        return [information_content(p) for p in self.probability]

    def ic_per_piece(self) -> np.ndarray:
        """Mean information content of each piece with at least one event (bits/event)."""
        return np.array([ic.mean() for ic in self.information_content if len(ic)])

    def mean_ic(self) -> float:
        """Mean IC per piece, then over pieces (IDyOM's figure), in bits per event."""
        return float(self.ic_per_piece().mean())

    def mean_ic_per_event(self) -> float:
        """Mean IC over all events pooled, in bits per event."""
        return float(np.concatenate(self.information_content).mean())

    def mean_entropy(self) -> float:
        """Mean entropy of the predictions per piece, then over pieces, in bits."""
        return float(np.mean([h.mean() for h in self.entropy if len(h)]))

    def summary(self) -> dict[str, float | int]:
        return {"pieces": len(self.piece), "events": int(sum(len(s) for s in self.symbols)),
                "mean_ic": self.mean_ic(), "mean_ic_per_event": self.mean_ic_per_event(),
                "mean_entropy": self.mean_entropy()}

    def table(self) -> list[dict[str, Any]]:
        """One row per event: piece, position, symbol, <columns>, ic, entropy, probability,
        fold, p_<model>."""
        rows = []
        for j, piece in enumerate(self.piece):
            ic = information_content(self.probability[j])
            for i, symbol in enumerate(self.symbols[j]):
                row = {"piece": int(piece), "position": i, "symbol": int(symbol)}
                for name, values in self.columns.items():
                    value = values[j][i]
                    row[name] = value.item() if isinstance(value, np.generic) else value
                row.update({"ic": float(ic[i]), "entropy": float(self.entropy[j][i]),
                            "probability": float(self.probability[j][i])})
                if self.fold is not None:
                    row["fold"] = int(self.fold[j])
                for name, probability in self.components.items():
                    row[f"p_{name}"] = float(probability[j][i])
                rows.append(row)
        return rows

    def write_csv(self, path: str | Path, *, force: bool = False) -> Path:
        """Write `table` as CSV (a header line, then one line per event), atomically; an
        existing file is replaced only with ``force`` (else `OutputExistsError`)."""
        rows = self.table()
        names = list(rows[0]) if rows else ["piece", "position", "symbol", "ic", "entropy", "probability"]
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return atomic_write_text(path, text.getvalue(), force=force)


def evaluate(model: SequenceModel, sequences: Sequence[Sequence[int]], *,
             piece: Sequence[int] | None = None) -> Evaluation:
    """Predict every event of ``sequences`` (in order) and collect IC, entropy and probabilities.

    ``piece`` gives the pieces' indices in the corpus (default 0..P-1).
    """
    symbols = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
    components: dict[str, list[np.ndarray]] = {}
    if callable(getattr(model, "component_distributions", None)):
        parts = model.component_distributions(sequences)
        dists = model.combine_pieces(parts)
        components = {name: [d[np.arange(len(s)), s] for d, s in zip(ds, symbols, strict=True)]
                      for name, ds in parts.items()}
    else:
        dists = predict_distributions(model, sequences)
    return Evaluation(
        piece=np.arange(len(symbols)) if piece is None else np.asarray(piece, dtype=np.int64),
        symbols=symbols,
        probability=[d[np.arange(len(s)), s] for d, s in zip(dists, symbols, strict=True)],
        entropy=[entropy(d) for d in dists],
        components=components,
    )


def cross_validate(build: Callable[[list], SequenceModel],
                   sequences: Sequence[Sequence[int]], *, k: int = 10) -> Evaluation:
    """k-fold cross-validation: ``build(training_pieces)`` returns a model ready to predict.

    Piece i is in fold i mod k; each fold's pieces are predicted in corpus order by one model
    built from the other folds (so an online model such as an LTM+ carries what it learns from
    one test piece into the next, as IDyOM does). Results come back in corpus order.
    """
    items = list(sequences)
    folds = fold_of(len(items), k)
    parts = []
    for f in range(k):
        test = np.flatnonzero(folds == f)
        model = build([items[i] for i in np.flatnonzero(folds != f)])
        parts.append(evaluate(model, [items[i] for i in test], piece=test))
    order = np.argsort(np.concatenate([p.piece for p in parts]), kind="stable")

    def merge(lists: list[list[np.ndarray]]) -> list[np.ndarray]:
        flat = [x for part in lists for x in part]
        return [flat[i] for i in order]

    return Evaluation(
        piece=np.concatenate([p.piece for p in parts])[order],
        symbols=merge([p.symbols for p in parts]),
        probability=merge([p.probability for p in parts]),
        entropy=merge([p.entropy for p in parts]),
        components={name: merge([p.components[name] for p in parts]) for name in parts[0].components},
        fold=folds[np.concatenate([p.piece for p in parts])[order]],
    )
