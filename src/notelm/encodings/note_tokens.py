"""``note-tokens``: one token per note with binned timing and velocity (midi-translation, REFERENCE §4).

The velocity model of midi-translation (Nospoko) reads a performance as notes, each a source
token "pitch-dstartbin-durationbin-velocitybin" (e.g. "42-0-1-0"), and predicts the exact
velocity (a target vocabulary "0".."127"). `encode_pair` gives both sequences.

Bin edges are fitted on training pieces as in midi-translation's bin-edge script:
- dstart: quantiles at 0, 1/(k-1), ..., (k-2)/(k-1) (the first set to 0), then a last edge
  max(3 x the previous, 0.5 s) for long gaps: [0, 0.048, 0.5] on MAESTRO with k = 3;
- duration: quantiles at 0, 1/k, ..., (k-1)/k, the first set to 0: [0, 0.146, 0.45];
- velocity: quantiles at 0, 1/k, ..., 1 with the ends set to 0 and 128: [0, 57, 74, 128].
A value's bin is ``digitize(value, edges) - 1``. Decoding uses midi-translation's bin values:
the midpoint of a bin's edges, twice the last edge for the open last bin, and for velocity
0.8 x the first inner edge for the lowest bin (clipped to 1-127).

dstart follows midi-translation's code: a note's dstart is the time from its start to the
next note's start (the last note's is 0), so decoding starts the first note at 0 and each
next one a bin value later. ``dstart="previous"`` instead bins the time since the previous
note's start (the first note's is 0), as REFERENCE §4 words it; decoding also starts at 0.

`quantized` is the piece with those decoded values (seconds, sustain applied, one track):
pitches and note order exact, absolute times lost, as in the source. Both sequences may be
prefixed by BOS acting as midi-translation's CLS token; decoding skips it.

Legend: n notes, k bins.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from notelm.encodings.base import (
    Encoding,
    EncodingConfig,
    EncodingError,
    check_times,
    content_ids,
    plain_piece,
    to_seconds,
    without_drums,
)
from notelm.encodings.vocab import N_SPECIAL, Vocabulary
from notelm.pieces import Piece

KEYS = ("dstart", "duration", "velocity")


@dataclass(frozen=True)
class NoteTokensConfig(EncodingConfig):
    """dstart_bins / duration_bins / velocity_bins: bins of each (midi-translation used 3).
    sustain: fold the sustain pedal into note ends first (as midi-translation's MAESTRO data).
    dstart: "next" (time to the next note's start, the source's code) or "previous"."""

    dstart_bins: int = 3
    duration_bins: int = 3
    velocity_bins: int = 3
    sustain: bool = True
    dstart: str = "next"

    def __post_init__(self) -> None:
        for name in ("dstart_bins", "duration_bins", "velocity_bins"):
            self.require_type(name, int)
            self.require(1 <= getattr(self, name) <= 16, f"{name} must be 1-16 (the vocabulary has 128 x their product tokens)")
        self.require_type("sustain", bool)
        self.require(self.dstart in ("next", "previous"), f"dstart must be 'next' or 'previous'; got {self.dstart!r}")

    def bins(self, key: str) -> int:
        return getattr(self, f"{key}_bins")


def fit_edges(values: np.ndarray, key: str, k: int) -> np.ndarray:
    """Bin edges of one attribute from training values, as midi-translation computes them."""
    if key == "dstart":
        if k == 1:
            return np.zeros(1)
        edges = np.quantile(values, np.linspace(0, 1, k)[:-1])
        edges[0] = 0.0
        edges = np.r_[edges, max(3 * edges[-1], 0.5)]  # one bin for long gaps
    elif key == "duration":
        edges = np.quantile(values, np.linspace(0, 1, k + 1))[:-1]
        edges[0] = 0.0
    else:
        edges = np.quantile(values, np.linspace(0, 1, k + 1))
        edges[0], edges[-1] = 0.0, 128.0
    return edges.astype(np.float64)


def bin_values(edges: np.ndarray, key: str) -> np.ndarray:
    """The value each bin decodes to (midi-translation's bin_to_dstart / _duration / _velocity)."""
    if key == "velocity":
        first = [int(0.8 * edges[1])]
        rest = [int((edges[i - 1] + edges[i]) / 2) for i in range(2, len(edges))]
        return np.clip(np.array(first + rest, dtype=np.float64), 1, 127)
    mids = (edges[:-1] + edges[1:]) / 2
    return np.r_[mids, 2 * edges[-1]]


class NoteTokensEncoding(Encoding):
    """Pitch + binned dstart, duration and velocity per note; exact velocities as targets."""

    config_class = NoteTokensConfig
    default_name = "note-tokens"
    learns = True
    fits_on = "train"  # midi-translation fits its bin edges on the training data
    config: NoteTokensConfig

    def __init__(self, config: NoteTokensConfig | None = None, **settings: Any) -> None:
        super().__init__(config, **settings)
        self.edges: dict[str, np.ndarray] | None = None
        self.values: dict[str, np.ndarray] = {}
        self.target_vocab = Vocabulary([str(v) for v in range(128)])

    def build_vocab(self) -> Vocabulary:
        cfg = self.config
        return Vocabulary(
            f"{p}-{d}-{u}-{v}"
            for p in range(128)
            for d in range(cfg.dstart_bins)
            for u in range(cfg.duration_bins)
            for v in range(cfg.velocity_bins)
        )

    @property
    def fitted(self) -> bool:
        return self.edges is not None

    # ---- notes and their attributes ---------------------------------------------------------------

    def notes(self, piece: Piece) -> Piece:
        """The notes the encoding reads: seconds, sustain applied, drums dropped, in time order."""
        piece = to_seconds(piece)
        if self.config.sustain:
            piece = piece.apply_sustain()
        piece = without_drums(piece)
        check_times(piece)
        if len(piece) and (piece.pitch.min() < 0 or piece.pitch.max() > 127):
            raise EncodingError("pitch outside 0-127", f"pitches {piece.pitch.min()}-{piece.pitch.max()}")
        return piece

    def attributes(self, notes: Piece) -> dict[str, np.ndarray]:
        """dstart, duration and velocity of each note, each (n,)."""
        gap = np.diff(notes.onset)
        dstart = np.r_[gap, 0.0] if self.config.dstart == "next" else np.r_[0.0, gap]
        dstart = dstart[: len(notes)]
        return {"dstart": dstart, "duration": notes.duration, "velocity": notes.velocity.astype(np.float64)}

    def bins(self, piece: Piece) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pitch and the (n, 3) bins of dstart, duration, velocity of each note; exact velocities."""
        self.require_fitted()
        notes = self.notes(piece)
        attrs = self.attributes(notes)
        cols = [np.digitize(attrs[k], self.edges[k]) - 1 for k in KEYS]
        return notes.pitch.astype(np.int64), np.stack(cols, axis=1).astype(np.int64), notes.velocity.astype(np.int64)

    def _notes(self, pitch: np.ndarray, bins: np.ndarray, velocity: np.ndarray | None = None) -> Piece:
        dstart = self.values["dstart"][bins[:, 0]]
        if self.config.dstart == "next":
            onset = np.r_[0.0, np.cumsum(dstart)[:-1]] if len(pitch) else np.zeros(0)
        else:
            onset = np.cumsum(np.r_[0.0, dstart[1:]]) if len(pitch) else np.zeros(0)
        duration = self.values["duration"][bins[:, 1]]
        vel = self.values["velocity"][bins[:, 2]].astype(np.int64) if velocity is None else velocity
        return plain_piece(pitch, onset, duration, vel, time_unit="second")

    def quantized(self, piece: Piece) -> Piece:
        pitch, bins, _ = self.bins(piece)
        return self._notes(pitch, bins)

    # ---- ids ---------------------------------------------------------------------------------

    def _ids(self, pitch: np.ndarray, bins: np.ndarray) -> np.ndarray:
        cfg = self.config
        d, u, v = cfg.dstart_bins, cfg.duration_bins, cfg.velocity_bins
        return N_SPECIAL + ((pitch * d + bins[:, 0]) * u + bins[:, 1]) * v + bins[:, 2]

    def _unpack(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.config
        rest = ids - N_SPECIAL
        rest, vel = np.divmod(rest, cfg.velocity_bins)
        rest, dur = np.divmod(rest, cfg.duration_bins)
        pitch, dst = np.divmod(rest, cfg.dstart_bins)
        return pitch, np.stack([dst, dur, vel], axis=1)

    def encode(self, piece: Piece) -> np.ndarray:
        """Source ids, one per note: int64 (n,)."""
        pitch, bins, _ = self.bins(piece)
        return self._ids(pitch, bins)

    def encode_pair(self, piece: Piece) -> tuple[np.ndarray, np.ndarray]:
        """(source ids, target ids): binned note tokens and their exact velocities, each (n,)."""
        pitch, bins, velocity = self.bins(piece)
        return self._ids(pitch, bins), N_SPECIAL + np.clip(velocity, 0, 127)

    def decode(self, ids: Sequence[int] | np.ndarray) -> Piece:
        self.require_fitted()
        pitch, bins = self._unpack(content_ids(ids, len(self.vocab)))
        return self._notes(pitch, bins)

    def decode_pair(self, source_ids: Sequence[int] | np.ndarray, target_ids: Sequence[int] | np.ndarray) -> Piece:
        """The notes of ``source_ids`` with the exact velocities of ``target_ids``."""
        self.require_fitted()
        pitch, bins = self._unpack(content_ids(source_ids, len(self.vocab)))
        velocity = content_ids(target_ids, len(self.target_vocab)) - N_SPECIAL
        if len(velocity) != len(pitch):
            raise EncodingError("source and target lengths differ", f"{len(pitch)} notes, {len(velocity)} velocities")
        return self._notes(pitch, bins, velocity)

    def tokens(self, piece: Piece) -> list[str]:
        return self.vocab.tokens(self.encode(piece))

    def decode_tokens(self, tokens: Sequence[str]) -> Piece:
        return self.decode(self.vocab.ids(list(tokens)))

    # ---- fitting ------------------------------------------------------------------------------

    def fit(self, pieces: Iterable[Piece]) -> NoteTokensEncoding:
        """Quantile bin edges of dstart, duration and velocity over the training pieces."""
        samples: dict[str, list[np.ndarray]] = {k: [] for k in KEYS}
        for piece in pieces:
            try:
                notes = self.notes(piece)
            except EncodingError:
                continue
            attrs = self.attributes(notes)
            # the filler dstart of the last (or first) note is not data (midi-translation: dstart[:-1])
            real = slice(None, -1) if self.config.dstart == "next" else slice(1, None)
            samples["dstart"].append(attrs["dstart"][real])
            samples["duration"].append(attrs["duration"])
            samples["velocity"].append(attrs["velocity"])
        joined = {k: np.concatenate(v) if v else np.zeros(0) for k, v in samples.items()}
        if not len(joined["duration"]):
            raise EncodingError("no notes to fit the bins on")
        if not len(joined["dstart"]):  # one-note pieces only: no gaps seen
            joined["dstart"] = np.zeros(1)
        self.load_state({"edges": {k: fit_edges(joined[k], k, self.config.bins(k)).tolist() for k in KEYS}}, self.vocab)
        return self

    def state_dict(self) -> dict[str, Any]:
        return {"edges": {k: v.tolist() for k, v in self.edges.items()}} if self.edges else {}

    def load_state(self, state: dict[str, Any], vocab: Vocabulary) -> None:
        super().load_state(state, vocab)
        if "edges" in state:
            self.edges = {k: np.asarray(state["edges"][k], dtype=np.float64) for k in KEYS}
            self.values = {k: bin_values(self.edges[k], k) for k in KEYS}

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "target_vocab": self.target_vocab.to_dict()}
