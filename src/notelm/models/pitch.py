"""A trained token model (a run) as a model of melodic pitch: what stands in for IDyOM's LTM.

IDyOM predicts the pitch of every note given the notes before it — their pitch and timing
— and sums over the note's own duration and ioi (viewpoints.py). `RunPitchModel` asks the
same of a model over an encoding's tokens and maps its prediction to the pitch alphabet of a
corpus (`Alphabets.pitch`), so it combines with IDyOM's models (`models/combine.py`,
`models/mvs.py`) note for note:

- ``melody-events`` (pitch, duration, ioi tokens in turn): the prediction at each note's pitch
  token, which follows the previous notes' tokens and nothing of the note itself; its columns
  for the candidate pitches (absolute tokens, or with ``pitch=cpint`` the intervals from the
  previous pitch).
- ``melody`` (linked ``pitch|dur|ioi`` tokens, one per note): the prediction before the note,
  each candidate pitch's probability summed over every token of that pitch, i.e. marginalised
  over the note's duration and ioi, as IDyOM does. ``viewpoint=cpitch``: one token per pitch.

The mass the model puts elsewhere (a pitch outside the alphabet, a duration token where a
pitch comes) is dropped and the rest renormalised over the alphabet, as IDyOM predicts over
the corpus's pitch alphabet; `token_log2` gives the unrenormalised figure. Tokens the
encoding's vocabulary lacks are read as UNK (inputs only: no candidate pitch is one of them).

Legend: n notes, t tokens of a melody, v vocabulary, A pitch alphabet.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from notelm.encodings.base import Encoding, plain_piece
from notelm.encodings.vocab import N_SPECIAL
from notelm.errors import NotelmError
from notelm.models.base import SequenceModel
from notelm.viewpoints import TICKS_PER_BEAT, Alphabets, Melody

ENCODINGS = ("melody-events", "melody")


def melody_piece(melody: Melody):
    """A `Melody` (ticks) as the plain Piece an encoding reads (beats)."""
    return plain_piece(np.asarray(melody.pitch, np.int64), np.asarray(melody.onset) / TICKS_PER_BEAT,
                       np.asarray(melody.dur) / TICKS_PER_BEAT, time_unit="beat")


@dataclass(frozen=True)
class _State:
    inner: Any  # the token model's state
    i: int  # notes observed
    previous: int  # pitch id of the last note, -1 before the first
    timing: Melody | None


class RunPitchModel(SequenceModel):
    """Predicts the pitch ids of `Melody`s over ``alphabets.pitch`` with a token ``model`` of
    ``encoding`` (a run's: ``open_run(path).model()``, ``.encoding()``). Not trainable: its
    training was the run's. Step by step it needs the notes' timing (``start(timing=melody)``),
    as `MultipleViewpointModel` does."""

    trainable = False

    def __init__(self, model: SequenceModel, encoding: Encoding, alphabets: Alphabets) -> None:
        if encoding.name not in ENCODINGS:
            raise NotelmError(f"a long-term model of pitch needs a run of the {' or '.join(ENCODINGS)} encoding; "
                              f"this one is of {encoding.name}")
        self.model, self.encoding, self.alphabets = model, encoding, alphabets
        self.pitches = np.asarray(alphabets.pitch, np.int64)
        self.alphabet_size = len(self.pitches)
        self.per_note = 3 if encoding.name == "melody-events" else 1
        if encoding.name == "melody":  # (v, A): which tokens carry each candidate pitch
            self.sum_map = np.zeros((len(encoding.vocab), self.alphabet_size))
            for v, token in enumerate(encoding.vocab.content_tokens):
                at = np.searchsorted(self.pitches, encoding.parse(token)[0])
                if at < self.alphabet_size and self.pitches[at] == encoding.parse(token)[0]:
                    self.sum_map[N_SPECIAL + v, at] = 1.0

    def __repr__(self) -> str:
        return f"RunPitchModel({self.model!r}, {self.encoding.name}, pitches={self.alphabet_size})"

    # ---- tokens of a melody, and the pitch columns of a prediction ------------------------------

    def token_ids(self, melody: Melody) -> np.ndarray:
        """The melody's token ids (t,), UNK for a token outside the vocabulary."""
        return self.encoding.vocab.ids(self.encoding.tokens(melody_piece(melody)))

    def _to_pitch(self, rows: np.ndarray, previous: np.ndarray) -> np.ndarray:
        """Predictions at pitch positions (n, v) after ``previous`` pitch ids (n,; -1: first
        note) -> (n, A) over the alphabet, renormalised."""
        if self.per_note == 1:
            out = rows @ self.sum_map
        else:
            before = np.where(previous >= 0, self.pitches[previous.clip(0)], -1)
            columns = self.encoding.pitch_columns(self.pitches, before)
            out = np.take_along_axis(rows, columns.clip(0), axis=1) * (columns >= 0)
        total = out.sum(axis=1, keepdims=True)
        if (total <= 0).any():
            raise NotelmError("the run's model gives no probability to any pitch of the alphabet")
        return out / total

    # ---- the fast path ------------------------------------------------------------------------

    def token_distributions(self, melodies: Sequence[Melody]) -> list[np.ndarray]:
        """The token model's distributions (t, v) at every token of each melody."""
        return self.model.distributions([self.token_ids(m) for m in melodies])

    def distributions(self, melodies: Sequence[Melody]) -> list[np.ndarray]:
        """The distribution over pitch ids before every note, one (n, A) array per melody."""
        out = []
        for m, d in zip(melodies, self.token_distributions(melodies), strict=True):
            ids = np.asarray(m.ids, np.int64)
            out.append(self._to_pitch(d[:: self.per_note][: len(ids)], np.r_[-1, ids[:-1]]))
        return out

    def token_log2(self, melodies: Sequence[Melody]) -> list[np.ndarray]:
        """log2 of the probability of each note's pitch token before renormalisation (n,) (for
        ``melody``: summed over the tokens of the note's pitch), to show what it costs."""
        out = []
        for m, d in zip(melodies, self.token_distributions(melodies), strict=True):
            ids, rows = np.asarray(m.ids, np.int64), d[:: self.per_note][: len(m)]
            if self.per_note == 1:
                p = (rows @ self.sum_map)[np.arange(len(ids)), ids]
            else:
                p = rows[np.arange(len(ids)), self.token_ids(m)[:: self.per_note]]
            out.append(np.log2(p))
        return out

    # ---- step by step -------------------------------------------------------------------------

    def start(self, primer: Sequence[int] = (), *, timing: Melody | None = None) -> _State:
        if timing is None and isinstance(primer, Melody):
            timing = primer
        state = _State(inner=self.model.start(), i=0, previous=-1, timing=timing)
        for token in primer:
            state = self.observe(state, token)
        return state

    def predict(self, state: _State) -> np.ndarray:
        return self._to_pitch(self.model.predict(state.inner)[None], np.array([state.previous]))[0]

    def observe(self, state: _State, token: int) -> _State:
        token = int(token)
        if not 0 <= token < self.alphabet_size:
            raise ValueError(f"pitch id {token} is outside the alphabet 0..{self.alphabet_size - 1}")
        t = state.timing
        if t is None or state.i >= len(t):
            raise ValueError("a run's pitch model reads the notes' timing: start(timing=melody)")
        # the previous note (as observed) and this one: the tokens of the last are what to feed
        at = slice(max(0, state.i - 1), state.i + 1)
        ids = np.array([state.previous, token][-(at.stop - at.start):], np.int64)
        so_far = Melody(ids=ids, pitch=self.pitches[ids], onset=t.onset[at], dur=t.dur[at])
        inner = state.inner
        for tok in self.token_ids(so_far)[-self.per_note:]:
            inner = self.model.observe(inner, int(tok))
        return _State(inner=inner, i=state.i + 1, previous=token, timing=t)
