"""Melodic viewpoints for PPM and IDyOM's multiple-viewpoint system (Pearce 2005, ch. 5).

A viewpoint maps each note of a melody (``piece.melody()``) to a symbol:

- ``cpitch``        chromatic pitch (MIDI number);
- ``cpint``         interval from the previous note in semitones;
- ``cpitch-class``  pitch class, cpitch mod 12 (aliases ``cpc``, ``pc``);
- ``contour``       -1, 0 or 1: the direction of cpint;
- ``dur``           duration, in ticks of ``resolution`` per time unit (120 per beat by default,
                    the grid notelm's ABC reader snaps to);
- ``ioi``           inter-onset interval from the previous note, in the same ticks.

Linked viewpoints join components with ``*`` (``cpint*dur``; ``x`` and ``⊗`` are accepted
too): their symbol is the tuple of the components' values.

Undefined values, as in IDyOM: ``cpint``, ``contour`` and ``ioi`` have no value on a melody's
first note (there is no previous note), and a linked viewpoint is undefined wherever one of
its components is. `Viewpoint.symbols` marks such notes ``UNDEFINED`` (-1) instead of
dropping them, so symbol positions stay aligned with notes; a PPM over a viewpoint skips
them (IDyOM: the viewpoint makes no prediction there). A value outside the fitted alphabet is
``UNSEEN`` (-2).

For predicting pitch through another viewpoint (IDyOM's mapping of a viewpoint's distribution
back to the basic one), `Viewpoint.candidates` gives, for every note and every candidate pitch
of the cpitch alphabet, the symbol that the note would have with its pitch replaced by that
candidate (its duration and onset unchanged); `pitch_distribution` shares each symbol's
probability equally among the pitches that map to it. Fitting with ``pitch_alphabet`` adds
every such candidate symbol to the alphabet (as IDyOM derives viewpoint alphabets from the
basic alphabet), so that no candidate of the training corpus is UNSEEN.

Legend: n notes, A candidate pitches, k components of a linked viewpoint, S alphabet size.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from notelm.encodings.base import EncodingSettingsError
from notelm.pieces import Piece

BASIC = ("cpitch", "cpint", "cpitch-class", "contour", "dur", "ioi")
ALIASES = {"cpc": "cpitch-class", "pc": "cpitch-class", "pitch-class": "cpitch-class", "pitch": "cpitch"}
PITCH_DERIVED = ("cpitch", "cpint", "cpitch-class", "contour")  # change with the candidate pitch
NEEDS_PREVIOUS = ("cpint", "contour", "ioi")
UNDEFINED, UNSEEN = -1, -2


def parse_viewpoint(name: str) -> tuple[str, ...]:
    """Components of a (possibly linked) viewpoint name, canonical and in the given order."""
    parts = [p.strip() for p in str(name).replace("⊗", "*").replace(" x ", "*").split("*")]
    parts = [ALIASES.get(p, p) for p in parts]
    bad = [p for p in parts if p not in BASIC]
    if bad or not parts:
        raise EncodingSettingsError(f"unknown viewpoint {name!r}; basic viewpoints: {', '.join(BASIC)} (link with *)")
    if len(set(parts)) != len(parts):
        raise EncodingSettingsError(f"viewpoint {name!r} links a component twice")
    return tuple(parts)


def _ticks(times: np.ndarray, resolution: int) -> np.ndarray:
    return np.round(np.asarray(times, dtype=np.float64) * resolution).astype(np.int64)


def component_values(
    component: str, pitch: np.ndarray, melody: Piece, resolution: int
) -> np.ndarray:
    """Values of one basic viewpoint for each note; ``pitch`` (n,) or (n, A) overrides the pitches.

    Where the value is undefined (first note of cpint, contour, ioi) the result is 0; callers
    mask with `defined`.
    """
    prev = np.r_[0, melody.pitch[:-1]].astype(np.int64)
    if pitch.ndim == 2:
        prev = prev[:, None]
    if component == "cpitch":
        return pitch
    if component == "cpint":
        return pitch - prev
    if component == "cpitch-class":
        return pitch % 12
    if component == "contour":
        return np.sign(pitch - prev)
    onset = _ticks(melody.onset, resolution)
    if component == "dur":
        value = _ticks(melody.onset + melody.duration, resolution) - onset
    else:  # ioi
        value = np.diff(onset, prepend=0)
    return np.broadcast_to(value[:, None], pitch.shape) if pitch.ndim == 2 else value


class Viewpoint:
    """One basic or linked viewpoint, with the alphabet of symbols fitted on a corpus."""

    def __init__(self, name: str, *, resolution: int = 120) -> None:
        self.components = parse_viewpoint(name)
        self.name = "*".join(self.components)
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
            raise EncodingSettingsError(f"resolution must be a positive int; got {resolution!r}")
        self.resolution = resolution
        self.alphabet = np.zeros((0, len(self.components)), dtype=np.int64)  # (S, k), sorted rows

    def __repr__(self) -> str:
        return f"Viewpoint({self.name!r}, alphabet={self.size})"

    @property
    def size(self) -> int:
        return len(self.alphabet)

    @property
    def pitch_derived(self) -> bool:
        """Whether the symbol depends on the note's pitch (else it cannot help predict pitch)."""
        return any(c in PITCH_DERIVED for c in self.components)

    # ---- values --------------------------------------------------------------------------------

    def defined(self, melody: Piece) -> np.ndarray:
        """Which notes have a value, bool (n,): all but the first when a component needs one."""
        ok = np.ones(len(melody), dtype=bool)
        if len(melody) and any(c in NEEDS_PREVIOUS for c in self.components):
            ok[0] = False
        return ok

    def values(self, melody: Piece, pitch: np.ndarray | None = None) -> np.ndarray:
        """Component values of each note, int64 (n, k); or (n, A, k) with candidate pitches (n, A)."""
        pitch = melody.pitch.astype(np.int64) if pitch is None else np.asarray(pitch, dtype=np.int64)
        cols = [component_values(c, pitch, melody, self.resolution) for c in self.components]
        return np.stack(cols, axis=-1)

    def lookup(self, values: np.ndarray) -> np.ndarray:
        """Index of each row of ``values`` (..., k) in the alphabet, UNSEEN where absent."""
        flat = values.reshape(-1, values.shape[-1])
        if not self.size:
            return np.full(values.shape[:-1], UNSEEN, dtype=np.int64)
        # rows compare lexicographically as structured-free int64 keys via a void view
        keys = _row_keys(self.alphabet)
        probe = _row_keys(np.ascontiguousarray(flat))
        at = np.searchsorted(keys, probe)
        at_c = np.minimum(at, len(keys) - 1)
        found = keys[at_c] == probe
        return np.where(found, at_c, UNSEEN).reshape(values.shape[:-1])

    def symbols(self, melody: Piece) -> np.ndarray:
        """Alphabet index of each note's symbol, int64 (n,); UNDEFINED (-1) or UNSEEN (-2)."""
        out = self.lookup(self.values(melody))
        out[~self.defined(melody)] = UNDEFINED
        return out

    def candidates(self, melody: Piece, pitches: Sequence[int] | np.ndarray) -> np.ndarray:
        """Symbol of every note with its pitch replaced by each candidate pitch, int64 (n, A).

        Row i is what the viewpoint would read at note i if its pitch were each of
        ``pitches`` (the cpitch alphabet), the previous notes and the note's own duration and
        onset as they are. UNDEFINED rows where the viewpoint has no value; UNSEEN entries for
        symbols outside the alphabet.
        """
        cand = np.broadcast_to(np.asarray(pitches, dtype=np.int64)[None, :], (len(melody), len(pitches)))
        out = self.lookup(self.values(melody, cand))
        out[~self.defined(melody)] = UNDEFINED
        return out

    # ---- fitting and saving -----------------------------------------------------------------------

    def fit(self, melodies: Iterable[Piece], pitch_alphabet: Sequence[int] | None = None) -> Viewpoint:
        """Alphabet = the distinct defined symbols of ``melodies`` (each already a melody).

        With ``pitch_alphabet``, also every symbol a candidate pitch would produce.
        """
        rows = []
        for mel in melodies:
            ok = self.defined(mel)
            rows.append(self.values(mel)[ok])
            if pitch_alphabet is not None and len(mel):
                cand = np.broadcast_to(np.asarray(pitch_alphabet, dtype=np.int64)[None, :],
                                       (len(mel), len(pitch_alphabet)))
                rows.append(self.values(mel, cand)[ok].reshape(-1, len(self.components)))
        k = len(self.components)
        allrows = np.concatenate(rows) if rows else np.zeros((0, k), dtype=np.int64)
        self.alphabet = np.unique(allrows.reshape(-1, k), axis=0)
        return self

    def symbol_names(self) -> list[str]:
        """Readable names of the alphabet's symbols, e.g. ``cpint=2,dur=60``."""
        if len(self.components) == 1:
            return [str(int(v)) for v in self.alphabet[:, 0]]
        return [",".join(f"{c}={int(v)}" for c, v in zip(self.components, row)) for row in self.alphabet]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "resolution": self.resolution, "alphabet": self.alphabet.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Viewpoint:
        vp = cls(data["name"], resolution=data["resolution"])
        alphabet = np.asarray(data["alphabet"], dtype=np.int64).reshape(-1, len(vp.components))
        vp.alphabet = np.unique(alphabet, axis=0)
        return vp


