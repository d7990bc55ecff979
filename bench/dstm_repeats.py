"""Where PPM's short-term model beats a CCSTM and where it does not: the DSTM table's figures
split by whether the frame's recent past has already occurred, exactly, earlier in the same
piece ("repeated": the last ``--k`` frames, 16 by default, a bar of 4/4, appeared before with
something after them) or not ("new").

PPM* predicts repeated material from the longest exact match, so it should be sharpest
there; a CCSTM matches learned codes, not exact n-grams. This shows how much of each
model's precision and NLL comes from each kind of frame.

    python bench/dstm_repeats.py --run ccstm-512=runs/dstm-oneills/ccstm-512
    # -> bench/results/dstm-repeats-oneills.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_dstm import BASELINES, ENCODING, frames, frames_only, parse_named, run_distributions  # noqa: E402
from notelm.benchmarks import machine  # noqa: E402
from notelm.corpora import load_corpus  # noqa: E402
from notelm.encodings import get_encoding  # noqa: E402
from notelm.evaluation import frame_metrics  # noqa: E402

HERE = Path(__file__).parent


def repeated(seq: np.ndarray, k: int) -> np.ndarray:
    """(n,) bool: frame i's previous k frames occurred earlier in the piece, followed by a frame."""
    seen, out = set(), np.zeros(len(seq), dtype=bool)
    for i in range(len(seq)):
        if i >= k:
            key = seq[i - k:i].tobytes()
            out[i] = key in seen
            seen.add(key)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="oneills")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--run", action="append", default=[], metavar="NAME=RUN_DIR")
    args = parser.parse_args()
    encoding = get_encoding(ENCODING)
    size = encoding.vocab.content_size
    pieces = [p.melody() for p in load_corpus(args.corpus).split("test")]
    kept, targets, _ = frames(encoding, pieces)
    pieces = [pieces[i] for i in kept]
    masks = [repeated(t, args.k) for t in targets]
    models = {name: BASELINES[name](size).distributions(targets) for name in ("ppm", "ppm-c")}
    for name, run in parse_named(args.run, "--run"):
        models[name] = frames_only(run_distributions(run, pieces, targets, encoding.vocab, "cpu", args.corpus), size)
    rows = []
    for name, dists in models.items():
        for part, pick in (("repeated", lambda m: m), ("new", lambda m: ~m)):
            t = [tt[pick(m)] for tt, m in zip(targets, masks)]
            d = [dd[pick(m)] for dd, m in zip(dists, masks)]
            r = frame_metrics(t, d)
            rows.append({"model": name, "frames": part, "nll_nats": r["nll_nats"], "precision": r["precision"],
                         "events": r["events"]})
            print(f"{name:18s} {part:9s} {r['events']:>7,} frames  {r['nll_nats']:.3f} nats  precision {r['precision']:.3f}")
    result = {"rows": rows, "k": args.k, "corpus": args.corpus, "command": shlex.join(["python", *sys.argv]),
              "note": "run distributions restricted to the 49 classes and renormalised", "machine": machine()}
    out = HERE / "results" / f"dstm-repeats-{args.corpus}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
