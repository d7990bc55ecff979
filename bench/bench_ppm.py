"""Speed, memory and accuracy of the PPM engine on the Essen folk songs bundled with music21.

Melodies come from `notelm.corpora.load_corpus` (the monophonic line, ties merged): Essen
"fink" and "kinder" collections and the whole Essen set. The multiple-viewpoint figures time
`notelm.idyom.run_idyom`, what ``notelm idyom`` runs.

Reference speed (the C++ R package ppm 0.3.0, P. M. C. Harrison): STM C* over fink (~33,000
notes) in 5.55 s; LTM C* 10-fold cross-validation over kinder (213 melodies, 8,393 notes) in
3.27 s. Reference accuracy (Pearce 2005, Dataset 7 = kinder, pitch, bits/note): LTM C*I 2.428,
STM C*I 2.693, LTM+ C*I with STM C*I (arithmetic, b = 2) 2.106.

    python bench/bench_ppm.py            # writes bench/results/ppm.json and prints it
    python bench/bench_ppm.py --smoke    # tiny sizes, writes nothing (CI)

Numba compile time is measured apart (a fresh process with an empty cache) and kept out of
the timed figures, which are the best of a few repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numba
import numpy as np

from notelm.corpora import load_corpus
from notelm.evaluation import cross_validate, evaluate
from notelm.idyom import run_idyom
from notelm.models.combine import CombineConfig, Combined
from notelm.models.ppm import PPM, PPMConfig

HERE = Path(__file__).parent
C_STAR = PPMConfig(escape="c", order_bound=None, update_exclusion=False)  # C*I, IDyOM's LTM


def load(name: str) -> list[np.ndarray]:
    """Pitches of the melodies of an Essen collection ("fink", "kinder") or of all of Essen."""
    corpus = load_corpus("essen" if name == "all" else f"essen-{name}")
    return [np.asarray(m.pitch, dtype=np.int64) for m in corpus.melodies()]


def to_ids(melodies: list[np.ndarray]) -> tuple[list[np.ndarray], int]:
    """IDyOM's alphabet: the distinct pitches of the corpus, in order."""
    alphabet = np.unique(np.concatenate(melodies))
    return [np.searchsorted(alphabet, m) for m in melodies], len(alphabet)


