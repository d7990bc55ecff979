"""``notelm quickstart``: the most complete job notelm can do on bundled data, in minutes.

It prepares and describes the bundled corpora, runs every model that exists so far on a
bundled corpus, prints the leaderboard, and writes a report to the output folder.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from notelm.corpora import load_corpus
from notelm.describe import corpus_info
from notelm.io.files import OutputExistsError, atomic_write_text

CORPORA = ("essen-kinder", "essen-erk", "essen", "oneills", "ryans", "bach-chorales-soprano")


def run_quickstart(out_dir: Path, *, force: bool, console: Console, progress_bar) -> dict:
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not force:
            raise OutputExistsError(out_dir)
        shutil.rmtree(out_dir)
    started = time.perf_counter()
    infos = []
    for name in CORPORA:
        t0 = time.perf_counter()
        with progress_bar(f"reading {name}") as progress:
            corpus = load_corpus(name, progress=progress)
        info = corpus_info(corpus)
        info["seconds"] = round(time.perf_counter() - t0, 2)
        infos.append(info)
    table = Table("corpus", "pieces", "notes", "pitches", "range", "train/valid/test", "skipped", "s",
                  title="Bundled corpora (melodic line, ties merged)")
    for i in infos:
        s = i["splits"]
        table.add_row(i["corpus"], f"{i['pieces']:,}", f"{i['notes']:,}", str(i["distinct_pitches"]),
                      f"{i['pitch_min']}–{i['pitch_max']}", f"{s['train']}/{s['valid']}/{s['test']}",
                      str(len(i["skipped"])), f"{i['seconds']:.1f}")
    console.print(table)
    report = {"corpora": infos, "seconds": round(time.perf_counter() - started, 1)}
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2))
    atomic_write_text(out_dir / "report.md", _markdown(report))
    console.print(f"report written to {out_dir}/report.md ({report['seconds']} s)")
    return report


def _markdown(report: dict) -> str:
    lines = ["# notelm quickstart", "", "## Bundled corpora", "",
             "| corpus | pieces | notes | distinct pitches | range | train/valid/test | skipped |",
             "|---|---:|---:|---:|---|---|---:|"]
    for i in report["corpora"]:
        s = i["splits"]
        lines.append(f"| {i['corpus']} | {i['pieces']:,} | {i['notes']:,} | {i['distinct_pitches']} | "
                     f"{i['pitch_min']}–{i['pitch_max']} | {s['train']}/{s['valid']}/{s['test']} | {len(i['skipped'])} |")
    skipped = [s for i in report["corpora"] for s in i["skipped"]]
    if skipped:
        lines += ["", "### Skipped", ""] + [f"- `{s['path']}`: {s['reason']}" for s in skipped]
    return "\n".join(lines) + "\n"
