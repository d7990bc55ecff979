"""Encodings: the one promise ``decode(encode(p)) == quantized(p)`` on random small pieces, for
every registered encoding; vocabularies and whole encodings survive JSON; specials, errors and
the registry behave as documented."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from notelm.encodings import (
    EOS,
    N_SPECIAL,
    EncodingError,
    EncodingSettingsError,
    Vocabulary,
    available_encodings,
    encoding_from_dict,
    get_encoding,
    roundtrip_report,
    show_tokens,
)
from notelm.encodings.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from notelm.errors import NotelmError, UnknownNameError
from notelm.pieces import Piece, PieceMeta, Track

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def pieces(draw, *, unit: str = "beat", grid: float | None = None, max_notes: int = 10,
           pitches: tuple[int, int] = (30, 100), pedals: bool = False) -> Piece:
    """A small polyphonic piece on up to two tracks. ``grid``: onsets and durations are
    multiples of it; otherwise beats lie on the ABC reader's 1/120 grid and seconds are free."""
    n = draw(st.integers(0, max_notes))
    ints = lambda lo, hi: draw(st.lists(st.integers(lo, hi), min_size=n, max_size=n))  # noqa: E731
    if grid is not None:
        onset, duration = np.array(ints(0, 32)) * grid, np.array(ints(1, 8)) * grid
    elif unit == "beat":
        onset, duration = np.array(ints(0, 1920)) / 120, np.array(ints(1, 480)) / 120
    else:
        onset = np.array(draw(st.lists(st.floats(0, 8), min_size=n, max_size=n)))
        duration = np.array(draw(st.lists(st.floats(0, 2), min_size=n, max_size=n)))
    pedal = np.zeros((0, 2))
    if pedals:
        downs = sorted(draw(st.lists(st.floats(0, 8), max_size=3, unique=True)))
        pedal = np.array([(a, min(b - a, 1.0)) for a, b in zip(downs, [*downs[1:], np.inf])]).reshape(-1, 2)
    n_tracks = draw(st.integers(1, 2))
    return Piece(
        pitch=np.array(ints(*pitches)), onset=onset.astype(float), duration=duration.astype(float),
        velocity=np.array(ints(1, 127)), track=np.array(ints(0, n_tracks - 1)), time_unit=unit,
        tracks=tuple(Track(name=f"t{i}", program=i) for i in range(n_tracks)), pedals=pedal,
        meta=PieceMeta(key=draw(st.sampled_from([None, "G", "F", "Dm", "Amix", "Bb"]))),
    )


def check_roundtrip(enc, piece: Piece) -> Piece | None:
    """Assert the promise for one piece; None when the encoding (consistently) refuses it."""
    try:
        ids = enc.encode(piece)
    except EncodingError as e:
        with pytest.raises(EncodingError) as again:
            enc.quantized(piece)
        assert again.value.reason == e.reason
        event(f"refused: {e.reason}")  # counted in hypothesis's statistics
        return None
    event("round trip")
    assert ids.dtype == np.int64 and ids.ndim == 1
    assert ((ids >= N_SPECIAL) | (ids == EOS_ID)).all() and ids.max(initial=0) < len(enc.vocab)
    want = enc.quantized(piece)
    assert enc.decode(ids) == want
    assert enc.decode_tokens([t for t in enc.tokens(piece) if t != EOS]) == want
    return want


# ---- the promise, per encoding -------------------------------------------------------------------

FIXED = {
    "grid": [{}, {"mode": "repeat"}, {"transpose": True, "step": 0.5}],
    "dstm-frames": [{}],
    "performance": [{}, {"steps_per_second": 30, "max_shift_steps": 7, "velocity_bins": 5, "sustain": False}],
}


