"""``melody-events``: each note of the melody line as three tokens in turn — pitch, duration, ioi.

For neural long-term models of melodic pitch (bench/bench_kinder.py). The line is
``piece.melody()`` as in the `melody` encoding, and a note is the same (pitch, duration, ioi)
triple that ``melody`` links into one token, here spelled out::

    p67 d1/2 o1   p69 d1/2 o1/2   ...      (pitch="cpitch")
    p67 d1/2 o1   i+2 d1/2 o1/2   ...      (pitch="cpint": the first note's pitch, then intervals)

The pitch token comes *first*, so the prediction of a note's pitch is conditioned on the pitch,
duration and ioi of the notes before it and on nothing of the note itself — what IDyOM's
viewpoints see (it marginalises over the current note's duration and ioi), and a plain softmax
over the pitch tokens at that position, with no marginalising to do. ``cpint`` makes the model
of every note after the first transposition-invariant (IDyOM's cpint viewpoint).

Vocabulary: pitch tokens ``p0``..``p127`` and (cpint) intervals ``i-127``..``i+127`` are
fixed, so a model can put (little) mass on a pitch it never saw; durations ``d...`` and iois
``o...`` (ticks of ``resolution`` per beat, as fractions of a beat; the first note's ioi is its
onset) are learned by `fit`. A duration or ioi outside the fitted alphabet raises EncodingError.
Round trip: pitch, onset and duration of the line, exactly (as ``melody`` with cpitch*dur*ioi).

Legend: n notes, t = 3n tokens.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

from notelm.encodings.base import (
    AlphabetEncoding,
    EncodingConfig,
    EncodingError,
    EncodingSettingsError,
    check_times,
    plain_piece,
)
from notelm.encodings.vocab import N_SPECIAL, Vocabulary
from notelm.pieces import Piece

PITCHES = ("cpitch", "cpint")
PER_NOTE = 3  # tokens per note: pitch (or interval), duration, ioi
MIDI = 128


@dataclass(frozen=True)
class MelodyEventsConfig(EncodingConfig):
    """pitch: "cpitch" (absolute pitch tokens) or "cpint" (the first note's pitch, then the
    interval from the previous note). resolution: ticks per beat that durations and onsets
    are rounded to (120: notelm's ABC reader snaps to 1/120 beat)."""

    pitch: str = "cpitch"
    resolution: int = 120

    def __post_init__(self) -> None:
        self.require(self.pitch in PITCHES, f"pitch must be one of {', '.join(PITCHES)}; got {self.pitch!r}")
        self.require_type("resolution", int)
        self.require(self.resolution >= 1, "resolution must be >= 1")


def _fixed_tokens(pitch: str) -> list[str]:
    tokens = [f"p{p}" for p in range(MIDI)]
    if pitch == "cpint":
        tokens += [f"i{k:+d}" if k else "i0" for k in range(-(MIDI - 1), MIDI)]
    return tokens


class MelodyEventsEncoding(AlphabetEncoding):
    """Pitch (or interval), duration and ioi tokens of every note of the melody line."""

    config_class = MelodyEventsConfig
    default_name = "melody-events"
    config: MelodyEventsConfig

    # ---- notes <-> tokens ------------------------------------------------------------------------

    def columns(self, piece: Piece) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pitch, duration ticks and ioi ticks (the first note's: its onset) of the line, (n,) each."""
        if piece.time_unit != "beat":
            raise EncodingError("piece not in beats", f"it is in {piece.time_unit}s")
        mel = piece.melody()
        check_times(mel)
        res = self.config.resolution
        start = np.round(mel.onset * res).astype(np.int64)
        end = np.round((mel.onset + mel.duration) * res).astype(np.int64)
        return mel.pitch.astype(np.int64), end - start, np.diff(start, prepend=0)

    def _time(self, ticks: int) -> str:
        return str(Fraction(int(ticks), self.config.resolution))

    def pitch_token(self, pitch: int, previous: int | None) -> str:
        """The token of a note of ``pitch`` after a note of ``previous`` (None: the first note)."""
        if self.config.pitch == "cpitch" or previous is None:
            return f"p{pitch}"
        step = pitch - previous
        return f"i{step:+d}" if step else "i0"

    def tokens(self, piece: Piece) -> list[str]:
        pitch, dur, ioi = self.columns(piece)
        out = []
        previous = None
        for p, d, g in zip(pitch.tolist(), dur.tolist(), ioi.tolist()):
            out += [self.pitch_token(p, previous), f"d{self._time(d)}", f"o{self._time(g)}"]
            previous = p
        return out

    def quantized(self, piece: Piece) -> Piece:
        pitch, dur, ioi = self.columns(piece)
        res = self.config.resolution
        return plain_piece(pitch, np.cumsum(ioi) / res, dur / res, time_unit="beat")

    def decode_tokens(self, tokens: Sequence[str]) -> Piece:
        if len(tokens) % PER_NOTE:
            raise EncodingError("tokens do not make whole notes", f"{len(tokens)} tokens")
        res = self.config.resolution
        pitch, dur, ioi = [], [], []
        for k in range(0, len(tokens), PER_NOTE):
            p, d, g = tokens[k: k + PER_NOTE]
            if p[0] not in "pi" or d[0] != "d" or g[0] != "o":
                raise EncodingError("tokens out of order", f"note {k // PER_NOTE}: {p} {d} {g}")
            if p[0] == "i" and not pitch:
                raise EncodingError("an interval before the first pitch")
            value = int(p[1:])
            pitch.append(value if p[0] == "p" else pitch[-1] + value)
            dur.append(int(Fraction(d[1:]) * res))
            ioi.append(int(Fraction(g[1:]) * res))
        pitch_a = np.array(pitch, dtype=np.int64)
        if len(pitch_a) and (pitch_a.min() < 0 or pitch_a.max() >= MIDI):
            raise EncodingError("pitch outside 0..127")
        return plain_piece(pitch_a, np.cumsum(ioi, dtype=np.int64) / res, np.array(dur, np.int64) / res,
                           time_unit="beat")

    # ---- what a pitch model needs ----------------------------------------------------------------

    def pitch_columns(self, candidates: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """Token ids of candidate pitches (A,) at notes after ``previous`` pitches (n,), -1 for
        a first note's row: (n, A) ids, the columns of the model's prediction at each pitch
        position that hold the probability of each candidate. A candidate beyond the fixed
        tokens' range gets -1 (no token: no probability)."""
        candidates = np.asarray(candidates, np.int64)
        previous = np.asarray(previous, np.int64)
        absolute = N_SPECIAL + candidates  # p0.. are the first content tokens
        if self.config.pitch == "cpitch":
            return np.broadcast_to(absolute, (len(previous), len(candidates))).copy()
        step = candidates[None, :] - previous[:, None]
        ids = np.where(np.abs(step) < MIDI, N_SPECIAL + MIDI + step + MIDI - 1, -1)
        return np.where(previous[:, None] < 0, absolute[None, :], ids)

    # ---- fitting ---------------------------------------------------------------------------------

    def fit(self, pieces: Iterable[Piece]) -> MelodyEventsEncoding:
        """Durations and iois = the distinct ones of the pieces (pieces it cannot read are left out)."""
        durs: set[int] = set()
        iois: set[int] = set()
        for piece in pieces:
            try:
                _, dur, ioi = self.columns(piece)
            except EncodingError:
                continue
            durs.update(dur.tolist())
            iois.update(ioi.tolist())
        return self._learned(Vocabulary(_fixed_tokens(self.config.pitch) + [f"d{self._time(d)}" for d in sorted(durs)]
                                        + [f"o{self._time(g)}" for g in sorted(iois)]))

    def load_state(self, state: dict[str, Any], vocab: Vocabulary) -> None:
        fixed = _fixed_tokens(self.config.pitch)
        if vocab.content_tokens[: len(fixed)] != fixed:
            raise EncodingSettingsError("saved vocabulary does not match the melody-events settings")
        super().load_state(state, vocab)
