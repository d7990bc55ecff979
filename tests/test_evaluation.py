"""Information content, entropy, cross-validation folds and the per-event table."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from notelm.evaluation import (
    cross_validate,
    entropy,
    evaluate,
    fold_of,
    frame_metrics,
    information_content,
    predict_distributions,
)
from notelm.models.base import SequenceModel
from notelm.models.combine import CombineConfig, Combined
from notelm.models.markov import MarkovChain
from notelm.models.ppm import PPM

CORPUS = [[0, 1, 2, 1, 0], [2, 2, 1], [0, 1, 2, 1, 0, 1], [1, 1, 1, 1], [2, 0, 1], [0, 2]]


class Uniform(SequenceModel):
    """No fast path: evaluation must walk start/predict/observe."""

    alphabet_size = 4

    def start(self, primer=()):
        return None

    def predict(self, state):
        return np.full(4, 0.25)

    def observe(self, state, token):
        return state


class StepOnly(SequenceModel):
    """Hides a model's fast paths."""

    def __init__(self, model):
        self.model, self.alphabet_size = model, model.alphabet_size

    def start(self, primer=()):
        return self.model.start(primer)

    def predict(self, state):
        return self.model.predict(state)

    def observe(self, state, token):
        return self.model.observe(state, token)


def test_ic_and_entropy():
    np.testing.assert_allclose(information_content(np.array([0.5, 0.25])), [1.0, 2.0])
    np.testing.assert_allclose(entropy(np.full((2, 8), 1 / 8)), [3.0, 3.0])
    np.testing.assert_allclose(entropy(np.array([1.0, 0.0])), 0.0)


def test_mean_ic_is_per_piece_then_over_pieces():
    result = evaluate(PPM(alphabet_size=3, mode="stm"), [[0, 0, 0, 0, 0, 0], [1, 2]])
    per_piece = [ic.mean() for ic in result.information_content]
    assert result.mean_ic() == pytest.approx(np.mean(per_piece))
    assert result.mean_ic_per_event() == pytest.approx(np.concatenate(result.information_content).mean())
    assert result.mean_ic() != pytest.approx(result.mean_ic_per_event())
    uniform = evaluate(Uniform(), [[0, 1], [3]])
    assert uniform.mean_ic() == pytest.approx(2.0) and uniform.mean_entropy() == pytest.approx(2.0)


def test_generic_path_equals_fast_path():
    model = PPM(alphabet_size=3, mode="ltm+").fit(CORPUS[:2])
    twin = PPM(alphabet_size=3, mode="ltm+").fit(CORPUS[:2])
    for a, b in zip(predict_distributions(model, CORPUS[2:]), predict_distributions(StepOnly(twin), CORPUS[2:]), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-12)


def test_folds_are_i_mod_k():
    np.testing.assert_array_equal(fold_of(7, 3), [0, 1, 2, 0, 1, 2, 0])
    for bad in (1, 8, 2.0):
        with pytest.raises(ValueError):
            fold_of(7, bad)


def test_cross_validation_trains_on_the_other_folds():
    seen = []

    def build(training):
        seen.append([tuple(s) for s in training])
        return PPM(alphabet_size=3, mode="ltm").fit(training)

    result = cross_validate(build, CORPUS, k=3)
    assert list(result.piece) == list(range(len(CORPUS)))
    np.testing.assert_array_equal(result.fold, fold_of(len(CORPUS), 3))
    for f, training in enumerate(seen):
        assert training == [tuple(s) for i, s in enumerate(CORPUS) if i % 3 != f]
    # Each piece is predicted by the model of its fold.
    for i, piece in enumerate(CORPUS):
        model = PPM(alphabet_size=3, mode="ltm").fit([s for j, s in enumerate(CORPUS) if j % 3 != i % 3])
        np.testing.assert_allclose(result.probability[i], 2 ** model.score([piece])[0])


