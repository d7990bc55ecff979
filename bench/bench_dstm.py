"""The DSTM table (Bjare, Lattner & Widmer 2022; REFERENCE §2) on a bundled folk corpus: NLL
(nats and bits) and precision (argmax accuracy) per 16th-note frame, over all frames and only
where the frame changes ("EVT"), on the test split.

Frames are the ``dstm-frames`` encoding as a user gets it (16ths, a held note repeats its
pitch, pitches 48-95 + rest = 49 classes, a tune out of range moved by whole octaves); pieces
it refuses are skipped and counted. The end-of-piece token is not a frame and is not scored.
Every row predicts the same frames over the same 49 classes:

- ``repetition``: the previous frame again, with probability 1 - 0.1 (notelm's default eps);
- ``mc-3``: a 3rd-order Markov chain learned within each piece only (mode "stm"; notelm's
  default smoothing: backoff, alpha 1), the paper's short-term MC-3;
- ``ppm``: PPM learned within each piece only, with IDyOM's STM defaults (escape AX,
  unbounded order, interpolated, exclusion, update exclusion: `PPMConfig.idyom_stm`);
- ``ppm-c``: the same with escape C;
- ``--run NAME=RUN_DIR``: a model trained with ``notelm train`` on the same corpus and
  encoding, scored exactly as ``notelm evaluate RUN`` scores it: its probability of each frame
  as it is, its argmax over its whole vocabulary (mass it gives to a token that is never a
  frame, such as an end token, is simply lost); in a combination its distributions are
  restricted to the 49 classes and renormalised;
- ``--combine NAME=A+B``: rows or run directories A and B combined by
  `notelm.models.combine` (entropy-weighted; ``--method``, ``--bias``).

    python bench/bench_dstm.py                      # oneills -> bench/results/dstm-oneills.json
    python bench/bench_dstm.py --corpus essen       # -> bench/results/dstm-essen.json
    python bench/bench_dstm.py --run ccstm-512=runs/ccstm --combine both=runs/transformer+ppm
    python bench/bench_dstm.py --smoke              # 20 test pieces, writes nothing

Published (The Session; NLL as printed: the neural rows in nats, the PPM row in bits; MC-3
and repetition as printed) are stored beside the results for reference.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from notelm.benchmarks import machine
from notelm.corpora import load_corpus
from notelm.encodings import get_encoding
from notelm.encodings.base import EncodingError
from notelm.encodings.vocab import N_SPECIAL
from notelm.evaluation import frame_metrics
from notelm.models.combine import CombineConfig, combine
from notelm.models.markov import MarkovChain, MarkovConfig, Repetition
from notelm.models.ppm import PPM, PPMConfig

HERE = Path(__file__).parent
ENCODING = "dstm-frames"
PUBLISHED = {
    "source": "Bjare, Lattner & Widmer (2022), TISMIR; The Session, test set (REFERENCE §2)",
    "note": "NLL as printed: CCSTM/DCSTM/WaveNet/Transformer in nats; PPM from a package that "
            "reports bits; MC-3 and repetition as printed. precision = argmax accuracy.",
    "rows": {
        "ccstm-512": {"nll": 0.574, "precision": 0.848},
        "ccstm-32": {"nll": 0.733, "precision": 0.783},
        "dcstm-512": {"nll": 0.792, "precision": 0.781},
        "ppm": {"nll_bits": 1.387, "precision": 0.798},
        "mc-3": {"nll": 1.922, "precision": 0.606},
        "repetition": {"nll": 2.724, "precision": 0.606},
        "wavenet-512 (long-term)": {"nll": 0.502},
        "transformer-512 (long-term)": {"nll": 0.370},
    },
    "evt_nll": {"ccstm-512": 1.237, "idyom": 1.870},
}
BASELINES = {  # name -> the model over an alphabet of a classes
    "repetition": lambda a: Repetition(alphabet_size=a),
    "mc-3": lambda a: MarkovChain(alphabet_size=a, config=MarkovConfig(order=3), mode="stm"),
    "ppm": lambda a: PPM(alphabet_size=a, config=PPMConfig.idyom_stm(), mode="stm"),
    "ppm-c": lambda a: PPM(alphabet_size=a, config=PPMConfig(escape="c", update_exclusion=True), mode="stm"),
}


# ---- frames ------------------------------------------------------------------------------------


def frames(encoding, pieces) -> tuple[list[int], list[np.ndarray], Counter]:
    """Indices of the pieces the encoding takes, their frames as classes 0..48, and the
    refused ones by reason."""
    kept, out, skipped = [], [], Counter()
    for i, piece in enumerate(pieces):
        try:
            ids = np.asarray(encoding.encode(piece), dtype=np.int64)
        except EncodingError as e:
            skipped[e.reason] += 1
            continue
        content = ids[ids >= N_SPECIAL] - N_SPECIAL  # the end token is no frame
        if len(content) == 0:
            skipped["no frames"] += 1
            continue
        kept.append(i)
        out.append(content)
    return kept, out, skipped


def run_distributions(run_dir: str, pieces, targets: list[np.ndarray], vocab, device: str,
                      corpus: str) -> list[np.ndarray]:
    """A trained run's distributions at every frame of ``pieces``, over the 49 classes."""
    from notelm.runs import open_run

    run = open_run(run_dir)
    trained_on = run.config.get("data", {}).get("corpus")
    if trained_on != corpus:
        print(f"warning: {run_dir} was trained on {trained_on!r}, not {corpus!r}", file=sys.stderr)
    encoding = run.encoding()
    if encoding.vocab != vocab:
        sys.exit(f"{run_dir}: its encoding ({encoding.name}) has another vocabulary than {ENCODING}; "
                 "this table compares models of the same frames")
    sequences = []
    for piece, target in zip(pieces, targets):
        ids = np.asarray(encoding.encode(piece), dtype=np.int64)
        if not np.array_equal(ids[ids >= N_SPECIAL] - N_SPECIAL, target):
            sys.exit(f"{run_dir}: its encoding settings give other frames than {ENCODING}'s defaults "
                     f"(piece {piece.meta.id})")
        sequences.append(ids)
    return [d[ids >= N_SPECIAL] for ids, d in zip(sequences, run.model(device=device).distributions(sequences))]


