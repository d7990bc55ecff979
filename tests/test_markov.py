"""Markov chain and repetition baselines: proper distributions, batched == step path, formulas."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import step_path
from notelm.models.markov import MarkovChain, MarkovConfig, Repetition, RepetitionConfig

pieces = st.lists(st.lists(st.integers(0, 4), max_size=20), min_size=1, max_size=4)


@settings(max_examples=50, deadline=None)
@given(order=st.integers(0, 3), alpha=st.sampled_from([0.01, 0.5, 1.0]), backoff=st.booleans(),
       training=pieces, test=pieces)
def test_markov_batched_equals_step_path(order, alpha, backoff, training, test):
    model = MarkovChain(alphabet_size=5, config=MarkovConfig(order=order, alpha=alpha, backoff=backoff))
    model.fit(training)
    stepped = step_path(model, test)
    for d, s, lp, seq in zip(model.distributions(test), stepped, model.score(test), test, strict=True):
        np.testing.assert_allclose(d, s, atol=1e-12)
        np.testing.assert_allclose(d.sum(axis=1), 1.0, atol=1e-9)
        assert (d > 0).all()
        np.testing.assert_allclose(lp, np.log2(d[np.arange(len(seq)), seq]), atol=1e-9)


def test_additive_smoothing_by_hand():
    model = MarkovChain(alphabet_size=3, config=MarkovConfig(order=1, alpha=1.0, backoff=False))
    model.fit([[0, 1, 0, 1, 0, 2]])
    # After 0: seen 1 twice and 2 once (3 times in all): Laplace gives (c + 1) / (3 + 3).
    np.testing.assert_allclose(model.predict(model.start([0])), [1 / 6, 3 / 6, 2 / 6])
    # First event: the empty context, unigram counts 0:3, 1:2, 2:1 of 6.
    np.testing.assert_allclose(model.predict(model.start()), [4 / 9, 3 / 9, 2 / 9])


def test_backoff_falls_back_to_the_shorter_context():
    model = MarkovChain(alphabet_size=3, config=MarkovConfig(order=2, alpha=0.5))
    model.fit([[0, 1, 0, 1, 0, 2]])
    # (2, 2) never occurred, so the order-2 estimate is exactly the order-1 one after 2,
    # which never occurred either: the order-0 estimate.
    np.testing.assert_allclose(model.predict(model.start([2, 2])), model.predict(model.start()))


def test_fit_adds_counts():
    a, b = [[0, 1, 2, 2]], [[2, 1, 0]]
    one = MarkovChain(alphabet_size=3).fit(a).fit(b)
    both = MarkovChain(alphabet_size=3).fit(a + b)
    np.testing.assert_allclose(one.score([[0, 2, 1, 1]])[0], both.score([[0, 2, 1, 1]])[0])


@settings(max_examples=50, deadline=None)
@given(order=st.integers(0, 3), alpha=st.sampled_from([0.01, 0.5, 1.0]), backoff=st.booleans(), test=pieces)
def test_stm_predicts_each_event_from_the_piece_so_far(order, alpha, backoff, test):
    """An STM's prediction of event i is an LTM's trained on events 0..i-1 of that piece,
    and its batched path equals its step path."""
    config = MarkovConfig(order=order, alpha=alpha, backoff=backoff)
    stm = MarkovChain(alphabet_size=5, config=config, mode="stm")
    for d, s, lp, seq in zip(stm.distributions(test), step_path(stm, test), stm.score(test), test, strict=True):
        np.testing.assert_allclose(d, s, atol=1e-12)
        np.testing.assert_allclose(d.sum(axis=1), 1.0, atol=1e-9)
        np.testing.assert_allclose(lp, np.log2(d[np.arange(len(seq)), seq]), atol=1e-9)
        for i in range(len(seq)):
            ltm = MarkovChain(alphabet_size=5, config=config).fit([seq[:i]])
            np.testing.assert_allclose(d[i], ltm.distributions([seq[: i + 1]])[0][i], atol=1e-12)


def test_stm_by_hand_and_untrainable():
    stm = MarkovChain(alphabet_size=3, config=MarkovConfig(order=1, alpha=1.0, backoff=False), mode="stm")
    d = stm.distributions([[0, 1, 0, 1, 0], [0, 1]])
    # Nothing seen after 0 or 1 until event 3; then 0 -> 1 once: (1 + 1) / (1 + 3).
    np.testing.assert_allclose(d[0][:3], 1 / 3)
    np.testing.assert_allclose(d[0][3:], [[1 / 4, 2 / 4, 1 / 4], [2 / 4, 1 / 4, 1 / 4]])
    np.testing.assert_allclose(d[1], 1 / 3)  # every piece starts empty
    assert not stm.trainable and MarkovChain(alphabet_size=3).trainable
    with pytest.raises(ValueError, match="cannot be trained"):
        stm.fit([[0, 1]])
    with pytest.raises(ValueError, match="mode"):
        MarkovChain(alphabet_size=3, mode="ltm+")


def test_markov_config_validation_and_json():
    for bad in ({"order": -1}, {"order": 1.5}, {"alpha": 0}, {"backoff": "yes"}):
        with pytest.raises(ValueError):
            MarkovConfig(**bad)
    config = MarkovConfig(order=3, alpha=0.1, backoff=False)
    assert MarkovConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="62 bits"):
        MarkovChain(alphabet_size=1000, config=MarkovConfig(order=8))
    with pytest.raises(ValueError, match="outside the alphabet"):
        MarkovChain(alphabet_size=3).fit([[0, 5]])


@settings(max_examples=30, deadline=None)
@given(eps=st.sampled_from([0.01, 0.1, 0.5]), size=st.integers(1, 5), data=st.data())
def test_repetition_batched_equals_step_path(eps, size, data):
    test = data.draw(st.lists(st.lists(st.integers(0, size - 1), max_size=15), max_size=3))
    model = Repetition(alphabet_size=size, config=RepetitionConfig(eps=eps))
    for s, d, lp, seq in zip(step_path(model, test), model.distributions(test), model.score(test), test, strict=True):
        np.testing.assert_allclose(d, s, atol=1e-12)
        np.testing.assert_allclose(s.sum(axis=1), 1.0, atol=1e-12)
        assert (s > 0).all()
        np.testing.assert_allclose(lp, np.log2(s[np.arange(len(seq)), seq]), atol=1e-12)


def test_repetition_distribution():
    model = Repetition(alphabet_size=4, config=RepetitionConfig(eps=0.3))
    np.testing.assert_allclose(model.predict(model.start()), 0.25)
    np.testing.assert_allclose(model.predict(model.start([1, 2])), [0.1, 0.1, 0.7, 0.1])
    for bad in (0, 1, -0.1, "0.1"):
        with pytest.raises(ValueError):
            RepetitionConfig(eps=bad)