@pytest.mark.parametrize("name,kw", [(n, kw) for n, kws in FIXED.items() for kw in kws])
@SETTINGS
@given(data=st.data())
def test_fixed_vocabulary_encodings_round_trip(name, kw, data):
    enc = get_encoding(name, **kw)
    step = kw.get("step", 0.25)
    if name == "performance":
        piece = data.draw(pieces(unit=data.draw(st.sampled_from(["beat", "second"])), pedals=True))
    else:  # mostly on the grid, sometimes off it (a refusal must be consistent)
        grid = data.draw(st.sampled_from([step, step, 1 / 8]))
        piece = data.draw(pieces(grid=grid, pitches=(20, 110)))
    want = check_roundtrip(enc, piece)
    # a refused piece only proves the refusal is consistent: hypothesis draws another, and fails
    # the test (filter_too_much) if the encoding refuses nearly everything
    assume(want is not None)
    if not kw.get("transpose"):
        # a quantized piece is a fixed point: nothing more is lost on a second pass
        assert enc.quantized(want) == want


@pytest.mark.parametrize("kw", [{}, {"viewpoint": "cpitch"}, {"viewpoint": "cpitch*dur"}])
@SETTINGS
@given(data=st.data())
def test_melody_round_trips(kw, data):
    corpus = data.draw(st.lists(pieces(), min_size=1, max_size=3))
    enc = get_encoding("melody", **kw).fit(corpus)
    for piece in corpus:
        want = check_roundtrip(enc, piece)
        assert enc.quantized(want) == want
        assert np.array_equal(want.pitch, piece.melody().pitch)


@pytest.mark.parametrize("pitch", ["cpitch", "cpint"])
@SETTINGS
@given(data=st.data())
def test_melody_events_round_trip_and_name_each_notes_pitch_column(pitch, data):
    corpus = data.draw(st.lists(pieces(), min_size=1, max_size=3))
    enc = get_encoding("melody-events", pitch=pitch).fit(corpus)
    for piece in corpus:
        want = check_roundtrip(enc, piece)
        assert enc.quantized(want) == want
        assert np.array_equal(want.pitch, piece.melody().pitch)
        # the column pitch_columns names for the true pitch is the token the note was encoded as
        ids, line = enc.encode(piece), piece.melody()
        previous = np.r_[-1, line.pitch[:-1]].astype(np.int64)
        columns = enc.pitch_columns(np.arange(128), previous)
        assert np.array_equal(columns[np.arange(len(line)), line.pitch], ids[::3])


def test_melody_events_spell_pitch_then_duration_then_ioi():
    piece = Piece(pitch=np.array([67, 69, 67]), onset=np.array([0.5, 1.0, 2.5]), duration=np.array([0.5, 1.0, 0.25]))
    assert get_encoding("melody-events").tokens(piece) == ["p67", "d1/2", "o1/2", "p69", "d1", "o1/2",
                                                           "p67", "d1/4", "o3/2"]
    assert get_encoding("melody-events", pitch="cpint").tokens(piece)[::3] == ["p67", "i+2", "i-2"]
    enc = get_encoding("melody-events").fit([piece])
    with pytest.raises(EncodingError, match="out of order"):
        enc.decode(enc.vocab.ids(["d1/2", "p67", "o1/2"]))


@pytest.mark.parametrize("kw", [{}, {"dstart": "previous", "dstart_bins": 4, "velocity_bins": 2}])
@SETTINGS
@given(data=st.data())
def test_note_tokens_round_trip(kw, data):
    corpus = data.draw(st.lists(pieces(unit="second", pedals=True), min_size=1, max_size=3))
    enc = get_encoding("note-tokens", **kw)
    assume(sum(len(p) for p in corpus) >= 2)  # the bins need two notes to fit on
    enc.fit(corpus)
    for piece in corpus:
        want = check_roundtrip(enc, piece)
        assume(want is not None)
        src, tgt = enc.encode_pair(piece)
        exact = enc.decode_pair(src, tgt)
        assert np.array_equal(exact.velocity[np.argsort(exact.onset, kind="stable")],
                              want.velocity * 0 + _sorted_velocity(enc, piece))
        assert np.array_equal(exact.pitch, want.pitch) and np.array_equal(exact.onset, want.onset)


def _sorted_velocity(enc, piece: Piece) -> np.ndarray:
    return enc.notes(piece).velocity.astype(np.int64)


@pytest.mark.parametrize("name", ["remi", "tsd", "midilike"])
@settings(max_examples=25, deadline=None)
@given(piece=pieces(grid=1 / 8, pitches=(21, 108)))
def test_miditok_adapters_round_trip(name, piece):
    assume(check_roundtrip(_miditok(name), piece) is not None)


