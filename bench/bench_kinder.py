"""Issue 15: neural long-term models with IDyOM's short-term models on Pearce 2005's Dataset 7
(``essen-kinder``: 213 melodies, 8,393 notes), leak-free. Bits per note of pitch, as IDyOM's.

- The neural long-term models (``--ltm NAME=RUN``) were trained on ``essen-without-kinder``:
  the rest of Essen without the kinder songs and without any copy of one (same normalised
  title, same opening 16 intervals, or joined to one through other pieces: `corpora.drop_copies`),
  so they predict all 213 melodies; a model's prediction of each note's pitch is its
  prediction at the note's pitch token, given the notes before it and nothing of the note
  itself (`notelm.models.pitch.RunPitchModel`), over kinder's 27-pitch alphabet as IDyOM's.
- IDyOM's rows keep their 10-fold cross-validation on kinder (piece i in fold i mod 10).
- Combinations are IDyOM's entropy-weighted means (arithmetic or geometric, bias b); the
  method and b of every neural row are chosen on the validation split of essen-without-kinder
  (829 melodies, none from kinder), where every component is computed the same way (the IDyOM
  LTM+ by 10-fold CV on those melodies), and never on kinder.
- ``--stm NAME=RUN``: a neural short-term model (a CCSTM retrained on the same note tokens; the
  frame CCSTM of bench/bench_dstm.py does not predict notes: its frames cannot tell a held
  note from a repeated one).

Writes ``bench/results/kinder.json`` (the rows) and ``bench/results/kinder-details.json``
(settings chosen, validation figures, per-position information content, per-melody figures,
the machine) and ``bench/results/kinder-analysis.png``.

    python bench/bench_kinder.py --ltm lstm=builtin:essen-melody-lstm --stm ccstm=runs/ccstm
    python bench/bench_kinder.py --ltm lstm=RUN --cache /tmp/kinder-cache   # reruns in seconds
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from notelm.benchmarks import machine
from notelm.corpora import load_corpus
from notelm.evaluation import fold_of
from notelm.idyom import build_system, run_idyom, run_pitch_model
from notelm.models.combine import CombineConfig, combine, tune_combination
from notelm.models.mvs import MultipleViewpointModel
from notelm.models.ppm import PPMConfig

HERE = Path(__file__).parent
VIEWPOINTS = "cpitch*dur,cpint,cpint*dur*ioi,cpitch"  # IDyOM's best system here (README)
VIEWPOINT_COMBINE = CombineConfig(method="geometric", bias=1.0)
IDYOM_BEST = {"models": "both+", "viewpoints": VIEWPOINTS, "combine": "geometric", "bias": 4.0,
              "viewpoint_combine": "geometric", "viewpoint_bias": 1.0}
C_STAR = PPMConfig(escape="c", update_exclusion=False)
CV_TRAINING = 192  # melodies an IDyOM LTM is trained on per fold (213 - 21; 191 for three folds)
IDYOM_ROWS = [  # (row, run_idyom settings), 10-fold CV on kinder
    ("IDyOM LTM C*I (Pearce 2005: 2.428)", {"models": "ltm", "ltm_config": C_STAR}),
    ("IDyOM STM C*I (Pearce 2005: 2.693)", {"models": "stm", "stm_config": C_STAR}),
    ("IDyOM LTM+ C*I with STM C*I, arithmetic b=2 (Pearce 2005: 2.106)",
     {"models": "both+", "ltm_config": C_STAR, "stm_config": C_STAR, "combine": "arithmetic", "bias": 2.0}),
    (f"IDyOM BOTH+, viewpoints {VIEWPOINTS}, b=4, viewpoint b=1 (IDyOM's best here)", IDYOM_BEST),
]


# ---- components: every model's distribution over pitch before every note --------------------


class Cache:
    """Components by name, kept in a folder between runs (``--cache``), or in memory only. A
    component is a list of arrays (one per melody) or a dict of such lists, stored as .npz and
    read back with ``allow_pickle=False``: nothing in the folder can run code."""

    def __init__(self, folder: Path | None) -> None:
        self.folder, self.memory = folder, {}
        if folder:
            folder.mkdir(parents=True, exist_ok=True)

    def get(self, key: str, compute):
        if key in self.memory:
            return self.memory[key]
        path = self.folder / f"{key}.npz" if self.folder else None
        if path and path.exists():
            value = _read_arrays(path)
        else:
            started = time.perf_counter()
            value = compute()
            print(f"  {key}: {time.perf_counter() - started:.1f} s", flush=True)
            if path:
                _write_arrays(path, value)
        self.memory[key] = value
        return value


def _write_arrays(path: Path, value) -> None:
    groups = value if isinstance(value, dict) else {"": value}
    arrays = {f"{name}::{i}": np.asarray(a) for name, items in groups.items() for i, a in enumerate(items)}
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)


def _read_arrays(path: Path):
    with np.load(path, allow_pickle=False) as z:
        groups: dict[str, dict[int, np.ndarray]] = {}
        for key in z.files:
            name, i = key.rsplit("::", 1)
            groups.setdefault(name, {})[int(i)] = z[key]
    lists = {name: [items[i] for i in sorted(items)] for name, items in groups.items()}
    return lists[""] if list(lists) == [""] else lists


def cv_distributions(build, melodies, k: int = 10):
    """Each melody's distributions from a model built on the other folds (piece i in fold i mod
    k, each fold's pieces predicted in order, as `notelm.evaluation.cross_validate` does)."""
    folds, out = fold_of(len(melodies), k), [None] * len(melodies)
    for f in range(k):
        test = np.flatnonzero(folds == f)
        model = build([m for m, g in zip(melodies, folds) if g != f])
        for i, d in zip(test, model.distributions([melodies[i] for i in test])):
            out[i] = d
    return out


