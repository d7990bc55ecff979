"""Velocity prediction: the figures, the baselines, and the predictions behind them.

Figures (`velocity_figures`), over every note of every piece (REFERENCE §4):

- ``mae_teacher_forced``: mean |argmax - true velocity| of the teacher-forced predictions, each
  note given the true velocities before it in its window: midi-translation's "val_dist"
  (``utils.py`` ``calculate_average_distance``). The original averages per batch of windows;
  we average per note (the same up to the last, smaller batch).
- ``mae_greedy``: the same for free-running greedy decoding (each window decoded from CLS on
  its own predictions; what the original's inference does, and `notelm humanize --greedy`).
- ``mae_expected``: of the mean velocity of each teacher-forced distribution.
- ``pearson``: the mean over pieces of the correlation between the greedy velocities and the
  true ones (0 for a piece whose prediction is constant: it captures no variation).
- ``std_ratio``: the mean over pieces of std(greedy) / std(true): 1.0 is as lively as the
  pianist, 0 is flat (T5's failure in the seed's comparison).

Baselines (`Baselines`), fitted on the training split: the training mean (a constant), the mean
velocity of each pitch, and, when the source carries a velocity bin, the median training
velocity of each bin. For a baseline every MAE key holds its MAE.

Every note is predicted: pieces are read in overlapping windows and each note's prediction is
taken from the window where it has the most context (`notelm.models.seq2seq.window_plan`).

Legend: P pieces, n notes of a piece, V the 128 velocities.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from notelm.encodings.vocab import N_SPECIAL

FIGURES = ("mae_teacher_forced", "mae_greedy", "mae_expected", "pearson", "std_ratio")


def _std(a: np.ndarray) -> float:
    return 0.0 if np.ptp(a) == 0 else float(a.std())  # exactly 0 for a constant (no rounding residue)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 2 or _std(a) == 0 or _std(b) == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def velocity_figures(true: Sequence[np.ndarray], *, argmax: Sequence[np.ndarray], expected: Sequence[np.ndarray],
                     greedy: Sequence[np.ndarray]) -> dict[str, float]:
    """The figures of the module docstring from per-piece velocity arrays (n,) each."""
    t = np.concatenate(true).astype(np.float64)
    mae = {name: float(np.abs(np.concatenate(pred).astype(np.float64) - t).mean())
           for name, pred in (("mae_teacher_forced", argmax), ("mae_greedy", greedy), ("mae_expected", expected))}
    pieces = [(np.asarray(g, dtype=np.float64), np.asarray(v, dtype=np.float64)) for g, v in zip(greedy, true)]
    pieces = [(g, v) for g, v in pieces if len(v) > 1 and _std(v) > 0]
    return {**mae,
            "pearson": float(np.mean([_pearson(g, v) for g, v in pieces])) if pieces else 0.0,
            "std_ratio": float(np.mean([_std(g) / _std(v) for g, v in pieces])) if pieces else 0.0,
            "notes": int(len(t)), "pieces": len(true)}


# ---- a model's predictions ---------------------------------------------------------------------------


def teacher_forced(model: Any, sources: Sequence[np.ndarray], targets: Sequence[np.ndarray], *,
                   batch_size: int = 64, progress: Any = None) -> dict[str, list[np.ndarray]]:
    """Per piece: the ``argmax``, ``expected`` and ``median`` velocity of each teacher-forced
    distribution of a `VelocityModel` (softmax over the 128 velocities only)."""
    import torch

    out: dict[str, list[np.ndarray]] = {"argmax": [], "expected": [], "median": []}
    values = torch.arange(128, dtype=torch.float64)
    for z in model.logits(sources, targets, batch_size=batch_size, progress=progress):
        p = torch.softmax(z[:, N_SPECIAL: N_SPECIAL + 128].double(), -1)
        out["argmax"].append(p.argmax(-1).numpy())
        out["expected"].append((p * values).sum(-1).numpy())
        out["median"].append((p.cumsum(-1) < 0.5).sum(-1).numpy())  # the first velocity reaching half
    return out


def model_predictions(model: Any, sources: Sequence[np.ndarray], targets: Sequence[np.ndarray], *,
                      batch_size: int = 64, progress: Any = None) -> dict[str, list[np.ndarray]]:
    """Per piece: true velocities, the `teacher_forced` readings and ``greedy`` velocities, from
    a `VelocityModel` (its batched teacher-forced and greedy paths)."""
    out = {"true": [np.asarray(t) - N_SPECIAL for t in targets],
           **teacher_forced(model, sources, targets, batch_size=batch_size, progress=progress), "greedy": []}
    for z in model.logits(sources, None, batch_size=batch_size, progress=progress):
        out["greedy"].append(z[:, N_SPECIAL: N_SPECIAL + 128].argmax(-1).numpy())
    return out


def evaluate_velocity(model: Any, sources: Sequence[np.ndarray], targets: Sequence[np.ndarray],
                      **options: Any) -> dict[str, float]:
    """`velocity_figures` of a `VelocityModel` on (source, target) content ids of whole pieces."""
    p = model_predictions(model, sources, targets, **options)
    return velocity_figures(p["true"], argmax=p["argmax"], expected=p["expected"], greedy=p["greedy"])


# ---- baselines ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Baselines:
    """Velocity baselines fitted on training notes: ``mean`` (float), ``pitch_mean`` (128,:
    a pitch never seen gets the mean), ``bin_median`` ((bins,), or None without velocity bins)."""

    mean: float
    pitch_mean: np.ndarray
    bin_median: np.ndarray | None

    @classmethod
    def fit(cls, encoding: Any, sources: Sequence[np.ndarray], targets: Sequence[np.ndarray]) -> Baselines:
        pitch, vbin = _unpack(encoding, sources)
        vel = np.concatenate([np.asarray(t) - N_SPECIAL for t in targets]).astype(np.float64)
        mean = float(vel.mean())
        total = np.bincount(pitch, weights=vel, minlength=128)
        count = np.bincount(pitch, minlength=128)
        pitch_mean = np.where(count > 0, total / np.maximum(count, 1), mean)
        median = None
        if encoding.config.velocity_bins > 0:
            median = np.array([np.median(vel[vbin == b]) if (vbin == b).any() else mean
                               for b in range(encoding.config.velocity_bins)])
        return cls(mean, pitch_mean, median)

    def names(self) -> list[str]:
        return ["mean", "pitch-mean"] + (["bin-median"] if self.bin_median is not None else [])

    def predict(self, name: str, encoding: Any, source: np.ndarray) -> np.ndarray:
        """Velocities (n,) of baseline ``name`` for one piece's source ids."""
        pitch, vbin = _unpack(encoding, [source])
        if name == "mean":
            return np.full(len(pitch), self.mean)
        if name == "pitch-mean":
            return self.pitch_mean[pitch]
        if name == "bin-median" and self.bin_median is not None:
            return self.bin_median[vbin]
        raise ValueError(f"unknown baseline {name!r}; baselines: {', '.join(self.names())}")

    def figures(self, name: str, encoding: Any, sources: Sequence[np.ndarray],
                targets: Sequence[np.ndarray]) -> dict[str, float]:
        """`velocity_figures` of a baseline: its one prediction stands for all three MAEs."""
        pred = [self.predict(name, encoding, s) for s in sources]
        true = [np.asarray(t) - N_SPECIAL for t in targets]
        return velocity_figures(true, argmax=pred, expected=pred, greedy=pred)


