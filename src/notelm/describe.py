"""Figures that describe a corpus (``notelm data info``) and the cheap counts of ``data list``."""

from __future__ import annotations

from collections import Counter

import numpy as np

from notelm.corpora import SPLITS, Corpus, CorpusSpec, registry
from notelm.errors import NotelmError


def corpus_info(corpus: Corpus) -> dict:
    """Pieces, notes, pitches, duration, split sizes and skipped files of a corpus.

    For melodic corpora the notes are those of the monophonic line with ties merged
    (what melodic models see, and how Pearce 2005 counts Dataset 7's 8,393 notes).
    """
    pieces = corpus.melodies() if corpus.spec.melodic else corpus.pieces
    pitches = np.concatenate([p.pitch for p in pieces]) if pieces else np.zeros(0, dtype=np.int16)
    counts = Counter(corpus.splits)
    return {
        "corpus": corpus.name,
        "pieces": len(pieces),
        "notes": int(len(pitches)),
        "distinct_pitches": int(len(np.unique(pitches))),
        "pitch_min": int(pitches.min()) if len(pitches) else None,
        "pitch_max": int(pitches.max()) if len(pitches) else None,
        "duration": round(float(sum(p.end for p in pieces)), 3),
        "duration_unit": f"{corpus.spec.time_unit}s",
        "melodic": corpus.spec.melodic,
        "splits": {s: counts.get(s, 0) for s in SPLITS},
        "skipped": corpus.skipped,
    }


def count_pieces(spec: CorpusSpec) -> int | None:
    """How many pieces a bundled corpus holds, counted without parsing (None for local ones)."""
    if spec.needs_root:
        return None
    try:
        files = spec.files(None)
    except NotelmError:
        return None
    n = 0
    for f in files:
        if f.suffix == ".abc":
            n += sum(1 for line in f.read_bytes().splitlines() if line.startswith(b"X:"))
        else:
            n += 1
    return n


def corpus_list() -> list[dict]:
    return [
        {
            "name": spec.name,
            "kind": "local (--root PATH)" if spec.needs_root else "bundled",
            "pieces": count_pieces(spec),
            "license": spec.license,
            "description": spec.description,
        }
        for spec in registry().values()
    ]
