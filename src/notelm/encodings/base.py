"""The `Encoding` base: a piece <-> token ids, with its vocabulary and settings.

Every encoding promises one property, tested for each of them:

    decode(encode(piece)) == quantized(piece)

``quantized(piece)`` is the piece as the encoding sees it (its melody, on its grid, with its
velocity bins ...), so the round trip is exact on what the encoding keeps and says plainly
what it drops. Pieces an encoding cannot represent raise `EncodingError` with a short,
countable ``reason`` (batch code skips them and counts reasons); invalid settings raise
`EncodingSettingsError`.

Decoding reads ids up to the first EOS, skips PAD and BOS, and refuses UNK: a sampler's
output decodes like an encoded piece.

Legend: n notes, t tokens.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import numpy as np

from notelm.config import Config, SettingsError
from notelm.encodings.vocab import BOS_ID, EOS_ID, N_SPECIAL, PAD_ID, UNK_ID, Vocabulary
from notelm.errors import NotelmError
from notelm.pieces import DEFAULT_VELOCITY, Piece, Track

FORMAT_VERSION = 1  # of the dict written by Encoding.to_dict


class EncodingError(NotelmError):
    """A piece (or a token sequence) the encoding cannot represent.

    ``reason`` is short and free of numbers so that batch code can count pieces by it;
    ``detail`` says where (which note, which value).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason
        self.detail = detail


EncodingSettingsError = SettingsError  # encoding settings that are invalid (a wrong value, an unknown name)


# ---- settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncodingConfig(Config):
    """Base of every encoding's settings: frozen, validated, JSON round trip."""

    def require(self, ok: bool, message: str) -> None:
        """Raise `EncodingSettingsError` with ``message`` unless ``ok`` (for ``__post_init__``)."""
        if not ok:
            raise EncodingSettingsError(f"{type(self).__name__}: {message}")

    def require_type(self, name: str, kind: type | tuple[type, ...]) -> None:
        value = getattr(self, name)
        bad_bool = isinstance(value, bool) and kind in (int, float, (int, float))
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        self.require(isinstance(value, kind) and not bad_bool, f"{name} must be {names}; got {value!r}")


# ---- helpers shared by encodings ---------------------------------------------------------------


def check_times(piece: Piece) -> None:
    """Encodings start at time 0: a note before it cannot be represented."""
    if len(piece) and piece.onset.min() < 0:
        raise EncodingError("note before time 0", f"onset {piece.onset.min():g}")


def plain_piece(
    pitch: np.ndarray,
    onset: np.ndarray,
    duration: np.ndarray,
    velocity: np.ndarray | None = None,
    *,
    time_unit: str,
) -> Piece:
    """A decoded piece: one default track, no ties, no pedals, no metadata."""
    vel = np.full(len(pitch), DEFAULT_VELOCITY) if velocity is None else velocity
    return Piece(pitch=pitch, onset=onset, duration=duration, velocity=vel, time_unit=time_unit,
                 tracks=(Track(),))


def without_drums(piece: Piece) -> Piece:
    drums = np.array([t.is_drum for t in piece.tracks])[piece.track]
    return piece.with_notes(~drums) if drums.any() else piece


def to_seconds(piece: Piece) -> Piece:
    """The piece in seconds: a "beat" piece through its tempo map, or at 120 qpm without one.

    Pedal intervals are mapped too, so ``apply_sustain`` works after the conversion.
    """
    if piece.time_unit == "second":
        return piece
    tempos = sorted(piece.meta.tempos) or [(0.0, 120.0)]
    if tempos[0][0] > 0:
        tempos.insert(0, (0.0, tempos[0][1]))
    at_beat = np.array([b for b, _ in tempos])
    sec_per_beat = np.array([60.0 / q for _, q in tempos])
    at_sec = np.r_[0.0, np.cumsum(np.diff(at_beat) * sec_per_beat[:-1])]

    def sec(beats: np.ndarray) -> np.ndarray:
        k = np.clip(np.searchsorted(at_beat, beats, side="right") - 1, 0, None)
        return at_sec[k] + (beats - at_beat[k]) * sec_per_beat[k]

    start, end = sec(piece.onset), sec(piece.onset + piece.duration)
    pedals = piece.pedals
    if len(pedals):
        down, up = sec(pedals[:, 0]), sec(pedals[:, 0] + pedals[:, 1])
        pedals = np.stack([down, up - down], axis=1)
    out = piece.with_notes(onset=start, duration=end - start)
    return replace(out, time_unit="second", pedals=pedals, meta=replace(piece.meta, tempos=()))


