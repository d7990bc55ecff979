"""The two ABC engines side by side on every bundled ABC tune: agreement and speed.

    python bench/bench_abc_engines.py           # writes bench/results/abc-engines.json
    python bench/bench_abc_engines.py --smoke   # kinder only, writes nothing

"Agree" means the same notes (pitch, onset, duration, voice) once music21's ties are merged.
For each corpus it lists the first disagreements with the first differing note, so a reader
can see what kind they are.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from notelm.corpora import get_spec
from notelm.io.abc import read_abc_items
from notelm.pieces import Piece

HERE = Path(__file__).parent


def first_difference(a: Piece, b: Piece) -> str:
    n = min(len(a), len(b))
    for c in ("pitch", "onset", "duration"):
        bad = np.flatnonzero(getattr(a, c)[:n] != getattr(b, c)[:n])
        if len(bad):
            i = int(bad[0])
            return f"note {i}: {c} {getattr(a, c)[i]} (abc2midi) vs {getattr(b, c)[i]} (music21)"
    return f"{len(a)} notes (abc2midi) vs {len(b)} (music21)"


def compare_file(path: str) -> dict:
    t0 = time.perf_counter()
    fast = read_abc_items(path)
    t1 = time.perf_counter()
    slow = read_abc_items(path, engine="music21")
    t2 = time.perf_counter()
    agree, differ = 0, []
    for a, b in zip(fast, slow):
        if isinstance(a, Piece) and isinstance(b, Piece) and a == b.merge_ties():
            agree += 1
        else:
            why = first_difference(a, b.merge_ties()) if isinstance(a, Piece) and isinstance(b, Piece) else \
                f"abc2midi: {a if not isinstance(a, Piece) else 'ok'}; music21: {b if not isinstance(b, Piece) else 'ok'}"
            src = a.meta.source if isinstance(a, Piece) else getattr(a, "path", "")
            differ.append({"tune": src.rsplit("corpus/", 1)[-1], "difference": why})
    return {"tunes": len(fast), "agree": agree, "differ": differ, "abc2midi_s": t1 - t0, "music21_s": t2 - t1}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("corpora", nargs="*", help="corpora to compare (default: essen, oneills, ryans)")
    args = ap.parse_args()
    corpora = ["essen-kinder"] if args.smoke else (args.corpora or ["essen", "oneills", "ryans"])
    results = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                           "python": platform.python_version()}, "corpora": {}}
    for name in corpora:
        files = [str(f) for f in get_spec(name).files(None)]
        with ProcessPoolExecutor(os.cpu_count()) as pool:
            parts = list(pool.map(compare_file, files))
        tunes = sum(p["tunes"] for p in parts)
        agree = sum(p["agree"] for p in parts)
        differ = [d for p in parts for d in p["differ"]]
        results["corpora"][name] = {
            "tunes": tunes, "agree": agree, "agreement": round(agree / tunes, 4),
            "abc2midi_tunes_per_s_per_core": round(tunes / sum(p["abc2midi_s"] for p in parts), 1),
            "music21_tunes_per_s_per_core": round(tunes / sum(p["music21_s"] for p in parts), 1),
            "first_differences": differ[:15],
        }
        print(name, {k: v for k, v in results["corpora"][name].items() if k != "first_differences"}, flush=True)
    if not args.smoke:
        (HERE / "results").mkdir(exist_ok=True)
        (HERE / "results" / "abc-engines.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