def test_table_has_each_models_probability_and_writes_csv(tmp_path):
    def build(training):
        models = {"ltm": PPM(alphabet_size=3, mode="ltm+"), "stm": PPM(alphabet_size=3, mode="stm"),
                  "mc": MarkovChain(alphabet_size=3)}
        return Combined(models, config=CombineConfig.pearce2005()).fit(training)

    result = cross_validate(build, CORPUS, k=2)
    rows = result.table()
    assert len(rows) == sum(map(len, CORPUS))
    assert list(rows[0]) == ["piece", "position", "symbol", "ic", "entropy", "probability", "fold",
                             "p_ltm", "p_stm", "p_mc"]
    assert [(r["piece"], r["position"], r["symbol"]) for r in rows[:6]] == \
        [(0, 0, 0), (0, 1, 1), (0, 2, 2), (0, 3, 1), (0, 4, 0), (1, 0, 2)]
    for r in rows:
        assert r["ic"] == pytest.approx(-np.log2(r["probability"]))
        assert 0 < r["p_ltm"] < 1 and 0 < r["p_stm"] < 1
    path = result.write_csv(tmp_path / "events.csv")
    with path.open() as f:
        read = list(csv.DictReader(f))
    assert len(read) == len(rows) and float(read[3]["ic"]) == pytest.approx(rows[3]["ic"])
    summary = result.summary()
    assert summary["pieces"] == len(CORPUS) and summary["mean_ic"] == pytest.approx(result.mean_ic())


def test_frame_metrics_by_hand():
    sequences = [[1, 1, 0, 0, 2], [2]]
    distributions = [np.array([[0.25, 0.5, 0.25],   # 1, a change (first event): p 1/2, argmax right
                               [0.1, 0.8, 0.1],     # 1 again: p 0.8, right
                               [0.25, 0.5, 0.25],   # 0, a change: p 1/4, wrong
                               [0.5, 0.25, 0.25],   # 0 again: p 1/2, right
                               [0.5, 0.25, 0.25]]),  # 2, a change: p 1/4, wrong
                     np.array([[0.25, 0.25, 0.5]])]  # 2, the first event: p 1/2, right
    m = frame_metrics(sequences, distributions)
    ln2 = np.log(2)
    assert m["events"] == 6 and m["evt_events"] == 4
    assert m["nll_nats"] == pytest.approx((7 * ln2 + np.log(1.25)) / 6)
    assert m["nll_bits"] == pytest.approx(m["nll_nats"] / ln2)
    assert m["precision"] == pytest.approx(4 / 6)
    # the changes have p 1/2, 1/4, 1/4, 1/2: 1.5 bits on average
    assert m["evt_nll_bits"] == pytest.approx(1.5) and m["evt_nll_nats"] == pytest.approx(1.5 * ln2)
    assert m["evt_precision"] == pytest.approx(0.5)


def test_frame_metrics_ties_empty_and_bad_shapes():
    tie = frame_metrics([[1]], [np.array([[0.4, 0.4, 0.2]])])
    assert tie["precision"] == 0.0  # a tie goes to the lowest id, here not the event
    empty = frame_metrics([[]], [np.zeros((0, 3))])
    assert empty["events"] == 0 and empty["nll_nats"] is None and empty["evt_precision"] is None
    with pytest.raises(ValueError, match="needs"):
        frame_metrics([[0, 1]], [np.full((3, 2), 0.5)])
    with pytest.raises(ValueError, match="distribution arrays"):
        frame_metrics([[0]], [])


def test_by_position_averages_each_bucket_over_the_pieces_that_reach_it():
    from notelm.evaluation import by_position

    curve = by_position([np.array([1.0, 2.0, 3.0]), np.array([5.0, 7.0, 9.0, 11.0, 13.0])], bucket=2)
    assert curve["start"] == [0, 2, 4] and curve["events"] == [4, 3, 1]
    np.testing.assert_allclose(curve["bits_per_event"], [(1 + 2 + 5 + 7) / 4, (3 + 9 + 11) / 3, 13.0])
    np.testing.assert_allclose(curve["nats_per_event"], np.array(curve["bits_per_event"]) * np.log(2))
