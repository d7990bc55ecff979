"""Training speed of a DSTM: the parallel form (causal linear attention: masked h hᵀ blocks and
summed fast weights) against the step-by-step loop (one frame at a time through the same
network, carrying the fast weights and the encoder's per-layer inputs), same model, one run.

Each figure is frames per second of a full optimiser step (forward, next-frame NLL, backward,
Adam) on random frames, after warm-up steps; the two forms are timed alternately so both see
the same load. Both give the same loss (checked, and printed). On a GPU (``--device cuda``)
the 512 model (the paper's size: 512 filters, code 512, receptive field 512) is timed too.

    python bench/bench_dstm_speed.py                  # writes bench/results/dstm-speed.json
    python bench/bench_dstm_speed.py --smoke          # tiny sizes, writes nothing
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from notelm.benchmarks import machine
from notelm.models.neural import build_network

HERE = Path(__file__).parent
V = 53  # the dstm-frames vocabulary: 4 specials, rest, pitches 48-95
SIZES = {
    "small": {"filters": 64, "layers": 9, "code_size": 64, "dropout": 0.0},  # the CPU preset
    "paper": {"filters": 512, "layers": 9, "code_size": 512, "dropout": 0.0},  # the paper's best model's size
}


def loss_parallel(net, x, y):
    logits, _ = net(x, None)
    return F.cross_entropy(logits[..., 3:].reshape(-1, V - 3), (y - 3).reshape(-1))


def loss_steps(net, x, y):
    state, out = net.new_cache(x.shape[0]), []
    for t in range(x.shape[1]):
        logits, state = net(x[:, t:t + 1], state)
        out.append(logits)
    logits = torch.cat(out, 1)
    return F.cross_entropy(logits[..., 3:].reshape(-1, V - 3), (y - 3).reshape(-1))


def timed(fn, net, opt, x, y, steps: int, sync) -> tuple[float, float]:
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = fn(net, x, y)
        loss.backward()
        opt.step()
    sync()
    return time.perf_counter() - start, float(loss.detach())


def measure(size: str, *, batch: int, frames: int, steps: int, rounds: int, device: str) -> dict:
    torch.manual_seed(0)
    net = build_network("ccstm", {**SIZES[size], "vocab_size": V, "context": frames}).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    x = torch.randint(4, V, (batch, frames), device=device)
    y = torch.randint(4, V, (batch, frames), device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.no_grad():
        same = abs(float(loss_parallel(net, x, y)) - float(loss_steps(net, x, y)))
    seconds = {"parallel": 0.0, "step": 0.0}
    step_steps = max(1, steps // 4)  # the loop is slow: fewer steps, same frames/s
    timed(loss_parallel, net, opt, x, y, 1, sync)  # warm-up
    timed(loss_steps, net, opt, x, y, 1, sync)
    for _ in range(rounds):
        seconds["parallel"] += timed(loss_parallel, net, opt, x, y, steps, sync)[0]
        seconds["step"] += timed(loss_steps, net, opt, x, y, step_steps, sync)[0]
    par = rounds * steps * batch * frames / seconds["parallel"]
    stp = rounds * step_steps * batch * frames / seconds["step"]
    return {"size": size, "config": SIZES[size], "parameters": sum(p.numel() for p in net.parameters()),
            "batch": batch, "frames": frames, "device": device,
            "parallel_frames_per_s": par, "step_frames_per_s": stp, "speedup": par / stp,
            "loss_difference": same}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    result = {"threads": args.threads, "load_average_before": os.getloadavg(), "rows": []}
    runs = [("small", dict(batch=2, frames=64, steps=2, rounds=1))] if args.smoke else \
        [("small", dict(batch=8, frames=512, steps=8, rounds=3))]
    if args.device.startswith("cuda") and not args.smoke:
        runs.append(("paper", dict(batch=16, frames=512, steps=20, rounds=3)))
    for size, kw in runs:
        r = measure(size, device=args.device, **kw)
        result["rows"].append(r)
        print(f"ccstm {size:6s} {r['parameters']:>9,} params, batch {r['batch']} x {r['frames']} frames on {r['device']}: "
              f"parallel {r['parallel_frames_per_s']:,.0f} frames/s, step-by-step {r['step_frames_per_s']:,.0f} frames/s "
              f"-> {r['speedup']:.1f}x (loss difference {r['loss_difference']:.1e})")
    result["load_average_after"] = os.getloadavg()
    result["machine"] = machine()
    if not args.smoke:
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "dstm-speed.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
