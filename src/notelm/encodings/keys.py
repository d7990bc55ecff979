"""Keys: read a piece's key and transpose it to C major / A minor (the LSTM tutorial's step).

The key comes from ``piece.meta.key`` as the source states it: ABC ``K:`` fields ("F", "Gm",
"Dmix", "F#dor", "Bb"), or music21's "F major" / "a minor". When it is missing or unreadable
(MIDI files, ABC's "none"/"HP"), music21's key analysis (Krumhansl-Schmuckler with the
Aarden-Essen profiles, ``Stream.analyze('key')``) names one instead.

"C major / A minor" generalises to modes as "no sharps or flats": a key moves with its key
signature, so Dmix (G major's signature) moves as G major does, up a fourth, to G mixolydian;
Gm (B-flat major's signature) goes to A minor. Of the twelve-semitone equivalents we take the
nearest, -5 to +6 semitones (a tritone goes up), so no tune moves by more than half an octave.
"""

from __future__ import annotations

import re

import numpy as np

from notelm.pieces import Piece

_STEPS = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}
# semitones from the relative major's tonic up to the mode's tonic
_MODES = {
    "": 0, "maj": 0, "major": 0, "ion": 0, "ionian": 0,
    "m": 9, "min": 9, "minor": 9, "aeo": 9, "aeolian": 9,
    "dor": 2, "dorian": 2, "phr": 4, "phrygian": 4, "lyd": 5, "lydian": 5,
    "mix": 7, "mixolydian": 7, "loc": 11, "locrian": 11,
}
_KEY = re.compile(r"^\s*([A-Ga-g])([#b♯♭]?)\s*([A-Za-z]*)")


def parse_key(text: str | None) -> tuple[int, int] | None:
    """(tonic pitch class, semitones from the relative major to the tonic), or None."""
    if not text:
        return None
    m = _KEY.match(text)
    if not m:
        return None
    letter, accidental, mode = m.groups()
    mode = mode.lower()
    if mode not in _MODES:
        mode = mode[:3]
    if mode not in _MODES:
        return None
    tonic = (_STEPS[letter.lower()] + {"#": 1, "♯": 1, "b": -1, "♭": -1}.get(accidental, 0)) % 12
    return tonic, _MODES[mode]


def analyze_key(piece: Piece) -> tuple[int, int] | None:
    """music21's key analysis of the piece's notes (durations weight the profile)."""
    if not len(piece):
        return None
    from music21 import note, stream  # lazily: music21 costs ~0.5 s to import

    s = stream.Stream()
    for p, o, d in zip(piece.pitch.tolist(), piece.onset.tolist(), piece.duration.tolist()):
        s.insert(o, note.Note(p, quarterLength=max(d, 1 / 64)))
    k = s.analyze("key")
    return parse_key(f"{k.tonic.name.replace('-', 'b')} {k.mode}")


def semitones_to_c(piece: Piece) -> int:
    """Semitones that take the piece's key signature to C major's (-5..6); 0 if no key."""
    key = parse_key(piece.meta.key) or analyze_key(piece)
    if key is None:
        return 0
    tonic, mode = key
    relative_major = (tonic - mode) % 12
    shift = -relative_major % 12
    return int(shift - 12 if shift > 6 else shift)


def octave_shift(pitch: np.ndarray, low: int, high: int) -> int | None:
    """Multiple of 12 (nearest 0) that brings every pitch into [low, high], or None."""
    if not len(pitch):
        return 0
    lo_k = -((int(pitch.min()) - low) // 12)  # ceil((low - min) / 12)
    hi_k = (high - int(pitch.max())) // 12
    if lo_k > hi_k:
        return None
    k = min(max(0, lo_k), hi_k)
    return 12 * k