def components(name: str, pieces, runs: dict[str, str], cache: Cache) -> dict[str, list[np.ndarray]]:
    """The distributions of every model on one set of melodies (``name``: valid or kinder)."""
    melodies, coders1 = build_system(pieces, "cpitch")
    _, coders = build_system(pieces, VIEWPOINTS)
    alphabets = coders1[0].alphabets

    def idyom(kind: str) -> MultipleViewpointModel:
        return MultipleViewpointModel(coders=coders, kind=kind, viewpoint_combine=VIEWPOINT_COMBINE)

    out = {"ids": [m.ids for m in melodies]}
    for tag, path in runs.items():
        out[tag] = cache.get(f"{name}-{tag}", lambda path=path: run_pitch_model(path, alphabets)[0].distributions(melodies))
    out["ppm-stm"] = cache.get(f"{name}-ppm-stm", lambda: MultipleViewpointModel(coders=coders1, kind="stm").distributions(melodies))
    out["idyom-stm"] = cache.get(f"{name}-idyom-stm", lambda: idyom("stm").distributions(melodies))
    out["idyom-ltm+"] = cache.get(f"{name}-idyom-ltm+", lambda: cv_distributions(lambda tr: idyom("ltm+").fit(tr), melodies))
    return out


def trained_elsewhere(pieces, train, cache: Cache, name: str) -> dict[str, list[np.ndarray]]:
    """IDyOM's LTM+ and STM (the best viewpoints) with the LTM trained on ``train`` (the
    neural models' training melodies) instead of by cross-validation on kinder."""
    melodies, coders = build_system(list(train) + list(pieces), VIEWPOINTS)
    test = melodies[len(train):]
    # over kinder's own pitch alphabet, as every other row (the union alphabet is larger)
    own = np.searchsorted(coders[0].alphabets.pitch, build_system(pieces, "cpitch")[1][0].alphabets.pitch)

    def compute():
        model = MultipleViewpointModel(coders=coders, kind="both+", viewpoint_combine=VIEWPOINT_COMBINE).fit(melodies[: len(train)])
        parts = model.component_distributions(test)
        return {name: [d[:, own] / d[:, own].sum(axis=1, keepdims=True) for d in parts[memory]]
                for name, memory in (("ltm+", "ltm"), ("stm", "stm"))}

    return cache.get(f"{name}-idyom-trained-on-rest", compute)


# ---- rows -------------------------------------------------------------------------------------


def figures(dists, ids) -> tuple[float, float]:
    per = [-np.log2(d[np.arange(len(i)), i]) for d, i in zip(dists, ids)]
    return float(np.mean([p.mean() for p in per])), float(np.concatenate(per).mean())


def combined(parts, config: CombineConfig):
    return [combine(list(ds), config) for ds in zip(*parts)]


def row(model: str, dists, ids, training: int, dropped: int | None) -> dict:
    per_piece, per_event = figures(dists, ids)
    return {"model": model, "bits_per_note_per_piece": round(per_piece, 4), "bits_per_note_per_event": round(per_event, 4),
            "training_melodies": training, "dropped_as_kinder_copies": dropped}


