"""`Piece`: a piece of music as a table of notes, the one currency between readers, encodings
and models.

Notes are numpy columns, sorted by (onset, pitch, track): ``pitch`` (MIDI number), ``onset``
and ``duration`` (in beats = quarter notes for scores, seconds for performances),
``velocity`` (1-127), ``track`` (index into ``tracks``) and ``tied`` (the note is tied to the
next note of the same pitch and track, as a score says; ``merge_ties`` joins them).
Performances may carry sustain-pedal intervals (``pedals``: onset, duration) that
``apply_sustain`` folds into note ends.

Pieces compare equal by content: the notes, the time unit, the tracks and the pedals —
not the metadata (title, source path), so a piece written and read back equals itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from notelm.errors import NotelmError

TimeUnit = Literal["beat", "second"]
COLUMNS = ("pitch", "onset", "duration", "velocity", "track", "tied")
_DTYPES = {
    "pitch": np.int16,
    "onset": np.float64,
    "duration": np.float64,
    "velocity": np.int16,
    "track": np.int16,
    "tied": np.bool_,
}
DEFAULT_VELOCITY = 64  # scores carry no dynamics of their own; MIDI's middle value


class PieceError(NotelmError, ValueError):
    """A transform asked of a piece that it cannot do (out of range, non-positive factor)."""


@dataclass(frozen=True)
class Track:
    """A part or MIDI track: its name, General MIDI program (0-127) and drum flag."""

    name: str = ""
    program: int = 0
    is_drum: bool = False


@dataclass(frozen=True)
class PieceMeta:
    """What is known about a piece besides its notes. Not part of equality."""

    id: str = ""
    title: str = ""
    source: str = ""  # path of the file it came from (and "#n" for the n-th tune of a file)
    key: str | None = None  # e.g. "F major", "a minor", as the source states it
    meter: str | None = None  # e.g. "6/8"
    tempos: tuple[tuple[float, float], ...] = ()  # (time in the piece's unit, quarter notes per minute)
    ticks_per_quarter: int | None = None  # of the MIDI file it came from, to write it back exactly


@dataclass(eq=False)
class Piece:
    """Notes of one piece as columns; see the module docstring for the columns' meaning."""

    pitch: np.ndarray
    onset: np.ndarray
    duration: np.ndarray
    velocity: np.ndarray | None = None
    track: np.ndarray | None = None
    tied: np.ndarray | None = None
    time_unit: TimeUnit = "beat"
    tracks: tuple[Track, ...] = (Track(),)
    pedals: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    meta: PieceMeta = field(default_factory=PieceMeta)

    def __post_init__(self) -> None:
        n = len(self.pitch)
        defaults = {"velocity": DEFAULT_VELOCITY, "track": 0, "tied": False}
        for name in COLUMNS:
            value = getattr(self, name)
            if value is None:
                value = np.full(n, defaults[name])
            value = np.ascontiguousarray(value, dtype=_DTYPES[name])
            if value.shape != (n,):
                raise ValueError(f"column {name!r} has shape {value.shape}, expected ({n},)")
            setattr(self, name, value)
        self.pedals = np.asarray(self.pedals, dtype=np.float64).reshape(-1, 2)
        if self.time_unit not in ("beat", "second"):
            raise ValueError(f"time_unit must be 'beat' or 'second', not {self.time_unit!r}")
        if n and (self.duration.min() < 0 or not np.isfinite(self.onset).all()):
            raise ValueError("notes need finite onsets and non-negative durations")
        order = np.lexsort((self.track, self.pitch, self.onset))
        if (order != np.arange(n)).any():
            for name in COLUMNS:
                setattr(self, name, getattr(self, name)[order])

    # ---- construction and comparison --------------------------------------------------------

    @classmethod
    def empty(cls, **kwargs) -> Piece:
        return cls(pitch=np.zeros(0), onset=np.zeros(0), duration=np.zeros(0), **kwargs)

    def __len__(self) -> int:
        return len(self.pitch)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Piece):
            return NotImplemented
        return (
            self.time_unit == other.time_unit
            and self.tracks == other.tracks
            and len(self) == len(other)
            and all(np.array_equal(getattr(self, c), getattr(other, c)) for c in COLUMNS)
            and np.array_equal(self.pedals, other.pedals)
        )

    __hash__ = None  # mutable columns: equal pieces need not hash alike

    def __repr__(self) -> str:
        name = self.meta.id or self.meta.title or "piece"
        return f"Piece({name!r}, notes={len(self)}, unit={self.time_unit}, tracks={len(self.tracks)})"

    @property
    def end(self) -> float:
        """Time at which the last note ends (0 for an empty piece)."""
        return float((self.onset + self.duration).max()) if len(self) else 0.0

    def columns(self) -> dict[str, np.ndarray]:
        return {c: getattr(self, c) for c in COLUMNS}

    def with_notes(self, keep: np.ndarray | None = None, **columns: np.ndarray) -> Piece:
        """A copy with the notes selected by ``keep`` (mask or indices) and columns replaced."""
        cols = self.columns()
        cols.update(columns)
        if keep is not None:
            cols = {c: v[keep] for c, v in cols.items()}
        return replace(self, **cols)

    # ---- transforms (each returns a new piece) -------------------------------------------------

    def transpose(self, semitones: int) -> Piece:
        """Shift every pitched (non-drum) note by ``semitones``; the result must stay in 0-127."""
        drums = np.array([t.is_drum for t in self.tracks])[self.track]
        pitch = np.where(drums, self.pitch, self.pitch + int(semitones))
        if len(pitch) and (pitch.min() < 0 or pitch.max() > 127):
            raise PieceError(f"transposing by {semitones} leaves the MIDI range 0-127")
        return self.with_notes(pitch=pitch)

    def merge_ties(self) -> Piece:
        """Join each chain of tied notes into one note lasting the sum of the chain."""
        if not self.tied.any():
            return self
        keep = np.ones(len(self), dtype=bool)
        duration = self.duration.copy()
        open_note: dict[tuple[int, int], int] = {}  # (track, pitch) -> index of the chain's head
        for i in range(len(self)):
            key = (int(self.track[i]), int(self.pitch[i]))
            head = open_note.pop(key, None)
            if head is not None and np.isclose(self.onset[head] + duration[head], self.onset[i]):
                duration[head] += duration[i]
                keep[i] = False
            else:
                head = i
            if self.tied[i]:
                open_note[key] = head
        tied = np.zeros(len(self), dtype=bool)
        return self.with_notes(keep, duration=duration, tied=tied)

    def melody(self) -> Piece:
        """The highest-note monophonic line ("skyline"), ties merged, drums ignored.

        At each onset the highest pitch wins; a note is cut short where the next one starts,
        so notes never overlap. This is the line melodic models (PPM, IDyOM) see.
        """
        piece = self.merge_ties()
        drums = np.array([t.is_drum for t in piece.tracks])[piece.track]
        piece = piece.with_notes(~drums)
        if not len(piece):
            return piece
        # notes are sorted by (onset, pitch): the last note of each onset group is the highest
        last = np.r_[piece.onset[1:] != piece.onset[:-1], True]
        piece = piece.with_notes(last)
        end = np.minimum(piece.onset + piece.duration, np.r_[piece.onset[1:], np.inf])
        return piece.with_notes(duration=end - piece.onset)

    def quantize(self, step: float) -> Piece:
        """Round onsets and note ends to multiples of ``step`` (in the piece's time unit).

        A note whose rounded duration would be zero keeps one ``step``, so no note vanishes.
        """
        if step <= 0:
            raise PieceError("quantize step must be positive")
        onset = np.round(self.onset / step) * step
        end = np.round((self.onset + self.duration) / step) * step
        return self.with_notes(onset=onset, duration=np.maximum(end - onset, step))

    def time_stretch(self, factor: float) -> Piece:
        """Scale every time by ``factor`` (2 = twice as long); tempos scale inversely."""
        if factor <= 0:
            raise PieceError("time-stretch factor must be positive")
        meta = replace(self.meta, tempos=tuple((t * factor, q / factor) for t, q in self.meta.tempos))
        stretched = self.with_notes(onset=self.onset * factor, duration=self.duration * factor)
        return replace(stretched, pedals=self.pedals * factor, meta=meta)

    def apply_sustain(self) -> Piece:
        """Extend notes released while the sustain pedal is down to the pedal's release.

        As in Magenta's note-seq: a sustained note also ends when the same pitch is struck
        again in the same track. The pedal intervals are consumed (the result has none).
        """
        if not len(self.pedals) or not len(self):
            return replace(self, pedals=np.zeros((0, 2)))
        pedals = self.pedals[np.argsort(self.pedals[:, 0], kind="stable")]
        down, up = pedals[:, 0], np.maximum.accumulate(pedals[:, 0] + pedals[:, 1])
        # pedals of several tracks can overlap: a press before the last release continues the hold
        starts = np.flatnonzero(np.r_[True, down[1:] > up[:-1]])
        up = np.repeat(np.maximum.reduceat(up, starts), np.diff(np.r_[starts, len(up)]))
        end = self.onset + self.duration
        # the pedal interval (if any) during which each note is released
        k = np.searchsorted(down, end, side="right") - 1
        held = (k >= 0) & (end < up[np.maximum(k, 0)])
        new_end = np.where(held, up[np.maximum(k, 0)], end)
        # a re-struck pitch cuts the sustained note short
        order = np.lexsort((self.onset, self.pitch, self.track))
        nxt = np.full(len(self), np.inf)
        same = (self.track[order][1:] == self.track[order][:-1]) & (
            self.pitch[order][1:] == self.pitch[order][:-1]
        )
        nxt[order[:-1][same]] = self.onset[order][1:][same]
        new_end = np.maximum(np.minimum(new_end, nxt), end)
        stretched = self.with_notes(duration=new_end - self.onset)
        return replace(stretched, pedals=np.zeros((0, 2)))
