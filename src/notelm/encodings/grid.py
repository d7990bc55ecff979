"""``grid`` and ``dstm-frames``: the melody sampled on a time grid, one token per step.

``grid`` is the LSTM tutorial's GridEncoder (REFERENCE §3): step = a 16th note (0.25 quarter
lengths), a note is its MIDI pitch followed by "_" for every further step it is held, "r" is
a rest step and "_" after it extends the rest (``55 _ _ _ r _ _ _`` = a quarter note, then a
quarter rest); the terminal symbol (EOS) ends each song; songs may be transposed to C major /
A minor first (``transpose=True``; see `notelm.encodings.keys`).

``dstm-frames`` is the DSTM paper's input (Bjare, Lattner & Widmer 2022; REFERENCE §2): the
same 16th-note frames with ``mode="repeat"`` (a held note repeats its pitch every frame, so
there is no "_"), pitches 48-95 plus the rest: 49 classes; and, like the paper's piano roll,
``off_grid="sample"``: each frame shows what sounds at its start, so triplets and grace notes
are kept as the frames see them instead of refusing the tune. As in the paper, frames are all
there is: no terminal symbol ends a tune (``terminal=False``).

What the grid keeps, and what it refuses (`quantized` says exactly):

- The line is ``piece.melody()``: the highest note at each onset, cut where the next starts.
  (For polyphonic input this differs from a piano roll's highest sounding pitch per frame
  when a high note outlasts a lower one struck after it; for monophonic tunes they agree.)
- With ``off_grid="error"`` (the default) every onset and duration must lie on the step grid;
  a note shorter than the step raises EncodingError "note shorter than the grid step" and any
  other off-grid time "time off the grid" (the tutorial filters such songs out; batch code
  counts them). With ``off_grid="sample"`` the line is sampled as a piano roll at each
  frame's start: a note covers frames ceil(onset / step) to ceil(end / step), and a note
  that sounds at no frame's start (a grace note, a short note of a triplet) is dropped.
- Pitches outside ``low..high``: ``out_of_range="error"`` raises; ``"octave"`` moves the whole
  tune by octaves into range (never note by note, which would break its contour) and raises
  only when its compass is wider than the range allows.
- In repeat mode, two notes of one pitch with no gap between them read as one held note, so
  `quantized` merges them.
- Pieces must be in beats; velocities become 64, tracks one.

Legend: n notes, f frames, t tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from notelm.encodings.base import (
    Encoding,
    EncodingConfig,
    EncodingError,
    check_times,
    content_ids,
    plain_piece,
    ranks,
)
from notelm.encodings.keys import octave_shift, semitones_to_c
from notelm.encodings.vocab import EOS_ID, N_SPECIAL, Vocabulary
from notelm.pieces import Piece

HOLD, REST = "_", "r"
MODES = ("hold", "repeat")
OUT_OF_RANGE = ("error", "octave")
OFF_GRID = ("error", "sample")
_TOL = 1e-6  # in steps: times read from files carry float noise well below this


@dataclass(frozen=True)
class GridConfig(EncodingConfig):
    """step: quarter lengths per frame. mode: "hold" (pitch, then "_") or "repeat" (pitch
    every frame). low/high: pitch range of the vocabulary. transpose: to C major / A minor.
    out_of_range: "error" or "octave". terminal: end each sequence with EOS. off_grid: "error"
    (refuse off-grid times) or "sample" (sample the line at each frame's start)."""

    step: float = 0.25
    mode: str = "hold"
    low: int = 0
    high: int = 127
    transpose: bool = False
    out_of_range: str = "error"
    terminal: bool = True
    off_grid: str = "error"

    def __post_init__(self) -> None:
        self.require_type("step", (int, float))
        self.require(self.step > 0, f"step must be positive; got {self.step}")
        self.require(self.mode in MODES, f"mode must be one of {MODES}; got {self.mode!r}")
        self.require_type("low", int)
        self.require_type("high", int)
        self.require(0 <= self.low <= self.high <= 127, f"need 0 <= low <= high <= 127; got {self.low}, {self.high}")
        self.require(self.out_of_range in OUT_OF_RANGE, f"out_of_range must be one of {OUT_OF_RANGE}")
        self.require_type("transpose", bool)
        self.require_type("terminal", bool)
        self.require(self.off_grid in OFF_GRID, f"off_grid must be one of {OFF_GRID}; got {self.off_grid!r}")


DSTM_FRAMES = {"step": 0.25, "mode": "repeat", "low": 48, "high": 95, "out_of_range": "octave", "off_grid": "sample",
               "terminal": False}


class GridEncoding(Encoding):
    """The monophonic line as grid tokens: pitch / "_" / "r" per step, EOS at the end."""

    config_class = GridConfig
    default_name = "grid"
    config: GridConfig

    def build_vocab(self) -> Vocabulary:
        hold = [HOLD] if self.config.mode == "hold" else []
        pitches = [str(p) for p in range(self.config.low, self.config.high + 1)]
        return Vocabulary([REST, *hold, *pitches])

    # ids of the content tokens, as the vectorised paths use them
    @property
    def _rest_id(self) -> int:
        return N_SPECIAL

    @property
    def _hold_id(self) -> int:
        return N_SPECIAL + 1 if self.config.mode == "hold" else -1

    def _pitch_id(self, pitch: np.ndarray) -> np.ndarray:
        first = N_SPECIAL + (2 if self.config.mode == "hold" else 1)
        return first + pitch.astype(np.int64) - self.config.low

    # ---- the piece the grid sees --------------------------------------------------------------

    def _line(self, piece: Piece) -> Piece:
        """The melody, transposed and moved into range, checked against the grid."""
        cfg = self.config
        if piece.time_unit != "beat":
            raise EncodingError("piece not in beats", "the grid counts quarter lengths")
        mel = piece.melody()
        check_times(mel)
        if cfg.transpose and len(mel):
            shift = semitones_to_c(piece)
            if mel.pitch.min() + shift < 0 or mel.pitch.max() + shift > 127:
                raise EncodingError("transposition leaves the MIDI range", f"by {shift} semitones")
            mel = mel.transpose(shift)
        if len(mel) and (mel.pitch.min() < cfg.low or mel.pitch.max() > cfg.high):
            shift = octave_shift(mel.pitch, cfg.low, cfg.high) if cfg.out_of_range == "octave" else None
            if shift is None:
                why = "pitch range wider than the grid" if cfg.out_of_range == "octave" else "pitch outside the grid's range"
                raise EncodingError(why, f"pitches {mel.pitch.min()}-{mel.pitch.max()}, grid {cfg.low}-{cfg.high}")
            mel = mel.transpose(shift)
        return mel

    def _frames(self, piece: Piece) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pitch, onset frame and length in frames of each note of the line, each (n,)."""
        mel = self._line(piece)
        start, length = mel.onset / self.config.step, mel.duration / self.config.step
        if self.config.off_grid == "sample":  # frames k with onset <= k * step < end
            first, end = np.ceil(start - _TOL), np.ceil(start + length - _TOL)
            keep = end > first
            return (mel.pitch[keep].astype(np.int64), first[keep].astype(np.int64),
                    (end - first)[keep].astype(np.int64))
        i_start, i_len = np.round(start), np.round(length)
        if len(mel) and (length < 1 - _TOL).any():
            at = int(np.argmax(length < 1 - _TOL))
            raise EncodingError("note shorter than the grid step", f"note {at}: {mel.duration[at]:g} < {self.config.step:g}")
        off = (np.abs(start - i_start) > _TOL) | (np.abs(length - i_len) > _TOL)
        if off.any():
            at = int(np.argmax(off))
            raise EncodingError("time off the grid", f"note {at}: onset {mel.onset[at]:g}, duration {mel.duration[at]:g}")
        return mel.pitch.astype(np.int64), i_start.astype(np.int64), i_len.astype(np.int64)

    def _notes(self, pitch: np.ndarray, start: np.ndarray, length: np.ndarray) -> Piece:
        step = self.config.step
        return plain_piece(pitch, start * step, length * step, time_unit="beat")

    def quantized(self, piece: Piece) -> Piece:
        pitch, start, length = self._frames(piece)
        if self.config.mode == "repeat" and len(pitch) > 1:
            # a note re-struck right where the same pitch ends is indistinguishable from a hold
            joins = (pitch[1:] == pitch[:-1]) & (start[1:] == start[:-1] + length[:-1])
            head = np.r_[True, ~joins]
            group = np.cumsum(head) - 1
            end = np.zeros(head.sum(), dtype=np.int64)
            np.maximum.at(end, group, start + length)
            pitch, start = pitch[head], start[head]
            length = end - start
        return self._notes(pitch, start, length)

    # ---- ids ---------------------------------------------------------------------------------

    def encode(self, piece: Piece) -> np.ndarray:
        """Grid ids, one per frame from time 0 to the end of the last note, then EOS: (f [+1],)."""
        pitch, start, length = self._frames(piece)
        n_frames = int((start + length).max()) if len(pitch) else 0
        ids = np.full(n_frames, self._rest_id, dtype=np.int64)
        # rests: "r" where a rest begins, "_" (hold mode) on its later frames
        covered = np.zeros(n_frames + 1, dtype=np.int64)
        np.add.at(covered, start, 1)
        np.add.at(covered, start + length, -1)
        sounding = np.cumsum(covered)[:n_frames] > 0
        if self.config.mode == "hold" and n_frames:
            ids[~sounding & np.r_[False, ~sounding[:-1]]] = self._hold_id  # a rest's later frames
        note_of = np.repeat(np.arange(len(pitch)), length)  # (f_notes,)
        rank = ranks(length)  # frame index within its note
        head = self._pitch_id(pitch[note_of])
        repeat = self.config.mode == "repeat"
        ids[start[note_of] + rank] = head if repeat else np.where(rank == 0, head, self._hold_id)
        if self.config.terminal:
            ids = np.r_[ids, EOS_ID]
        return ids

    def decode(self, ids: Sequence[int] | np.ndarray) -> Piece:
        ids = content_ids(ids, len(self.vocab))
        is_pitch = ids >= self._pitch_id(np.array(self.config.low))
        if self.config.mode == "hold":
            # a pitch or "r" starts an event; "_" extends whatever came before (a rest at the start)
            starts = np.flatnonzero(ids != self._hold_id)
        else:  # a run of one id is one event
            starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.zeros(0, dtype=np.int64)
        lengths = np.diff(np.r_[starts, len(ids)])
        keep = is_pitch[starts]
        pitch_ids, start, length = ids[starts][keep], starts[keep], lengths[keep]
        pitch = pitch_ids - self._pitch_id(np.array(0))
        return self._notes(pitch, start, length)

    # ---- readable tokens -------------------------------------------------------------------------

    def tokens(self, piece: Piece) -> list[str]:
        return self.vocab.tokens(self.encode(piece))

    def decode_tokens(self, tokens: Sequence[str]) -> Piece:
        return self.decode(self.vocab.ids(list(tokens)))

