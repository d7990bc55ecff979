"""A short run of every peer at its benchmark configuration on this machine's CPU.

Compressive Transformer (seed config, performance events, vocabulary 392) on POP909: the
freeze measurement over the first 50 steps, published vs fixed, with test nats per token after
them; the behaviour checks; generation speed. Perceiver AR (context 2,048, 512 latents, dim 512,
depth 8): generation and training speed, and which padding id its loss ignores. T5 (the compared
run's widths) on MAESTRO-mini note tokens (5/5/3 bins): a few steps of each setting, speed, and
teacher-forced velocity figures on test windows. Few steps: these are speeds and plumbing, not
trained results.

    python bench/peers/smoke.py          # writes bench/results/peers-smoke.json (a few minutes, one thread)
    python bench/peers/smoke.py --tiny   # tiny sizes, prints, writes nothing
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))  # so that `from peers import ...` works when run as a script

from notelm.benchmarks import machine  # noqa: E402
from peers import compressive, data, perceiver_ar, t5  # noqa: E402

VOCAB = 392  # notelm's performance events: 4 specials + 388


def velocity_figures(p: dict[str, np.ndarray], train_mean: float) -> dict[str, float]:
    true = p["true"].ravel().astype(float)
    # teacher forcing shows each note the previous true velocity: copying it is a baseline too
    previous = np.where(p["previous"] < 0, train_mean, p["previous"]).ravel()
    out = {"notes": int(true.size), "flat_baseline_mae": float(np.abs(true - train_mean).mean()),
           "copy_previous_baseline_mae": float(np.abs(true - previous).mean()),
           "argmax_is_previous": float((p["argmax"] == p["previous"]).mean()),
           "mean_other_mass": float(p["other_mass"].mean())}
    for key in ("argmax", "expected"):
        pred = p[key].ravel().astype(float)
        out[f"{key}_mae"] = float(np.abs(pred - true).mean())
        out[f"{key}_std_ratio"] = float(pred.std() / true.std())
        out[f"{key}_correlation"] = float(np.corrcoef(pred, true)[0, 1]) if pred.std() > 0 else 0.0
    return out


def run_compressive(tiny: bool) -> dict:
    over = {"dim": 16, "depth": 2, "heads": 2, "seq_len": 8, "mem_len": 8, "cmem_len": 8, "memory_layers": (1, 2)} if tiny else {}
    pieces = data.performance_pieces(data.POP909, limit=6 if tiny else 40)
    result = {"config": {**compressive.SEED_CONFIG, **over, "vocab_size": VOCAB}, "data": "pop909 (first 40 files, notelm hash split)",
              "train_pieces": len(pieces["train"]), "test_pieces": len(pieces["test"][:2])}
    result["freeze"] = compressive.freeze_report(VOCAB, pieces["train"], steps=3 if tiny else 50, batch=4,
                                                 test=[p[:300] for p in pieces["test"][:1]] if tiny else pieces["test"][:2], **over)
    result["checks"] = {
        "rotation": compressive.rotation_check(compressive.build(VOCAB, **over)),
        "reconstruction_seed_config": compressive.reconstruction_check(seq_len=64, mem_len=64),
        "reconstruction_mem_128": compressive.reconstruction_check(seq_len=64, mem_len=128),
        "reconstruction_len_5": compressive.reconstruction_check(seq_len=5, mem_len=5),
        "gradients_published": compressive.gradient_check(compressive.build(VOCAB, **over)),
        "gradients_fixed": compressive.gradient_check(compressive.build(VOCAB, fixed=True, **over)),
    }
    result["generation"] = compressive.generation_speed(compressive.build(VOCAB, **over), primer=16 if tiny else 512,
                                                        new_tokens=8 if tiny else 256, vocab_size=VOCAB)
    return result


def run_perceiver_ar(tiny: bool) -> dict:
    cfg = {"context": 64, "latents": 16, "dim": 64, "depth": 1, "heads": 2, "dim_head": 32} if tiny else perceiver_ar.BENCH_CONFIG
    model = perceiver_ar.build(VOCAB, **cfg)
    return {"config": {**cfg, "vocab_size": VOCAB, "cross_attn_seq_len": model.cross_attn_seq_len},
            "generation": perceiver_ar.generation_speed(model, new_tokens=2 if tiny else 16),
            "training": perceiver_ar.training_speed(model, batch=1, steps=1 if tiny else 3, warmup=1),
            "loss_ignores_id_0 (notelm PAD)": perceiver_ar.loss_ignores(model, 0),
            "loss_ignores_id_389 (the seed's PAD)": perceiver_ar.loss_ignores(model, 389)}


def run_t5(tiny: bool) -> dict:
    enc, pairs = data.note_token_pairs(data.MAESTRO_MINI, limit=6 if tiny else 20, bins=(5, 5, 3))
    train = t5.windows(pairs["train"], size=128, step=42)
    test = t5.windows(pairs["test"], size=128, step=128)[:16]
    over = {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_heads": 2, "d_kv": 16} if tiny else {}
    steps = 2 if tiny else 20
    train_mean = float(np.mean([w[1][:-1] - t5.VELOCITY0 for w in train]))
    result = {"config": {**t5.COMPARED, **over, "vocab_size": t5.vocab_size(len(enc.vocab))}, "bins": [5, 5, 3],
              "data": "maestro-mini (first 20 files, notelm hash split)", "train_windows": len(train), "test_windows": len(test),
              "batch": 16, "steps": steps, "settings": {}}
    inputs = torch.from_numpy(np.stack([w[0] for w in test]))
    labels = torch.from_numpy(np.stack([w[1] for w in test]))
    for setting in t5.SETTINGS:
        model = t5.build(len(enc.vocab), seed=0, **over)
        r = t5.train_steps(model, t5.batches(train, batch=16, seed=0), steps, setting=setting)
        result["settings"][setting] = {
            "first_nll": r["nll"][0], "last_nll": r["nll"][-1], "last_lr": r["lrs"][-1],
            "notes_per_s": r["notes_per_s"], "notes_per_cpu_s": r["notes_per_cpu_s"], "seconds_per_step": r["seconds"] / steps,
            "test_after_steps": velocity_figures(t5.predict(model, inputs, labels), train_mean),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes; write nothing")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = {"threads": 1, "load_average_before": os.getloadavg(),
              "versions": {p: version(p) for p in ("torch", "numpy", "transformers", "compressive-transformer-pytorch",
                                                   "perceiver-ar-pytorch", "einops", "mogrifier")}}
    for name, run in (("compressive", run_compressive), ("perceiver_ar", run_perceiver_ar), ("t5", run_t5)):
        load = os.getloadavg()  # the CPU is shared: speeds taken under a higher load are lower
        result[name] = {**run(args.tiny), "load_average_before": load, "load_average_after": os.getloadavg()}
        print(name, json.dumps(result[name], indent=1), flush=True)
    result["load_average_after"] = os.getloadavg()
    result["machine"] = machine()
    if not args.tiny:
        (BENCH / "results" / "peers-smoke.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
