"""PPM: IDyOM's own outputs, a naive reference for the other settings, and the properties
every SequenceModel must have (sums to one, no zeros, batched path == step path)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import step_path
from notelm.models.ppm import PPM, PPMConfig

HERE = Path(__file__).parent
# Regression cases produced by IDyOM (Pearce 2005) and, for update exclusion, its corrected
# successor (mtp_development, Jan 2020); published in the test suite of the MIT-licensed R
# package ppm 0.3.0 by P. M. C. Harrison (tests/testthat/data/escape-*.R), converted to JSON.
FIXTURE = HERE / "fixtures" / "ppm" / "idyom_escape_methods.json"
CASES = json.loads(FIXTURE.read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_reproduces_idyom(case):
    alphabet = {symbol: i for i, symbol in enumerate(case["alphabet"])}
    config = PPMConfig(escape=case["escape"], order_bound=case["order_bound"],
                       shortest_deterministic=case["shortest_deterministic"],
                       exclusion=case["exclusion"], update_exclusion=case["update_exclusion"])
    # One model for the whole case: predict each symbol, then learn it, piece after piece.
    model = PPM(alphabet_size=len(alphabet), config=config, mode="ltm+")
    pieces = [[alphabet[s] for s in piece] for piece in case["sequences"]]
    for got, expected in zip(model.distributions(pieces), case["expected_distributions"], strict=True):
        np.testing.assert_allclose(got, np.array(expected), atol=1e-6, rtol=0)


# -- a naive reference: n-gram tuples in dicts, the same rules written plainly ------------------


class NaivePPM:
    def __init__(self, size: int, config: PPMConfig) -> None:
        self.size, self.config = size, config
        self.bound = 10**9 if config.order_bound is None else config.order_bound
        self.full: Counter = Counter()
        self.upex: Counter = Counter()
        self.closed: set = set()  # contexts followed by the end of a piece

    def contexts(self, history):
        """Contexts ending the history, of order 0.. while they have been seen."""
        out = [()]
        for o in range(1, min(len(history), self.bound) + 1):
            s = tuple(history[len(history) - o:])
            if s not in self.full:
                break
            out.append(s)
        return out

    def kids(self, s):
        return {x for x in range(self.size) if s + (x,) in self.full}

    def continuations(self, s):
        return len(self.kids(s)) + (s in self.closed)

    def predict(self, history):
        cfg, size = self.config, self.size
        chain = self.contexts(history)
        top = len(chain) - 1
        while top >= 0 and self.continuations(chain[top]) == 0:
            top -= 1
        selected = False
        if cfg.shortest_deterministic and top > 0 and self.continuations(chain[top]) == 1:
            o = top
            while o > 1 and self.continuations(chain[o - 1]) == 1:
                o -= 1
            selected, top = o < top, o
        k = {"b": -1.0, "d": -0.5}.get(cfg.escape, 0.0)
        p, excluded, escape = np.zeros(size), set(), 1.0
        for o in range(top, -1, -1):
            s = chain[o]
            table = self.full if (selected and o == top) or not cfg.update_exclusion else self.upex
            counts = {x: table[s + (x,)] for x in self.kids(s)}
            total = sum(c + k for x, c in counts.items() if not (cfg.exclusion and x in excluded))
            extra = {"a": 1.0, "ax": 1.0 + sum(c == 1 for c in counts.values()),
                     "d": len(counts) / 2}.get(cfg.escape, len(counts))
            weight = total / (total + extra) if total + extra else 0.0
            for x, c in counts.items():
                q = weight * (c + k) / total if total else 0.0
                if cfg.interpolated:
                    p[x] += escape * q
                elif x not in excluded and q > 0:
                    p[x] = escape * q
            excluded |= set(counts)
            escape *= 1 - weight
        uniform = 1 / (size + 1 - (len(self.kids(())) if cfg.exclusion else 1))
        for x in range(size):
            if cfg.interpolated or not (x in excluded and p[x] > 0):
                p[x] += escape * uniform
        return p / p.sum()

    def learn(self, history, x):
        novel_above = True
        for o in range(min(len(history), self.bound), -1, -1):
            g = tuple(history[len(history) - o:]) + (x,)
            novel = g not in self.full
            self.full[g] += 1
            if novel_above:
                self.upex[g] += 1
            novel_above = novel

    def close(self, history):
        for o in range(min(len(history), self.bound) + 1):
            self.closed.add(tuple(history[len(history) - o:]))


configs = st.builds(PPMConfig, escape=st.sampled_from(["a", "b", "c", "d", "ax"]),
                    order_bound=st.sampled_from([None, 0, 1, 2, 3]),
                    shortest_deterministic=st.booleans(), interpolated=st.booleans(),
                    exclusion=st.booleans(), update_exclusion=st.booleans())
pieces = st.lists(st.lists(st.integers(0, 3), max_size=14), min_size=1, max_size=4)


@settings(max_examples=60, deadline=None)
@given(config=configs, training=pieces, test=pieces)
def test_matches_naive_reference(config, training, test):
    model = PPM(alphabet_size=4, config=config, mode="ltm+").fit(training)
    naive = NaivePPM(4, config)
    for piece in training:
        history = []
        for x in piece:
            naive.learn(history, x)
            history.append(x)
        naive.close(history)
    for piece, got in zip(test, model.distributions(test), strict=True):
        history = []
        for i, x in enumerate(piece):
            np.testing.assert_allclose(got[i], naive.predict(history), atol=1e-12)
            naive.learn(history, x)
            history.append(x)
        naive.close(history)


# -- properties of every mode -----------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(config=configs, mode=st.sampled_from(["stm", "ltm", "ltm+"]), training=pieces,
       test=st.lists(st.lists(st.integers(0, 4), max_size=40), min_size=1, max_size=3))
def test_batched_equals_step_path_and_distributions_are_proper(config, mode, training, test):
    def build():
        model = PPM(alphabet_size=5, config=config, mode=mode)
        return model.fit(training) if model.trainable else model

    batched = build().distributions(test)
    stepped = step_path(build(), test)
    scores = build().score(test)
    for d, s, lp, seq in zip(batched, stepped, scores, test, strict=True):
        np.testing.assert_allclose(d, s, atol=1e-9, rtol=0)
        np.testing.assert_allclose(d.sum(axis=1), 1.0, atol=1e-9)
        assert (d > 0).all()
        np.testing.assert_allclose(lp, np.log2(d[np.arange(len(seq)), seq]), atol=1e-9)


def test_stm_starts_empty_for_every_piece():
    model = PPM(alphabet_size=3, mode="stm")
    a, b = [0, 1, 2, 0, 1, 2], [2, 2, 1, 0]
    np.testing.assert_allclose(model.score([a, b])[1], model.score([b])[0])
    np.testing.assert_allclose(model.distributions([b])[0][0], 1 / 3)


def test_ltm_is_frozen_while_predicting():
    model = PPM(alphabet_size=3, mode="ltm").fit([[0, 1, 2, 0, 1]])
    nodes = model.n_nodes
    first = model.score([[0, 1, 2], [2, 1]])
    np.testing.assert_allclose(model.score([[0, 1, 2], [2, 1]])[1], first[1])
    assert model.n_nodes == nodes


def test_ltm_plus_keeps_what_it_learns_across_pieces():
    # IDyOM reinitialises only STMs between test pieces, so an LTM+ that has predicted piece
    # a is the LTM trained on training + [a].
    training, a, b = [[0, 1, 2, 0, 1]], [2, 2, 0, 1, 1, 2], [1, 2, 2, 0]
    online = PPM(alphabet_size=3, mode="ltm+").fit(training).score([a, b])[1]
    retrained = PPM(alphabet_size=3, mode="ltm+").fit(training + [a]).score([b])[0]
    frozen = PPM(alphabet_size=3, mode="ltm").fit(training).score([b])[0]
    np.testing.assert_allclose(online, retrained)
    assert not np.allclose(online, frozen)


def test_primer_is_the_same_as_observing_it():
    model = PPM(alphabet_size=4, mode="stm")
    state = model.start()
    for x in [0, 1, 0, 1, 3]:
        state = model.observe(state, x)
    np.testing.assert_allclose(model.predict(model.start([0, 1, 0, 1, 3])), model.predict(state))


def test_long_unbounded_piece_step_path():
    rng = np.random.default_rng(0)
    piece = list(np.tile(rng.integers(0, 6, 25), 8))  # 200 events, long repeated contexts
    model = PPM(alphabet_size=6, mode="stm")
    np.testing.assert_allclose(model.distributions([piece])[0], step_path(model, [piece])[0],
                               atol=1e-12)


def test_empty_inputs():
    model = PPM(alphabet_size=3, mode="ltm").fit([])
    assert model.score([]) == []
    assert [len(x) for x in model.score([[], [1]])] == [0, 1]
    np.testing.assert_allclose(model.predict(model.start()), 1 / 3)


@pytest.mark.parametrize("kwargs", [
    {"escape": "x"}, {"order_bound": -1}, {"order_bound": 2.0}, {"order_bound": True},
    {"interpolated": 1}, {"exclusion": None},
])
def test_config_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError):
        PPMConfig(**kwargs)


def test_config_round_trips_through_json():
    config = PPMConfig(escape="ax", order_bound=3, update_exclusion=True)
    assert PPMConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown"):
        PPMConfig.from_dict({"escape": "c", "mixtures": True})


def test_bad_use_raises_value_error():
    with pytest.raises(ValueError, match="mode"):
        PPM(alphabet_size=3, mode="both")
    with pytest.raises(ValueError, match="alphabet_size"):
        PPM(alphabet_size=0)
    with pytest.raises(ValueError, match="STM"):
        PPM(alphabet_size=3, mode="stm").fit([[0, 1]])
    with pytest.raises(ValueError, match="outside the alphabet"):
        PPM(alphabet_size=3, mode="stm").score([[0, 3]])
    model = PPM(alphabet_size=3, mode="stm")
    with pytest.raises(ValueError, match="outside the alphabet"):
        model.observe(model.start(), -1)


def test_idyom_defaults():
    assert PPM(alphabet_size=2, mode="stm").config == PPMConfig(escape="ax", update_exclusion=True)
    assert PPM(alphabet_size=2, mode="ltm").config == PPMConfig(escape="c", update_exclusion=False)


@pytest.mark.parametrize("mode", ["stm", "ltm"])
def test_observe_leaves_the_state_it_was_given_so_a_piece_can_branch(mode):
    model = PPM(alphabet_size=4, mode=mode)
    if mode == "ltm":
        model.fit([[0, 1, 2, 3, 0, 1, 2], [1, 1, 2, 3]])
    root = model.start([0, 1, 2, 0, 1])
    before = model.predict(root).copy()
    a = model.observe(model.observe(root, 2), 3)
    b = model.observe(model.observe(root, 3), 3)  # a second branch from the same state
    np.testing.assert_array_equal(model.predict(root), before)
    np.testing.assert_allclose(model.predict(a), model.predict(model.start([0, 1, 2, 0, 1, 2, 3])), atol=1e-15)
    np.testing.assert_allclose(model.predict(b), model.predict(model.start([0, 1, 2, 0, 1, 3, 3])), atol=1e-15)
    np.testing.assert_allclose(model.predict(a), model.predict(model.observe(model.observe(root, 2), 3)), atol=1e-15)


def test_an_ltm_plus_state_refuses_to_branch():
    model = PPM(alphabet_size=3, mode="ltm+").fit([[0, 1, 2]])
    root = model.start([0])
    model.observe(root, 1)
    with pytest.raises(ValueError, match="cannot be branched"):
        model.observe(root, 2)
