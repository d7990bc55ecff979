from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notelm.pieces import Piece, Track


def piece(notes, **kw):
    """notes: (pitch, onset, duration[, velocity[, track[, tied]]]) tuples."""
    cols = list(zip(*notes)) if notes else [[], [], []]
    names = ["pitch", "onset", "duration", "velocity", "track", "tied"]
    return Piece(**{n: np.array(c) for n, c in zip(names, cols)}, **kw)


notes_strategy = st.lists(
    st.tuples(st.integers(30, 90), st.integers(0, 64).map(lambda x: x / 4), st.integers(1, 16).map(lambda x: x / 4),
              st.integers(1, 127)),
    max_size=30,
)


def test_notes_are_sorted_and_equality_is_by_content():
    a = piece([(64, 1.0, 1.0), (60, 0.0, 1.0), (67, 0.0, 2.0)])
    assert a.onset.tolist() == [0.0, 0.0, 1.0] and a.pitch.tolist() == [60, 67, 64]
    b = piece([(60, 0.0, 1.0), (67, 0.0, 2.0), (64, 1.0, 1.0)])
    assert a == b
    from dataclasses import replace

    assert replace(a, meta=replace(a.meta, title="other")) == a  # metadata is not content
    assert a != a.transpose(1)
    assert a != replace(a, time_unit="second")


def test_bad_columns_are_refused():
    with pytest.raises(ValueError):
        Piece(pitch=np.array([60]), onset=np.array([0.0, 1.0]), duration=np.array([1.0]))
    with pytest.raises(ValueError):
        Piece(pitch=np.array([60]), onset=np.array([0.0]), duration=np.array([-1.0]))
    with pytest.raises(ValueError):
        Piece.empty(time_unit="tick")


def test_transpose_keeps_drums_and_guards_the_range():
    p = piece([(60, 0, 1, 64, 0), (36, 0, 1, 64, 1)], tracks=(Track(), Track(is_drum=True)))
    t = p.transpose(2)
    assert sorted(t.pitch.tolist()) == [36, 62]
    with pytest.raises(ValueError):
        p.transpose(100)


def test_merge_ties_joins_chains_but_not_repeated_notes():
    p = piece([(60, 0, 1, 64, 0, True), (60, 1, 1, 64, 0, True), (60, 2, 0.5, 64, 0, False), (60, 2.5, 1, 64, 0, False)])
    m = p.merge_ties()
    assert m.onset.tolist() == [0, 2.5] and m.duration.tolist() == [2.5, 1]
    assert not m.tied.any()


def test_melody_is_the_skyline():
    p = piece([(60, 0, 2), (64, 0, 2), (55, 1, 1), (62, 2, 1), (67, 2, 4), (65, 3, 1)])
    m = p.melody()
    assert m.pitch.tolist() == [64, 55, 67, 65]
    assert m.duration.tolist() == [1, 1, 1, 1]  # each cut where the next begins
    assert (m.onset[1:] >= m.onset[:-1] + m.duration[:-1]).all()


def test_quantize_never_loses_a_note():
    p = piece([(60, 0.1, 0.05), (62, 0.9, 0.4)])
    q = p.quantize(0.5)
    assert q.onset.tolist() == [0.0, 1.0] and q.duration.tolist() == [0.5, 0.5]


def test_apply_sustain_extends_to_pedal_release_and_stops_at_restrike():
    p = piece([(60, 0.0, 0.5), (64, 0.2, 0.3), (60, 1.0, 0.2), (67, 3.0, 0.5)], time_unit="second",
              pedals=np.array([[0.1, 2.0]]))
    s = p.apply_sustain()
    ends = dict(zip(zip(s.pitch.tolist(), s.onset.tolist()), (s.onset + s.duration).tolist()))
    assert ends[(60, 0.0)] == 1.0  # cut by the re-struck 60
    assert ends[(64, 0.2)] == pytest.approx(2.1)  # held to the release
    assert ends[(60, 1.0)] == pytest.approx(2.1)
    assert ends[(67, 3.0)] == 3.5  # pedal already up
    assert len(s.pedals) == 0


@settings(max_examples=50, deadline=None)
@given(notes_strategy, st.integers(-12, 12), st.sampled_from([0.5, 2.0, 4.0]))
def test_transforms_invert(notes, k, f):
    p = piece(notes)
    assert p.transpose(k).transpose(-k) == p
    back = p.time_stretch(f).time_stretch(1 / f)
    assert np.allclose(back.onset, p.onset) and np.allclose(back.duration, p.duration)
    m = p.melody()
    assert len(np.unique(m.onset)) == len(m)
    assert p.quantize(0.25) == p  # already on the grid


def test_apply_sustain_merges_overlapping_pedals_of_several_tracks():
    p = piece([(60, 0.0, 5.0), (62, 11.0, 1.0)], time_unit="second", pedals=np.array([[2.0, 1.0], [0.0, 10.0]]))
    s = p.apply_sustain()
    assert (s.onset + s.duration).tolist() == [10.0, 12.0]