def _row_keys(rows: np.ndarray) -> np.ndarray:
    """Order-preserving int64 keys for rows of small ints (..., k) -> (m,), lexicographic."""
    rows = np.asarray(rows, dtype=np.int64).reshape(len(rows), -1)
    # values here are pitches, intervals, classes, contours and tick counts: offset each column
    # into [0, 2**20) so that up to three columns pack into 63 bits; wider links use a void view
    if rows.shape[1] <= 3 and (len(rows) == 0 or (np.abs(rows).max() < 2**19)):
        key = np.zeros(len(rows), dtype=np.int64)
        for j in range(rows.shape[1]):
            key = (key << 20) | (rows[:, j] + 2**19)
        return key
    out = np.empty(len(rows), dtype=object)
    for i, r in enumerate(rows.tolist()):
        out[i] = tuple(r)
    return out


def pitch_distribution(symbol_probs: np.ndarray, candidate_row: np.ndarray) -> np.ndarray | None:
    """A viewpoint's distribution over its symbols (S,) as one over the candidate pitches (A,).

    Each symbol's probability is shared equally among the candidate pitches that map to it
    (IDyOM); symbols no candidate maps to are dropped and the rest renormalised. Candidates
    whose symbol is UNSEEN get 0, so a combiner must smooth. None where the viewpoint makes
    no prediction (the row is UNDEFINED or no candidate has a seen symbol).
    """
    row = np.asarray(candidate_row, dtype=np.int64)
    seen = row >= 0
    if not seen.any():
        return None
    counts = np.bincount(row[seen], minlength=len(symbol_probs))
    out = np.zeros(len(row), dtype=np.float64)
    out[seen] = symbol_probs[row[seen]] / counts[row[seen]]
    total = out.sum()
    return out / total if total > 0 else None
