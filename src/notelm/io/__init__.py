"""Readers and writers: every supported file becomes a list of `Piece`s.

``read_items(path)`` is the batch form (a multi-tune ABC file yields one entry per tune, a
`ReadError` for each tune that will not parse); ``read(path)`` is the single-file form, which
raises when nothing in the file can be read.
"""

from __future__ import annotations

from pathlib import Path

from notelm.errors import ReadError
from notelm.io.abc import read_abc_items
from notelm.io.files import atomic_write_bytes, atomic_write_text, file_problem
from notelm.io.midi import read_midi, write_midi
from notelm.io.music21 import read_music21
from notelm.pieces import Piece, TimeUnit

MIDI_SUFFIXES = (".mid", ".midi")
SCORE_SUFFIXES = (".krn", ".musicxml", ".mxl", ".xml")
ABC_SUFFIXES = (".abc",)
SUFFIXES = MIDI_SUFFIXES + SCORE_SUFFIXES + ABC_SUFFIXES


def read_items(path: str | Path, *, time_unit: TimeUnit = "beat", abc_engine: str = "abc2midi") -> list[Piece | ReadError]:
    """Every piece in a file, in file order; unreadable tunes of a multi-tune file as ReadErrors.

    Raises ReadError when the file as a whole is missing, not a file, unsupported, unreadable
    or without notes. This is the one entry of every reader, for a batch and for a single
    file alike, so any failure of a parser (corrupt files are common in large collections)
    becomes a ReadError naming the file, never a traceback.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if (why := file_problem(path)) is not None:
        raise ReadError(path, why)
    if suffix not in SUFFIXES:
        raise ReadError(path, f"unsupported file type {suffix or '(none)'!r}; notelm reads {', '.join(SUFFIXES)}")
    try:
        return _read_by_type(path, suffix, time_unit, abc_engine)
    except ReadError:
        raise
    except Exception as e:  # a parser's own failure on a file it did not expect
        raise ReadError(path, f"unexpected reader failure: {type(e).__name__}: {e}") from None


def _read_by_type(path: Path, suffix: str, time_unit: TimeUnit, abc_engine: str) -> list[Piece | ReadError]:
    if suffix in MIDI_SUFFIXES:
        piece = read_midi(path, time_unit)
        if not len(piece):
            raise ReadError(path, "no notes in it (no note-on with a matching note-off)")
        return [piece]
    if suffix in ABC_SUFFIXES:
        return read_abc_items(path, engine=abc_engine)
    pieces = read_music21(path)
    if not any(len(p) for p in pieces):
        raise ReadError(path, "no notes in it" if pieces else "no score in it")
    return list(pieces)


def read(path: str | Path, **kwargs) -> list[Piece]:
    """The pieces of one file; ReadError if none of it can be read."""
    items = read_items(path, **kwargs)
    pieces = [p for p in items if isinstance(p, Piece)]
    if not pieces:
        errors = [e for e in items if isinstance(e, ReadError)]
        raise errors[0] if errors else ReadError(path, "no notes in it")
    return pieces


__all__ = [
    "ABC_SUFFIXES", "MIDI_SUFFIXES", "SCORE_SUFFIXES", "SUFFIXES", "atomic_write_bytes",
    "atomic_write_text", "read", "read_items", "read_midi", "write_midi",
]
