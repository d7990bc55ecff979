"""Scores through music21: Humdrum kern, MusicXML/MXL, and ABC (the slow, thorough engine).

music21 keeps ties, so notes arrive with the ``tied`` flag set and ``Piece.merge_ties``
joins them. Grace notes take no time and are dropped, as abc2midi's -NGRA does. Repeats are
expanded (as abc2midi plays them) when ``expand_repeats``.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

import numpy as np

from notelm.errors import ReadError
from notelm.io.files import file_problem
from notelm.pieces import Piece, PieceMeta, Track


def _music21():
    import music21  # imported lazily: it costs ~0.5 s and most commands never need it

    return music21


def from_music21(score, *, meta: PieceMeta, expand_repeats: bool = True) -> Piece:
    """Convert a music21 Score (or Part) into a Piece with times in beats."""
    m21 = _music21()
    if expand_repeats:
        with contextlib.suppress(Exception):  # malformed repeat marks: keep the notes as written
            score = score.expandRepeats()
    parts = list(score.parts) if hasattr(score, "parts") and len(score.parts) else [score]
    cols: dict[str, list] = {"pitch": [], "onset": [], "duration": [], "track": [], "tied": []}
    tracks = []
    for part in parts:
        flat = part.flatten()
        index = len(tracks)
        inst = part.getInstrument(returnDefault=False)
        program = inst.midiProgram if inst is not None and inst.midiProgram is not None else 0
        tracks.append(Track(name=getattr(part, "partName", None) or "", program=int(program)))  # a Score has none
        for el in flat.notes:
            if el.duration.isGrace or el.quarterLength == 0:
                continue
            tied = el.tie is not None and el.tie.type in ("start", "continue")
            for p in getattr(el, "pitches", ()):
                cols["pitch"].append(p.midi)
                cols["onset"].append(float(el.offset))
                cols["duration"].append(float(el.quarterLength))
                cols["track"].append(index)
                cols["tied"].append(tied)
    if meta.key is None or meta.meter is None:
        ks = score.recurse().getElementsByClass(m21.key.KeySignature).first()
        ts = score.recurse().getElementsByClass(m21.meter.TimeSignature).first()
        key = None
        if ks is not None:
            key = str(ks) if isinstance(ks, m21.key.Key) else str(ks.asKey())
        meta = PieceMeta(
            **{**meta.__dict__, "key": meta.key or key, "meter": meta.meter or (ts.ratioString if ts else None)}
        )
    return Piece(
        pitch=np.array(cols["pitch"], dtype=np.int16),
        onset=np.array(cols["onset"]),
        duration=np.array(cols["duration"]),
        track=np.array(cols["track"], dtype=np.int16),
        tied=np.array(cols["tied"], dtype=bool),
        tracks=tuple(tracks) or (Track(),),
        meta=meta,
    )


def parse_music21(source: str | Path, *, fmt: str | None = None, path: str | Path = ""):
    """Parse a file (or, with ``fmt``, a string of data) with music21; ReadError on failure."""
    m21 = _music21()
    where = path or source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if fmt is not None:
                return m21.converter.parseData(source, format=fmt)
            return m21.converter.parse(str(source), forceSource=True)
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ReadError(where, f"music21 could not parse it ({reason[:200]})") from None


def read_music21(path: str | Path) -> list[Piece]:
    """Read a kern, MusicXML or MXL file: one piece per score (an opus yields several)."""
    path = Path(path)
    if (problem := file_problem(path)) is not None:
        raise ReadError(path, problem)
    parsed = parse_music21(path)
    scores = list(parsed.scores) if hasattr(parsed, "scores") else [parsed]
    pieces = []
    for i, sc in enumerate(scores):
        title = (sc.metadata.title if sc.metadata and sc.metadata.title else "") or path.stem
        suffix = f"#{i + 1}" if len(scores) > 1 else ""
        meta = PieceMeta(id=f"{path.stem}{suffix}", title=title, source=f"{path}{suffix}")
        pieces.append(from_music21(sc, meta=meta, expand_repeats=False))
    return pieces
