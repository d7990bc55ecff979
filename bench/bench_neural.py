"""Speed of the neural engine on this machine's CPU: training tokens per second for every
preset of every network family, and Transformer sampling with and without the KV cache at a
long context (the issue's bar: cached >= 10x uncached at context 2048).

Weights and training tokens are random (speed does not depend on them); each training figure
is the mean over a few optimiser steps after warm-up steps; sampling draws 64 tokens after a
primer that fills the context. No GPU was available where these figures were first taken:
``machine.gpu`` says null then.

    python bench/bench_neural.py              # writes bench/results/neural.json and prints it
    python bench/bench_neural.py --smoke      # tiny sizes, writes nothing (CI)
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

from notelm.benchmarks import generation_speed, machine, training_speed

HERE = Path(__file__).parent
STEPS = {"debug": (20, 3), "small": (10, 2), "base": (3, 1)}  # (timed steps, warm-up steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: steady on a CPU shared with other work; see the result's load_average)")
    parser.add_argument("--context", type=int, default=2048)
    parser.add_argument("--presets", default="debug,small,base")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; write nothing")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    presets = ["debug"] if args.smoke else args.presets.split(",")
    result: dict = {"threads": args.threads, "load_average_before": os.getloadavg(), "training": []}
    for model in ("lstm", "transformer"):
        for preset in presets:
            steps, warmup = (2, 1) if args.smoke else STEPS[preset]
            r = training_speed(model, preset, steps=steps, warmup=warmup)
            result["training"].append(r)
            print(f"train {model:12s} {preset:6s} {r['parameters']:>11,} params  {r['tokens_per_s']:>10,.0f} tokens/s")
    context, tokens = (128, 16) if args.smoke else (args.context, 64)
    result["generation"] = generation_speed(context=context, new_tokens=tokens, preset="debug" if args.smoke else "small")
    g = result["generation"]
    print(f"generate at context {context}: cached {g['cached_tokens_per_s']:.1f} tokens/s, "
          f"uncached {g['uncached_tokens_per_s']:.1f} tokens/s, {g['speedup']:.1f}x "
          f"(largest log-probability difference {g['max_abs_log_prob_diff']:.1e})")
    result["load_average_after"] = os.getloadavg()
    result["machine"] = machine()
    if not args.smoke:
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "neural.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
