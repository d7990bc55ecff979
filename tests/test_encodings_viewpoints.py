"""Melodic viewpoints for PPM/IDyOM: values as IDyOM defines them, undefined first notes, and the
candidate-pitch mapping that turns a viewpoint's prediction back into one over pitch."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notelm.encodings import EncodingSettingsError, Viewpoint, pitch_distribution
from notelm.encodings.viewpoints import UNDEFINED, UNSEEN
from notelm.io import read_abc_items
from notelm.pieces import Piece

ESSEN = Path(importlib.util.find_spec("music21").submodule_search_locations[0]) / "corpus" / "essenFolksong"


def line(pitch, onset, duration) -> Piece:
    return Piece(pitch=np.array(pitch), onset=np.array(onset, float), duration=np.array(duration, float))


MEL = line([60, 62, 62, 59], [0, 1, 1.5, 3], [1, 0.5, 1, 1])


def test_basic_viewpoint_values_and_undefined_first_notes():
    values = {name: Viewpoint(name).values(MEL)[:, 0].tolist() for name in
              ("cpitch", "cpint", "cpitch-class", "contour", "dur", "ioi")}
    assert values["cpitch"] == [60, 62, 62, 59]
    assert values["cpint"][1:] == [2, 0, -3] and values["contour"][1:] == [1, 0, -1]
    assert values["cpitch-class"] == [0, 2, 2, 11]
    assert values["dur"] == [120, 60, 120, 120] and values["ioi"][1:] == [120, 60, 180]
    for name in ("cpint", "contour", "ioi", "cpint*dur"):
        vp = Viewpoint(name).fit([MEL])
        assert vp.symbols(MEL)[0] == UNDEFINED and (vp.symbols(MEL)[1:] >= 0).all()
    assert (Viewpoint("cpitch*dur").fit([MEL]).symbols(MEL) >= 0).all()


def test_linked_viewpoint_names_and_errors():
    assert Viewpoint("cpint x dur").name == Viewpoint("cpint⊗dur").name == "cpint*dur"
    assert Viewpoint("pc").name == "cpitch-class"
    with pytest.raises(EncodingSettingsError, match="unknown viewpoint"):
        Viewpoint("cpitchh")
    with pytest.raises(EncodingSettingsError, match="twice"):
        Viewpoint("dur*dur")


def test_unseen_values_and_alphabet_json_round_trip():
    vp = Viewpoint("cpint*dur").fit([MEL])
    assert vp.symbol_names()[0].startswith("cpint=-3,dur=")
    again = Viewpoint.from_dict(vp.to_dict())
    assert np.array_equal(again.alphabet, vp.alphabet) and again.name == vp.name
    other = line([60, 72], [0, 1], [1, 1])
    assert vp.symbols(other).tolist() == [UNDEFINED, UNSEEN]


@st.composite
def melodies(draw):
    n = draw(st.integers(1, 12))
    pitch = draw(st.lists(st.integers(55, 80), min_size=n, max_size=n))
    ioi = draw(st.lists(st.integers(1, 8), min_size=n, max_size=n))
    onset = np.cumsum(ioi) / 4
    dur = [min(d, i) / 4 for d, i in zip(draw(st.lists(st.integers(1, 8), min_size=n, max_size=n)), [*ioi[1:], 8])]
    return line(pitch, onset, dur)


@pytest.mark.parametrize("name", ["cpitch", "cpint", "cpitch-class", "contour", "cpint*dur", "contour*ioi"])
@settings(max_examples=40, deadline=None)
@given(corpus=st.lists(melodies(), min_size=1, max_size=4))
def test_candidates_agree_with_the_actual_symbols(name, corpus):
    pitches = np.arange(55, 81)
    vp = Viewpoint(name).fit(corpus, pitch_alphabet=pitches)
    for mel in corpus:
        cand, actual = vp.candidates(mel, pitches), vp.symbols(mel)
        assert cand.shape == (len(mel), len(pitches))
        # the candidate equal to the note's real pitch reads the note's real symbol
        assert np.array_equal(cand[np.arange(len(mel)), mel.pitch - 55], actual)
        defined = actual != UNDEFINED
        assert (cand[~defined] == UNDEFINED).all() and (cand[defined] >= 0).all()  # fitted with candidates
        rng = np.random.default_rng(len(mel))
        for row in cand[defined]:
            p = pitch_distribution(rng.dirichlet(np.ones(vp.size)), row)
            assert p is not None and p.shape == (len(pitches),) and abs(p.sum() - 1) < 1e-12 and (p > 0).all()


def test_pitch_distribution_shares_a_symbol_among_its_pitches():
    vp = Viewpoint("contour").fit([MEL])  # alphabet -1, 0, 1
    cand = vp.candidates(MEL, np.arange(58, 65))[1]  # after pitch 60: 58, 59 down; 60 same; 61-64 up
    assert cand.tolist() == [0, 0, 1, 2, 2, 2, 2]
    p = pitch_distribution(np.array([0.5, 0.3, 0.2]), cand)
    assert p.tolist() == pytest.approx([0.25, 0.25, 0.3, 0.05, 0.05, 0.05, 0.05])
    assert pitch_distribution(np.array([1.0]), np.full(3, UNDEFINED)) is None


def test_kinder_has_27_pitches_over_8393_notes():
    # Pearce 2005, Dataset 7 = kinder0.abc: 213 melodies, 8,393 notes, 27 pitches (52-79)
    melodies_ = [p.melody() for p in read_abc_items(ESSEN / "kinder0.abc") if isinstance(p, Piece)]
    assert len(melodies_) == 213 and sum(len(m) for m in melodies_) == 8393
    vp = Viewpoint("cpitch").fit(melodies_)
    assert vp.size == 27 and vp.alphabet[[0, -1], 0].tolist() == [52, 79]
