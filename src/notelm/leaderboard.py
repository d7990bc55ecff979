"""Trained runs on a corpus split: `evaluate_run` (bits per event and accuracy through the
same `notelm.evaluation.evaluate` that PPM goes through) and `compare_runs` (a leaderboard,
with a bar chart). Runs of neural and of counting models (ppm, markov, repetition) are read and
scored alike: each model predicts over its encoding's whole vocabulary (`notelm.runs`).

Bits per event are comparable only between runs of the same encoding: an event of the grid
encoding is a 16th-note step, of the melody encoding a note. Every row says its encoding and
unit, and the chart groups by encoding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from notelm.errors import NotelmError
from notelm.evaluation import by_position, evaluate, frame_metrics
from notelm.models.base import SequenceModel

BUCKET = 256  # events per bucket of `evaluate_run`'s loss by position within the piece


class NothingToScoreError(NotelmError):
    """A split with no events the run's encoding can write, or a model whose figures are not numbers."""


class _Given(SequenceModel):
    """Distributions computed already, handed to `evaluate` through its fast path."""

    def __init__(self, distributions: list[np.ndarray], alphabet_size: int) -> None:
        self._d, self.alphabet_size = distributions, alphabet_size

    def distributions(self, sequences):
        return self._d

    def start(self, primer=()):  # pragma: no cover - evaluate uses the fast path
        raise NotImplementedError

    predict = observe = start


def evaluate_run(run: str | Path, *, corpus: str, root: str | Path | None = None, split: str = "test") -> dict:
    """Evaluate a run directory's model on a corpus split; a JSON-ready dict with
    ``bits_per_event`` (mean over all events), ``accuracy`` (argmax), ``events``; the same as
    ``nll_nats``/``nll_bits``/``precision`` and, only at events whose token differs from the one
    before, ``evt_nll_nats``/``evt_nll_bits``/``evt_precision``/``evt_events``; and more."""
    from notelm.corpora import load_corpus
    from notelm.runs import open_run
    from notelm.training.data import encode_pieces

    r = open_run(run)
    if r.kind == "seq2seq":  # velocities: MAE, correlation and spread against baselines
        from notelm.velocity import evaluate_velocity_run

        return evaluate_velocity_run(r, corpus=corpus, root=root, split=split)
    encoding = r.encoding()
    model = r.model()
    c = load_corpus(corpus, root)
    pieces = c.split(split)
    if c.spec.melodic:
        pieces = [p.melody() for p in pieces]
    sequences, skipped = encode_pieces(encoding, pieces)
    events = int(sum(len(s) for s in sequences))
    if not events:
        raise NothingToScoreError(_nothing_to_score(run, corpus, split, len(pieces), skipped, encoding.name))
    dists = model.distributions(sequences)
    ev = evaluate(_Given(dists, model.alphabet_size), sequences)
    correct = sum(int((d.argmax(axis=1) == s).sum()) for d, s in zip(dists, sequences))
    if not math.isfinite(ev.mean_ic_per_event()):
        raise NothingToScoreError(f"{run}: its model gives {ev.mean_ic_per_event()} bits per event on {corpus} "
                                  f"{split}: its predictions are not probabilities (damaged weights or counts?)")
    return {
        "run": str(r.path), "model": r.model_name, "kind": r.kind, "description": r.spec.description,
        "preset": r.config["model"].get("preset"),
        "mode": r.config["model"]["config"].get("mode"),  # a PPM's: ltm, ltm+, stm, both, both+
        "encoding": encoding.name, "unit": f"bits per {encoding.name} token",
        "corpus": corpus, "split": split, "pieces": len(sequences), "skipped": dict(skipped),
        "events": events,
        "bits_per_event": ev.mean_ic_per_event(),
        "mean_ic_per_piece": ev.mean_ic(),
        "mean_entropy": ev.mean_entropy(),
        "accuracy": correct / events,
        # the same in nats, and only where the token changes (the DSTM paper's "EVT" figures)
        **{k: v for k, v in frame_metrics(sequences, dists).items() if k != "events"},
        "parameters": r.metrics.get("parameters"), "counts": r.metrics.get("counts"),
        "train_seconds": r.metrics.get("train_seconds"),
        "global_step": r.metrics.get("global_step"),
        # loss by position within the piece (does a model with memory predict better late?)
        "by_position": by_position(ev.information_content, BUCKET) if events else None,
    }


def _nothing_to_score(run, corpus: str, split: str, pieces: int, skipped, encoding: str) -> str:
    if not pieces:
        return f"{run}: nothing to score: {corpus} has no pieces in its {split} split"
    reasons = "; ".join(f"{reason}: {n}" for reason, n in dict(skipped).items()) or "no events in them"
    return (f"{run}: nothing to score: the {pieces} pieces of {corpus} {split} cannot be written in this "
            f"run's {encoding} encoding ({reasons})")


def compare_runs(runs: Sequence[str | Path], *, corpus: str, root: str | Path | None = None,
                 split: str = "test", progress: Callable[[int, int], None] | None = None) -> list[dict]:
    """`evaluate_run` for every run, best (fewest bits per event) first within each encoding.
    ``progress(done, total)`` is called after each run. A velocity run is refused: it is scored
    by MAE (`notelm evaluate`), not bits per event."""
    from notelm.runs import open_run

    for run in runs:
        if open_run(run).kind == "seq2seq":
            raise NotelmError(f"{run}: a velocity run is scored by MAE, not bits per event; "
                              "notelm evaluate shows it beside its baselines")
    rows = []
    for i, r in enumerate(runs):
        rows.append(evaluate_run(r, corpus=corpus, root=root, split=split))
        if progress:
            progress(i + 1, len(runs))
    return sorted(rows, key=lambda r: (r["encoding"], r["bits_per_event"]))


def plot_leaderboard(rows: Sequence[dict], path: str | Path, *, title: str = "", force: bool = False) -> Path:
    """A horizontal bar chart of bits per event, one bar per row, labelled with its encoding;
    an existing file is replaced only with ``force``."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from notelm.io.files import atomic_write_bytes, check_output

    check_output(path, force=force)
    labels = [f"{Path(r['run']).name} ({r['model']}, {r['encoding']})" for r in rows]
    values = [r["bits_per_event"] for r in rows]
    encodings = sorted({r["encoding"] for r in rows})
    colors = [plt.cm.tab10(encodings.index(r["encoding"]) % 10) for r in rows]
    fig, ax = plt.subplots(figsize=(8, 1 + 0.45 * len(rows)), dpi=100)
    ax.barh(range(len(rows)), values, color=colors)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.3f}", va="center")
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    ax.set_xlabel("bits per event (of each row's encoding; lower is better)")
    ax.set_title(title or "leaderboard")
    ax.set_xlim(0, max(values + [1.0]) * 1.2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue(), force=force)
