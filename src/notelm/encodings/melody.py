"""``melody``: one token per note of the monophonic line, for PPM/IDyOM and small melody models.

The line is ``piece.melody()`` (highest note at each onset, ties merged, drums ignored). A
token links chromatic pitch with as much timing as the ``viewpoint`` setting keeps:

- ``cpitch*dur*ioi`` (default, lossless): ``"67|1/2|1"`` = pitch 67, duration 1/2, onset one
  beat after the previous note's (the first note: after time 0). Rests are the gaps between
  ``ioi`` and ``dur``, so pitch, onset and duration of the line round-trip exactly.
- ``cpitch*dur``: ``"67|1/2"``; rests are dropped, each note starts where the previous ends.
- ``cpitch``: ``"67"``, the viewpoint of IDyOM's pitch-only figures (Pearce 2005); decoding
  gives one note per beat, since order is all the tokens keep.

Times are counted in ticks of ``resolution`` per time unit (120 per beat by default: notelm's
ABC reader snaps to 1/120 beat, so the Essen tunes are exact). The alphabet is learned: `fit`
collects the distinct tokens of a corpus; a token outside it raises EncodingError on encode.
A model that wants IDyOM's bare alphabet uses ``ids - N_SPECIAL`` over ``vocab.content_size``
symbols. Other viewpoints (cpint, contour, ...) live in `notelm.viewpoints`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from notelm.encodings.base import (
    AlphabetEncoding,
    EncodingConfig,
    EncodingError,
    check_times,
    plain_piece,
)
from notelm.encodings.vocab import Vocabulary
from notelm.pieces import Piece

VIEWPOINTS = ("cpitch", "cpitch*dur", "cpitch*dur*ioi")


@dataclass(frozen=True)
class MelodyConfig(EncodingConfig):
    """viewpoint: which note attributes a token links (see the module docstring).
    resolution: ticks per time unit that durations and onsets are rounded to.
    time_unit: of the pieces it encodes and decodes ("beat" for scores)."""

    viewpoint: str = "cpitch*dur*ioi"
    resolution: int = 120
    time_unit: str = "beat"

    def __post_init__(self) -> None:
        self.require(self.viewpoint in VIEWPOINTS, f"viewpoint must be one of {', '.join(VIEWPOINTS)}; got {self.viewpoint!r}")
        self.require_type("resolution", int)
        self.require(self.resolution >= 1, "resolution must be >= 1")
        self.require(self.time_unit in ("beat", "second"), f"time_unit must be 'beat' or 'second'; got {self.time_unit!r}")


class MelodyEncoding(AlphabetEncoding):
    """Linked cpitch (x dur x ioi) tokens of the melody line; learns its alphabet."""

    config_class = MelodyConfig
    default_name = "melody"
    config: MelodyConfig

    # ---- notes <-> tick columns --------------------------------------------------------------

    def line(self, piece: Piece) -> Piece:
        """The monophonic line the encoding reads."""
        if piece.time_unit != self.config.time_unit:
            raise EncodingError(f"piece not in {self.config.time_unit}s", f"it is in {piece.time_unit}s")
        mel = piece.melody()
        check_times(mel)
        return mel

    def columns(self, piece: Piece) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pitch, duration ticks and ioi ticks (first note: from 0) of the line, each (n,)."""
        mel = self.line(piece)
        res = self.config.resolution
        start = np.round(mel.onset * res).astype(np.int64)
        end = np.round((mel.onset + mel.duration) * res).astype(np.int64)
        return mel.pitch.astype(np.int64), end - start, np.diff(start, prepend=0)

    def notes(self, pitch: np.ndarray, dur: np.ndarray, ioi: np.ndarray) -> Piece:
        """The piece the tick columns spell under this viewpoint (decode and quantized share it)."""
        res, vp, n = self.config.resolution, self.config.viewpoint, len(pitch)
        if vp == "cpitch":
            onset, duration = np.arange(n, dtype=np.float64), np.ones(n)
        elif vp == "cpitch*dur":
            start = np.r_[0, np.cumsum(dur)[:-1]] if n else np.zeros(0, dtype=np.int64)
            onset, duration = start / res, dur / res
        else:
            onset, duration = np.cumsum(ioi) / res, dur / res
        return plain_piece(pitch, onset, duration, time_unit=self.config.time_unit)

    def quantized(self, piece: Piece) -> Piece:
        return self.notes(*self.columns(piece))

    # ---- tokens ------------------------------------------------------------------------------

    def _time(self, ticks: int) -> str:
        return str(Fraction(int(ticks), self.config.resolution))

    def tokens(self, piece: Piece) -> list[str]:
        pitch, dur, ioi = self.columns(piece)
        parts = self.config.viewpoint.count("*") + 1
        out = []
        for p, d, g in zip(pitch.tolist(), dur.tolist(), ioi.tolist()):
            fields = [str(p), self._time(d), self._time(g)][:parts]
            out.append("|".join(fields))
        return out

    def parse(self, token: str) -> tuple[int, int, int]:
        """(pitch, duration ticks, ioi ticks) of a token; the missing parts are 0."""
        fields = token.split("|")
        res = self.config.resolution
        ticks = [int(Fraction(f) * res) for f in fields[1:]]
        return (int(fields[0]), *ticks, *[0] * (2 - len(ticks)))

    def decode_tokens(self, tokens: Sequence[str]) -> Piece:
        rows = np.array([self.parse(t) for t in tokens], dtype=np.int64).reshape(-1, 3)
        return self.notes(rows[:, 0], rows[:, 1], rows[:, 2])

    # ---- fitting ------------------------------------------------------------------------------

    def fit(self, pieces: Iterable[Piece]) -> MelodyEncoding:
        """Alphabet = the distinct tokens of the pieces (ones it cannot read are left out)."""
        seen: set[str] = set()
        for piece in pieces:
            try:
                seen.update(self.tokens(piece))
            except EncodingError:
                continue
        return self._learned(Vocabulary(sorted(seen, key=self.parse)))
