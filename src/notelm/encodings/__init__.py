"""Encodings: a `Piece` <-> token ids, each with its `Vocabulary` and settings.

``get_encoding(name, **settings)`` builds one of: ``melody`` (linked pitch x duration x ioi
per note, for PPM/IDyOM), ``melody-events`` (pitch, duration and ioi as three tokens per
note, for neural melody models), ``grid`` (the LSTM tutorial's 16th-note grid),
``dstm-frames`` (the DSTM paper's frames), ``performance`` (Oore et al. 2018 events), ``note-tokens``
(midi-translation's binned notes with exact velocity targets), ``remi``, ``tsd`` and
``midilike`` (MidiTok). Every encoding satisfies ``decode(encode(p)) == quantized(p)``; pieces
it cannot represent raise `EncodingError`. Melodic viewpoints for the multiple-viewpoint
system are in `notelm.viewpoints`.
"""

from __future__ import annotations

from notelm.encodings.base import Encoding, EncodingConfig, EncodingError, EncodingSettingsError
from notelm.encodings.grid import GridConfig, GridEncoding
from notelm.encodings.melody import MelodyConfig, MelodyEncoding
from notelm.encodings.melody_events import MelodyEventsConfig, MelodyEventsEncoding
from notelm.encodings.miditok_adapters import (
    MidiLikeEncoding,
    MidiTokConfig,
    MidiTokEncoding,
    RemiEncoding,
    TsdEncoding,
)
from notelm.encodings.note_tokens import NoteTokensConfig, NoteTokensEncoding
from notelm.encodings.performance import PerformanceConfig, PerformanceEncoding
from notelm.encodings.registry import (
    ENCODINGS,
    available_encodings,
    encoding_from_dict,
    get_encoding,
)
from notelm.encodings.report import roundtrip_report, show_tokens
from notelm.encodings.vocab import BOS, EOS, N_SPECIAL, PAD, UNK, Vocabulary

__all__ = [
    "BOS", "ENCODINGS", "EOS", "N_SPECIAL", "PAD", "UNK", "Encoding", "EncodingConfig",
    "EncodingError", "EncodingSettingsError", "GridConfig", "GridEncoding", "MelodyConfig",
    "MelodyEncoding", "MelodyEventsConfig", "MelodyEventsEncoding", "MidiLikeEncoding", "MidiTokConfig", "MidiTokEncoding", "NoteTokensConfig",
    "NoteTokensEncoding", "PerformanceConfig", "PerformanceEncoding", "RemiEncoding",
    "TsdEncoding", "Vocabulary", "available_encodings", "encoding_from_dict",
    "get_encoding", "roundtrip_report", "show_tokens",
]