def ranks(length: np.ndarray) -> np.ndarray:
    """0, 1, ..., length[i]-1 for each i, concatenated: (sum(length),). For vectorised runs."""
    total = int(length.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    return np.arange(total) - np.repeat(np.cumsum(length) - length, length)


def content_ids(ids: Sequence[int] | np.ndarray, vocab_size: int) -> np.ndarray:
    """The content part of a sequence of ids: up to the first EOS, without PAD and BOS.

    Raises EncodingError on UNK or an id outside the vocabulary. Shape (t,) -> (t',).
    """
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    eos = np.flatnonzero(ids == EOS_ID)
    if len(eos):
        ids = ids[: eos[0]]
    ids = ids[(ids != PAD_ID) & (ids != BOS_ID)]
    if (ids == UNK_ID).any():
        raise EncodingError("unknown token in the sequence")
    if len(ids) and (ids.min() < 0 or ids.max() >= vocab_size):
        raise EncodingError("token id outside the vocabulary", f"size {vocab_size}")
    return ids


# ---- the base class ---------------------------------------------------------------------------


class Encoding(ABC):
    """A piece <-> token ids; subclasses implement `quantized`, `tokens` and `decode_tokens`.

    Fast encodings override `encode`/`decode` with vectorised id paths; the token paths stay
    the readable definition. Encodings that learn from data set ``learns = True`` and
    implement `fit`, `state_dict` and `load_state`.
    """

    config_class: ClassVar[type[EncodingConfig]]
    default_name: ClassVar[str]
    learns: ClassVar[bool] = False
    # what `fit` learns from when a whole corpus is encoded: "all" its pieces (IDyOM's alphabets
    # are the corpus's symbols) or its "train" split (fitted bins must not see the test data)
    fits_on: ClassVar[str] = "all"

    def __init__(self, config: EncodingConfig | None = None, **settings: Any) -> None:
        if config is None:
            config = self.config_class.from_dict(settings)
        elif settings:
            config = self.config_class.from_dict({**config.to_dict(), **settings})
        if not isinstance(config, self.config_class):
            raise EncodingSettingsError(f"{type(self).__name__} needs a {self.config_class.__name__}")
        self.config = config
        self.name = self.default_name
        self.vocab = self.build_vocab()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, vocab={len(self.vocab)})"

    # ---- hooks ---------------------------------------------------------------------------------

    def build_vocab(self) -> Vocabulary:
        """The vocabulary the settings define (an empty one for encodings that learn it)."""
        return Vocabulary()

    @property
    def fitted(self) -> bool:
        """Whether the encoding is ready to encode (always, for encodings that learn nothing)."""
        return True

    def fit(self, pieces: Iterable[Piece]) -> Encoding:
        """Learn what the encoding needs from training pieces (nothing, by default)."""
        return self

    def state_dict(self) -> dict[str, Any]:
        """What `fit` learned, JSON-safe (the vocabulary is saved apart)."""
        return {}

    def load_state(self, state: dict[str, Any], vocab: Vocabulary) -> None:
        """Restore what `fit` learned; fixed encodings check the saved vocabulary matches."""
        if vocab != self.vocab:
            raise EncodingSettingsError(f"saved vocabulary does not match the {self.name} settings")

    @abstractmethod
    def quantized(self, piece: Piece) -> Piece:
        """The piece as the encoding represents it: ``decode(encode(piece))`` equals it."""

    @abstractmethod
    def tokens(self, piece: Piece) -> list[str]:
        """The readable token sequence of ``piece``."""

    @abstractmethod
    def decode_tokens(self, tokens: Sequence[str]) -> Piece:
        """The piece that a sequence of content tokens (no specials) spells."""

    # ---- ids -------------------------------------------------------------------------------------

    def require_fitted(self) -> None:
        if not self.fitted:
            raise EncodingError("encoding not fitted", f"call {self.name}.fit(pieces) first")

    def encode(self, piece: Piece) -> np.ndarray:
        """Token ids of ``piece``, int64, shape (t,). EncodingError if it cannot be represented."""
        self.require_fitted()
        tokens = self.tokens(piece)
        ids = self.vocab.ids(tokens)
        if (ids == UNK_ID).any():
            missing = tokens[int(np.flatnonzero(ids == UNK_ID)[0])]
            raise EncodingError("token not in the vocabulary", repr(missing))
        return ids

    def decode(self, ids: Sequence[int] | np.ndarray) -> Piece:
        """The piece spelled by ``ids`` (read up to the first EOS; PAD and BOS skipped)."""
        self.require_fitted()
        return self.decode_tokens(self.vocab.tokens(content_ids(ids, len(self.vocab))))

    def rules(self, ids: Sequence[int] = ()) -> Any:
        """What may come after ``ids`` while sampling (``weights()``, factors over the
        vocabulary the sampler multiplies the probabilities by, 0 where a token may not come,
        and ``observe(token)``), or None: any token may (an encoding with rules, as
        ``performance``, overrides this)."""
        return None

    @property
    def alphabet_size(self) -> int:
        """Size of the id space a model predicts over (the whole vocabulary, specials included)."""
        return len(self.vocab)

    # ---- saving ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the encoding (`encoding_from_dict`), JSON-safe."""
        return {
            "format": FORMAT_VERSION,
            "name": self.name,
            "config": self.config.to_dict(),
            "vocab": self.vocab.to_dict(),
            "state": self.state_dict(),
        }


__all__ = [
    "N_SPECIAL", "Encoding", "EncodingConfig", "EncodingError", "EncodingSettingsError",
    "check_times", "content_ids", "plain_piece", "ranks", "to_seconds", "without_drums",
]


class AlphabetEncoding(Encoding):
    """An encoding whose vocabulary is learned by `fit` (the alphabet of a corpus): unfitted
    until `fit` calls `_learned`; its saved state is that flag, its vocabulary saved apart."""

    learns: ClassVar[bool] = True

    def __init__(self, config: EncodingConfig | None = None, **settings: Any) -> None:
        super().__init__(config, **settings)
        self._fitted = False

    @property
    def fitted(self) -> bool:
        return self._fitted

    def _learned(self, vocab: Vocabulary) -> Encoding:
        self.vocab, self._fitted = vocab, True
        return self

    def load_state(self, state: dict[str, Any], vocab: Vocabulary) -> None:
        self.vocab = vocab
        self._fitted = bool(state.get("fitted", True))

    def state_dict(self) -> dict[str, Any]:
        return {"fitted": self._fitted}