_MIDITOK: dict = {}


def _miditok(name: str):
    if name not in _MIDITOK:  # building a MidiTok tokenizer takes a moment: once per test session
        _MIDITOK[name] = get_encoding(name)
    return _MIDITOK[name]


# ---- saving --------------------------------------------------------------------------------------


@given(tokens=st.lists(st.text(min_size=1, max_size=6), unique=True, max_size=20))
def test_vocabulary_json_round_trip(tokens):
    tokens = [t for t in tokens if t not in ("<pad>", "<bos>", "<eos>", "<unk>")]
    vocab = Vocabulary(tokens)
    again = Vocabulary.from_json(vocab.to_json())
    assert again == vocab and len(again) == len(tokens) + N_SPECIAL
    assert [vocab.id(t) for t in tokens] == list(range(N_SPECIAL, N_SPECIAL + len(tokens)))
    assert vocab.tokens(vocab.ids(tokens)) == tokens
    assert vocab.id("never seen \u2603") == UNK_ID


def test_vocabulary_refuses_duplicates_and_specials():
    with pytest.raises(ValueError, match="duplicate"):
        Vocabulary(["a", "b", "a"])
    with pytest.raises(ValueError, match="special"):
        Vocabulary(["<eos>"])


def _fitted(name: str, corpus: list[Piece]):
    enc = get_encoding(name)
    return enc.fit(corpus) if enc.learns else enc


@pytest.mark.parametrize("name", available_encodings())
@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_encoding_from_dict_encodes_identically(name, data):
    unit = "second" if name in ("performance", "note-tokens") else "beat"
    grid = 0.25 if name in ("grid", "dstm-frames") else None
    corpus = data.draw(st.lists(pieces(unit=unit, grid=grid, pitches=(48, 95)), min_size=2, max_size=3))
    if sum(len(p) for p in corpus) < 2:
        return
    enc = _miditok(name) if name in ("remi", "tsd", "midilike") else _fitted(name, corpus)
    saved = json.loads(json.dumps(enc.to_dict()))
    again = encoding_from_dict(saved)
    assert again.vocab == enc.vocab and again.name == enc.name and again.config == enc.config
    for piece in corpus:
        assert np.array_equal(again.encode(piece), enc.encode(piece))


# ---- registry, settings, specials ------------------------------------------------------------------


def test_registry_names_and_unknown_name():
    assert set(available_encodings()) == {"melody", "melody-events", "grid", "dstm-frames", "performance",
                                          "note-tokens", "remi", "tsd", "midilike"}
    with pytest.raises(UnknownNameError, match="known: .*grid"):
        get_encoding("gird")


@pytest.mark.parametrize("name,kw", [
    ("grid", {"step": 0}), ("grid", {"mode": "hum"}), ("grid", {"low": 90, "high": 80}),
    ("grid", {"stepp": 0.25}), ("performance", {"velocity_bins": 0}), ("melody", {"viewpoint": "cpint"}),
    ("melody-events", {"pitch": "cpitch-class"}),
    ("note-tokens", {"dstart": "later"}), ("performance", {"sustain": "yes"}),
])
def test_bad_settings_are_domain_errors(name, kw):
    with pytest.raises(EncodingSettingsError) as e:
        get_encoding(name, **kw)
    assert isinstance(e.value, NotelmError) and isinstance(e.value, ValueError)


def test_vocabulary_sizes_match_the_papers():
    # Oore et al. 2018: 128 on + 128 off + 100 shifts + 32 velocities = 388 events
    assert get_encoding("performance").vocab.content_size == 388
    # DSTM: pitches 48-95 and a rest = 49 classes
    assert get_encoding("dstm-frames").vocab.content_size == 49


