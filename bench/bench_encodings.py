"""Speed and round-trip figures of notelm's encodings on real corpora.

- Essen (all ~8,500 tunes bundled with music21): round trips of ``grid`` (plain and the
  tutorial's transposed form), ``dstm-frames`` and ``melody``: exact / skipped by reason;
  tunes per second of the grid encoding.
- MAESTRO-mini (274 performances, ../shared/data/maestro-mini): round trips of
  ``performance`` and ``note-tokens`` (bins fitted on the train split, as midi-translation
  fits them on its training data); events per second of the performance encoding side by side
  with MidiTok's MIDILike on the same files in the same run, each from its own in-memory input
  (a Piece; a symusic Score) and each with its own preprocessing (our sustain and 10 ms grid;
  MidiTok's resampling to its beat grid).

    python bench/bench_encodings.py            # writes bench/results/encodings.json and prints it
    python bench/bench_encodings.py --smoke    # tiny sizes, writes nothing (CI)

Timed figures are the best of a few repeats.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from notelm.encodings import EncodingError, get_encoding, roundtrip_report
from notelm.io import read_abc_items, read_midi
from notelm.pieces import Piece

HERE = Path(__file__).parent
ESSEN = Path(importlib.util.find_spec("music21").submodule_search_locations[0]) / "corpus" / "essenFolksong"
MAESTRO = Path(os.environ.get("NOTELM_SHARED", HERE.parent.parent / "shared")) / "data" / "maestro-mini"


def best_of(repeats: int, fn):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {m: importlib.metadata.version(m) for m in ("numpy", "symusic", "miditok", "music21")}
    return {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
            "python": platform.python_version(), **versions}


def summary(report: dict, seconds: float) -> dict:
    return {**{k: report[k] for k in ("pieces", "exact", "skipped", "mismatched", "skip_reasons", "mismatches")},
            "roundtrip_seconds": round(seconds, 3)}


# ---- Essen ---------------------------------------------------------------------------------------


def essen(smoke: bool, repeats: int) -> dict:
    files = sorted(ESSEN.glob("*.abc"))[: 2 if smoke else None]
    read_s, items = best_of(1, lambda: [x for f in files for x in read_abc_items(f)])
    pieces = [x for x in items if isinstance(x, Piece)]
    out: dict = {"files": len(files), "tunes": len(items), "read_errors": len(items) - len(pieces),
                 "read_seconds": round(read_s, 2)}
    for label, name, kw in [("grid", "grid", {}), ("grid_transposed", "grid", {"transpose": True}),
                            ("dstm_frames", "dstm-frames", {}), ("melody", "melody", {})]:
        enc = get_encoding(name, **kw)
        seconds, report = best_of(1, lambda enc=enc: roundtrip_report(items, enc))
        out[label] = {"settings": kw, **summary(report, seconds)}

    enc = get_encoding("grid")

    def encode_all() -> int:
        n = 0
        for p in pieces:
            with contextlib.suppress(EncodingError):  # the skipped tunes cost their check too
                n += len(enc.encode(p))
        return n

    seconds, tokens = best_of(repeats, encode_all)
    out["grid_speed"] = {"tunes": len(pieces), "seconds": round(seconds, 3), "tunes_per_s": round(len(pieces) / seconds),
                         "tokens": tokens, "tokens_per_s": round(tokens / seconds),
                         "note": "encode() from parsed Pieces, melody extraction and grid checks included"}
    return out


# ---- MAESTRO-mini ----------------------------------------------------------------------------------


def maestro_files(smoke: bool) -> tuple[list[Path], set[str]]:
    rows = list(csv.DictReader((MAESTRO / "maestro-mini.csv").open(encoding="utf-8")))
    rows = rows[:3] if smoke else rows
    return [MAESTRO / r["midi_filename"] for r in rows], {r["midi_filename"] for r in rows if r["split"] == "train"}


def speed(name: str, fn, inputs: list, repeats: int) -> dict:
    seconds, lengths = best_of(repeats, lambda: [fn(x) for x in inputs])
    events = int(sum(lengths))
    return {"name": name, "files": len(inputs), "events": events, "seconds": round(seconds, 3),
            "events_per_s": round(events / seconds)}


def maestro(smoke: bool, repeats: int) -> dict:
    import miditok
    import symusic

    if not MAESTRO.is_dir():
        return {"skipped": f"MAESTRO-mini not found at {MAESTRO}"}
    files, train = maestro_files(smoke)
    read_s, pieces = best_of(1, lambda: [read_midi(f, "second") for f in files])
    scores = [symusic.Score(str(f)) for f in files]
    out: dict = {"files": len(files), "notes": int(sum(len(p) for p in pieces)), "read_seconds": round(read_s, 2)}

    perf = get_encoding("performance")
    seconds, report = best_of(1, lambda: roundtrip_report(pieces, perf))
    out["performance_roundtrip"] = summary(report, seconds)
    nt = get_encoding("note-tokens").fit(p for f, p in zip(files, pieces) if f.relative_to(MAESTRO).as_posix() in train or smoke)
    seconds, report = best_of(1, lambda: roundtrip_report(pieces, nt))
    out["note_tokens_roundtrip"] = {**summary(report, seconds), "edges_fitted_on_train": nt.state_dict()["edges"],
                                    "edges_published": {"dstart": [0, 0.048, 0.5], "duration": [0, 0.146, 0.45],
                                                        "velocity": [0, 57, 74, 128]}}

    # speed: ours vs MidiTok's MIDILike, same files, same run
    midilike = miditok.MIDILike(miditok.TokenizerConfig(num_velocities=32))
    no_sustain = get_encoding("performance", sustain=False)
    ids = [perf.encode(p) for p in pieces]
    ml_ids = [[list(t.ids) for t in midilike.encode(s)] for s in scores]  # one id list per track
    rows = [
        speed("notelm performance encode (sustain applied)", lambda p: len(perf.encode(p)), pieces, repeats),
        speed("notelm performance encode (no sustain)", lambda p: len(no_sustain.encode(p)), pieces, repeats),
        speed("miditok MIDILike encode", lambda s: sum(len(t.ids) for t in midilike.encode(s)), scores, repeats),
        speed("notelm performance decode", lambda i: len(i) + 0 * len(perf.decode(i)), ids, repeats),
        speed("miditok MIDILike decode", lambda t: sum(map(len, t)) + 0 * len(midilike.decode(t).tracks),
              ml_ids, repeats),
    ]
    ours, theirs = rows[0]["events_per_s"], rows[2]["events_per_s"]
    out["speed"] = {"rows": rows, "encode_speedup_vs_miditok_midilike": round(ours / theirs, 1),
                    "decode_speedup_vs_miditok_midilike": round(rows[3]["events_per_s"] / rows[4]["events_per_s"], 1),
                    "note": "events = tokens produced (encode) or read (decode); inputs already in memory"}
    return out


def run(smoke: bool) -> dict:
    repeats = 1 if smoke else 3
    results = {"machine": machine()}
    for name, part in (("essen", essen), ("maestro_mini", maestro)):
        start = time.perf_counter()
        results[name] = part(smoke, repeats)
        print(f"{name}: {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; write nothing")
    args = parser.parse_args()
    results = run(args.smoke)
    text = json.dumps(results, indent=2, default=lambda x: x.tolist() if isinstance(x, np.ndarray) else str(x))
    print(text)
    if not args.smoke:
        out = HERE / "results" / "encodings.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
