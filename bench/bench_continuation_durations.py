"""How long the notes of a continuation last, beside the pianist's: what the repetition table of
bench_perceiver_ar.py does not show. For the first 8 of its primers (every other maestro test
performance, the first 10 s, 20 s continued, seed = primer index), per sampling setting: the
median note duration, the share of notes at the 5-s limit of a note that never gets its
note-off, and the mean number of notes sounding at once (sampled every 0.25 s).

    python bench/bench_continuation_durations.py --root ../shared/data/maestro-mini

Writes bench/results/perceiver-ar-durations.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from notelm.continuation import REPEAT_PENALTY, RULES, TEMPERATURE  # noqa: E402

SETTINGS = {"no rules, T=1": {"rules": False, "temperature": 1.0, "repeat_penalty": 1.0},
            "rules, T=1": {"rules": True, "temperature": 1.0, "repeat_penalty": 1.0},
            "rules, T=1.1": {"rules": True, "temperature": 1.1, "repeat_penalty": 1.0},
            f"rules, T={TEMPERATURE:g}, repeat penalty {REPEAT_PENALTY:g} (default)":
                {"rules": RULES, "temperature": TEMPERATURE, "repeat_penalty": REPEAT_PENALTY}}


def durations(pieces, seconds: float, cap: float) -> dict[str, float]:
    d = np.concatenate([p.duration for p in pieces])
    at = np.arange(0.5, seconds, 0.25)
    sounding = [((p.onset[:, None] <= at) & (p.onset[:, None] + p.duration[:, None] > at)).sum(0).mean() for p in pieces]
    return {"median_duration": float(np.median(d)), "share_at_cap": float(np.mean(d >= cap - 0.01)),
            "notes_sounding": float(np.mean(sounding)), "notes": int(len(d))}


def main() -> None:
    from bench_perceiver_ar import split_pieces
    from notelm.benchmarks import machine
    from notelm.continuation import continue_primer, primer_stretch
    from notelm.runs import open_run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--run", default="builtin:perceiver-ar")
    parser.add_argument("--primers", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pieces = split_pieces(args.root)[::2][: args.primers]
    r = open_run(args.run)
    encoding, model = r.encoding(), r.model(dtype=torch.float32)
    cap = encoding.UNENDED_SECONDS
    rows = {}
    for name, options in SETTINGS.items():
        sampled = [continue_primer(model, encoding, primer_stretch(p, 0.0, 10.0), 10.0, seconds=20.0, seed=i,
                                   **options).continuation for i, p in enumerate(pieces)]
        rows[name] = durations(sampled, 20.0, cap)
        print(name, json.dumps({k: round(v, 3) for k, v in rows[name].items()}), flush=True)
    rows["real"] = durations([encoding.quantized(primer_stretch(p, 10.0, 30.0)) for p in pieces], 20.0, cap)
    print("real", json.dumps({k: round(v, 3) for k, v in rows["real"].items()}))
    out = HERE / "results" / "perceiver-ar-durations.json"
    out.write_text(json.dumps({"rows": rows, "run": args.run, "primers": [p.meta.id for p in pieces],
                               "command": " ".join(["python", "bench/bench_continuation_durations.py", *sys.argv[1:]]),
                               "machine": machine()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
