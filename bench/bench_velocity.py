"""The velocity table: midi-translation's model against T5 as the seed ran it, the ablation of
what made T5 fail, the trained velocity runs and the baselines (REFERENCE §4; issue 11).

Data: MAESTRO's own splits of ``../shared/data/maestro-mini`` (train 209, validation 24
performances), ``note-tokens`` fitted on the training split, sustain applied (pedal down at
CC64 >= 64, symusic's reading). Training windows: 128 notes, step 42, the tail dropped (as the
original trains); validation: every note of every validation piece, in windows of 128 notes 64
apart, each note from the window where it has the most context (`window_plan`).

Rows:

- ``ablation``: the same windows in the same order, the same number of optimiser steps, one
  process, one thread, for every row; widths ``ABLATION_WIDTHS`` for both T5 and ours (the
  compared width costs ~4 s a step on this CPU: 7 rows of it do not fit). T5 is
  ``bench/peers/t5.py`` (transformers' T5 from a config, one shared vocabulary, tied output).
  The CPU is shared by several people (a row gets about a third of a core), so the ablation is
  small: d 64, 2 + 2 layers, 1,500 steps, Noam's warmup 1,000.
  Ours is `notelm.models.seq2seq.Seq2Seq` trained by `train_ours`, the same loop as
  ``peers.t5.train_steps`` (Adam (0.9, 0.98, eps 1e-9) and Noam, or the seed's constant rate).
- ``runs``: run directories made by ``notelm train velocity`` (``bench/velocity_runs.sh``),
  evaluated here: the figures `notelm evaluate` prints.
- baselines: training mean, per-pitch mean, bin median, for each source variant.

    python bench/bench_velocity.py --row velocity-small-noam-ls   # one ablation row -> bench/results/velocity-rows/
    python bench/bench_velocity.py --table                        # bench/results/velocity.json from the rows
    python bench/bench_velocity.py --smoke                        # tiny sizes, writes nothing
    python bench/bench_velocity.py --gap runs/velocity-compared   # its training-split figures at its step
    python bench/bench_velocity.py --data-run runs/velocity-compared-half   # a run on fewer performances

Legend: b batch, n notes per window (128), v vocabulary.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from notelm.encodings.vocab import N_SPECIAL

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
ROOT = Path(os.environ.get("NOTELM_SHARED", HERE.parent.parent / "shared")) / "data" / "maestro-mini"
RESULTS = HERE / "results"
ROWS = RESULTS / "velocity-rows"
DATA_ROWS = RESULTS / "velocity-data"  # the reference row on fewer training performances
LONG_ROWS = RESULTS / "velocity-long"  # ablation rows run longer than the others, with their curves

WINDOW, STEP, EVAL_STRIDE, BATCH = 128, 42, 64, 16
ABLATION_STEPS = 1500
ABLATION_WIDTHS = {"dim": 64, "n_layers": 2, "n_heads": 4, "ff": 256}
ABLATION_WARMUP = 1000  # Noam's warmup for the ablation rows (4,000 would not end within the steps)
T5_WIDTHS = {"d_model": 64, "num_layers": 2, "num_heads": 4, "d_kv": 16, "d_ff": 256, "dropout_rate": 0.1}

# name -> (family, schedule, label smoothing, shared vocabulary)
ABLATION: dict[str, tuple[str, str, float, bool]] = {
    "t5-constant-ce": ("t5", "seed", 0.0, True),  # the seed's: constant 3e-6, plain cross-entropy
    "t5-noam-ce": ("t5", "noam", 0.0, True),
    "t5-noam-ls": ("t5", "noam-ls", 0.1, True),
    "velocity-ablation": ("ours", "noam", 0.1, False),  # midi-translation's recipe
    "velocity-constant-ls": ("ours", "constant", 0.1, False),  # ours + the seed's constant 3e-6
    "velocity-noam-ce": ("ours", "noam", 0.0, False),  # ours + plain cross-entropy
    "velocity-shared-vocab": ("ours", "noam", 0.1, True),  # ours + T5's shared, tied vocabulary
}
SEED_LR = 3e-6


# ---- data ----------------------------------------------------------------------------------------


def load(velocity_bins: int = 3, bins: tuple[int, int] = (3, 3), limit: int | None = None):
    """The fitted encoding, and (sources, targets) content ids per piece of train and valid."""
    from notelm.corpora import load_corpus
    from notelm.encodings import get_encoding
    from notelm.velocity import pairs

    corpus = load_corpus("maestro", ROOT)
    train, valid = corpus.split("train")[:limit], corpus.split("valid")[:limit]
    enc = get_encoding("note-tokens", dstart_bins=bins[0], duration_bins=bins[1], velocity_bins=velocity_bins)
    enc.fit(train)
    return enc, pairs(enc, train)[:2], pairs(enc, valid)[:2]


def training_windows(sources, targets) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every 128-note window, 42 notes apart (the tail dropped, as the original trains)."""
    return [(s[a: a + WINDOW], t[a: a + WINDOW]) for s, t in zip(sources, targets)
            for a in range(0, len(s) - WINDOW + 1, STEP)]


