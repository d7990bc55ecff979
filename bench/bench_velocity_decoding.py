"""How the humanizer's velocity is read from its distribution: argmax (what ``humanize
--temperature 0`` writes), the expected velocity and the median, on MAESTRO splits of
maestro-mini, beside the per-pitch mean. The question: is the built-in humanizer's weakness on
the test split (greedy MAE above the per-pitch mean's) its decoding or its ranking of notes?

``builtin:velocity`` was trained with ``target_dropout`` 1.0, so its decoder never reads a
previous velocity: free-running decoding equals teacher forcing, and each note's distribution
is the same whichever way the notes before it were decoded.

    python bench/bench_velocity_decoding.py    # writes bench/results/velocity-decoding.json
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from notelm.benchmarks import machine
from notelm.corpora import load_corpus
from notelm.io.files import atomic_write_text
from notelm.runs import open_run
from notelm.velocity import N_SPECIAL, pairs, run_baselines, teacher_forced, velocity_figures

HERE = Path(__file__).parent
ROOT = Path(os.environ.get("NOTELM_SHARED", HERE.parent.parent / "shared")) / "data" / "maestro-mini"
KEYS = ("mae_greedy", "pearson", "std_ratio")


def main() -> None:
    torch.set_num_threads(1)
    run = open_run("builtin:velocity")
    encoding, model, base = run.encoding(), run.model(dtype=torch.float32), run_baselines(run)
    splits = {}
    for split in ("valid", "test"):
        sources, targets, _ = pairs(encoding, load_corpus("maestro", ROOT).split(split))
        true = [np.asarray(t) - N_SPECIAL for t in targets]
        rows = {}
        for name, pred in teacher_forced(model, sources, targets).items():
            f = velocity_figures(true, argmax=pred, expected=pred, greedy=pred)
            rows[f"velocity-{name}"] = {k: round(f[k], 3) for k in KEYS}
        f = base.figures("pitch-mean", encoding, sources, targets)
        rows["pitch-mean"] = {k: round(f[k], 3) for k in KEYS}
        splits[split] = {"pieces": len(sources), "notes": int(sum(len(t) for t in true)), "rows": rows}
        print(split, json.dumps(splits[split]))
    out = HERE / "results" / "velocity-decoding.json"
    result = {"model": "builtin:velocity", "splits": splits, "command": "python bench/bench_velocity_decoding.py",
              "machine": machine()}
    atomic_write_text(out, json.dumps(result, indent=1) + "\n", force=True)


if __name__ == "__main__":
    main()
