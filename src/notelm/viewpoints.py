"""Melodic viewpoints for IDyOM's multiple-viewpoint prediction of pitch (Pearce 2005, ch. 5).

A viewpoint maps each note of a melody (``piece.melody()``) to a symbol:

- ``cpitch``        chromatic pitch (MIDI number);
- ``cpint``         interval from the previous note, in semitones;
- ``cpitch-class``  pitch class, cpitch mod 12 (aliases ``cpc``, ``pc``);
- ``contour``       -1, 0 or 1: the sign of cpint;
- ``dur``           duration, in ticks of `TICKS_PER_BEAT`;
- ``ioi``           inter-onset interval from the previous note, in the same ticks.

Linked viewpoints join components with ``*`` or ``:`` (``cpint*dur`` = ``cpint:dur``, the
canonical name uses ``*``; ``:`` needs no quoting in a shell). Their symbol is the tuple of the
components' values, and they are undefined wherever a component is: ``cpint``, ``contour`` and
``ioi`` have no value on a melody's first note. A viewpoint's model never sees an undefined
note (IDyOM `viewpoint-sequence`): it neither predicts nor learns there.

Predicting pitch through a viewpoint follows IDyOM (`mvs/multiple-viewpoint-system.lisp`):

- At each note the viewpoint's alphabet is set from the context (`set-alphabet-from-context`):
  the symbols the note would have for every pitch of the cpitch alphabet and, since IDyOM
  marginalises over every basic attribute by default (`*marginalise-using-current-event*` = 2),
  every value of the other attributes a link uses (every ``dur`` of the corpus for
  ``cpint*dur``). The PPM predicts over that alphabet only (`PPM.predict(allowed=...)`).
- `derived->basic`: each symbol's probability goes to the pitches it maps to, shared equally
  among them (``contour`` = 1 is shared by every higher pitch); summed over the other
  attributes' values. Every candidate pitch maps to an allowed symbol, so no pitch gets zero.

Legend: n notes, A pitch alphabet size, K pitch keys (the pitch-dependent part of a symbol),
O values of the other attributes (product of their alphabets), U = K*O symbols.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from notelm.errors import NotelmError
from notelm.pieces import Piece

LINKS = ("cpitch", "cpint", "cpitch-class", "contour", "dur", "ioi")
ALIASES = {"cpc": "cpitch-class", "pc": "cpitch-class", "pitch-class": "cpitch-class", "pitch": "cpitch",
           "interval": "cpint", "duration": "dur"}
PITCH_LINKS = ("cpitch", "cpint", "cpitch-class", "contour")  # change with the candidate pitch
NEEDS_PREVIOUS = ("cpint", "contour", "ioi")
# Durations and onsets in integer ticks: 5040 = lcm(1..10) per beat keeps tuplets exact.
TICKS_PER_BEAT = 5040


class ViewpointError(NotelmError, ValueError):
    """A viewpoint name or value that cannot be used."""


def parse_viewpoint(name: str) -> tuple[str, ...]:
    """The components of a (possibly linked) viewpoint name, e.g. ``"cpint:dur"`` -> (cpint, dur)."""
    parts = [ALIASES.get(p.strip().lower(), p.strip().lower()) for p in re.split(r"[*:⊗]", str(name))]
    bad = [p for p in parts if p not in LINKS]
    if bad:
        raise ViewpointError(f"unknown viewpoint {name!r}; viewpoints are {', '.join(LINKS)}, "
                             f"linked with * or : (e.g. cpint*dur)")
    if len(set(parts)) != len(parts):
        raise ViewpointError(f"viewpoint {name!r} links a component twice")
    if not set(parts) & set(PITCH_LINKS):
        raise ViewpointError(f"viewpoint {name!r} does not depend on pitch, so it cannot predict it; "
                             f"link it with a pitch viewpoint (e.g. cpint*{parts[0]})")
    return tuple(parts)


def parse_viewpoints(names: str | Sequence[str]) -> list[tuple[str, ...]]:
    """A comma-separated list (or a sequence) of viewpoint names, each parsed, no repeats."""
    items = [n for n in (names.split(",") if isinstance(names, str) else names) if str(n).strip()]
    if not items:
        raise ViewpointError("give at least one viewpoint, e.g. cpitch or cpitch,cpint")
    parsed = [parse_viewpoint(n) for n in items]
    if len({frozenset(p) for p in parsed}) != len(parsed):
        raise ViewpointError(f"viewpoints repeat: {', '.join('*'.join(p) for p in parsed)}")
    return parsed


# ---- melodies as IDyOM sees them ---------------------------------------------------------------


def ticks(beats: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(beats, dtype=np.float64) * TICKS_PER_BEAT).astype(np.int64)


@dataclass(frozen=True, eq=False)
class Melody:
    """A melody's notes: ``ids`` into the pitch alphabet (the tokens a model predicts), MIDI
    ``pitch``, and ``onset``/``dur`` in ticks. Iterates and converts (np.asarray) as its ids."""

    ids: np.ndarray
    pitch: np.ndarray
    onset: np.ndarray
    dur: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self):
        return iter(self.ids.tolist())

    def __array__(self, dtype=None, copy=None):
        return self.ids if dtype is None else self.ids.astype(dtype)


@dataclass(frozen=True, eq=False)
class Alphabets:
    """The basic alphabets of a corpus (IDyOM sets them from the whole dataset): distinct
    pitches, durations and inter-onset intervals (ticks), each sorted."""

    pitch: np.ndarray
    dur: np.ndarray
    ioi: np.ndarray

    @classmethod
    def from_melodies(cls, melodies: Sequence[Piece]) -> Alphabets:
        melodies = [m for m in melodies if len(m)]
        if not melodies:
            raise NotelmError("no notes to build alphabets from")
        cat = np.concatenate
        return cls(pitch=np.unique(cat([m.pitch for m in melodies])).astype(np.int64),
                   dur=np.unique(cat([ticks(m.duration) for m in melodies])),
                   ioi=np.unique(cat([np.diff(ticks(m.onset)) for m in melodies] + [np.zeros(0, np.int64)])))

    def melody(self, piece: Piece) -> Melody:
        """A melody (already monophonic: ``piece.melody()``) in this alphabet."""
        pitch = np.asarray(piece.pitch, dtype=np.int64)
        ids = np.searchsorted(self.pitch, pitch).clip(max=len(self.pitch) - 1)
        if len(pitch) and (self.pitch[ids] != pitch).any():
            bad = pitch[self.pitch[ids] != pitch][0]
            raise NotelmError(f"pitch {bad} is not in the pitch alphabet {self.pitch.tolist()}")
        return Melody(ids=ids, pitch=pitch, onset=ticks(piece.onset), dur=ticks(piece.duration))


def viewpoint_values(name: str, melody: Piece) -> list[tuple[int, ...] | None]:
    """A viewpoint's value at every note of a melody, as readable tuples (one entry per
    component; dur and ioi in ticks), None where undefined. Written from the definitions
    alone, it is what `ViewpointCoder.symbols` numbers."""
    links = parse_viewpoint(name)
    pitch = np.asarray(melody.pitch, dtype=np.int64).tolist()
    onset, dur = ticks(melody.onset).tolist(), ticks(melody.duration).tolist()
    out = []
    for i in range(len(pitch)):
        if i == 0 and set(links) & set(NEEDS_PREVIOUS):
            out.append(None)
            continue
        value = {"cpitch": pitch[i], "cpitch-class": pitch[i] % 12, "dur": dur[i]}
        if i:
            step = pitch[i] - pitch[i - 1]
            value.update(cpint=step, contour=(step > 0) - (step < 0), ioi=onset[i] - onset[i - 1])
        out.append(tuple(value[link] for link in links))
    return out


# ---- one viewpoint over a corpus's alphabets -----------------------------------------------------


def _pitch_value(link: str, candidate: np.ndarray, previous: np.ndarray | None) -> np.ndarray:
    if link == "cpitch":
        return candidate
    if link == "cpitch-class":
        return candidate % 12
    interval = candidate - previous
    return interval if link == "cpint" else np.sign(interval)


class ViewpointCoder:
    """A viewpoint's symbols over given alphabets, and the map from its predictions to pitch.

    Symbols are ids ``key * O + other``: ``key`` numbers the tuples of pitch-dependent
    components, ``other`` the tuples of the rest (durations, iois) in their alphabets. A
    note's *row* is 0 for a first note, else 1 + the previous note's pitch id: everything
    about the candidates depends only on it.
    """

    def __init__(self, name: str | Sequence[str], alphabets: Alphabets) -> None:
        self.links = parse_viewpoint(name) if isinstance(name, str) else tuple(name)
        self.name = "*".join(self.links)
        self.alphabets = alphabets
        self.time_links = tuple(link for link in self.links if link not in PITCH_LINKS)
        pitches = alphabets.pitch
        a = len(pitches)
        # key_table (A+1, A): the key of each candidate pitch in each row; -1 where undefined.
        first_defined = not set(self.links) & set(NEEDS_PREVIOUS)
        values = []
        for link in self.links:
            if link in PITCH_LINKS:
                rows = [_pitch_value(link, pitches, None if link not in NEEDS_PREVIOUS else pitches[0])]
                rows += [_pitch_value(link, pitches, p) for p in pitches]
                values.append(np.stack(rows))  # (A+1, A)
        values = np.stack(values, axis=-1)  # (A+1, A, k)
        start = 0 if first_defined else 1
        _, inverse = np.unique(values[start:].reshape(-1, values.shape[-1]), axis=0, return_inverse=True)
        self.key_table = np.full((a + 1, a), -1, np.int64)
        self.key_table[start:] = inverse.reshape(a + 1 - start, a)
        self.n_keys = int(inverse.max()) + 1
        self.row_defined = self.key_table[:, 0] >= 0
        # mult (A+1, A): how many candidates of the row share each candidate's key
        self.mult = np.ones((a + 1, a))
        for r in np.flatnonzero(self.row_defined):
            counts = np.bincount(self.key_table[r], minlength=self.n_keys)
            self.mult[r] = counts[self.key_table[r]]
        self.others = [alphabets.dur if link == "dur" else alphabets.ioi for link in self.time_links]
        self.n_other = int(np.prod([len(o) for o in self.others])) if self.others else 1
        self.size = self.n_keys * self.n_other
        # row_masks (A+1, U): the symbols any candidate can have in each row (IDyOM's per-event alphabet)
        keys_in_row = np.zeros((a + 1, self.n_keys), bool)
        for r in np.flatnonzero(self.row_defined):
            keys_in_row[r, self.key_table[r]] = True
        self.row_masks = np.repeat(keys_in_row, self.n_other, axis=1)
        self.masked = not self.row_masks[self.row_defined].all()

    def __repr__(self) -> str:
        return f"ViewpointCoder({self.name!r}, symbols={self.size})"

    @staticmethod
    def rows(ids: np.ndarray, first: np.ndarray | None = None) -> np.ndarray:
        """The row of every note (n,): 0 for a first note (``first``, default: note 0), else
        1 + the previous note's pitch id."""
        ids = np.asarray(ids, dtype=np.int64)
        if first is None:
            first = np.arange(len(ids)) == 0
        return np.where(first, 0, 1 + np.roll(ids, 1))

    def symbols(self, ids: np.ndarray, onset: np.ndarray, dur: np.ndarray,
                first: np.ndarray | None = None) -> np.ndarray:
        """The symbol of every note (n,), -1 where the viewpoint is undefined. Several melodies
        may be concatenated, ``first`` (n,) bool marking where each begins."""
        ids = np.asarray(ids, dtype=np.int64)
        keys = self.key_table[self.rows(ids, first), ids]
        other = np.zeros(len(ids), np.int64)
        stride = 1
        for link, alphabet in zip(reversed(self.time_links), reversed(self.others)):
            value = np.asarray(dur, np.int64) if link == "dur" else np.diff(np.asarray(onset, np.int64), prepend=0)
            at = np.searchsorted(alphabet, value).clip(max=len(alphabet) - 1)
            bad = (alphabet[at] != value) & (keys >= 0)  # ioi across a piece boundary is undefined
            if bad.any():
                raise ViewpointError(f"{link} {value[bad][0] / TICKS_PER_BEAT:g} beats is not in the "
                                     f"corpus's {link} alphabet, so viewpoint {self.name} cannot read it")
            other += at * stride
            stride *= len(alphabet)
        return np.where(keys >= 0, keys * self.n_other + other, -1)

    def encode(self, melodies: Sequence[Melody]) -> tuple[np.ndarray, np.ndarray]:
        """Rows and symbols (-1: undefined) of every note of ``melodies``, concatenated (N,)."""
        if not melodies:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        lengths = np.array([len(m) for m in melodies])
        first = np.zeros(lengths.sum(), bool)
        first[(np.cumsum(lengths) - lengths)[lengths > 0]] = True
        ids, onset, dur = (np.concatenate([getattr(m, a) for m in melodies]) for a in ("ids", "onset", "dur"))
        return self.rows(ids, first), self.symbols(ids, onset, dur, first)

    def allowed(self, rows: np.ndarray) -> np.ndarray | None:
        """The per-event alphabets (n, U) bool of notes in ``rows``; None when always all of it."""
        return self.row_masks[rows] if self.masked else None

    @property
    def key_of_symbol(self) -> np.ndarray:
        """The pitch key of every symbol (U,)."""
        return np.arange(self.size) // self.n_other

    def to_pitch(self, distributions: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Distributions over symbols (n, U) as distributions over pitch (n, A) (IDyOM derived->basic)."""
        return self.keys_to_pitch(distributions.reshape(len(rows), self.n_keys, self.n_other).sum(axis=-1), rows)

    def keys_to_pitch(self, by_key: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Distributions over pitch keys (n, K) (summed over the other attributes' values) as
        distributions over pitch (n, A): each key's probability shared among its pitches."""
        out = np.take_along_axis(by_key, self.key_table[rows], axis=1) / self.mult[rows]
        return out / out.sum(axis=1, keepdims=True)
