"""Viewpoints and IDyOM's multiple-viewpoint system: values, the map back to pitch, the
per-event alphabets, and the properties every model has (sums to one, batched == step)."""

from __future__ import annotations

import numpy as np
import pytest

from notelm.errors import NotelmError
from notelm.models.combine import CombineConfig, Combined
from notelm.models.mvs import MultipleViewpointModel, combine_viewpoints
from notelm.models.ppm import PPM, PPMConfig
from notelm.pieces import Piece
from notelm.viewpoints import (
    TICKS_PER_BEAT,
    Alphabets,
    Melody,
    ViewpointCoder,
    parse_viewpoint,
    parse_viewpoints,
    viewpoint_values,
)

Q = TICKS_PER_BEAT
# C4 D4 D4 (a rest) B3 B4: pitches, onsets and durations in beats
HAND = Piece(pitch=np.array([60, 62, 62, 59, 71]), onset=np.array([0.0, 1.0, 1.5, 3.0, 4.0]),
             duration=np.array([1.0, 0.5, 0.5, 1.0, 2.0]))


def melodies(n=12, seed=0):
    """Random small melodies (pitches in a fifth, three durations, an occasional rest)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(1, 14))
        pitch = 60 + np.cumsum(rng.integers(-2, 3, k)).clip(-3, 4)
        duration = rng.choice([0.5, 1.0, 1.5], k)
        gaps = rng.choice([0.0, 0.0, 0.0, 0.5], k)
        onset = np.r_[0.0, np.cumsum(duration + gaps)[:-1]]
        out.append(Piece(pitch=pitch, onset=onset, duration=duration))
    return out


def test_values_on_a_hand_made_melody():
    assert viewpoint_values("cpitch", HAND) == [(60,), (62,), (62,), (59,), (71,)]
    assert viewpoint_values("cpint", HAND) == [None, (2,), (0,), (-3,), (12,)]
    assert viewpoint_values("pc", HAND) == [(0,), (2,), (2,), (11,), (11,)]
    assert viewpoint_values("contour", HAND) == [None, (1,), (0,), (-1,), (1,)]
    assert viewpoint_values("cpint*dur", HAND) == [None, (2, Q // 2), (0, Q // 2), (-3, Q), (12, 2 * Q)]
    assert viewpoint_values("cpitch:ioi", HAND) == [None, (62, Q), (62, Q // 2), (59, 3 * Q // 2), (71, Q)]


@pytest.mark.parametrize("name", ["cpitch", "cpint", "cpitch-class", "contour", "cpint*dur", "cpitch*ioi",
                                  "contour*dur*ioi", "cpint*cpitch-class"])
def test_symbols_number_the_values(name):
    pieces = melodies() + [HAND]
    alphabets = Alphabets.from_melodies(pieces)
    coder = ViewpointCoder(name, alphabets)
    for piece in pieces:
        m = alphabets.melody(piece)
        symbols = coder.symbols(m.ids, m.onset, m.dur)
        values = viewpoint_values(name, piece)
        assert [s < 0 for s in symbols] == [v is None for v in values]
        pairs = {(int(s), v) for s, v in zip(symbols, values) if v is not None}
        assert len({s for s, _ in pairs}) == len({v for _, v in pairs}) == len(pairs)  # one-to-one
        assert (symbols < coder.size).all()


def test_parsing():
    assert parse_viewpoint("cpint:dur") == parse_viewpoint("cpint*dur") == ("cpint", "dur")
    assert parse_viewpoints("cpitch, pc") == [("cpitch",), ("cpitch-class",)]
    for bad, message in [("cpnt", "unknown viewpoint"), ("dur", "cannot predict"), ("cpint*cpint", "twice"),
                         ("cpitch,cpitch", "repeat"), ("", "at least one")]:
        with pytest.raises(NotelmError, match=message):
            parse_viewpoints(bad)


@pytest.mark.parametrize("name", ["cpitch", "cpint", "cpitch-class", "contour", "cpint*dur", "contour*ioi",
                                  "cpitch-class*dur"])
def test_mapping_back_to_pitch_is_a_distribution_with_no_zeros(name):
    alphabets = Alphabets.from_melodies(melodies() + [HAND])
    coder = ViewpointCoder(name, alphabets)
    rng = np.random.default_rng(1)
    rows = np.flatnonzero(coder.row_defined)
    d = rng.random((len(rows), coder.size)) * coder.row_masks[rows]
    d /= d.sum(axis=1, keepdims=True)
    p = coder.to_pitch(d, rows)
    assert p.shape == (len(rows), len(alphabets.pitch))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert (p > 0).all()


def test_a_symbol_is_shared_equally_among_its_pitches():
    alphabets = Alphabets.from_melodies([HAND])  # pitches 59 60 62 71
    coder = ViewpointCoder("contour", alphabets)
    row = 1 + 1  # after a 60
    symbols = {v: coder.symbols(np.array([1, i]), np.zeros(2), np.zeros(2))[1] for v, i in [(-1, 0), (0, 1), (1, 2)]}
    d = np.zeros(coder.size)
    d[symbols[-1]], d[symbols[0]], d[symbols[1]] = 0.2, 0.5, 0.3
    np.testing.assert_allclose(coder.to_pitch(d[None], np.array([row]))[0], [0.2, 0.5, 0.15, 0.15])
    linked = ViewpointCoder("cpint*dur", Alphabets.from_melodies([HAND]))  # marginalises over dur
    d = linked.row_masks[row] / linked.row_masks[row].sum()
    np.testing.assert_allclose(linked.to_pitch(d[None], np.array([row]))[0], 0.25)


def test_masked_ppm_is_a_ppm_over_the_sub_alphabet():
    """Restricting the alphabet (IDyOM's per-event derived alphabets) equals a model over the
    smaller alphabet when the symbols left out never occurred."""
    rng = np.random.default_rng(2)
    train = [rng.integers(0, 4, int(rng.integers(1, 20))) for _ in range(8)]
    test = [rng.integers(0, 4, int(rng.integers(1, 20))) for _ in range(4)]
    allowed = np.array([True, True, False, True, True, False])  # symbols 0 1 3 4 of 0..5
    wide = {0: 0, 1: 1, 2: 3, 3: 4}
    for config in [PPMConfig(), PPMConfig(escape="ax", update_exclusion=True), PPMConfig(escape="b", order_bound=2),
                   PPMConfig(escape="d", interpolated=False)]:
        for mode in ("ltm", "ltm+", "stm"):
            small, big = PPM(alphabet_size=4, config=config, mode=mode), PPM(alphabet_size=6, config=config, mode=mode)
            if mode != "stm":
                small.fit(train)
                big.fit([np.vectorize(wide.get)(t) for t in train])
            want = small.distributions(test)
            masks = [np.tile(allowed, (len(t), 1)) for t in test]
            got = big.predict_pieces([np.vectorize(wide.get)(t) for t in test], distributions=True, allowed=masks)[2]
            for w, g in zip(want, got):
                np.testing.assert_allclose(g[:, [0, 1, 3, 4]], w, atol=1e-12)
                assert (g[:, [2, 5]] == 0).all()


def setup(names, kind, seed=0):
    pieces = melodies(14, seed)
    alphabets = Alphabets.from_melodies(pieces)
    coders = [ViewpointCoder(n, alphabets) for n in names]
    make = lambda: MultipleViewpointModel(  # noqa: E731
        coders=coders, kind=kind, combine=CombineConfig("arithmetic", 2.0),
        viewpoint_combine=CombineConfig("geometric", 1.5))
    ms = [alphabets.melody(p) for p in pieces]
    return ms[:8], ms[8:], make


@pytest.mark.parametrize("kind", ["stm", "ltm", "ltm+", "both", "both+"])
def test_multiple_viewpoint_batched_path_equals_step_path(kind):
    train, test, make = setup(["cpitch", "cpint*dur", "contour", "pc*ioi"], kind)
    fast, slow = make(), make()
    if kind != "stm":
        fast.fit(train), slow.fit(train)
    batched = fast.distributions(test)
    for melody, dists in zip(test, batched):
        state = slow.start(timing=melody)
        for i, token in enumerate(melody.ids):
            p = slow.predict(state)
            np.testing.assert_allclose(p, dists[i], atol=1e-9, rtol=0)
            assert abs(p.sum() - 1) < 1e-12 and (p > 0).all()
            state = slow.observe(state, token)
    scorer = make().fit(train) if kind != "stm" else make()
    for logp, melody, dists in zip(scorer.score(test), test, batched):
        np.testing.assert_allclose(logp, np.log2(dists[np.arange(len(melody)), melody.ids]), atol=1e-12)


def test_cpitch_alone_is_the_plain_ppm_and_combination():
    train, test, make = setup(["cpitch"], "both+")
    size = make().alphabet_size
    model = make().fit(train)
    plain = Combined({"ltm": PPM(alphabet_size=size, mode="ltm+"), "stm": PPM(alphabet_size=size, mode="stm")},
                     config=CombineConfig("arithmetic", 2.0)).fit([m.ids for m in train])
    for a, b in zip(model.distributions(test), plain.distributions([m.ids for m in test])):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_a_note_is_predicted_without_its_own_duration():
    train, test, make = setup(["cpint*dur", "cpitch*ioi"], "both+")
    m = next(t for t in test if len(t) > 3)
    alphabets_dur = make().coders[0].alphabets.dur
    changed = m.dur.copy()
    changed[2] = alphabets_dur[0] if changed[2] != alphabets_dur[0] else alphabets_dur[-1]
    twin = Melody(ids=m.ids, pitch=m.pitch, onset=m.onset, dur=changed)
    a = make().fit(train).distributions([m])[0]
    b = make().fit(train).distributions([twin])[0]
    np.testing.assert_allclose(a[:3], b[:3], atol=0)  # notes 0..2 cannot see note 2's duration


def test_undefined_viewpoints_are_left_out_and_all_undefined_is_uniform():
    p = np.array([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]])
    nan = np.full((2, 3), np.nan)
    both = combine_viewpoints([p, nan], CombineConfig())
    np.testing.assert_allclose(both, p)
    np.testing.assert_allclose(combine_viewpoints([nan, nan], CombineConfig()), 1 / 3)
    train, test, make = setup(["cpint"], "ltm")
    first = make().fit(train).distributions(test)[0][0]
    np.testing.assert_allclose(first, 1 / len(first))  # cpint has no value on a first note
