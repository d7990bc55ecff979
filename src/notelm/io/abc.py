"""ABC files holding many tunes: each ``X:`` tune is a piece.

Two engines give the same notes (a test checks it on the bundled corpora):
- ``abc2midi`` (default, fast): the abc2midi program that symusic ships converts a whole
  file in one process (grace notes, guitar chords and fermatas off: -NGRA -NGUI -NFER),
  symusic reads the MIDI; ~10,000 tunes/s.
- ``music21`` (slow, ~30 tunes/s): music21's ABC parser, repeats expanded as abc2midi plays them.

Times are in beats (quarter notes), snapped to 1/120 beat: abc2midi starts notes a tick
late, and 120 divides every duplet, triplet and quintuplet subdivision in folk ABC.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import symusic

from notelm.errors import ReadError
from notelm.io.files import file_problem
from notelm.io.midi import from_symusic
from notelm.pieces import DEFAULT_VELOCITY, Piece, PieceMeta, Track

ENGINES = ("abc2midi", "music21")
GRID = 120  # positions per beat that ABC times are snapped to
_X = re.compile(r"(?m)^X:")
_FIELD = re.compile(r"(?m)^([TKM]):\s*(.*?)\s*$")


def read_text(path: Path) -> str:
    if (problem := file_problem(path)) is not None:
        raise ReadError(path, problem)
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")  # the Essen and O'Neill's files are Latin-1


def split_tunes(text: str) -> tuple[str, list[str]]:
    """The file header (before the first X:) and the text of each tune, in file order."""
    starts = [m.start() for m in _X.finditer(text)]
    if not starts:
        return text, []
    bounds = starts + [len(text)]
    return text[: starts[0]], [text[a:b] for a, b in zip(bounds, bounds[1:])]


def tune_meta(tune: str, path: Path, index: int) -> PieceMeta:
    fields: dict[str, str] = {}
    for name, value in _FIELD.findall(tune):
        fields.setdefault(name, value)
    meter = {"C": "4/4", "C|": "2/2"}.get(fields.get("M", ""), fields.get("M") or None)
    return PieceMeta(
        id=f"{path.stem}#{index + 1}",
        title=fields.get("T", ""),
        source=f"{path}#{index + 1}",
        key=fields.get("K") or None,
        meter=meter,
    )


def _snap(piece: Piece) -> Piece:
    onset = np.round(piece.onset * GRID) / GRID
    end = np.round((piece.onset + piece.duration) * GRID) / GRID
    velocity = np.full(len(piece), DEFAULT_VELOCITY)  # abc2midi's stress accents are not the tune's
    snapped = piece.with_notes(onset=onset, duration=np.maximum(end - onset, 1 / GRID), velocity=velocity)
    # voices are tracks; their names differ between engines (abc2midi repeats the title)
    return replace(snapped, tracks=tuple(Track(program=t.program) for t in piece.tracks))


_HEADER_LINE = re.compile(r"^(?:[A-Za-z]:|%)")
# !long! and +long+ decorations, "annotations", and the one-letter ones (not inline fields like [M:3/4])
_DECORATION = re.compile(r'![^!\n]*!|\+[a-zA-Z][^+\n]*\+|"[^"\n]*"|[.~]|[HLMOPSTuv](?!:)')


def strip_decorations(tune: str) -> str:
    """Remove ornaments, articulations and the rhythm field (R:) from a tune.

    abc2midi performs them (a staccato halves a note, a ~ roll becomes five notes, R:hornpipe
    swings every pair of notes); the score keeps the written notes, and so do we. music21
    misreads some of them (a broken rhythm followed by a staccato dot), so both engines get
    the stripped text.
    """
    lines = [ln for ln in tune.split("\n") if not ln.startswith("R:")]
    return "\n".join(ln if _HEADER_LINE.match(ln) else _DECORATION.sub("", ln) for ln in lines)


def _abc2midi_binary() -> str:
    import symusic.factory  # noqa: F401  (sets SYMUSIC_ABC2MIDI to the bundled binary)

    return os.environ["SYMUSIC_ABC2MIDI"]


def _via_abc2midi(path: Path, header: str, tunes: list[str]) -> list[Piece | ReadError]:
    # renumber X: so that every tune gets its own output file, <stem><n>.mid
    body = "".join(_X.sub(f"X:{i + 1}\n%", strip_decorations(t), count=1) for i, t in enumerate(tunes))
    with tempfile.TemporaryDirectory(prefix="notelm-abc-") as tmp:
        src = Path(tmp) / "t.abc"
        src.write_text(header + body, encoding="utf-8")
        run = subprocess.run(
            [_abc2midi_binary(), src.name, "-NGRA", "-NGUI", "-NFER", "-silent"],
            cwd=tmp, capture_output=True, text=True, errors="replace", timeout=600,
        )
        out: list[Piece | ReadError] = []
        for i, tune in enumerate(tunes):
            meta = tune_meta(tune, path, i)
            mid = Path(tmp) / f"t{i + 1}.mid"
            try:
                score = symusic.Score(str(mid), ttype="quarter") if mid.is_file() else None
            except Exception:
                score = None
            piece = from_symusic(score, "beat", meta=meta) if score is not None else None
            if piece is None or not len(piece):
                why = "abc2midi produced no notes" if piece is not None else "abc2midi could not convert it"
                errors = [ln for ln in run.stderr.splitlines() if "rror" in ln][:1]
                out.append(ReadError(meta.source, why + (f" ({errors[0].strip()})" if errors else "")))
                continue
            out.append(_snap(piece))
        return out


def _via_music21(path: Path, header: str, tunes: list[str]) -> list[Piece | ReadError]:
    from notelm.io.music21 import from_music21, parse_music21

    out: list[Piece | ReadError] = []
    for i, tune in enumerate(tunes):
        meta = tune_meta(tune, path, i)
        try:
            # ABC 2.1 carries an accidental to the end of its bar, as abc2midi does; music21 does so
            # only for files that declare version 2 or later
            score = parse_music21("%abc-2.1\n" + header + strip_decorations(tune), fmt="abc", path=meta.source)
            piece = from_music21(score, meta=meta, expand_repeats=True)
            if not len(piece):
                raise ReadError(meta.source, "music21 found no notes")
            out.append(_snap(replace(piece, meta=meta)))
        except ReadError as e:
            out.append(e)
    return out


def read_abc_items(path: str | Path, *, engine: str = "abc2midi") -> list[Piece | ReadError]:
    """Every tune of an ABC file, in file order: a Piece, or the ReadError saying why not."""
    path = Path(path)
    if engine not in ENGINES:
        raise ValueError(f"unknown ABC engine {engine!r}; known: {', '.join(ENGINES)}")
    header, tunes = split_tunes(read_text(path))
    if not tunes:
        raise ReadError(path, "no ABC tunes in it (no line starts with X:)")
    return (_via_abc2midi if engine == "abc2midi" else _via_music21)(path, header, tunes)
