"""Perceiver AR on MAESTRO (issue 13): test NLL against a Transformer and an LSTM, repetition
statistics of 20-second continuations against what the pianist played, and speed against
``perceiver-ar-pytorch`` 0.0.10 (bench/peers/perceiver_ar.py). Figures go to
bench/results/perceiver-ar.json, one section per command (the others are kept).

    python bench/bench_perceiver_ar.py nll --root MAESTRO --run perceiver-ar=builtin:perceiver-ar \\
        --run transformer=runs/pa-transformer --run lstm=runs/pa-lstm
    python bench/bench_perceiver_ar.py repetition --root MAESTRO --run ... [--settings 1.0/0.95,0.7/0.9]
    python bench/bench_perceiver_ar.py speed [--context 2048]     # ours cached/uncached, the peer, training
    python bench/bench_perceiver_ar.py peer-generation --context 2048 --tokens 4 --config JSON  # for notelm bench
    python bench/bench_perceiver_ar.py smoke                     # tiny sizes, writes nothing

- nll: nats per event over every event of the maestro test split, each model's own batched
  path (`SequenceModel.score`, what ``notelm evaluate`` reports, here in float32), piece by piece.
- repetition: 20 test performances (every other one, by id); the primer is each one's first
  10 s, the reference its next 20 s (notes starting in 10-30 s, through the encoding's
  quantisation, as the models' notes are); every model continues each primer for 20 s
  (seed = primer index) at each sampling setting (temperature/top-p); the statistics of
  `notelm.continuation.repetition_stats`, averaged over the primers, and their relative
  distance to the real continuations'.
- speed: one process, one torch thread, the issue's configuration (context 2,048, 512
  latents, 512 wide, 8 layers, 8 heads, vocabulary 392, dropout off on both sides).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from notelm.benchmarks import (
    PERCEIVER_BENCH,
    PERFORMANCE_VOCAB,
    machine,
    perceiver_generation_speed,
    training_speed,
)

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "perceiver-ar.json"
STATS = ("repeat_share", "longest_run", "pitch_class_entropy", "notes_per_s", "mean_velocity", "velocity_sd")
# temperature/top-p[/free]; 0.7/0.9 is the seed's; "free": without the encoding's rules
SETTINGS = "1.0/1.0,1.0/1.0/free,1.1/1.0,1.0/0.95,0.9/0.95,0.7/0.9/free"


def save(section: str, value) -> None:
    """Write one section of the results file, keeping the others."""
    data = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    data[section] = value
    data[f"{section}_machine"] = {**machine(), "load_average": os.getloadavg()}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2) + "\n")


def runs(pairs: list[str]) -> dict[str, str]:
    return dict(p.split("=", 1) for p in pairs)


def split_pieces(root: str, split: str = "test"):
    from notelm.corpora import load_corpus

    return sorted(load_corpus("maestro", root).split(split), key=lambda p: p.meta.id)


# ---- test NLL -------------------------------------------------------------------------------------


def nll(args) -> None:
    from notelm.runs import open_run
    from notelm.training.data import encode_pieces

    torch.set_num_threads(1)
    pieces = split_pieces(args.root)
    rows = []
    for name, path in runs(args.run).items():
        r = open_run(path)
        model = r.model(dtype=torch.float32)  # float64 (notelm evaluate's) differs by ~1e-6 nats and takes twice as long
        sequences, skipped = encode_pieces(r.encoding(), pieces)
        t0, total, events = time.perf_counter(), 0.0, 0
        for s in sequences:  # piece by piece: the distributions of one piece at a time in memory
            total -= float(model.score([s])[0].sum()) * math.log(2)
            events += len(s)
        cfg = r.config["model"]["config"]
        rows.append({"model": name, "family": r.model_name, "run": str(path), "context": cfg.get("context"),
                     "latents": cfg.get("latents"), "parameters": r.metrics.get("parameters"),
                     "test_nats_per_event": total / events, "test_events": events, "test_pieces": len(sequences),
                     "skipped": dict(skipped), "steps": r.metrics.get("global_step"),
                     "train_seconds": r.metrics.get("train_seconds"), "eval_seconds": time.perf_counter() - t0})
        print(json.dumps(rows[-1]), flush=True)
    save("rows", rows)


# ---- repetition -----------------------------------------------------------------------------------


def settings(text: str) -> list[tuple[float, float | None, bool, float]]:
    """(temperature, top-p, rules, repeat penalty) of each ``T/p``, ``T/p/free`` or ``T/p/rX``
    item (X: the repeat penalty, with the rules)."""
    out = []
    for item in text.split(","):
        t, p, *extra = item.split("/")
        penalty = float(extra[0][1:]) if extra and extra[0].startswith("r") else 1.0
        out.append((float(t), None if float(p) >= 1 else float(p), extra != ["free"], penalty))
    return out


def setting_key(name: str, temperature: float, top_p: float | None, rules: bool, penalty: float = 1.0) -> str:
    return (f"{name} T={temperature:g} top-p={top_p or 1:g}" + ("" if rules else " no rules")
            + (f" repeat-penalty={penalty:g}" if penalty != 1 else ""))


def summary(stats: list[dict]) -> dict:
    return {k: float(np.mean([s[k] for s in stats])) for k in STATS}


def repetition(args) -> None:
    from notelm.continuation import continue_primer, primer_stretch, repetition_stats
    from notelm.runs import open_run

    torch.set_num_threads(1)
    section = "repetition" if args.split == "test" else f"repetition-{args.split}"
    pieces = split_pieces(args.root, args.split)[:: 2][: args.primers]
    table = json.loads(RESULTS.read_text()).get(section, {}).get("table", {}) if RESULTS.is_file() and args.keep else {}
    table.pop("real", None)  # computed again below, with the relative errors of every row
    encoding = None
    for name, path in runs(args.run).items():
        r = open_run(path)
        encoding = r.encoding()
        model = r.model(dtype=torch.float32)
        for temperature, top_p, rules, penalty in settings(args.settings if name == args.tune else args.default):
            key = setting_key(name, temperature, top_p, rules, penalty)
            t0, stats, tokens = time.perf_counter(), [], 0
            for i, piece in enumerate(pieces):
                primer = primer_stretch(piece, 0.0, 10.0)
                c = continue_primer(model, encoding, primer, 10.0, seconds=args.seconds, seed=i,
                                    temperature=temperature, top_p=top_p, top_k=None, rules=rules,
                                    repeat_penalty=penalty)
                stats.append(repetition_stats(c.continuation, args.seconds))
                tokens += c.tokens
            table[key] = {"model": name, "temperature": temperature, "top_p": top_p, "rules": rules,
                          "repeat_penalty": penalty, **summary(stats),
                          "tokens": tokens, "seconds": time.perf_counter() - t0, "per_primer": stats}
            print(key, json.dumps({k: round(v, 3) for k, v in summary(stats).items()}), flush=True)
    real = [repetition_stats(encoding.quantized(primer_stretch(p, 10.0, 10.0 + args.seconds)), args.seconds)
            for p in pieces]
    table["real"] = {"model": "real continuations", **summary(real), "per_primer": real}
    for row in table.values():
        if row is not table["real"]:
            row["relative_error"] = {k: abs(row[k] - table["real"][k]) / max(abs(table["real"][k]), 1e-9) for k in STATS}
            row["within_25_percent"] = sum(v <= 0.25 for v in row["relative_error"].values())
    print("real", json.dumps({k: round(v, 3) for k, v in summary(real).items()}))
    save(section, {"primers": [p.meta.id for p in pieces], "primer_seconds": 10.0, "seconds": args.seconds,
                        "table": table})


# ---- speed --------------------------------------------------------------------------------------


def peer_generation(args) -> None:
    """JSON of the library's generate at a configuration, on stdout (for ``notelm bench``)."""
    from peers import perceiver_ar as peer

    torch.set_num_threads(1)
    cfg = json.loads(args.config) if args.config else PERCEIVER_BENCH
    model = peer.build(PERFORMANCE_VOCAB, context=args.context, latents=cfg["latents"], dim=cfg["dim"],
                       depth=cfg["n_layers"], heads=cfg["n_heads"], dim_head=cfg["dim"] // cfg["n_heads"]).eval()
    with torch.inference_mode():
        print(json.dumps(peer.generation_speed(model, new_tokens=args.tokens, seed=args.seed)))


def speed(args) -> None:
    from peers import perceiver_ar as peer

    torch.set_num_threads(1)
    context, cfg = args.context, dict(PERCEIVER_BENCH)
    ours = perceiver_generation_speed(context=context, new_tokens=args.tokens)
    print("ours", {k: ours[k] for k in ("cached_tokens_per_s", "uncached_tokens_per_s", "max_abs_log_prob_diff")}, flush=True)
    lib = peer.build(PERFORMANCE_VOCAB, context=context, latents=cfg["latents"], dim=cfg["dim"], depth=cfg["n_layers"],
                     heads=cfg["n_heads"], dim_head=cfg["dim"] // cfg["n_heads"]).eval()
    with torch.inference_mode():
        theirs = peer.generation_speed(lib, new_tokens=args.peer_tokens)
    print("peer generate", theirs, flush=True)
    train = {}
    for drop in (0.0, 0.7):  # no prefix dropout, and the seed's 0.7 (both sides)
        mine = training_speed("perceiver-ar", "v1", steps=args.train_steps, warmup=1, batch_size=1, vocab=PERFORMANCE_VOCAB,
                              overrides={**cfg, "context": context, "dropout": 0.0, "prefix_dropout": drop})
        lib = peer.build(PERFORMANCE_VOCAB, context=context, latents=cfg["latents"], dim=cfg["dim"],
                         depth=cfg["n_layers"], heads=cfg["n_heads"], dim_head=cfg["dim"] // cfg["n_heads"],
                         cross_attn_dropout=drop)
        their = peer.training_speed(lib, batch=1, steps=args.train_steps, warmup=1)
        train[f"prefix_dropout={drop:g}"] = {"ours": mine, "peer": their,
                                             "ratio": mine["tokens_per_s"] / their["tokens_per_s"]}
        print("train", drop, mine["tokens_per_s"], their["tokens_per_s"], flush=True)
    save("speed", {"context": context, "config": cfg, "vocab": PERFORMANCE_VOCAB, "threads": torch.get_num_threads(),
                   "cached_tokens_per_s": ours["cached_tokens_per_s"], "uncached_tokens_per_s": ours["uncached_tokens_per_s"],
                   "peer_tokens_per_s": theirs["tokens_per_s"],
                   "cached_over_peer": ours["cached_tokens_per_s"] / theirs["tokens_per_s"],
                   "cached_over_uncached": ours["speedup"], "generation": ours, "peer_generation": theirs,
                   "training": train})


def smoke(args) -> None:
    """Tiny sizes through every path; writes nothing."""
    torch.set_num_threads(1)
    g = perceiver_generation_speed(context=64, new_tokens=8, latents=16, dim=32, n_layers=2, n_heads=2)
    t = training_speed("perceiver-ar", "debug", steps=1, warmup=1, vocab=PERFORMANCE_VOCAB)
    print(json.dumps({"generation": {k: g[k] for k in ("cached_tokens_per_s", "uncached_tokens_per_s")},
                      "training_tokens_per_s": t["tokens_per_s"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("nll", "repetition"):
        p = sub.add_parser(name)
        p.add_argument("--root", required=True, help="the MAESTRO folder (maestro-mini here)")
        p.add_argument("--run", action="append", required=True, help="NAME=RUN (a run directory or builtin:NAME)")
    rep = sub.choices["repetition"]
    rep.add_argument("--primers", type=int, default=20)
    rep.add_argument("--seconds", type=float, default=20.0)
    rep.add_argument("--tune", default="perceiver-ar", help="the model whose sampling settings are searched")
    rep.add_argument("--settings", default=SETTINGS, help="temperature/top-p pairs for the tuned model")
    rep.add_argument("--default", default="1.0/1.0,1.0/1.0/free", help="temperature/top-p pairs for the other models")
    rep.add_argument("--keep", action="store_true", help="keep the rows already in the results file")
    rep.add_argument("--split", default="test", choices=("test", "valid"),
                     help="whose primers (valid: to choose settings on, in section repetition-valid)")
    p = sub.add_parser("speed")
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--tokens", type=int, default=32)
    p.add_argument("--peer-tokens", type=int, default=4)
    p.add_argument("--train-steps", type=int, default=3)
    p = sub.add_parser("peer-generation")
    p.add_argument("--context", type=int, default=2048)
    p.add_argument("--tokens", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default="")
    sub.add_parser("smoke")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE))  # `peers` (bench/peers), as bench/peers/__init__.py says
    {"nll": nll, "repetition": repetition, "speed": speed, "peer-generation": peer_generation, "smoke": smoke}[
        args.command](args)


if __name__ == "__main__":
    main()
