"""Encodings by name: ``get_encoding(name, **settings)`` and ``encoding_from_dict(d)``.

A run directory saves ``encoding.to_dict()`` as ``encoding.json``; `encoding_from_dict`
rebuilds the same encoding (settings, vocabulary and what `fit` learned), so a model and its
encoding always travel together.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from notelm.encodings.base import FORMAT_VERSION, Encoding, EncodingSettingsError
from notelm.encodings.grid import DSTM_FRAMES, GridEncoding
from notelm.encodings.melody import MelodyEncoding
from notelm.encodings.miditok_adapters import MidiLikeEncoding, RemiEncoding, TsdEncoding
from notelm.encodings.note_tokens import NoteTokensEncoding
from notelm.encodings.performance import PerformanceEncoding
from notelm.encodings.vocab import Vocabulary
from notelm.errors import UnknownNameError


def _dstm_frames(**settings: Any) -> GridEncoding:
    """The DSTM paper's frames: the grid preset 16ths, repeat mode, pitches 48-95 + rest."""
    enc = GridEncoding(**{**DSTM_FRAMES, **settings})
    enc.name = "dstm-frames"
    return enc


ENCODINGS: dict[str, Callable[..., Encoding]] = {
    "melody": MelodyEncoding,
    "grid": GridEncoding,
    "dstm-frames": _dstm_frames,
    "performance": PerformanceEncoding,
    "note-tokens": NoteTokensEncoding,
    "remi": RemiEncoding,
    "tsd": TsdEncoding,
    "midilike": MidiLikeEncoding,
}


def available_encodings() -> list[str]:
    return list(ENCODINGS)


def get_encoding(name: str, **settings: Any) -> Encoding:
    """A new encoding by registry name, with settings overriding its defaults.

    Raises UnknownNameError for a name no one registered, EncodingSettingsError for bad settings.
    """
    if name not in ENCODINGS:
        raise UnknownNameError("encoding", name, list(ENCODINGS))
    return ENCODINGS[name](**settings)


def encoding_from_dict(data: dict[str, Any]) -> Encoding:
    """Rebuild an encoding saved with ``Encoding.to_dict()``."""
    if not isinstance(data.get("vocab"), dict) or not isinstance(data.get("name"), str) \
            or not isinstance(data.get("config", {}), dict) or not isinstance(data.get("state", {}), dict):
        raise EncodingSettingsError("a saved encoding needs a name, a config, a state and a vocabulary (objects)")
    if not isinstance(data.get("format", FORMAT_VERSION), int) or data.get("format", FORMAT_VERSION) > FORMAT_VERSION:
        raise EncodingSettingsError(f"encoding saved in format {data['format']}, newer than this notelm reads")
    enc = get_encoding(data["name"], **data.get("config", {}))
    enc.load_state(data.get("state", {}), Vocabulary.from_dict(data["vocab"]))
    return enc
