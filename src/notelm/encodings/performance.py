"""``performance``: MIDI-like performance events (Oore et al. 2018; Music Transformer; REFERENCE §5).

128 note-on, 128 note-off, 100 time-shifts of 10 ms (up to 1 s) and 32 velocity bins = 388
events, after the four specials. A velocity event holds until the next one, so it is written
only when the bin changes (as in Magenta's performance_lib). Resolution, longest shift and
number of bins are settings.

What the events keep, and so what `quantized` returns (in seconds, one track):

- Times on the grid of ``1 / steps_per_second``; a note's end at least one step after its
  start (Magenta's quantizer does the same), so no note vanishes.
- Velocities as bins of ``ceil(127 / velocity_bins)`` values (Magenta's velocity_to_bin);
  a bin decodes to its lowest velocity (1, 5, 9, ... for 32 bins). Velocity 0 counts as 1.
- The sustain pedal extends notes first (``sustain=True``: ``Piece.apply_sustain``), as in
  the paper's MAESTRO/Piano-e-Competition data.
- Pieces in beats go to seconds through their tempo map, or at 120 quarter notes per minute
  when they have none (`notelm.encodings.base.to_seconds`). Drum tracks are dropped.
- Overlapping notes of one pitch: a key cannot be struck while it is down, and one note-off
  could not tell the notes apart, so the earlier note ends where the next one starts. Notes
  of one pitch starting on the same step become one: the longest end and the loudest bin.
- At one instant note-offs come before note-ons, so a re-struck key reads off, on.

What the encoder never writes, `PerformanceRules` forbids while sampling (``notelm continue``):
a note-on of a pitch that is sounding (a re-strike reads off, on), a note-off of a pitch that
is silent or began on this very step, a velocity event that repeats the bin in force or is
not followed by a note-on, and the specials other than the end of the piece. Beside those
hard rules, ``repeat_penalty`` r weighs down repeated notes, which the models play two to
four times as often as pianists do (README, "repetition"): the probability of striking a pitch
struck at the previous onset (the last step with note-ons before the one being written) is
divided by r^n, n the number of onsets in a row that struck it. CTRL's repetition penalty
(Keskar et al. 2019) on repeated notes alone, compounding so that a confident model's
one-note loop (a pitch struck 18 times in a row at r = 12 without compounding) ends.

Encoding and decoding are vectorised numpy (no Python loop over events): see the benchmark
in bench/bench_encodings.py against MidiTok's MIDILike.

Legend: n notes, e events (note-on/off), t tokens.
"""

from __future__ import annotations

import math
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
    to_seconds,
    without_drums,
)
from notelm.encodings.vocab import N_SPECIAL, NEVER_PREDICTED, Vocabulary
from notelm.pieces import Piece

ON, OFF = N_SPECIAL, N_SPECIAL + 128  # first id of the note-on / note-off blocks


@dataclass(frozen=True)
class PerformanceConfig(EncodingConfig):
    """steps_per_second: time resolution (100 = 10 ms). max_shift_steps: longest single
    time-shift event (100 steps = 1 s; longer gaps take several). velocity_bins: 1-127.
    sustain: fold the sustain pedal into note ends first."""

    steps_per_second: int = 100
    max_shift_steps: int = 100
    velocity_bins: int = 32
    sustain: bool = True

    def __post_init__(self) -> None:
        for name in ("steps_per_second", "max_shift_steps", "velocity_bins"):
            self.require_type(name, int)
            self.require(getattr(self, name) >= 1, f"{name} must be >= 1")
        self.require(self.velocity_bins <= 127, "velocity_bins must be <= 127")
        self.require_type("sustain", bool)

    @property
    def bin_size(self) -> int:
        """MIDI velocities per bin (Magenta: ceil((127 - 1 + 1) / bins))."""
        return math.ceil(127 / self.velocity_bins)


