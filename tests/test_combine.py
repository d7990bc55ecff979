"""Entropy-weighted combination (IDyOM prediction-sets.lisp; Pearce 2005 Eq. 6.9, 6.10, 7.1)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from notelm.models.combine import (
    CombineConfig,
    Combined,
    combine,
    entropy_weights,
    mean_ic,
    tune_combination,
)
from notelm.models.markov import MarkovChain, Repetition
from notelm.models.ppm import PPM

P1 = np.array([0.7, 0.1, 0.1, 0.1])
P2 = np.array([0.25, 0.25, 0.25, 0.25])


def h(p):
    return -(p * np.log2(p)).sum()


def test_weights_follow_idyom():
    # weight = (H / log2 |A|)^(-b), then normalised (IDyOM `weight`, `normalise-weights`).
    w = np.array([(h(P1) / 2) ** -2, (h(P2) / 2) ** -2])
    np.testing.assert_allclose(entropy_weights([P1, P2], 2.0), w / w.sum())


@pytest.mark.parametrize("bias", [0.0, 1.0, 2.0, 7.0])
def test_arithmetic_and_geometric_by_hand(bias):
    w = np.array([(h(P1) / 2) ** -bias, (h(P2) / 2) ** -bias])
    w /= w.sum()
    arithmetic = w[0] * P1 + w[1] * P2
    geometric = P1 ** w[0] * P2 ** w[1]
    got_a = combine([P1, P2], CombineConfig(method="arithmetic", bias=bias))
    got_g = combine([P1, P2], CombineConfig(method="geometric", bias=bias))
    np.testing.assert_allclose(got_a, arithmetic / arithmetic.sum())
    np.testing.assert_allclose(got_g, geometric / geometric.sum())


def test_zero_entropy_takes_all_the_weight_and_one_symbol_alphabets_work():
    sure = np.array([1.0, 0.0, 0.0, 0.0])
    np.testing.assert_allclose(entropy_weights([sure, P2], 2.0), [1.0, 0.0])
    np.testing.assert_allclose(combine([sure, P2], CombineConfig(method="geometric", bias=2)), sure)
    np.testing.assert_allclose(entropy_weights([sure, P2], 0.0), [0.5, 0.5])
    one = np.array([1.0])
    np.testing.assert_allclose(combine([one, one], CombineConfig()), one)


@settings(max_examples=40, deadline=None)
@given(method=st.sampled_from(["arithmetic", "geometric"]), bias=st.sampled_from([0.0, 2.0, 7.0]),
       raw=st.lists(st.lists(st.floats(0.01, 1.0), min_size=5, max_size=5), min_size=2, max_size=3))
def test_combination_is_a_distribution_and_idempotent(method, bias, raw):
    dists = [np.array(r) / sum(r) for r in raw]
    out = combine(dists, CombineConfig(method=method, bias=bias))
    np.testing.assert_allclose(out.sum(), 1.0)
    assert (out > 0).all()
    np.testing.assert_allclose(combine([dists[0]] * 3, CombineConfig(method=method, bias=bias)),
                               dists[0])


def test_combined_model_batched_equals_step_path():
    training = [[0, 1, 2, 3, 0, 1, 2], [3, 3, 2, 1, 0]]
    test = [[0, 1, 2, 0, 1, 2, 3], [], [2, 2, 2]]

    def build(method):
        models = {"ltm": PPM(alphabet_size=4, mode="ltm+"), "stm": PPM(alphabet_size=4, mode="stm"),
                  "mc": MarkovChain(alphabet_size=4), "rep": Repetition(alphabet_size=4)}
        return Combined(models, config=CombineConfig(method=method, bias=2)).fit(training)

    for method in ("arithmetic", "geometric"):
        batched = build(method).distributions(test)
        model = build(method)
        for seq, d, lp in zip(test, batched, build(method).score(test), strict=True):
            state = model.start()
            for i, x in enumerate(seq):
                p = model.predict(state)
                np.testing.assert_allclose(p, d[i], atol=1e-9)
                np.testing.assert_allclose(p.sum(), 1.0, atol=1e-9)
                assert (p > 0).all()
                state = model.observe(state, x)
            np.testing.assert_allclose(lp, np.log2(d[np.arange(len(seq)), seq]))


def test_fit_trains_only_trainable_models():
    ltm, stm = PPM(alphabet_size=3, mode="ltm"), PPM(alphabet_size=3, mode="stm")
    Combined({"ltm": ltm, "stm": stm}).fit([[0, 1, 2]])
    assert ltm.n_nodes > 0


def test_bad_settings():
    with pytest.raises(ValueError, match="method"):
        CombineConfig(method="harmonic")
    with pytest.raises(ValueError, match="bias"):
        CombineConfig(bias=-1)
    with pytest.raises(ValueError, match="alphabet"):
        Combined({"a": PPM(alphabet_size=3), "b": PPM(alphabet_size=4)})
    with pytest.raises(ValueError, match="at least one"):
        Combined({})
    config = CombineConfig.pearce2005()
    assert CombineConfig.from_dict(config.to_dict()) == config


def test_tune_combination_finds_the_best_setting_on_the_grid_it_is_given():
    rng = np.random.default_rng(0)
    events = [rng.integers(0, 4, size=n) for n in (5, 9)]
    sharp = [np.full((len(e), 4), 0.02) for e in events]  # a model that knows the events ...
    for d, e in zip(sharp, events):
        d[np.arange(len(e)), e] = 0.94
    flat = [np.full((len(e), 4), 0.25) for e in events]  # ... and one that does not
    config, score = tune_combination([sharp, flat], events, biases=(0.0, 2.0, 8.0))
    grid = {(m, b): mean_ic([combine([s, f], CombineConfig(m, b)) for s, f in zip(sharp, flat)], events)
            for m in ("arithmetic", "geometric") for b in (0.0, 2.0, 8.0)}
    assert score == min(grid.values()) == grid[(config.method, config.bias)]
    assert config.bias == 8.0  # the confident, right model should take nearly all the weight
