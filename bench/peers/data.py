"""Real pieces for the peer benchmarks: token arrays through notelm's own encodings.

`performance_pieces` reads MIDI files (POP909, MAESTRO) in seconds and encodes them as Oore
performance events (`notelm.encodings.performance`: PAD 0, BOS 1, EOS 2, UNK 3, then 388
events; vocabulary 392). `note_token_pairs` gives midi-translation's (source, target) note
tokens (`notelm.encodings.note_tokens`) with bins fitted on the training pieces. The split is
notelm's stable hash of each piece's id (`notelm.corpora.hash_split`, 80/10/10).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from notelm.corpora import SPLITS, hash_split
from notelm.encodings import get_encoding
from notelm.errors import ReadError
from notelm.io import read_midi
from notelm.pieces import Piece

SHARED = Path(os.environ.get("NOTELM_SHARED", Path(__file__).resolve().parents[3] / "shared")) / "data"
POP909 = SHARED / "pop909"
MAESTRO_MINI = SHARED / "maestro-mini"


def midi_files(root: Path, limit: int | None = None) -> list[Path]:
    files = sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in (".mid", ".midi"))
    return files[:limit]


def read_pieces(root: Path, limit: int | None = None) -> dict[str, list[Piece]]:
    """Pieces of the first ``limit`` MIDI files under ``root`` (in seconds), by split."""
    out: dict[str, list[Piece]] = {split: [] for split in SPLITS}
    for path in midi_files(root, limit):
        try:
            piece = read_midi(path, time_unit="second")
        except ReadError:
            continue
        out[hash_split(piece.meta.id)].append(piece)
    return out


def performance_pieces(root: Path = POP909, limit: int | None = 40) -> dict[str, list[np.ndarray]]:
    """Performance-event ids of each piece, by split: int64 (t,), no BOS/EOS (callers add them)."""
    enc = get_encoding("performance")
    return {split: [enc.encode(p) for p in pieces] for split, pieces in read_pieces(root, limit).items()}


def note_token_pairs(root: Path = MAESTRO_MINI, limit: int | None = 20, *, bins: tuple[int, int, int] = (3, 3, 3)):
    """(encoding, {split: [(source ids, target ids)]}) of midi-translation's note tokens with
    (dstart, duration, velocity) ``bins`` fitted on the training split (the compared run used
    5/5/3). Ids are notelm's: source from 4, target 4 + velocity."""
    pieces = read_pieces(root, limit)
    d, u, v = bins
    enc = get_encoding("note-tokens", dstart_bins=d, duration_bins=u, velocity_bins=v)
    enc.fit(pieces["train"])
    return enc, {split: [enc.encode_pair(p) for p in ps] for split, ps in pieces.items()}