class PerformanceEncoding(Encoding):
    """Note-on / note-off / time-shift / velocity events of a performance."""

    config_class = PerformanceConfig
    default_name = "performance"
    config: PerformanceConfig
    UNENDED_SECONDS = 5.0  # the longest a note without a note-off lasts when decoded

    def build_vocab(self) -> Vocabulary:
        cfg = self.config
        return Vocabulary(
            [f"on-{p}" for p in range(128)]
            + [f"off-{p}" for p in range(128)]
            + [f"shift-{k}" for k in range(1, cfg.max_shift_steps + 1)]
            + [f"vel-{b}" for b in range(cfg.velocity_bins)]
        )

    @property
    def _shift0(self) -> int:  # id of "shift-1"
        return N_SPECIAL + 256

    @property
    def _vel0(self) -> int:  # id of "vel-0"
        return N_SPECIAL + 256 + self.config.max_shift_steps

    # ---- notes on the grid -------------------------------------------------------------------

    def steps(self, piece: Piece) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Pitch, start step, end step and velocity bin of each note as the events keep them.

        Each (n,), sorted by pitch then start; one pitch's notes never overlap.
        """
        cfg = self.config
        piece = to_seconds(piece)
        if cfg.sustain:
            piece = piece.apply_sustain()
        piece = without_drums(piece)
        check_times(piece)
        if len(piece) and (piece.pitch.min() < 0 or piece.pitch.max() > 127):
            raise EncodingError("pitch outside 0-127", f"pitches {piece.pitch.min()}-{piece.pitch.max()}")
        sps = cfg.steps_per_second
        start = np.round(piece.onset * sps).astype(np.int64)
        end = np.maximum(np.round((piece.onset + piece.duration) * sps).astype(np.int64), start + 1)
        vbin = (np.clip(piece.velocity.astype(np.int64), 1, 127) - 1) // cfg.bin_size
        pitch = piece.pitch.astype(np.int64)
        order = np.lexsort((start, pitch))
        pitch, start, end, vbin = pitch[order], start[order], end[order], vbin[order]
        # notes of one pitch on one step become one: the longest end, the loudest bin
        head = np.r_[True, (pitch[1:] != pitch[:-1]) | (start[1:] != start[:-1])] if len(pitch) else np.zeros(0, bool)
        at = np.flatnonzero(head)
        if len(at) < len(pitch):
            end, vbin = np.maximum.reduceat(end, at), np.maximum.reduceat(vbin, at)
            pitch, start = pitch[at], start[at]
        # the earlier of two overlapping notes of one pitch ends where the next starts
        same = np.r_[pitch[1:] == pitch[:-1], False]
        nxt = np.r_[start[1:], 0]
        end = np.where(same, np.minimum(end, nxt), end)
        return pitch, start, end, vbin

    def _notes(self, pitch: np.ndarray, start: np.ndarray, end: np.ndarray, vbin: np.ndarray) -> Piece:
        sps = self.config.steps_per_second
        velocity = 1 + vbin * self.config.bin_size  # Magenta's velocity_bin_to_velocity
        return plain_piece(pitch, start / sps, end / sps - start / sps, velocity, time_unit="second")

    def quantized(self, piece: Piece) -> Piece:
        return self._notes(*self.steps(piece))

    # ---- ids ---------------------------------------------------------------------------------

    def encode(self, piece: Piece) -> np.ndarray:
        """Event ids of ``piece``, int64 (t,)."""
        pitch, start, end, vbin = self.steps(piece)
        n, m = len(pitch), self.config.max_shift_steps
        # events: offs then ons, sorted by time, offs first at one instant, then pitch
        time = np.r_[end, start]
        is_on = np.r_[np.zeros(n, bool), np.ones(n, bool)]
        ev_pitch, ev_bin = np.r_[pitch, pitch], np.r_[vbin, vbin]
        order = np.lexsort((ev_pitch, is_on, time))
        time, is_on, ev_pitch, ev_bin = time[order], is_on[order], ev_pitch[order], ev_bin[order]
        # a velocity event before a note-on whose bin differs from the last note-on's
        on_bins = ev_bin[is_on]
        new_bin = np.zeros(2 * n, bool)
        new_bin[is_on] = np.r_[True, on_bins[1:] != on_bins[:-1]] if n else np.zeros(0, bool)
        delta = np.diff(time, prepend=0)
        n_shift = -(-delta // m)  # ceil: full shifts of m steps, then the remainder
        count = n_shift + new_bin + 1  # tokens per event, (e,)
        block = np.cumsum(count) - count
        out = np.empty(int(count.sum()), dtype=np.int64)
        # time shifts
        shift_pos = np.repeat(block, n_shift) + ranks(n_shift)
        out[shift_pos] = self._shift0 + m - 1
        has = n_shift > 0
        out[block[has] + n_shift[has] - 1] = self._shift0 + (delta[has] - (n_shift[has] - 1) * m) - 1
        # velocity changes, then the note event
        out[(block + n_shift)[new_bin]] = self._vel0 + ev_bin[new_bin]
        out[block + count - 1] = np.where(is_on, ON, OFF) + ev_pitch
        return out

    def decode(self, ids: Sequence[int] | np.ndarray) -> Piece:
        """The notes that event ids spell. A note that no later event of its pitch ends (no
        note-off, no re-strike) lasts until the last event, but at most `UNENDED_SECONDS`: a
        sampled note-on whose note-off never comes is not held to the end of the piece."""
        ids = content_ids(ids, len(self.vocab))
        is_shift = (ids >= self._shift0) & (ids < self._vel0)
        is_vel = ids >= self._vel0
        is_note = ids < self._shift0
        time = np.cumsum(np.where(is_shift, ids - self._shift0 + 1, 0))  # (t,)
        # the velocity bin in force at each token: the last velocity event so far
        last_vel = np.maximum.accumulate(np.where(is_vel, np.arange(len(ids)), -1)) if len(ids) else ids
        default_bin = (64 - 1) // self.config.bin_size  # before any velocity event: MIDI's middle
        vbin = np.where(last_vel >= 0, ids[np.maximum(last_vel, 0)] - self._vel0, default_bin)
        # pair each note-on with the next note event of its pitch (its off, or a re-strike)
        pos = np.flatnonzero(is_note)
        if not len(pos):
            return self._notes(*[np.zeros(0, dtype=np.int64)] * 4)
        on = ids[pos] < OFF
        pitch = np.where(on, ids[pos] - ON, ids[pos] - OFF)
        order = np.lexsort((pos, pitch))
        pos, on, pitch = pos[order], on[order], pitch[order]
        has_next = np.r_[pitch[1:] == pitch[:-1], False]
        final = time[-1] if len(ids) else 0
        cap = int(round(self.UNENDED_SECONDS * self.config.steps_per_second))
        end = np.where(has_next, time[np.r_[pos[1:], 0]], np.minimum(final, time[pos] + cap))
        start = time[pos]
        return self._notes(pitch[on], start[on], end[on], vbin[pos][on])

    # ---- readable tokens -------------------------------------------------------------------------

    def tokens(self, piece: Piece) -> list[str]:
        return self.vocab.tokens(self.encode(piece))

    def decode_tokens(self, tokens: Sequence[str]) -> Piece:
        return self.decode(self.vocab.ids(list(tokens)))

    def rules(self, ids: Sequence[int] = (), *, repeat_penalty: float = 1.0) -> PerformanceRules:
        """What may come after ``ids`` (`PerformanceRules`)."""
        return PerformanceRules(self, ids, repeat_penalty=repeat_penalty)


class PerformanceRules:
    """The events `PerformanceEncoding.encode` can write after ``ids`` (see the module
    docstring): `allowed` is a bool mask over the vocabulary (v,), `weights` the factors the
    sampler multiplies the probabilities by (0 where not allowed, 1 / ``repeat_penalty`` ^ n on
    a note-on of a pitch struck at the n previous onsets), `observe` takes the next event.
    Every sequence the encoder writes passes (tested on MAESTRO); a model that loses track of
    which keys are down may still put probability on the rest, and a sampler that draws it gets
    a key struck again 10 ms after it went down.
    """

    def __init__(self, encoding: PerformanceEncoding, ids: Sequence[int] = (), *, repeat_penalty: float = 1.0) -> None:
        if isinstance(repeat_penalty, bool) or not isinstance(repeat_penalty, int | float) or \
                not 1 <= repeat_penalty < math.inf:
            raise EncodingError(f"repeat penalty must be a finite number >= 1 (1: none); got {repeat_penalty!r}")
        self.repeat_penalty = float(repeat_penalty)
        self.onset_step = -1  # the last step with note-ons
        self.at_onset: dict[int, int] = {}  # the pitches struck on it -> onsets in a row that struck them
        self.before: dict[int, int] = {}  # the same for the onset before it
        self._shift0, self._vel0 = encoding._shift0, encoding._vel0
        self._size = len(encoding.vocab)
        self.step = 0
        self.sounding: dict[int, int] = {}  # pitch -> the step it began
        self.bin: int | None = None  # the velocity bin in force
        self.after_velocity = False
        self._base = np.ones(self._size, dtype=bool)  # on for silent pitches, off for sounding ones begun before
        self._base[list(NEVER_PREDICTED)] = False
        self._base[OFF:OFF + 128] = False
        for token in ids:
            self.observe(int(token))

    def allowed(self) -> np.ndarray:
        """Bool (v,): True where the next event may be this token."""
        if self.after_velocity:  # a velocity event comes right before a note-on
            mask = np.zeros(self._size, dtype=bool)
            mask[ON:OFF] = self._base[ON:OFF]
            return mask
        mask = self._base.copy()
        if self.bin is not None:
            mask[self._vel0 + self.bin] = False
        return mask

    def weights(self) -> np.ndarray:
        """Float (v,): `allowed` as 0 / 1, with 1 / ``repeat_penalty`` ^ n on striking again a pitch
        the n previous onsets struck (a note-on now joins the chord of this step, or starts a new
        one)."""
        w = self.allowed().astype(np.float64)
        if self.repeat_penalty != 1:
            previous = self.before if self.step == self.onset_step else self.at_onset
            for pitch, n in previous.items():
                w[ON + pitch] /= self.repeat_penalty ** min(n, 64)
        return w

    def observe(self, token: int) -> None:
        self.after_velocity = False
        if self._shift0 <= token < self._vel0:
            self.step += token - self._shift0 + 1
            for pitch in self.sounding:  # begun on an earlier step now: they may end
                self._base[OFF + pitch] = True
        elif token >= self._vel0:
            self.bin, self.after_velocity = token - self._vel0, True
        elif OFF <= token < self._shift0:
            pitch = token - OFF
            self.sounding.pop(pitch, None)
            self._base[OFF + pitch], self._base[ON + pitch] = False, True
        elif ON <= token < OFF:
            pitch = token - ON
            self.sounding[pitch] = self.step
            if self.step != self.onset_step:
                self.onset_step, self.before, self.at_onset = self.step, self.at_onset, {}
            self.at_onset[pitch] = self.before.get(pitch, 0) + 1
            self._base[ON + pitch] = False