def per_position(dists, ids, upto: int = 64) -> list[float | None]:
    """Mean information content at note position 0..upto-1 over the melodies that long."""
    ic = [-np.log2(d[np.arange(len(i)), i]) for d, i in zip(dists, ids)]
    return [round(float(np.mean([x[p] for x in ic if len(x) > p])), 4) if any(len(x) > p for x in ic) else None
            for p in range(upto)]


def per_melody(dists, ids) -> list[float]:
    return [round(float(-np.log2(d[np.arange(len(i)), i]).mean()), 4) for d, i in zip(dists, ids)]


def plot(path: Path, curves: dict[str, list], scatter: dict[str, tuple[list, list]], variants: np.ndarray) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(scatter), figsize=(5 * (1 + len(scatter)), 4.5), dpi=100)
    for label, values in curves.items():
        axes[0].plot([v if v is not None else np.nan for v in values], label=label)
    axes[0].set(xlabel="note position in the melody", ylabel="mean information content (bits)",
                title="kinder: information content by position")
    axes[0].legend(fontsize=7)
    for ax, (title, (x, y)) in zip(axes[1:], scatter.items()):
        x, y = np.asarray(x), np.asarray(y)
        ax.scatter(x[~variants], y[~variants], s=10, label="melody")
        ax.scatter(x[variants], y[variants], s=14, c="red", label="a variant of it is in another kinder fold")
        top = max(x.max(), y.max()) * 1.05
        ax.plot([0, top], [0, top], c="grey", lw=0.8)
        ax.set(xlabel=title.split(" vs ")[1], ylabel=title.split(" vs ")[0], title="bits per note, per melody", xlim=(0, top), ylim=(0, top))
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ltm", action="append", default=[], metavar="NAME=RUN", help="a neural long-term run")
    parser.add_argument("--stm", action="append", default=[], metavar="NAME=RUN", help="a neural short-term run")
    parser.add_argument("--cache", type=Path, default=None, help="keep computed distributions here")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args(argv)
    ltms = dict(a.split("=", 1) for a in args.ltm)
    stms = dict(a.split("=", 1) for a in args.stm)
    if not ltms:
        parser.error("give at least one --ltm NAME=RUN")
    import torch

    torch.set_num_threads(1)
    cache = Cache(args.cache)
    rest = load_corpus("essen-without-kinder")
    valid, train = [p.melody() for p in rest.split("valid")], [p.melody() for p in rest.split("train")]
    kinder = load_corpus("essen-kinder").melodies()
    dropped = len(rest.excluded)
    runs = {**ltms, **stms}
    for path in runs.values():  # every run must have been trained without kinder
        run_pitch_model(path, build_system(kinder, "cpitch")[1][0].alphabets, "essen-kinder")
    print("components on the validation melodies and on kinder")
    V = components("valid", valid, runs, cache)
    K = components("kinder", kinder, runs, cache)
    ids = K["ids"]
    rows, details = [], {"chosen": {}, "idyom_commands": {}}

    print("IDyOM (10-fold CV on kinder)")
    for label, settings in IDYOM_ROWS:
        s = run_idyom(load_corpus("essen-kinder"), folds=10, **settings).summary()
        training = 0 if settings["models"] == "stm" else CV_TRAINING
        rows.append({"model": label, "bits_per_note_per_piece": round(s["mean_ic_per_piece"], 4),
                     "bits_per_note_per_event": round(s["mean_ic_per_event"], 4), "training_melodies": training,
                     "dropped_as_kinder_copies": 0 if training else None})
    best_idyom = combined([K["idyom-ltm+"], K["idyom-stm"]], CombineConfig("geometric", 4.0))
    assert abs(figures(best_idyom, ids)[0] - rows[-1]["bits_per_note_per_piece"]) < 1e-4, "components differ from run_idyom"
    rest_parts = trained_elsewhere(kinder, train, cache, "kinder")
    rows.append(row(f"IDyOM LTM+, viewpoints {VIEWPOINTS}, trained on essen-without-kinder (no CV)",
                    rest_parts["ltm+"], ids, len(train), dropped))
    rows.append(row(f"IDyOM BOTH+, viewpoints {VIEWPOINTS}, b=4, trained on essen-without-kinder (no CV)",
                    combined([rest_parts["ltm+"], rest_parts["stm"]], CombineConfig("geometric", 4.0)), ids, len(train), dropped))

    print("neural long-term models, combinations tuned on the validation melodies")
    partners = {"PPM STM (IDyOM's STM, cpitch)": ["ppm-stm"],
                f"IDyOM STM, viewpoints {VIEWPOINTS}": ["idyom-stm"],
                **{f"{s} (neural STM)": [s] for s in stms},
                f"IDyOM BOTH+ (LTM+ by 10-fold CV on kinder, and STM), viewpoints {VIEWPOINTS}": ["idyom-ltm+", "idyom-stm"]}
    best = None
    for tag in ltms:
        rows.append(row(f"{tag} (neural LTM) alone", K[tag], ids, len(train), dropped))
        for label, names in partners.items():
            config, score = tune_combination([V[tag]] + [V[n] for n in names], V["ids"])
            name = f"{tag} + {label}, {config.method} b={config.bias:g} (tuned on validation)"
            uses_cv = "idyom-ltm+" in names
            r = row(name, combined([K[tag]] + [K[n] for n in names], config), ids,
                    len(train) + (CV_TRAINING if uses_cv else 0), dropped)
            rows.append(r)
            details["chosen"][name] = {"method": config.method, "bias": config.bias, "validation_bits_per_note": round(score, 4)}
            if best is None or r["bits_per_note_per_piece"] < best[0]["bits_per_note_per_piece"]:
                best = (r, [tag] + names, config)
    if len(ltms) > 1:  # the neural models together, as IDyOM combines viewpoints
        tags = list(ltms)
        for label, names in {"": [], " + IDyOM BOTH+ (10-fold CV), viewpoints": ["idyom-ltm+", "idyom-stm"],
                             " + IDyOM STM, viewpoints": ["idyom-stm"]}.items():
            config, score = tune_combination([V[t] for t in tags] + [V[n] for n in names], V["ids"])
            name = f"{' + '.join(tags)}{label}, {config.method} b={config.bias:g} (tuned on validation)"
            r = row(name, combined([K[t] for t in tags] + [K[n] for n in names], config), ids,
                    len(train) + (CV_TRAINING if names and names[0] == "idyom-ltm+" else 0), dropped)
            rows.append(r)
            details["chosen"][name] = {"method": config.method, "bias": config.bias, "validation_bits_per_note": round(score, 4)}
            if r["bits_per_note_per_piece"] < best[0]["bits_per_note_per_piece"]:
                best = (r, tags + names, config)

    # where the long-term model loses: by position, and melody by melody against IDyOM
    from notelm.corpora import _tune_keys

    keys = _tune_keys(load_corpus("essen-kinder").melodies())
    variants = np.array([keys.count(k) > 1 for k in keys])
    tag = next(iter(ltms))
    best_dists = combined([K[n] for n in best[1]], best[2])
    curves = {f"{tag} alone": per_position(K[tag], ids), "IDyOM LTM+ (10-fold CV)": per_position(K["idyom-ltm+"], ids),
              "IDyOM BOTH+ (best IDyOM)": per_position(best_idyom, ids), f"best: {best[0]['model'][:40]}...": per_position(best_dists, ids)}
    melodies = {"neural_ltm": per_melody(K[tag], ids), "idyom_ltm+": per_melody(K["idyom-ltm+"], ids),
                "idyom_best": per_melody(best_idyom, ids), "best": per_melody(best_dists, ids),
                "has_variant_in_another_fold": variants.tolist()}
    args.out.mkdir(parents=True, exist_ok=True)
    plot(args.out / "kinder-analysis.png", curves,
         {f"{tag} alone vs IDyOM LTM+ (10-fold CV)": (melodies["idyom_ltm+"], melodies["neural_ltm"]),
          "best combination vs IDyOM's best": (melodies["idyom_best"], melodies["best"])}, variants)
    for k in ("neural_ltm", "idyom_ltm+", "idyom_best", "best"):
        v = np.array(melodies[k])
        details.setdefault("variants", {})[k] = {"with_variant": round(float(v[variants].mean()), 4),
                                                 "without": round(float(v[~variants].mean()), 4)}
    command = "python bench/bench_kinder.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    (args.out / "kinder.json").write_text(json.dumps({"rows": rows, "command": command}, indent=2) + "\n")
    details |= {"command": command, "best": best[0]["model"], "per_position": curves, "per_melody": melodies,
                "validation_melodies": len(valid), "dropped": rest.excluded, "machine": machine()}
    (args.out / "kinder-details.json").write_text(json.dumps(details, indent=2) + "\n")
    for r in rows:
        print(f"{r['bits_per_note_per_piece']:.4f}  {r['bits_per_note_per_event']:.4f}  {r['model']}")


if __name__ == "__main__":
    main()
