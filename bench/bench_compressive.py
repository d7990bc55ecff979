"""Compressive Transformer, Transformer-XL and a Transformer without memory against lucidrains'
``compressive-transformer-pytorch`` 0.4.0 (as published and with its frozen key/value
projections undone: bench/peers/compressive.py), on POP909's test split, whole pieces streamed.

Every row is the seed study's model (6 layers, 8 heads, dim 64, segment 64, memory 64,
compressed memory 256, ratio 4, memory in layers 5 and 6, dropout 0.1; REFERENCE §5) with what
the row names removed: ``transformer`` has no memory (notelm's Transformer on each segment: the
same block layout, tests/test_compressive.py), ``xl`` no compressed memory. All rows train the
same number of steps on the same windows in the same order, with the library's own loop
(`peers.compressive.train_steps`: Adam, constant lr, gradient clip, one step per segment,
cross-entropy + reconstruction loss) and the same loop for ours (`train_ours`). Data: POP909's
training split in REMI tokens (`notelm.encodings`), each piece cut into consecutive 64-token
segments (its last one padded, padding never scored) and the pieces dealt to 16 lanes that
read them in order; ours forgets a lane's memories when a new piece starts in it, the library
cannot (it has no per-row reset) and carries them across. Test: every test piece streamed from
empty memories, segment by segment, each of its tokens scored (probabilities over the tokens
a model may emit, as `notelm evaluate` does), also by position within the piece in buckets of
256 tokens (``by_position``).

Also measured: how far each memory layer's key/value weights move over the training run
(``freeze``: relative Frobenius change from the initial weights after steps 1, 2, 10, 100, N)
in the library, fixed library and ours; training tokens/s and generation tokens/s of ours
against the library in one process, alternating (``speed``); piece lengths against the
memory span (``lengths``).

    python bench/bench_compressive.py --row compressive     # one row; results/compressive-rows/NAME.json
    python bench/bench_compressive.py --speed               # speed rows
    python bench/bench_compressive.py --collect             # merge into bench/results/compressive.json
    python bench/bench_compressive.py --smoke               # tiny sizes, writes nothing (CI)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from notelm.benchmarks import machine
from notelm.encodings.vocab import BOS_ID, PAD_ID
from notelm.models.compressive import PRESETS, CompressiveConfig, CompressiveTransformer
from notelm.models.neural import allowed_tokens

HERE = Path(__file__).parent
RESULTS = HERE / "results"
ROWS_DIR = RESULTS / "compressive-rows"
POP909 = Path(os.environ.get("NOTELM_SHARED", HERE.parent.parent / "shared")) / "data" / "pop909"
ROWS = ("transformer", "xl", "compressive", "compressive-mean", "lucidrains-0.4.0", "lucidrains-0.4.0-fixed")
# compressive-mean: mean pooling instead of the learned convolution (no reconstruction loss), to
# tell the cost of attending over compressed slots from the cost of learning them
OURS = {"transformer": {"mem_len": 0, "cmem_len": 0}, "xl": {"cmem_len": 0}, "compressive": {},
        "compressive-mean": {"compression": "mean"}}
SEED = PRESETS["seed"]["model"]
BUCKET = 256
STEPS = 1200  # the table's rows; seeds (-seedN) and longer runs (-stepsN) are rows beside it
MARKS = (1, 2, 10, 100)


# ---- data -------------------------------------------------------------------------------------------


def pop909_pieces(limit: int | None = None) -> tuple[dict[str, list[np.ndarray]], int]:
    """REMI ids of POP909's train and test pieces (no BOS), and the vocabulary size; with a
    ``limit`` and no POP909 here (CI's smoke run), random pieces of that many."""
    if limit is not None and not POP909.is_dir():
        rng = np.random.default_rng(0)
        return {split: [rng.integers(4, 284, size=150 + 7 * i) for i in range(limit)] for split in ("train", "test")}, 284
    from notelm.corpora import load_corpus
    from notelm.encodings import get_encoding
    from notelm.training.data import encode_pieces

    corpus = load_corpus("pop909", POP909)
    enc = get_encoding("remi")
    out = {}
    for split in ("train", "test"):
        pieces = corpus.split(split)[:limit]
        out[split], _ = encode_pieces(enc, pieces)
    return out, len(enc.vocab)


def piece_windows(ids: np.ndarray, t: int) -> list[np.ndarray]:
    """BOS + the piece, padded to whole segments: (t + 1,) windows that overlap by one token
    (inputs [:-1], targets [1:])."""
    k = max(1, math.ceil(len(ids) / t))
    row = np.full(k * t + 1, PAD_ID, dtype=np.int64)
    row[0], row[1: len(ids) + 1] = BOS_ID, ids
    return [row[j * t: j * t + t + 1] for j in range(k)]


def lanes(pieces: list[np.ndarray], *, batch: int, t: int, seed: int = 0):
    """Batches (windows (b, t + 1), starts (b,) bool: the row's window begins a piece): the
    pieces, shuffled, dealt to the ``batch`` lanes with the fewest windows so far; each lane reads
    its pieces in order, one segment per batch. Ends when the shortest lane does."""
    order = np.random.default_rng(seed).permutation(len(pieces))
    lane: list[list[tuple[np.ndarray, bool]]] = [[] for _ in range(batch)]
    for i in order:
        shortest = min(range(batch), key=lambda r: len(lane[r]))
        lane[shortest] += [(w, j == 0) for j, w in enumerate(piece_windows(pieces[i], t))]
    for j in range(min(len(x) for x in lane)):
        yield (torch.from_numpy(np.stack([lane[r][j][0] for r in range(batch)])),
               torch.tensor([lane[r][j][1] for r in range(batch)]))


# ---- models -----------------------------------------------------------------------------------------


def ours(row: str, vocab: int, seed: int = 0, **overrides: Any) -> CompressiveTransformer:
    torch.manual_seed(seed)
    return CompressiveTransformer(CompressiveConfig(vocab_size=vocab, **{**SEED, **OURS[row], **overrides}))


def kv_weight(net: CompressiveTransformer, layer: int) -> torch.Tensor:
    """Layer ``layer`` (1-based)'s key and value projection: rows d.. of the fused qkv weight."""
    d = net.config.dim
    return net.blocks[layer - 1].attn.qkv.weight[d:]


def train_ours(net: CompressiveTransformer, batches, steps: int, *, lr: float, clip: float) -> dict[str, Any]:
    """The library loop's twin (`peers.compressive.train_steps`) for our network, with a reset of
    the rows whose window starts a piece."""
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    layers = range(1, net.config.n_layers + 1)
    w0 = {i: kv_weight(net, i).detach().clone() for i in layers}
    out: dict[str, Any] = {"losses": [], "aux_losses": [], "kv_change": {i: [] for i in layers}}
    state, tokens, t0 = None, 0, time.perf_counter()
    for step, (window, starts) in enumerate(batches, start=1):
        if step > steps:
            break
        state = net.reset(state, starts)
        x, y = window[:, :-1], window[:, 1:]
        logits, state, aux = net(x, state)
        loss = F.cross_entropy(logits.transpose(1, 2), y, ignore_index=PAD_ID)
        extra = sum(aux.values()) if aux else torch.zeros(())
        opt.zero_grad(set_to_none=True)
        (loss + extra).backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
        opt.step()
        tokens += int((y != PAD_ID).sum())
        out["losses"].append(float(loss.detach()))
        out["aux_losses"].append(float(extra.detach()))
        for i in layers:
            w = kv_weight(net, i).detach()
            out["kv_change"][i].append(float((w - w0[i]).norm() / w0[i].norm()))
    out["steps"] = len(out["losses"])
    out["seconds"] = time.perf_counter() - t0
    out["tokens_per_s"] = tokens / out["seconds"]
    return out


# ---- evaluation ---------------------------------------------------------------------------------------


@torch.no_grad()
def stream_nats(forward, pieces: list[np.ndarray], *, t: int, vocab: int, batch: int = 8) -> list[np.ndarray]:
    """Nats of every token of every piece (BOS, then the piece), each piece streamed from empty
    memories in ``t``-token calls of ``forward(x, state) -> (logits, state)``; probabilities over
    the tokens a model may emit (not PAD, BOS, UNK), as `notelm.models.neural` computes them."""
    allowed = allowed_tokens(vocab)
    remap = torch.full((vocab,), -1, dtype=torch.long)
    remap[allowed] = torch.arange(int(allowed.sum()))
    order = sorted(range(len(pieces)), key=lambda i: len(pieces[i]))
    out: list[np.ndarray] = [np.empty(0)] * len(pieces)
    for a in range(0, len(order), batch):
        group = order[a: a + batch]
        width = max(len(pieces[i]) for i in group)
        x = torch.full((len(group), width), PAD_ID, dtype=torch.long)
        y = torch.full((len(group), width), PAD_ID, dtype=torch.long)
        for r, i in enumerate(group):
            n = len(pieces[i])
            x[r, 0], x[r, 1:n] = BOS_ID, torch.from_numpy(pieces[i][:-1])
            y[r, :n] = torch.from_numpy(pieces[i])
        nats, state = [], None
        for s in range(0, width, t):
            logits, state = forward(x[:, s: s + t], state)
            logp = torch.log_softmax(logits[..., allowed].double(), dim=-1)
            target = remap[y[:, s: s + t]].clamp(min=0)
            nats.append(-logp.gather(-1, target[..., None])[..., 0])
        nats = torch.cat(nats, dim=1)
        for r, i in enumerate(group):
            out[i] = nats[r, : len(pieces[i])].numpy()
    return out


def by_position(nats: list[np.ndarray]) -> dict[str, Any]:
    """Mean nats per token in buckets of BUCKET positions within the piece."""
    longest = max(len(n) for n in nats)
    k = math.ceil(longest / BUCKET)
    total, count = np.zeros(k), np.zeros(k, dtype=np.int64)
    for n in nats:
        b = np.arange(len(n)) // BUCKET
        total += np.bincount(b, weights=n, minlength=k)
        count += np.bincount(b, minlength=k)
    return {"bucket_tokens": BUCKET, "start": [i * BUCKET for i in range(k)],
            "nats_per_token": [round(float(s / c), 4) if c else None for s, c in zip(total, count)],
            "tokens": count.tolist()}


def forward_of(row: str, model) -> Any:
    model.eval()
    if row in OURS:
        return lambda x, state: model(x, state)[:2]
    return lambda x, mem: model(x, memories=mem)[:2]


# ---- one row --------------------------------------------------------------------------------------------


def run_row(row: str, *, steps: int, batch: int, lr: float, clip: float, limit: int | None, out: Path | None,
            seed: int = 0, weights: Path | None = None) -> dict:
    data, vocab = pop909_pieces(limit)
    t = SEED["context"]
    batches = lanes(data["train"], batch=batch, t=t)
    if row in OURS:
        model = ours(row, vocab, seed)
        r = train_ours(model, batches, steps, lr=lr, clip=clip)
        cfg = model.config
        mem_len, cmem_len = cfg.mem_len, cfg.cmem_len
        memory_layers = [i + 1 for i in cfg.memory_layer_indices]
    else:
        from peers import compressive as lib

        model = lib.build(vocab, fixed=row.endswith("-fixed"), seed=seed)
        r = lib.train_steps(model, (w for w, _ in batches), steps, lr=lr, clip=clip)
        mem_len, cmem_len, memory_layers = lib.SEED_CONFIG["mem_len"], lib.SEED_CONFIG["cmem_len"], model.memory_layers
    if r["steps"] < steps:
        raise SystemExit(f"{row}: the training lanes hold only {r['steps']} steps")
    if weights is not None and row in OURS:  # for a later look (not part of the results)
        from safetensors.torch import save_model

        weights.mkdir(parents=True, exist_ok=True)
        save_model(model, str(weights / f"{row}-seed{seed}.safetensors"))
    t0 = time.perf_counter()
    nats = stream_nats(forward_of(row, model), data["test"], t=t, vocab=vocab)
    eval_seconds = time.perf_counter() - t0
    mean = float(np.concatenate(nats).mean())
    marks = sorted({*(m for m in MARKS if m <= r["steps"]), r["steps"]})
    result = {
        "row": {"model": row, "segment": t, "mem_len": mem_len, "cmem_len": cmem_len,
                "test_nats_per_token": round(mean, 4), "test_bits_per_token": round(mean / math.log(2), 4),
                "train_tokens_per_s": round(r["tokens_per_s"], 1), "steps": r["steps"],
                "train_seconds": round(r["seconds"], 1)},
        "by_position": by_position(nats),
        "kv_change": {f"layer {i}": {f"step {s}": round(c[s - 1], 6) for s in marks} for i, c in r["kv_change"].items()},
        "kv_frozen_at": {f"layer {i}": s for i, s in r.get("kv_frozen_at", {}).items()},
        "memory_layers": list(memory_layers),
        "train_loss_last_100": round(float(np.mean(r["losses"][-100:])), 4),
        "train_loss_by_100_steps": [round(float(np.mean(r["losses"][i: i + 100])), 4) for i in range(0, r["steps"], 100)],
        "aux_loss_by_100_steps": [round(float(np.mean(r["aux_losses"][i: i + 100])), 6) for i in range(0, r["steps"], 100)],
        "parameters": sum(p.numel() for p in model.parameters()),
        "test_tokens": int(sum(len(n) for n in nats)), "test_pieces": len(nats), "eval_seconds": round(eval_seconds, 1),
        "settings": {"batch": batch, "lr": lr, "clip": clip, "optimizer": "adam", "encoding": "remi", "seed": seed,
                     "train_pieces": len(data["train"]), "vocab": vocab},
        "load_average": os.getloadavg(), "torch_threads": torch.get_num_threads(),
        "command": " ".join(["python", "bench/bench_compressive.py", *sys.argv[1:]]),
    }
    print(json.dumps(result["row"]), flush=True)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        name = f"{row}{f'-seed{seed}' if seed else ''}{f'-steps{steps}' if steps != STEPS else ''}"
        (out / f"{name}.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


# ---- speed -------------------------------------------------------------------------------------------


def speed(*, segment: int, rounds: int, train_steps: int, batch: int, primer: int, new_tokens: int,
          tries: int = 3, smoke: bool = False) -> dict:
    """Training and generation tokens/s of ours (compressive) and the library, in turns, at the
    seed config with segment and memory ``segment`` long, on random tokens (speed does not depend
    on them); medians over ``rounds``. In each round each side generates ``tries`` times, the
    two in turn, and its fastest try counts (a generation lasts a fraction of a second: one
    stall of this shared machine would otherwise decide a round)."""
    from notelm.generation import sample
    from notelm.models.neural import neural_model
    from peers import compressive as lib

    vocab, t = 284, segment
    rng = np.random.default_rng(0)
    pieces = [rng.integers(4, vocab, size=t * (train_steps + 2)) for _ in range(batch)]
    size = {"dim": 16, "n_layers": 2, "n_heads": 2, "memory_layers": (1, 2)} if smoke else {}
    libsize = {"dim": 16, "depth": 2, "heads": 2, "memory_layers": (1, 2)} if smoke else {}
    size, libsize = {**size, "context": t, "mem_len": t}, {**libsize, "seq_len": t, "mem_len": t}
    figures: dict[str, list[float]] = {"ours_train": [], "library_train": [], "ours_generate": [], "library_generate": []}
    for _ in range(rounds):
        net = ours("compressive", vocab, **size)
        batches = lanes(pieces, batch=batch, t=t)
        figures["ours_train"].append(train_ours(net, batches, train_steps, lr=1e-4, clip=0.5)["tokens_per_s"])
        model = lib.build(vocab, **libsize)
        figures["library_train"].append(lib.train_steps(model, lib.lanes(pieces, batch=batch, seq_len=t), train_steps,
                                                        track_kv=False)["tokens_per_s"])
        m = neural_model("compressive", net, dtype=torch.float32)
        prime = rng.integers(4, vocab, size=primer).tolist()
        ours_tries, library_tries = [], []
        for _ in range(tries):
            t0 = time.perf_counter()
            sample(m, length=new_tokens, primer=prime, seed=0, top_k=32)  # the library samples with top-k too
            ours_tries.append(new_tokens / (time.perf_counter() - t0))
            library_tries.append(lib.generation_speed(model, primer=primer, new_tokens=new_tokens,
                                                      vocab_size=vocab)["tokens_per_s"])
        figures["ours_generate"].append(max(ours_tries))
        figures["library_generate"].append(max(library_tries))
    med = {k: float(np.median(v)) for k, v in figures.items()}
    return {"segment": t, "mem_len": t, "cmem_len": SEED["cmem_len"], "rounds": rounds, "train_steps": train_steps,
            "batch": batch, "primer": primer, "new_tokens": new_tokens, "generate_tries": tries,
            "tokens_per_s": {k: [round(x, 1) for x in v] for k, v in figures.items()},
            "median_tokens_per_s": {k: round(v, 1) for k, v in med.items()},
            "train_ratio": round(med["ours_train"] / med["library_train"], 2),
            "generate_ratio": round(med["ours_generate"] / med["library_generate"], 2),
            "load_average": os.getloadavg(), "torch_threads": torch.get_num_threads()}


SPEED_NOTE = ("ours generates through notelm's sampler (NeuralModel start/predict/observe in float32: a KV cache in the "
              "segment, memories beyond it; the primer read in one call), the library with its own generate, which "
              "recomputes the current window for every token (aw.py:81); both sample with top-k after the same "
              "random primer, generate_tries times a round in turn, the fastest try of each counting. Training: the "
              "same loop (Adam, clip 0.5), batch rows of random tokens.")


# ---- collecting -------------------------------------------------------------------------------------


def lengths(data: dict[str, list[np.ndarray]]) -> dict[str, Any]:
    test = np.array([len(p) + 1 for p in data["test"]])
    seed = CompressiveConfig(vocab_size=1, **SEED)
    return {"encoding": "remi", "test_pieces": len(test), "test_tokens_median": float(np.median(test)),
            "test_tokens_p10": float(np.percentile(test, 10)), "test_tokens_p90": float(np.percentile(test, 90)),
            "segment": seed.context, "xl_span_per_memory_layer": seed.context + seed.mem_len,
            "compressive_span_per_memory_layer": seed.span,
            "share_of_test_tokens_past_xl_span": float(np.maximum(test - (seed.context + seed.mem_len), 0).sum() / test.sum()),
            "share_of_test_tokens_past_compressive_span": float(np.maximum(test - seed.span, 0).sum() / test.sum())}


def collect() -> dict:
    rows = {r: json.loads((ROWS_DIR / f"{r}.json").read_text()) for r in ROWS if (ROWS_DIR / f"{r}.json").is_file()}
    speed_file = ROWS_DIR / "speed.json"
    speed_run = json.loads(speed_file.read_text()) if speed_file.is_file() else None
    command = "; ".join([*(rows[r]["command"] for r in ROWS if r in rows), *([speed_run["command"]] if speed_run else []),
                         "python bench/bench_compressive.py --collect"])
    data, _ = pop909_pieces()
    freeze = {r: {"memory_layers": rows[r]["memory_layers"], "kv_change": rows[r]["kv_change"],
                  "kv_frozen_at": rows[r]["kv_frozen_at"]}
              for r in ("lucidrains-0.4.0", "lucidrains-0.4.0-fixed", "compressive") if r in rows}
    repeats = {}  # other seeds and longer runs of our rows: {"xl": {"seed1": ..., "steps3600": ...}}
    for path in sorted(ROWS_DIR.glob("*-s*.json")):
        row, _, rest = path.stem.partition("-s")
        if row in OURS:
            r = json.loads(path.read_text())
            repeats.setdefault(row, {})["s" + rest] = {
                "test_nats_per_token": r["row"]["test_nats_per_token"], "train_loss_last_100": r["train_loss_last_100"],
                "steps": r["row"]["steps"], "train_seconds": r["row"]["train_seconds"], "seed": r["settings"]["seed"],
                "by_position": r["by_position"]["nats_per_token"]}
    result = {
        "rows": [rows[r]["row"] for r in ROWS if r in rows],
        "repeats": repeats,
        "by_position": {r: rows[r]["by_position"] for r in rows},
        "command": command,
        "freeze": freeze,
        "speed": speed_run,
        "lengths": lengths(data),
        "details": {r: {k: rows[r][k] for k in ("parameters", "train_loss_last_100", "test_tokens", "test_pieces",
                                                "eval_seconds", "settings", "load_average")} for r in rows},
        "machine": machine(),
    }
    (RESULTS / "compressive.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--row", choices=ROWS)
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--collect", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; write nothing")
    parser.add_argument("--steps", type=int, default=STEPS, help="other than the default: a row of its own (-stepsN)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--clip", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="initialisation and dropout (the data order stays)")
    parser.add_argument("--weights", type=Path, help="also save our trained networks' weights in this folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(HERE))  # `peers`
    if args.smoke:
        try:
            import compressive_transformer_pytorch  # noqa: F401
        except ModuleNotFoundError:  # the [bench] extra is absent: our rows only
            rows = tuple(OURS)
        else:
            rows = ROWS
        for row in rows:
            run_row(row, steps=3, batch=2, lr=args.lr, clip=args.clip, limit=4, out=None)
        if rows == ROWS:
            print(json.dumps(speed(segment=64, rounds=1, train_steps=2, batch=2, primer=70, new_tokens=4, tries=1,
                                    smoke=True)))
        return
    if args.row:
        run_row(args.row, steps=args.steps, batch=args.batch, lr=args.lr, clip=args.clip, limit=None, out=ROWS_DIR,
                seed=args.seed, weights=args.weights)
    if args.speed:
        r = {"note": SPEED_NOTE, "command": " ".join(["python", "bench/bench_compressive.py", *sys.argv[1:]]),
             "by_segment": [speed(segment=t, rounds=5, train_steps=20 if t == 64 else 8, batch=args.batch, primer=512,
                                  new_tokens=128) for t in (64, 256)]}
        ROWS_DIR.mkdir(parents=True, exist_ok=True)
        (ROWS_DIR / "speed.json").write_text(json.dumps(r, indent=1) + "\n")
        for x in r["by_segment"]:
            print(x["segment"], json.dumps(x["median_tokens_per_s"]), x["train_ratio"], x["generate_ratio"])
    if args.collect:
        collect()


if __name__ == "__main__":
    main()