def _unpack(encoding: Any, sources: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pitch and velocity bin (n,) of every note of the sources, concatenated."""
    pitch, bins = encoding.unpack(np.concatenate([np.asarray(s, dtype=np.int64) for s in sources]))
    return pitch.astype(np.int64), bins[:, 2].astype(np.int64)


def pairs(encoding: Any, pieces: Sequence[Any]) -> tuple[list[np.ndarray], list[np.ndarray], list[int]]:
    """Source and target content ids of every piece the encoding can represent, and the
    indices of those pieces (the others are skipped: no notes, or not representable)."""
    from notelm.encodings.base import EncodingError

    sources, targets, kept = [], [], []
    for i, piece in enumerate(pieces):
        try:
            s, t = encoding.encode_pair(piece)
        except EncodingError:
            continue
        if len(s):
            sources.append(s)
            targets.append(t)
            kept.append(i)
    return sources, targets, kept


# ---- a velocity run on a corpus split (`notelm evaluate`) ---------------------------------------------


def run_baselines(run: Any) -> Baselines | None:
    """The baselines of a velocity run, fitted on the training split it was trained on: stored
    in its metrics.json (``velocity_baselines``, as the built-in models carry them) or fitted
    now from its encoded training data (``data/``); None when it has neither."""
    from notelm.training.data import PairArray

    stored = run.metrics.get("velocity_baselines")
    if isinstance(stored, dict):
        median = stored.get("bin_median")
        return Baselines(float(stored["mean"]), np.asarray(stored["pitch_mean"], dtype=np.float64),
                         None if median is None else np.asarray(median, dtype=np.float64))
    if not (run.path / "data" / "train-source.npy").is_file():
        return None
    data = PairArray(run.path / "data", "train")
    pieces = [data.piece(i) for i in range(len(data))]
    return Baselines.fit(run.encoding(), [s for s, _ in pieces], [t for _, t in pieces])


def baselines_dict(base: Baselines) -> dict[str, Any]:
    """JSON form of fitted baselines (for a run's metrics.json)."""
    return {"mean": base.mean, "pitch_mean": base.pitch_mean.tolist(),
            "bin_median": None if base.bin_median is None else base.bin_median.tolist()}


def evaluate_velocity_run(run: str | Any, *, corpus: str, root: Any = None, split: str = "test",
                          progress: Any = None, notes_per_piece: int | None = None) -> dict[str, Any]:
    """The figures of a velocity run and of its baselines on a corpus split: a JSON-ready dict
    whose ``rows`` hold one row per model (the run first), each with the `FIGURES`.
    ``notes_per_piece``: only the first so many notes of each piece (a quick look)."""
    import torch

    from notelm.corpora import load_corpus
    from notelm.runs import open_run

    r = open_run(run) if not hasattr(run, "config") else run
    encoding = r.encoding()
    model = r.model(dtype=torch.float32)
    c = load_corpus(corpus, root)
    pieces = c.split(split)
    sources, targets, kept = pairs(encoding, pieces)
    if notes_per_piece:
        sources, targets = [s[:notes_per_piece] for s in sources], [t[:notes_per_piece] for t in targets]
    if not sources:
        from notelm.errors import NotelmError

        raise NotelmError(f"{corpus} {split}: no piece the run's encoding can represent")
    variant = "velocity-bins" if encoding.config.velocity_bins > 0 else "no-velocity"
    figures = evaluate_velocity(model, sources, targets, progress=progress)
    rows = [{"model": r.name, **{k: figures[k] for k in FIGURES}}]
    base = run_baselines(r)
    for name in base.names() if base is not None else []:
        f = base.figures(name, encoding, sources, targets)
        rows.append({"model": name, **{k: f[k] for k in FIGURES}})
    return {"run": str(r.path), "model": r.model_name, "preset": r.config["model"].get("preset"),
            "encoding": encoding.name, "variant": variant, "corpus": corpus, "split": split,
            "pieces": len(sources), "skipped": len(pieces) - len(kept), "notes": figures["notes"],
            "rows": rows, "baselines": "fitted on the run's training split" if base is not None else
            "none (the run carries neither its training data nor stored baselines)",
            "parameters": r.metrics.get("parameters"), "train_seconds": r.metrics.get("train_seconds"),
            "global_step": r.metrics.get("global_step"), "best_step": r.metrics.get("best_step")}
