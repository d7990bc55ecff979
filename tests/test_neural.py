"""Neural networks as models: the cached and uncached paths agree, the batched and step paths
agree, predictions never look ahead, and the distributions keep the model interface's promises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from notelm.encodings.vocab import BOS_ID, PAD_ID, UNK_ID
from notelm.errors import NotelmError
from notelm.models.layers import KVCache
from notelm.models.neural import NeuralModel, build_network, build_neural, window_starts

V = 20
DEBUG = {
    "lstm": {"embed_dim": 16, "hidden": 16, "layers": 2, "dropout": 0.0, "context": 16, "vocab_size": V},
    "transformer": {"dim": 16, "n_layers": 2, "n_heads": 2, "context": 16, "dropout": 0.0, "vocab_size": V},
}


def sequences(seed=0, lengths=(1, 2, 15, 16, 17, 33, 70)):
    rng = np.random.default_rng(seed)
    return [rng.integers(4, V, size=n) for n in lengths]


def step_path(model, seq):
    state, out = model.start(), []
    for token in seq:
        out.append(np.log2(model.predict(state)[token]))
        state = model.observe(state, int(token))
    return np.array(out)


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_score_equals_step_by_step(name):
    torch.manual_seed(0)
    model = build_neural(name, alphabet_size=V, config=DEBUG[name])
    for fast, seq in zip(model.score(sequences()), sequences()):
        np.testing.assert_allclose(fast, step_path(model, seq), atol=1e-6)


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_float32_paths_agree_too(name):
    torch.manual_seed(1)
    model = build_neural(name, alphabet_size=V, config=DEBUG[name], dtype=torch.float32)
    for fast, seq in zip(model.score(sequences(1)), sequences(1)):
        np.testing.assert_allclose(fast, step_path(model, seq), atol=1e-5)


def test_short_calls_put_back_threads_and_onednn_as_they_found_them():
    """A step runs on `step_threads` threads without oneDNN (`NeuralModel._run`); both
    process-wide settings are back as they were after it, whatever they were."""
    torch.manual_seed(2)
    model = build_neural("transformer", alphabet_size=V, config=DEBUG["transformer"], dtype=torch.float32)
    threads, onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    try:
        for setting in (False, True):
            torch.backends.mkldnn.enabled = setting
            model.observe(model.start([5, 6]), 7)
            assert torch.backends.mkldnn.enabled is setting and torch.get_num_threads() == threads
    finally:
        torch.backends.mkldnn.enabled = onednn


def test_transformer_cached_logits_equal_uncached():
    torch.manual_seed(0)
    net = build_network("transformer", {**DEBUG["transformer"], "context": 64}).float().eval()
    ids = torch.randint(4, V, (2, 40))
    with torch.no_grad():
        full, _ = net(ids, None)
        cache = net.new_cache(batch=2, capacity=4)  # small on purpose: the cache must grow
        logits, cache = net(ids[:, :7], cache)  # a prefill chunk, then one token at a time, then a chunk
        steps = [logits]
        for i in range(7, 30):
            logits, cache = net(ids[:, i:i + 1], cache)
            steps.append(logits)
        logits, cache = net(ids[:, 30:], cache)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)
    assert cache.length == 40


def test_sampling_with_and_without_cache_gives_the_same_distributions():
    torch.manual_seed(2)
    net = build_network("transformer", DEBUG["transformer"])
    cached = NeuralModel(net, context=16, dtype=torch.float32)
    uncached = NeuralModel(net, context=16, dtype=torch.float32, use_cache=False)
    a, b = cached.start([5, 6]), uncached.start([5, 6])
    for token in sequences(3, (40,))[0]:  # past the context: the window moves
        np.testing.assert_allclose(np.log(cached.predict(a)), np.log(uncached.predict(b)), atol=1e-5)
        a, b = cached.observe(a, int(token)), uncached.observe(b, int(token))


def test_lstm_step_equals_batch():
    torch.manual_seed(0)
    net = build_network("lstm", DEBUG["lstm"]).eval()
    ids = torch.randint(4, V, (3, 25))
    with torch.no_grad():
        full, _ = net(ids, None)
        state, steps = None, []
        for i in range(25):
            logits, state = net(ids[:, i:i + 1], state)
            steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_causality_gradient(name):
    """The logits at position i depend on inputs 0..i and on none after."""
    torch.manual_seed(0)
    net = build_network(name, DEBUG[name]).double().eval()
    x = net.embed(torch.randint(4, V, (1, 12))).detach().requires_grad_(True)
    i = 5
    logits, _ = net.body(x, None)
    logits[0, i].sum().backward()
    grad = x.grad[0].abs().sum(dim=-1)
    assert (grad[i + 1:] == 0).all()
    assert (grad[: i + 1] > 0).all()


@pytest.mark.parametrize("name", ["lstm", "transformer"])
def test_distributions_are_proper_and_specials_never_predicted(name):
    model = build_neural(name, alphabet_size=V, config=DEBUG[name])
    for d in model.distributions(sequences()):
        assert d.dtype == np.float64 and (d > 0).all()
        np.testing.assert_allclose(d.sum(axis=1), 1.0, atol=1e-12)
        assert (d[:, [PAD_ID, BOS_ID, UNK_ID]] < 1e-9).all()


def test_window_starts_give_the_most_context_on_the_stride_grid():
    starts = window_starts(10, 4, 2)  # predictions after 1..10 inputs
    assert starts.tolist() == [0, 0, 0, 0, 2, 2, 4, 4, 6, 6]
    assert all(m - a <= 4 for m, a in zip(range(1, 11), starts))
    assert window_starts(5, None, 1).tolist() == [0] * 5


def test_kv_cache_grows():
    cache = KVCache(capacity=1)
    k = torch.ones(1, 1, 3, 2)
    cache, keys, _, positions = cache.append(k, k, torch.arange(3)[None])
    assert cache.length == 3 and keys.shape == (1, 1, 3, 2) and positions.tolist() == [[0, 1, 2]]


def test_observe_leaves_the_state_it_was_given_so_a_piece_can_branch():
    torch.manual_seed(3)
    model = build_neural("transformer", alphabet_size=V, config=DEBUG["transformer"])
    root = model.start([5, 6, 7])
    before = model.predict(root).copy()
    a, b = model.observe(root, 8), model.observe(root, 9)  # two branches from one state
    a2, b2 = model.observe(a, 10), model.observe(b, 10)
    np.testing.assert_array_equal(model.predict(root), before)
    np.testing.assert_allclose(model.predict(a2), model.predict(model.start([5, 6, 7, 8, 10])), atol=1e-12)
    np.testing.assert_allclose(model.predict(b2), model.predict(model.start([5, 6, 7, 9, 10])), atol=1e-12)


@pytest.mark.parametrize("config", [{"dim": 10, "n_heads": 4}, {"n_layers": 0}, {"dropout": 1.5}])
def test_bad_transformer_config_is_a_domain_error(config):
    with pytest.raises(NotelmError):
        build_network("transformer", {**DEBUG["transformer"], **config})


def test_unknown_network_lists_the_known():
    with pytest.raises(NotelmError, match="known: .*lstm.*transformer"):
        build_network("gru", {})
