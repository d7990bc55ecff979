"""``remi``, ``tsd``, ``midilike``: MidiTok's standard tokenizations behind notelm's `Encoding`.

MidiTok (Fradet et al. 2021) tokenizes symusic scores; these adapters convert a `Piece` to a
one-track tick score and back, and map MidiTok's token ids onto a notelm `Vocabulary`
(notelm's four specials first, then MidiTok's own tokens in its order, its specials left out).

Settings ``beat_res``, ``num_velocities``, ``pitch_range``, ``use_time_signatures`` go to
MidiTok's ``TokenizerConfig``; ``options`` passes any other of its keywords (JSON values).

What the tokens keep (`quantized` = what MidiTok's own ``preprocess_score`` leaves, read back
the same way as a decoded score):

- One track: every non-drum note, track and program information dropped (``use_programs`` is
  off); sustain pedal folded into note ends first (``sustain=True``).
- Times on MidiTok's beat grid (``beat_res``: 8 positions per beat by default). MidiTok
  counts beats; pieces in seconds are read at 120 quarter notes per minute (1 beat = 0.5 s),
  and decoded pieces are in ``time_unit`` ("beat" by default; "second" at the same rate).
- Velocities to ``num_velocities`` values, pitches outside ``pitch_range`` deleted, durations
  to MidiTok's duration values (REMI, TSD).
- Overlapping notes of one pitch: the earlier ends where the next starts (MidiTok would pair
  note-offs first-in first-out and reorder them), as in the ``performance`` encoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from notelm.encodings.base import (
    Encoding,
    EncodingConfig,
    EncodingError,
    check_times,
    content_ids,
    plain_piece,
    without_drums,
)
from notelm.encodings.vocab import N_SPECIAL, Vocabulary
from notelm.pieces import Piece

TPQ = 480  # ticks per quarter of the score handed to MidiTok (it resamples to beat_res)
SECONDS_PER_BEAT = 0.5  # pieces in seconds are read at 120 quarter notes per minute


@dataclass(frozen=True)
class MidiTokConfig(EncodingConfig):
    """beat_res: (first beat, last beat, positions per beat) ranges, MidiTok's beat_res.
    num_velocities / pitch_range / use_time_signatures: MidiTok's. sustain: fold the pedal into
    note ends first. time_unit: of decoded pieces. options: other TokenizerConfig keywords."""

    beat_res: tuple[tuple[int, int, int], ...] = ((0, 4, 8), (4, 12, 4))
    num_velocities: int = 32
    pitch_range: tuple[int, int] = (21, 109)
    use_time_signatures: bool = False
    sustain: bool = True
    time_unit: str = "beat"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.require(all(len(r) == 3 and r[0] < r[1] and r[2] >= 1 for r in self.beat_res),
                     f"beat_res must be (start, end, resolution) triples; got {self.beat_res!r}")
        self.require_type("num_velocities", int)
        self.require(1 <= self.num_velocities <= 127, "num_velocities must be 1-127")
        self.require(len(self.pitch_range) == 2 and 0 <= self.pitch_range[0] < self.pitch_range[1] <= 128,
                     f"pitch_range must be (low, high) within 0-128; got {self.pitch_range!r}")
        self.require_type("sustain", bool)
        self.require(self.time_unit in ("beat", "second"), f"time_unit must be 'beat' or 'second'; got {self.time_unit!r}")
        self.require(isinstance(self.options, dict), "options must be a dict")
        fixed = {"beat_res", "num_velocities", "pitch_range", "use_time_signatures", "use_programs"}
        self.require(not fixed & set(self.options), f"set {sorted(fixed & set(self.options))} directly, not in options")


class MidiTokEncoding(Encoding):
    """A MidiTok tokenizer over one-track tick scores; subclasses name the tokenizer."""

    config_class = MidiTokConfig
    tokenizer_class: ClassVar[str]
    config: MidiTokConfig

    def __init__(self, config: MidiTokConfig | None = None, **settings: Any) -> None:
        import miditok  # lazily: it costs ~1.5 s to import

        cfg = config if config is not None and not settings else MidiTokConfig.from_dict(
            {**(config.to_dict() if config else {}), **settings})
        try:
            tok_config = miditok.TokenizerConfig(
                beat_res={(a, b): r for a, b, r in cfg.beat_res},
                num_velocities=cfg.num_velocities,
                pitch_range=tuple(cfg.pitch_range),
                use_time_signatures=cfg.use_time_signatures,
                use_programs=False,
                **cfg.options,
            )
            self.tokenizer = getattr(miditok, self.tokenizer_class)(tok_config)
        except (TypeError, ValueError, KeyError) as e:
            raise EncodingError("invalid MidiTok settings", str(e)) from None
        super().__init__(cfg)

    def build_vocab(self) -> Vocabulary:
        theirs = self.tokenizer.vocab  # token -> id
        specials = set(self.tokenizer.special_tokens)
        content = [t for t, _ in sorted(theirs.items(), key=lambda kv: kv[1]) if t not in specials]
        self._to_ours = np.full(len(theirs), -1, dtype=np.int64)
        ours = {t: N_SPECIAL + i for i, t in enumerate(content)}
        for t, i in theirs.items():
            self._to_ours[i] = ours.get(t, -1)
        self._to_theirs = np.array([theirs[t] for t in content], dtype=np.int64)
        return Vocabulary(content)

    # ---- Piece <-> tick score -----------------------------------------------------------------

    def prepare(self, piece: Piece) -> Piece:
        """The notes handed to MidiTok: sustain applied, no drums, one pitch's notes not overlapping."""
        if self.config.sustain:
            piece = piece.apply_sustain()
        piece = without_drums(piece)
        check_times(piece)
        if len(piece) and (piece.pitch.min() < 0 or piece.pitch.max() > 127):
            raise EncodingError("pitch outside 0-127", f"pitches {piece.pitch.min()}-{piece.pitch.max()}")
        order = np.lexsort((piece.onset, piece.pitch))
        nxt = np.full(len(piece), np.inf)
        same = piece.pitch[order][1:] == piece.pitch[order][:-1]
        nxt[order[:-1][same]] = piece.onset[order][1:][same]
        end = np.minimum(piece.onset + piece.duration, np.maximum(nxt, piece.onset))
        return piece.with_notes(duration=end - piece.onset)

    def to_score(self, piece: Piece):
        import symusic

        scale = TPQ / SECONDS_PER_BEAT if piece.time_unit == "second" else TPQ
        start = np.round(piece.onset * scale).astype(np.int32)
        end = np.round((piece.onset + piece.duration) * scale).astype(np.int32)
        score = symusic.Score(TPQ)
        meter = piece.meta.meter
        if self.config.use_time_signatures and meter and "/" in meter:
            num, den = meter.split("/")
            score.time_signatures.append(symusic.TimeSignature(0, int(num), int(den)))
        track = symusic.Track("", 0, False)
        track.notes = symusic.Note.from_numpy(
            start, end - start, piece.pitch.astype(np.int8), np.clip(piece.velocity, 1, 127).astype(np.int8)
        )
        score.tracks.append(track)
        return score

    def from_score(self, score) -> Piece:
        """The notes of a tick score (all tracks) as a one-track piece in the config's time unit."""
        time_unit = self.config.time_unit
        cols = [tr.notes.numpy() for tr in score.tracks if len(tr.notes)]
        if not cols:
            return plain_piece(np.zeros(0), np.zeros(0), np.zeros(0), time_unit=time_unit)
        get = lambda k: np.concatenate([c[k] for c in cols]).astype(np.int64)  # noqa: E731
        tpq = score.ticks_per_quarter
        start, end = get("time"), get("time") + get("duration")
        unit = SECONDS_PER_BEAT if time_unit == "second" else 1.0
        onset = start / tpq * unit
        return plain_piece(get("pitch"), onset, end / tpq * unit - onset, get("velocity"), time_unit=time_unit)

    def quantized(self, piece: Piece) -> Piece:
        score = self.tokenizer.preprocess_score(self.to_score(self.prepare(piece)))
        return self.from_score(score)

    # ---- ids ---------------------------------------------------------------------------------

    def encode(self, piece: Piece) -> np.ndarray:
        seqs = self.tokenizer.encode(self.to_score(self.prepare(piece)))
        seqs = seqs if isinstance(seqs, list) else [seqs]
        theirs = np.concatenate([np.asarray(s.ids, dtype=np.int64) for s in seqs]) if seqs else np.zeros(0, np.int64)
        ours = self._to_ours[theirs]
        if (ours < 0).any():
            raise EncodingError("MidiTok produced a special token")
        return ours

    def decode(self, ids: Sequence[int] | np.ndarray) -> Piece:
        ids = content_ids(ids, len(self.vocab))
        if not len(ids):
            return self.from_score(_empty_score())
        theirs = self._to_theirs[ids - N_SPECIAL].tolist()
        score = self.tokenizer.decode([theirs])
        return self.from_score(score)

    def tokens(self, piece: Piece) -> list[str]:
        return self.vocab.tokens(self.encode(piece))

    def decode_tokens(self, tokens: Sequence[str]) -> Piece:
        return self.decode(self.vocab.ids(list(tokens)))


def _empty_score():
    import symusic

    return symusic.Score(TPQ)


class RemiEncoding(MidiTokEncoding):
    """REMI (Huang & Yang 2020): Bar, Position, Pitch, Velocity, Duration tokens."""

    tokenizer_class = "REMI"
    default_name = "remi"


class TsdEncoding(MidiTokEncoding):
    """TSD: TimeShift, Pitch, Velocity, Duration tokens."""

    tokenizer_class = "TSD"
    default_name = "tsd"


class MidiLikeEncoding(MidiTokEncoding):
    """MIDI-Like (Oore et al. 2018 as MidiTok implements it): NoteOn, NoteOff, TimeShift, Velocity."""

    tokenizer_class = "MIDILike"
    default_name = "midilike"
