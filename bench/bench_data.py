"""Speed of the data layer: first parse of corpora, and cached `notelm data info`.

    python bench/bench_data.py           # writes bench/results/data.json and prints it
    python bench/bench_data.py --smoke   # a tiny run (CI), writes nothing

Targets (issue 2): cached `notelm data info essen` under 2 s wall; first parse of all Essen
(~8,500 tunes) at >= 300 tunes/s per core; MAESTRO-mini files/s and notes/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
MAESTRO_MINI = HERE.parent.parent / "shared" / "data" / "maestro-mini"


def machine() -> dict:
    import numpy
    import symusic

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "numpy": numpy.__version__,
            "symusic": symusic.__version__}


def first_parse(name: str, root: Path | None, workers: int) -> dict:
    """Parse a corpus from its files, with a cold (empty) cache."""
    from notelm.corpora import load_corpus

    with tempfile.TemporaryDirectory() as cache:
        os.environ["NOTELM_CACHE_DIR"] = cache
        t0 = time.perf_counter()
        c = load_corpus(name, root, workers=workers)
        seconds = time.perf_counter() - t0
    files = len(c.spec.files(c.root))
    notes = sum(len(p) for p in c.pieces)
    return {"corpus": name, "workers": workers, "pieces": len(c.pieces), "files": files, "notes": notes,
            "skipped": len(c.skipped), "seconds": round(seconds, 3),
            "pieces_per_s": round(len(c.pieces) / seconds, 1), "pieces_per_s_per_worker": round(len(c.pieces) / seconds / workers, 1),
            "files_per_s": round(files / seconds, 1), "notes_per_s": round(notes / seconds)}


def cached_info(name: str, repeats: int) -> dict:
    """Wall time of the whole command, Python start-up included, with a warm cache."""
    cmd = [sys.executable, "-m", "notelm", "data", "info", name, "--json"]
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NOTELM_CACHE_DIR": cache}
        subprocess.run(cmd, env=env, check=True, capture_output=True)  # fills the cache
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
    return {"corpus": name, "command": " ".join(cmd[1:]), "median_s": round(statistics.median(times), 3),
            "runs_s": [round(t, 3) for t in times]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, write nothing")
    args = ap.parse_args()
    if args.smoke:
        print(json.dumps({"first_parse": first_parse("essen-kinder", None, 1)}, indent=2))
        return
    results = {"machine": machine(), "first_parse": [], "cached_info": cached_info("essen", 5)}
    for workers in (1, os.cpu_count() or 1):
        results["first_parse"].append(first_parse("essen", None, workers))
        if MAESTRO_MINI.is_dir():
            results["first_parse"].append(first_parse("maestro", MAESTRO_MINI, workers))
    results["first_parse"].append(first_parse("bach-chorales", None, os.cpu_count() or 1))
    text = json.dumps(results, indent=2)
    print(text)
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "data.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