def frames_only(dists: list[np.ndarray], size: int) -> list[np.ndarray]:
    """Distributions over the ``size`` classes: whole-vocabulary ones restricted and renormalised."""
    return [d if d.shape[1] == size else d[:, N_SPECIAL:] / d[:, N_SPECIAL:].sum(axis=1, keepdims=True)
            for d in dists]


# ---- the table ---------------------------------------------------------------------------------


def parse_named(items: list[str], flag: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            sys.exit(f"{flag} takes NAME=VALUE; got {item!r}")
        pairs.append((name, value))
    return pairs


def table(rows: list[dict]) -> str:
    cols = ["nll_nats", "nll_bits", "precision", "evt_nll_nats", "evt_nll_bits", "evt_precision"]
    lines = [f"{'model':<20}" + "".join(f"{c:>14}" for c in cols) + f"{'seconds':>10}"]
    for r in rows:
        lines.append(f"{r['model']:<20}" + "".join(f"{r[c]:>14.3f}" for c in cols) + f"{r['seconds']:>10.1f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--corpus", default="oneills", help="a bundled corpus (oneills, essen, ryans, ...)")
    parser.add_argument("--split", default="test", choices=("train", "valid", "test"))
    parser.add_argument("--run", action="append", default=[], metavar="NAME=RUN_DIR")
    parser.add_argument("--combine", action="append", default=[], metavar="NAME=A+B",
                        help="A, B: row names or run directories")
    parser.add_argument("--method", default=CombineConfig().method, help="combination: geometric or arithmetic")
    parser.add_argument("--bias", type=float, default=CombineConfig().bias, help="combination entropy bias")
    parser.add_argument("--device", default="cpu", help="for --run models: cpu, cuda, ...")
    parser.add_argument("--baselines", default=",".join(BASELINES), help="comma-separated subset")
    parser.add_argument("--smoke", action="store_true", help="20 pieces; write nothing")
    args = parser.parse_args()
    command = shlex.join(["python", *sys.argv])
    baselines = [b for b in args.baselines.split(",") if b]
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        sys.exit(f"unknown baseline {unknown[0]!r}; known: {', '.join(BASELINES)}")
    runs = parse_named(args.run, "--run")
    combos = [(name, spec.split("+")) for name, spec in parse_named(args.combine, "--combine")]
    wanted = {part for _, parts in combos for part in parts}
    names = {*baselines, *(n for n, _ in runs), *(n for n, _ in combos)}
    for part in sorted(wanted - names):
        if not Path(part).is_dir():
            sys.exit(f"--combine: {part!r} is neither a row nor a run directory")

    encoding = get_encoding(ENCODING)
    size = encoding.vocab.content_size  # 49
    corpus = load_corpus(args.corpus)
    pieces = corpus.split(args.split)
    if corpus.spec.melodic:  # as `notelm train` and `notelm evaluate` see them
        pieces = [p.melody() for p in pieces]
    if args.smoke:
        pieces = pieces[:20]
    kept, targets, skipped = frames(encoding, pieces)
    pieces = [pieces[i] for i in kept]
    print(f"{args.corpus} {args.split}: {len(pieces)} pieces, {sum(map(len, targets)):,} frames; "
          f"skipped {dict(skipped)}", file=sys.stderr)

    computed: dict[str, list[np.ndarray]] = {}
    rows = []

    def add_row(name: str, compute, **about) -> None:
        start = time.perf_counter()
        dists = compute()
        seconds = time.perf_counter() - start
        whole = dists[0].shape[1] > size  # a run's: over its whole vocabulary
        scored = [t + N_SPECIAL for t in targets] if whole else targets
        rows.append({"model": name, **frame_metrics(scored, dists), "seconds": seconds, **about})
        print(table(rows[-1:]).splitlines()[-1], file=sys.stderr)
        if name in wanted:
            computed[name] = dists

    for name in baselines:
        model = BASELINES[name](size)
        add_row(name, lambda m=model: m.distributions(targets),
                settings={"class": type(model).__name__, "mode": getattr(model, "mode", None),
                          "config": model.config.to_dict()})
    for name, run_dir in runs:
        add_row(name, lambda d=run_dir: run_distributions(d, pieces, targets, encoding.vocab, args.device, args.corpus),
                run=run_dir)
    config = CombineConfig(method=args.method, bias=args.bias)

    def part(name: str) -> list[np.ndarray]:
        if name in computed:
            return frames_only(computed[name], size)
        return frames_only(run_distributions(name, pieces, targets, encoding.vocab, args.device, args.corpus), size)

    for name, parts in combos:
        add_row(name, lambda ps=parts: [combine(list(d), config) for d in zip(*map(part, ps))],
                combine={"parts": parts, **config.to_dict()})

    result = {"rows": rows, "command": command, "corpus": args.corpus, "split": args.split,
              "encoding": {"name": ENCODING, "settings": encoding.config.to_dict()},
              "pieces": len(pieces), "skipped": dict(skipped), "machine": machine(), "published": PUBLISHED}
    print(table(rows))
    if not args.smoke:
        out = HERE / "results" / f"dstm-{args.corpus}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