def best_of(repeats: int, fn):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def rss_mb() -> float | None:
    """Current resident memory (Linux), in MB."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return None


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def warm_up() -> float:
    """Compile (or load from numba's cache) every kernel on tiny inputs; return the seconds."""
    start = time.perf_counter()
    model = PPM(alphabet_size=3, mode="stm")
    model.score([[0, 1, 2, 0]])
    state = model.start()
    model.observe(state, 1)
    model.predict(state)
    model = PPM(alphabet_size=3, mode="ltm").fit([[0, 1, 2]])
    model.distributions([[0, 1]])
    model.observe(model.start([0]), 1)
    return time.perf_counter() - start


def compile_seconds(cache_dir: str | None) -> float:
    """Warm-up time in a fresh process: a cold compile with an empty cache directory."""
    env = dict(os.environ, **({"NUMBA_CACHE_DIR": cache_dir} if cache_dir else {}))
    out = subprocess.run([sys.executable, __file__, "--warm-up"], env=env, capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip())


def ltm_cv_engine(melodies, size, k=10):
    """The engine alone: per fold, train an LTM and predict p(event) and entropy."""
    folds = np.arange(len(melodies)) % k
    for f in range(k):
        model = PPM(alphabet_size=size, config=C_STAR, mode="ltm")
        model.fit([m for m, g in zip(melodies, folds, strict=True) if g != f])
        model.predict_pieces([m for m, g in zip(melodies, folds, strict=True) if g == f])


# (corpus, viewpoints, run_idyom settings): the best systems found for notelm's report
MVS_RUNS = [
    ("essen-kinder", "cpitch", {}),
    ("essen-kinder", "cpitch*dur,cpint,cpint*dur*ioi,cpitch", {"bias": 4.0, "viewpoint_bias": 1.0}),
    ("bach-chorales-soprano", "cpitch", {}),
    ("bach-chorales-soprano", "cpint*dur,cpitch*dur,cpint*ioi", {}),
]


def multiple_viewpoints(smoke: bool) -> list[dict]:
    """`run_idyom` (BOTH+, IDyOM's default smoothing, 10-fold CV): bits and modelling time."""
    out = []
    for name, viewpoints, settings in MVS_RUNS[:1] if smoke else MVS_RUNS:
        corpus = load_corpus(name)
        pieces = corpus.pieces[:30] if smoke else corpus
        best = min((run_idyom(pieces, models="both+", viewpoints=viewpoints, **settings) for _ in range(1 if smoke else 2)),
                   key=lambda r: r.seconds)
        summary = best.summary()
        out.append({"corpus": name, "models": "both+", "viewpoints": viewpoints, **settings,
                    **{k: summary[k] for k in ("mean_ic_per_piece", "mean_ic_per_event", "pieces", "events",
                                               "seconds", "events_per_second")}})
    return out


def run(smoke: bool) -> dict:
    repeats = 1 if smoke else 3
    results: dict = {"machine": {
        "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__,
        "cpu_count": os.cpu_count()}}
    with tempfile.TemporaryDirectory() as empty:
        results["jit"] = {"compile_s": compile_seconds(empty), "cached_first_call_s": compile_seconds(None)}
    warm_up()

    fink = load("fink")
    fink, size = to_ids(fink[:20] if smoke else fink)
    events = sum(map(len, fink))
    seconds, _ = best_of(repeats, lambda: PPM(alphabet_size=size, config=C_STAR, mode="stm").predict_pieces(fink))
    results["stm_c_star_fink"] = {"pieces": len(fink), "events": events, "alphabet": size, "seconds": seconds,
                                  "events_per_s": events / seconds, "speedup_vs_cpp_5.55s": 5.55 / seconds}

    kinder = load("kinder")
    kinder, size = to_ids(kinder[:30] if smoke else kinder)
    events = sum(map(len, kinder))
    seconds, _ = best_of(repeats, lambda: ltm_cv_engine(kinder, size))
    full_seconds, ltm = best_of(1, lambda: cross_validate(
        lambda train: PPM(alphabet_size=size, config=C_STAR, mode="ltm").fit(train), kinder, k=10))
    results["ltm_c_star_cv10_kinder"] = {
        "pieces": len(kinder), "events": events, "alphabet": size, "seconds": seconds,
        "events_per_s": events / seconds, "speedup_vs_cpp_3.27s": 3.27 / seconds,
        "cross_validate_with_distributions_s": full_seconds}

    stm = evaluate(PPM(alphabet_size=size, config=C_STAR, mode="stm"), kinder)
    both = cross_validate(lambda train: Combined(
        {"ltm": PPM(alphabet_size=size, config=C_STAR, mode="ltm+"),
         "stm": PPM(alphabet_size=size, config=C_STAR, mode="stm")},
        config=CombineConfig.pearce2005()).fit(train), kinder, k=10)
    results["kinder_mean_ic_bits"] = {
        "ltm_c_star_i_cv10": ltm.mean_ic(), "published_ltm": 2.428,
        "stm_c_star_i": stm.mean_ic(), "published_stm": 2.693,
        "ltm_plus_stm_arithmetic_b2_cv10": both.mean_ic(), "published_both_plus": 2.106,
        "note": "mean IC per melody, then over melodies; piece i in fold i mod 10"}

    results["idyom_multiple_viewpoints"] = multiple_viewpoints(smoke)
    if not smoke:
        essen = load("all")
        essen, size = to_ids(essen)
        events = sum(map(len, essen))
        before = rss_mb()
        model = PPM(alphabet_size=size, config=PPMConfig(escape="c"), mode="ltm")
        seconds, _ = best_of(1, lambda: model.fit(essen))
        results["ltm_ppm_star_all_essen"] = {
            "pieces": len(essen), "events": events, "alphabet": size, "fit_seconds": seconds,
            "events_per_s": events / seconds, "ngrams": model.n_nodes,
            "trie_mb": model.nbytes / 2**20, "rss_before_fit_mb": before,
            "peak_rss_mb": peak_rss_mb()}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; write nothing")
    parser.add_argument("--warm-up", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.warm_up:
        print(warm_up())
        return
    results = run(args.smoke)
    text = json.dumps(results, indent=2)
    print(text)
    if not args.smoke:
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "ppm.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