def test_decoding_skips_pad_and_bos_stops_at_eos_and_refuses_unk():
    enc = get_encoding("grid")
    piece = Piece(pitch=np.array([60, 62]), onset=np.array([0.0, 0.5]), duration=np.array([0.5, 0.25]))
    ids = enc.encode(piece)
    assert ids[-1] == EOS_ID
    padded = np.r_[BOS_ID, ids, PAD_ID, enc.vocab.id("64"), enc.vocab.id("_")]
    assert enc.decode(padded) == enc.quantized(piece)
    with pytest.raises(EncodingError, match="unknown token"):
        enc.decode([enc.vocab.id("60"), UNK_ID])
    with pytest.raises(EncodingError, match="outside the vocabulary"):
        enc.decode([len(enc.vocab) + 5])


def test_learned_encodings_refuse_before_fit_and_unseen_tokens():
    enc = get_encoding("melody")
    piece = Piece(pitch=np.array([60, 62]), onset=np.array([0.0, 1.0]), duration=np.array([1.0, 1.0]))
    with pytest.raises(EncodingError, match="not fitted"):
        enc.encode(piece)
    enc.fit([piece])
    with pytest.raises(EncodingError, match="not in the vocabulary"):
        enc.encode(piece.transpose(1))


@pytest.mark.parametrize("name", available_encodings())
def test_empty_piece_round_trips_to_empty(name):
    seed = Piece(pitch=np.array([60, 64]), onset=np.array([0.0, 0.5]), duration=np.array([0.5, 0.5]))
    enc = _miditok(name) if name in ("remi", "tsd", "midilike") else _fitted(name, [seed])
    empty = Piece.empty(time_unit="second" if name in ("performance", "note-tokens") else "beat")
    ids = enc.encode(empty)
    assert len(ids) <= 1  # nothing, or only the grid's terminal symbol
    assert len(enc.decode(ids)) == 0 and enc.decode(ids) == enc.quantized(empty)


@pytest.mark.parametrize("name", ["grid", "melody", "melody-events", "performance", "note-tokens"])
def test_notes_before_time_zero_are_refused(name):
    piece = Piece(pitch=np.array([60]), onset=np.array([-1.0]), duration=np.array([2.0]))
    enc = get_encoding(name)
    if enc.learns:
        enc.fit([piece.with_notes(onset=np.array([0.0]))])
    with pytest.raises(EncodingError, match="before time 0"):
        enc.encode(piece)


def test_roundtrip_report_counts_exact_skips_and_errors():
    from notelm.errors import ReadError

    ok = Piece(pitch=np.array([60, 62]), onset=np.array([0.0, 0.5]), duration=np.array([0.5, 0.5]))
    short = Piece(pitch=np.array([60, 62]), onset=np.array([0.0, 0.5]), duration=np.array([0.125, 0.5]))
    report = roundtrip_report([ok, short, ReadError("x.abc#3", "abc2midi produced no notes"), ok], get_encoding("grid"))
    assert report["pieces"] == 4 and report["exact"] == 2 and report["skipped"] == 2
    assert report["mismatches"] == []
    assert report["skip_reasons"] == {"note shorter than the grid step": 1, "abc2midi produced no notes": 1}


def test_show_tokens_is_readable_and_limited():
    piece = Piece(pitch=np.array([55]), onset=np.array([0.0]), duration=np.array([1.0]))
    assert show_tokens(piece, get_encoding("grid"), limit=None) == f"55 _ _ _ {EOS}"
    assert show_tokens(piece, get_encoding("grid"), limit=2) == "55 _ ... (+3 more)"
    assert show_tokens(piece, get_encoding("melody")) == "55|1|0"


def test_performance_note_without_note_off_lasts_at_most_five_seconds():
    enc = get_encoding("performance")
    on, off, shift = enc.vocab.ids(["on-60", "off-60", "shift-100"])  # shift-100: 1 s
    held = [on, *[shift] * 8]  # a note-on, then 8 s with no note-off
    notes = enc.decode(held)
    assert notes.onset.tolist() == [0.0] and notes.duration.tolist() == [enc.UNENDED_SECONDS]
    short = enc.decode([on, shift, shift])  # the piece ends before the cap: the note lasts to its end
    assert short.duration.tolist() == [2.0]
    ended = enc.decode([on, *[shift] * 8, off])  # an explicit note-off is kept however late
    assert ended.duration.tolist() == [8.0]
