"""The grid encodings (the LSTM tutorial's GridEncoder; the DSTM paper's frames) and melody:
the documented tokens, and the documented behaviour on input they cannot represent."""

from __future__ import annotations

import numpy as np
import pytest

from notelm.encodings import EOS, EncodingError, get_encoding
from notelm.encodings.keys import octave_shift, parse_key, semitones_to_c
from notelm.pieces import Piece, PieceMeta


def melody(pitch, onset, duration, **kw) -> Piece:
    return Piece(pitch=np.array(pitch), onset=np.array(onset, float), duration=np.array(duration, float), **kw)


def toks(text: str) -> list[str]:
    """Grid tokens written as the tutorial writes them, then the terminal symbol."""
    return [*text.split(), EOS]


def test_tutorial_tokens_hold_and_rest():
    # "55 _ _ _ r _ _ _" = a quarter note then a quarter rest (REFERENCE §3)
    piece = melody([55, 57], [0, 2], [1, 1])
    assert get_encoding("grid").tokens(piece) == toks("55 _ _ _ r _ _ _ 57 _ _ _")
    assert get_encoding("grid", terminal=False).tokens(melody([60], [0.5], [0.25])) == ["r", "_", "60"]


def test_repeat_mode_repeats_pitch_and_merges_restruck_notes():
    piece = melody([60, 60, 62], [0, 0.5, 1.5], [0.5, 0.5, 0.25])
    dstm = get_encoding("dstm-frames")
    assert dstm.tokens(piece) == toks("60 60 60 60 r r 62")[:-1]  # frames only: no terminal symbol
    q = dstm.quantized(piece)  # frames cannot tell a re-strike from a hold
    assert q.pitch.tolist() == [60, 62] and q.duration.tolist() == [1.0, 0.25]
    hold = get_encoding("grid")  # hold mode keeps both notes
    assert hold.tokens(piece) == toks("60 _ 60 _ r _ 62")
    assert len(hold.decode(hold.encode(piece))) == 3


def test_polyphony_becomes_the_highest_line():
    chord = melody([48, 64, 67, 60], [0, 0, 0, 1], [2, 1, 1, 1])
    assert get_encoding("grid").tokens(chord) == toks("67 _ _ _ 60 _ _ _")


def test_notes_shorter_than_the_step_are_refused():
    with pytest.raises(EncodingError) as e:
        get_encoding("grid").encode(melody([60, 62], [0, 0.125], [0.125, 0.5]))
    assert e.value.reason == "note shorter than the grid step"


def test_off_grid_times_are_refused():
    dotted = melody([60, 62], [0, 0.375], [0.375, 0.625])  # dotted 16th: 1.5 steps
    with pytest.raises(EncodingError) as e:
        get_encoding("grid").encode(dotted)
    assert e.value.reason == "time off the grid"
    triplet = melody([60, 62, 64], [0, 1 / 3, 2 / 3], [1 / 3] * 3)
    assert get_encoding("grid", step=1 / 12).decode(get_encoding("grid", step=1 / 12).encode(triplet)).pitch.tolist() == [60, 62, 64]


def test_out_of_range_pitches_error_or_move_by_octaves():
    low = melody([36, 43, 50], [0, 1, 2], [1, 1, 1])
    with pytest.raises(EncodingError) as e:
        get_encoding("grid", low=48, high=95).encode(low)
    assert e.value.reason == "pitch outside the grid's range"
    dstm = get_encoding("dstm-frames")  # out_of_range="octave": the whole tune up an octave
    assert dstm.quantized(low).pitch.tolist() == [48, 55, 62]
    assert dstm.decode(dstm.encode(low)) == dstm.quantized(low)
    wide = melody([40, 100], [0, 1], [1, 1])
    with pytest.raises(EncodingError) as e:
        dstm.encode(wide)
    assert e.value.reason == "pitch range wider than the grid"
    assert octave_shift(np.array([90, 100]), 48, 95) == -12
    assert octave_shift(np.array([47, 95]), 48, 95) is None


def test_grid_needs_beats():
    with pytest.raises(EncodingError, match="not in beats"):
        get_encoding("grid").encode(melody([60], [0], [1], time_unit="second"))


@pytest.mark.parametrize("key,shift", [
    ("C", 0), ("G", 5), ("F", -5), ("D", -2), ("Bb", 2), ("E", -4), ("F#", 6), ("Gm", 2),
    ("Am", 0), ("Dm", -5), ("Dmix", 5), ("Ador", 5), ("a minor", 0), ("F major", -5),
])
def test_transposition_to_c_major_or_a_minor(key, shift):
    assert semitones_to_c(melody([60], [0], [1], meta=PieceMeta(key=key))) == shift


def test_key_fallback_is_musics21_analysis():
    assert parse_key("none") is None and parse_key("HP") is None and parse_key(None) is None
    g_major = melody([67, 69, 71, 72, 74, 76, 78, 79, 74, 71, 67], range(11), [1] * 10 + [4])
    assert semitones_to_c(g_major) == 5
    q = get_encoding("grid", transpose=True).quantized(g_major)
    assert q.pitch[0] == 72 and q.pitch[-1] == 72


def test_melody_tokens_link_pitch_duration_and_ioi():
    line = melody([67, 65, 64], [0.5, 1.5, 3], [0.5, 1, 1 / 3])
    enc = get_encoding("melody").fit([line])
    assert enc.tokens(line) == ["67|1/2|1/2", "65|1|1", "64|1/3|3/2"]
    assert enc.decode(enc.encode(line)) == enc.quantized(line) == line.with_notes(velocity=np.full(3, 64))
    legato = get_encoding("melody", viewpoint="cpitch*dur").fit([line])
    assert legato.decode(legato.encode(line)).onset.tolist() == [0, 0.5, 1.5]
    pitch_only = get_encoding("melody", viewpoint="cpitch").fit([line])
    assert pitch_only.tokens(line) == ["67", "65", "64"]
    assert pitch_only.vocab.content_tokens == ["64", "65", "67"]  # the bare alphabet, sorted


def test_transposition_out_of_midi_range_is_refused_not_wrapped():
    high = melody([120, 125], [0, 1], [1, 1], meta=PieceMeta(key="G"))  # G -> C is up a fourth
    with pytest.raises(EncodingError) as e:
        get_encoding("grid", transpose=True).encode(high)
    assert e.value.reason == "transposition leaves the MIDI range"


def test_dstm_frames_sample_off_grid_notes_like_a_piano_roll():
    triplet = melody([60, 62, 64, 65], [0, 1 / 3, 2 / 3, 1], [1 / 3, 1 / 3, 1 / 3, 1])
    grace = melody([67, 69], [0.9, 1.0], [0.1, 0.5])  # a grace note sounds at no frame's start
    dstm = get_encoding("dstm-frames")
    assert dstm.tokens(triplet) == ["60", "60", "62", "64", "65", "65", "65", "65"]  # frames at 0, .25, .5, .75, 1, ...
    assert dstm.tokens(grace) == ["r", "r", "r", "r", "69", "69"]
    assert dstm.decode(dstm.encode(grace)) == dstm.quantized(grace)
    with pytest.raises(EncodingError):
        get_encoding("grid").encode(triplet)