def batch_order(n_windows: int, steps: int, seed: int = 0) -> list[np.ndarray]:
    """Window indices of every batch: a new permutation each epoch (peers.t5.batches' rule)."""
    rng, out = np.random.default_rng(seed), []
    while len(out) < steps:
        order = rng.permutation(n_windows)
        out += [order[i: i + BATCH] for i in range(0, n_windows - BATCH + 1, BATCH)]
    return out[:steps]


def ours_batch(wins, idx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(source (b, 1 + n), target_in (b, n), target_out (b, n)): CLS first on both sides."""
    src = np.stack([np.r_[1, wins[i][0]] for i in idx])
    tgt = np.stack([np.r_[1, wins[i][1]] for i in idx])
    return torch.from_numpy(src), torch.from_numpy(tgt[:, :-1]), torch.from_numpy(tgt[:, 1:].copy())


# ---- training ------------------------------------------------------------------------------------


def noam(step: int, *, dim: int, warmup: int, factor: float = 1.0) -> float:
    """midi-translation's rate (utils.py learning_rate_schedule), steps from 1."""
    return factor * dim**-0.5 * min(step**-0.5, step * warmup**-1.5)


def train_ours(net, wins, order, *, schedule: str, smoothing: float, warmup: int, log=print,
               after=None) -> dict[str, Any]:
    """``len(order)`` optimiser steps of ours, as peers.t5.train_steps does T5's."""
    opt = torch.optim.Adam(net.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    rate = (lambda s: SEED_LR) if schedule == "constant" else (lambda s: noam(s, dim=net.config.dim, warmup=warmup))
    net.train()
    losses, t0 = [], time.perf_counter()
    for step, idx in enumerate(order, start=1):
        for g in opt.param_groups:
            g["lr"] = rate(step)
        source, target_in, target_out = ours_batch(wins, idx)
        logits = net(source, target_in)  # b n v
        loss = F.cross_entropy(logits.flatten(0, 1), target_out.flatten(), label_smoothing=smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if after is not None:
            after(step)
        losses.append(float(loss.detach()))
        if step % 100 == 0:
            log(f"step {step} loss {np.mean(losses[-100:]):.4f} lr {rate(step):.2e} {time.perf_counter() - t0:.0f}s")
    return {"losses": losses, "seconds": time.perf_counter() - t0}


def train_t5(model, wins, order, *, setting: str, warmup: int, log=print, after=None) -> dict[str, Any]:
    from peers import t5

    def batches():
        for idx in order:
            rows = [t5.to_t5(wins[i][0], wins[i][1]) for i in idx]
            yield torch.from_numpy(np.stack([r[0] for r in rows])), torch.from_numpy(np.stack([r[1] for r in rows]))

    overrides = {} if setting == "seed" else {"warmup": warmup}
    out = t5.train_steps(model, batches(), len(order), setting=setting, after=after, **overrides)
    for k in range(100, len(order) + 1, 100):
        log(f"step {k} loss {np.mean(out['losses'][k - 100: k]):.4f}")
    return out


# ---- evaluation ----------------------------------------------------------------------------------


def evaluate_ours(net, sources, targets) -> dict[str, float]:
    from notelm.models.seq2seq import VelocityModel
    from notelm.velocity import evaluate_velocity

    model = VelocityModel(net, stride=EVAL_STRIDE, dtype=torch.float32)
    return evaluate_velocity(model, sources, targets)


@torch.no_grad()
def t5_greedy(model, inputs: torch.Tensor, steps: int) -> np.ndarray:
    """Greedy velocities (b, steps) of T5 with its cache, restricted to the velocity ids."""
    from peers import t5

    enc = model.get_encoder()(input_ids=inputs)
    token = torch.full((inputs.shape[0], 1), t5.PAD, dtype=torch.long)  # T5's decoder start
    past, out = None, []
    for _ in range(steps):
        r = model(encoder_outputs=enc, decoder_input_ids=token, cache=past, use_cache=True)
        past = r.cache
        v = r.logits[:, -1, t5.VELOCITY0: t5.VELOCITY0 + 128].argmax(-1)
        out.append(v)
        token = (v + t5.VELOCITY0)[:, None]
    return torch.stack(out, 1).numpy()


def evaluate_t5(model, sources, targets) -> dict[str, float]:
    from notelm.models.seq2seq import window_plan
    from notelm.velocity import velocity_figures
    from peers import t5

    model.eval()
    preds = {k: [] for k in ("argmax", "expected", "greedy")}
    for s, t in zip(sources, targets):
        starts, owner = window_plan(len(s), WINDOW, EVAL_STRIDE)
        piece = {k: np.zeros(len(s)) for k in preds}
        for k in range(0, len(starts), 32):
            chunk = starts[k: k + 32]
            rows = [t5.to_t5(s[a: a + WINDOW], t[a: a + WINDOW]) for a in chunk]
            if len({len(r[0]) for r in rows}) > 1:  # only a piece shorter than a window differs
                raise ValueError("windows of unequal length")
            inputs = torch.from_numpy(np.stack([r[0] for r in rows]))
            labels = torch.from_numpy(np.stack([r[1] for r in rows]))
            p = t5.predict(model, inputs, labels)
            g = t5_greedy(model, inputs, inputs.shape[1] - 1)
            for r, a in enumerate(chunk):
                owned = np.flatnonzero(starts[owner] == a)
                piece["argmax"][owned] = p["argmax"][r, owned - a]
                piece["expected"][owned] = p["expected"][r, owned - a]
                piece["greedy"][owned] = g[r, owned - a]
        for k in preds:
            preds[k].append(piece[k])
    return velocity_figures([np.asarray(t) - N_SPECIAL for t in targets], **preds)


# ---- rows ----------------------------------------------------------------------------------------


def ablation_row(name: str, *, steps: int, limit: int | None = None, widths: dict | None = None,
                 t5_widths: dict | None = None, warmup: int = ABLATION_WARMUP, pieces_every: int = 1,
                 eval_every: int = 0, on_curve=None, log=print) -> dict[str, Any]:
    """Train and evaluate one ablation row (velocity-bins variant, 3/3/3 bins). pieces_every:
    train on every k-th training performance only (the data-size evidence). eval_every: also
    evaluate every so many steps, handing the curve so far to ``on_curve`` (a long run's
    learning curve, saved as it goes)."""
    from notelm.models.seq2seq import Seq2Seq, VelocityConfig

    family, setting, smoothing, shared = ABLATION[name]
    enc, (train_s, train_t), (valid_s, valid_t) = load(limit=limit)
    train_s, train_t = train_s[::pieces_every], train_t[::pieces_every]
    wins = training_windows(train_s, train_t)
    order = batch_order(len(wins), steps)
    torch.manual_seed(0)
    evaluate = evaluate_t5 if family == "t5" else evaluate_ours
    curve: list[dict[str, Any]] = []
    t0, evaluating = [0.0], [0.0]  # when training began; seconds spent on the curve's evaluations

    def after(step: int) -> None:
        if eval_every and step % eval_every == 0 and step < steps:
            e0 = time.perf_counter()
            trained_for = e0 - t0[0] - evaluating[0]
            with torch.random.fork_rng():  # evaluating draws nothing from the training's dropout stream
                point = evaluate(model, valid_s, valid_t)
            model.train()
            evaluating[0] += time.perf_counter() - e0
            curve.append({"steps": step, "train_seconds": round(trained_for, 1), **{k: point[k] for k in FIG}})
            log(f"step {step}: {json.dumps(curve[-1])}")
            if on_curve is not None:
                on_curve(curve)

    if family == "t5":
        from peers import t5

        model = t5.build(len(enc.vocab), seed=0, **(t5_widths or T5_WIDTHS))
        t0[0] = time.perf_counter()
        trained = train_t5(model, wins, order, setting=setting, warmup=warmup, log=log, after=after)
    else:
        cfg = VelocityConfig(vocab_size=len(enc.vocab), shared_vocab=shared, **(widths or ABLATION_WIDTHS))
        model = Seq2Seq(cfg)
        t0[0] = time.perf_counter()
        trained = train_ours(model, wins, order, schedule="constant" if setting == "constant" else "noam",
                             smoothing=smoothing, warmup=warmup, log=log, after=after)
    trained["seconds"] -= evaluating[0]
    figures = evaluate(model, valid_s, valid_t)
    curve.append({"steps": steps, "train_seconds": round(trained["seconds"], 1), **{k: figures[k] for k in FIG}})
    return {"model": name, "variant": "velocity-bins", "split": "valid",
            **{k: figures[k] for k in ("mae_teacher_forced", "mae_greedy", "mae_expected", "pearson", "std_ratio")},
            "steps": steps, "train_seconds": round(trained["seconds"], 1),
            "detail": {"family": family, "setting": setting, "label_smoothing": smoothing, "shared_vocab": shared,
                       "widths": (t5_widths or T5_WIDTHS) if family == "t5" else (widths or ABLATION_WIDTHS),
                       "warmup": warmup, "parameters": sum(p.numel() for p in model.parameters()),
                       "training_pieces": len(train_s), "epochs": round(steps * BATCH / len(wins), 2),
                       "windows": len(wins), "notes": figures["notes"], "pieces": figures["pieces"],
                       **({"learning_curve": curve} if eval_every else {}),
                       "loss_curve": [round(float(np.mean(trained["losses"][k: k + 100])), 4)
                                      for k in range(0, len(trained["losses"]), 100)]}}


def baseline_rows() -> list[dict[str, Any]]:
    from notelm.velocity import Baselines

    rows = []
    for variant, vbins in (("velocity-bins", 3), ("no-velocity", 0)):
        enc, (ts, tt), (vs, vt) = load(velocity_bins=vbins)
        base = Baselines.fit(enc, ts, tt)
        for name in base.names():
            f = base.figures(name, enc, vs, vt)
            rows.append({"model": name, "variant": variant, "split": "valid",
                         **{k: f[k] for k in ("mae_teacher_forced", "mae_greedy", "mae_expected", "pearson", "std_ratio")},
                         "steps": 0, "train_seconds": 0.0})
    return rows


FIG = ("mae_teacher_forced", "mae_greedy", "mae_expected", "pearson", "std_ratio")
CURVE = RESULTS / "velocity-curve"  # notelm evaluate on the compared run after each stretch
PRETRAINED = HERE.parent / "src" / "notelm" / "pretrained"


def runs_rows() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Rows of the trained runs (the compared run's last evaluation, the two built-ins) and the
    compared run's learning curve."""
    rows, curve = [], []
    for path in sorted(CURVE.glob("compared-*.json"), key=lambda p: int(p.stem.split("-")[1])):
        r = json.loads(path.read_text())
        curve.append({"steps": r["global_step"], "weights_step": r.get("best_step"),  # None: not recorded then
                      "train_seconds": r["train_seconds"], **{k: r["rows"][0][k] for k in FIG}})
    if curve:
        rows.append({"model": "velocity-compared", "variant": "velocity-bins", "split": "valid",
                     **{k: curve[-1][k] for k in FIG}, "steps": curve[-1]["steps"],
                     "train_seconds": round(curve[-1]["train_seconds"], 1)})
    for name in ("velocity", "velocity-3bin"):
        folder = PRETRAINED / name
        if not (folder / "evaluation.json").is_file():
            continue
        ev, m = json.loads((folder / "evaluation.json").read_text()), json.loads((folder / "metrics.json").read_text())
        rows.append({"model": "velocity-small", "variant": ev["variant"], "split": "valid",
                     **{k: ev["figures"][0][k] for k in FIG}, "steps": m["global_step"],
                     "train_seconds": round(m["train_seconds"], 1)})
    return rows, curve


def original_loss(model, sources, targets) -> dict[str, float]:
    """A model's validation loss in midi-translation's units beside our plain NLL, per note,
    teacher-forced: its criterion (the Annotated Transformer's LabelSmoothing: KL divergence,
    summed, over the ``tgt_vocab_size`` 129 = CLS + 128 velocities, the CLS column zeroed)
    puts 0.9 on the true velocity and 0.1 / 127 on each other one, so it is
    KL(q || p) = sum_c q_c (log q_c - log p_c) with p over the 128 velocities. Its 2.486 is this
    averaged over batches of windows (REFERENCE §4)."""
    import math

    q_rest, q_true = 0.1 / 127, 0.9
    entropy = -(q_true * math.log(q_true) + 127 * q_rest * math.log(q_rest))  # sum_c q_c log q_c = -entropy
    kl, nll, n = 0.0, 0.0, 0
    for z, t in zip(model.logits(sources, targets), targets):
        logp = torch.log_softmax(z[:, N_SPECIAL: N_SPECIAL + 128].double(), -1)  # n 128
        true = torch.as_tensor(np.asarray(t) - N_SPECIAL)
        lp_true = logp.gather(1, true[:, None]).squeeze(1)
        cross = q_true * -lp_true + q_rest * -(logp.sum(-1) - lp_true)
        kl += float((cross - entropy).sum())
        nll += float(-lp_true.sum())
        n += len(true)
    return {"original_loss": kl / n, "nll": nll / n, "notes": n}


@functools.cache
def valid_evaluation(run_path: Path) -> dict[str, Any]:
    """A run's `evaluate_velocity_run` on maestro-mini's validation split, once per run however
    many rows (--gap, --data-run) ask for it."""
    from notelm.velocity import evaluate_velocity_run

    return evaluate_velocity_run(run_path, corpus="maestro", root=ROOT, split="valid")


def train_gap(run: str, every: int) -> dict[str, Any]:
    """A run's figures on every ``every``-th of its own training performances (the ones stored
    in its ``data/``) beside its validation figures at the same step (its curve file, or
    evaluated now): how much better it does on the performances it was trained on than on new
    ones. A gap that widens as training goes on says the data, not the steps, is what limits it."""
    from notelm.runs import open_run
    from notelm.training.data import PairArray
    from notelm.velocity import evaluate_velocity

    r = open_run(run)
    step = r.metrics["global_step"]
    curve = CURVE / f"compared-{step}.json"  # the compared run's validation figures at this step
    saved = json.loads(curve.read_text()) if curve.is_file() else {}
    if (HERE.parent / saved.get("run", "-")).resolve() == r.path.resolve():
        valid_row = saved["rows"][0]
    else:
        valid_row = valid_evaluation(r.path.resolve())["rows"][0]
    data = PairArray(r.path / "data", "train")
    sources, targets = zip(*(data.piece(i) for i in range(0, len(data), every)))
    t0 = time.perf_counter()
    train = evaluate_velocity(r.model(dtype=torch.float32), list(sources), list(targets))
    return {"run": run, "steps": step, "best_step": r.metrics.get("best_step"), "every": every,
            "training_pieces": len(data), "seconds": round(time.perf_counter() - t0, 1),
            "train": {"pieces": len(sources), **{k: train[k] for k in (*FIG, "notes")}},
            "valid": {k: valid_row[k] for k in FIG}}


def data_run_row(run: str) -> dict[str, Any]:
    """A data-size row from a run made by ``notelm train velocity`` on a subset of maestro-mini's
    training performances (``--root`` a copy holding every k-th of them and all of the others),
    evaluated on the full validation split: its figures (the weights of its best validation loss,
    as `notelm evaluate` reads them), how much data and how many epochs it saw, and its
    validation-loss history (where the loss turns up says when the data ran out)."""
    from notelm.corpora import load_corpus
    from notelm.runs import open_run
    from notelm.training.data import PairArray, pair_windows
    from notelm.velocity import pairs

    r = open_run(run)
    ev = valid_evaluation(r.path.resolve())
    sources, targets, _ = pairs(r.encoding(), load_corpus("maestro", ROOT).split("valid"))
    losses = original_loss(r.model(dtype=torch.float32), sources, targets)
    metrics, config = r.metrics, r.config
    train = PairArray(r.path / "data", "train")
    step = config["train"]["window_step"]
    windows = sum(len(pair_windows(int(b - a), WINDOW, step, cover=False))
                  for a, b in zip(train.offsets[:-1], train.offsets[1:]))
    steps, batch = metrics["global_step"], config["train"]["batch_size"]
    figures = ev["rows"][0]
    return {"model": f"velocity-{config['model'].get('preset')}-{len(train)}-pieces", "variant": ev["variant"],
            "split": "valid", **{k: figures[k] for k in FIG}, "steps": steps,
            "train_seconds": round(metrics["train_seconds"], 1),
            "detail": {"run": run, "training_pieces": len(train), "training_notes": train.n_tokens,
                       "windows": windows, "epochs": round(steps * batch / windows, 2),
                       "best_step": metrics["best_step"], "best_val_loss": metrics["best_val_loss"],
                       "valid_nll": losses["nll"], "valid_original_loss": losses["original_loss"],
                       "val_history": metrics["val_history"], "notes": ev["notes"], "pieces": ev["pieces"],
                       "parameters": metrics["parameters"], "model": config["model"], "train": config["train"],
                       "encoding": config.get("encoding")}}


def markdown(result: dict[str, Any]) -> str:
    """The README's table from velocity.json."""
    lines = ["| model | source | MAE teacher-forced | MAE greedy | MAE expected | Pearson | std ratio | steps | train s |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['variant']} | " + " | ".join(f"{r[k] + 0.0:.2f}" for k in FIG)
                     + f" | {r['steps']:,} | {r['train_seconds']:,.0f} |")
    return "\n".join(lines)


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", choices=sorted(ABLATION), help="train and evaluate one ablation row")
    parser.add_argument("--steps", type=int, default=ABLATION_STEPS)
    parser.add_argument("--eval-every", type=int, default=0,
                        help="also evaluate every so many steps (a long run's curve; saved as it goes)")
    parser.add_argument("--pieces-every", type=int, default=1,
                        help="train on every k-th training performance (data-size rows, in velocity-data/)")
    parser.add_argument("--table", action="store_true", help="assemble bench/results/velocity.json")
    parser.add_argument("--markdown", action="store_true", help="print velocity.json's table for the README")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, every ablation row; writes nothing")
    parser.add_argument("--gap", metavar="RUN", help="evaluate RUN on every --gap-every-th training performance "
                        "(velocity-curve/gap-STEPS.json: the generalisation gap)")
    parser.add_argument("--gap-every", type=int, default=9)
    parser.add_argument("--data-run", metavar="RUN", action="append", default=[],
                        help="a notelm train velocity run on a subset of the training performances: its "
                        "data-size row (velocity-data/), evaluated on the validation split (repeatable)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.smoke:
        tiny, tiny_t5 = {"dim": 16, "n_layers": 1, "n_heads": 2, "ff": 32}, {
            "d_model": 16, "num_layers": 1, "num_heads": 2, "d_kv": 8, "d_ff": 32}
        for name in ABLATION:
            row = ablation_row(name, steps=3, limit=2, widths=tiny, t5_widths=tiny_t5, warmup=2, log=lambda *_: None)
            print(json.dumps({k: v for k, v in row.items() if k != "detail"}))
        return
    if args.gap:
        gap = train_gap(args.gap, args.gap_every)
        own = Path(args.gap).name != "velocity-compared"  # another run's gap: its name in the file's
        write_json(CURVE / f"gap-{gap['steps']}{'-' + Path(args.gap).name if own else ''}.json", gap)
        print(json.dumps(gap, indent=2))
    for run in args.data_run:
        row = data_run_row(run)
        write_json(DATA_ROWS / f"{row['model']}.json", row)
        print(json.dumps({k: v for k, v in row.items() if k != "detail"}, indent=2))
    if args.row and args.steps != ABLATION_STEPS:  # a long run: its own file, the curve saved as it goes
        name = f"{args.row}-steps{args.steps}"
        path = LONG_ROWS / f"{name}.json"

        def on_curve(curve):
            write_json(path, {"model": name, "partial": True, "steps": args.steps, "learning_curve": curve})

        row = ablation_row(args.row, steps=args.steps, eval_every=args.eval_every, on_curve=on_curve,
                           log=lambda m: print(m, flush=True))
        row["model"] = name
        write_json(path, row)
        print(json.dumps({k: v for k, v in row.items() if k != "detail"}, indent=2))
    elif args.row:
        row = ablation_row(args.row, steps=args.steps, pieces_every=args.pieces_every, log=lambda m: print(m, flush=True))
        if args.pieces_every > 1:
            row["model"] = f"{args.row}-pieces-1in{args.pieces_every}"
            write_json(DATA_ROWS / f"{row['model']}.json", row)
        else:
            write_json(ROWS / f"{args.row}.json", row)
        print(json.dumps(row, indent=2))
    if args.table:
        from notelm.benchmarks import machine

        trained, curve = runs_rows()
        ablation = [json.loads(p.read_text()) for p in sorted(ROWS.glob("*.json"))]
        data = [json.loads(p.read_text()) for p in sorted(DATA_ROWS.glob("*.json"))]
        long_runs = [json.loads(p.read_text()) for p in sorted(LONG_ROWS.glob("*.json"))]
        details = {r["model"]: r.pop("detail") for r in ablation + data}
        result = {"rows": trained + ablation + baseline_rows(), "command": " ".join(["python", *sys.argv]),
                  "learning_curve": curve, "data_size": [{k: r[k] for k in ("model", *FIG, "steps")}
                                                         | {"training_pieces": details[r["model"]]["training_pieces"],
                                                            "epochs": details[r["model"]]["epochs"]} for r in data],
                  "train_gap": [json.loads(p.read_text()) for p in sorted(CURVE.glob("gap-*.json"),
                                                                          key=lambda p: int(p.stem.split("-")[1]))],
                  "long_runs": long_runs, "details": details, "machine": machine()}
        previous = RESULTS / "velocity.json"  # how the curve's run was made: its files do not say
        if previous.is_file() and "learning_curve_note" in (old := json.loads(previous.read_text())):
            result["learning_curve_note"] = old["learning_curve_note"]
        write_json(RESULTS / "velocity.json", result)
        print(markdown(result))
    if args.markdown:
        print(markdown(json.loads((RESULTS / "velocity.json").read_text())))


if __name__ == "__main__":
    main()
