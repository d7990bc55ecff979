"""Perceiver AR: the cached step path, the batched path and a from-scratch reference agree; the
network is causal; prefix dropout happens in training only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import step_path
from notelm.config import SettingsError
from notelm.models.perceiver_ar import (
    PRESETS,
    PerceiverAR,
    PerceiverARConfig,
    PerceiverARModel,
    block_starts,
)

V = 20
L, N = 16, 4  # context, latents


def network(seed=0, dtype=torch.float64, **overrides):
    torch.manual_seed(seed)
    cfg = {"vocab_size": V, "dim": 16, "n_layers": 2, "n_heads": 2, "context": L, "latents": N, "dropout": 0.0,
           "prefix_dropout": 0.5, **overrides}
    return PerceiverAR(PerceiverARConfig(**cfg)).to(dtype).eval()


def tokens(n, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).integers(4, V, size=(1, n)))


def stepwise(net, x, refill=None, chunks=None):
    """Logits (t, v) of every input through the cache, fed in ``chunks`` (default one by one)."""
    state, out, i = net.new_cache(1, refill=refill), [], 0
    for size in chunks or [1] * x.shape[1]:
        logits, state = net(x[:, i: i + size], state)
        out.append(logits[0])
        i += size
    return torch.cat(out)


def reference(net, x, i, refill):
    """The prediction after input i from scratch and without any mask over windows: each latent
    j of i's block [c, i] cross-attends to a forward pass of its own over inputs j-L+1..j."""
    c = int(block_starts(i + 1, N, refill)[-1])
    cross = []
    for j in range(c, i + 1):
        a = max(0, j - L + 1)
        h = net.embed(x[:, a: j + 1])
        z, _ = net.cross(h, 1, torch.arange(a, j + 1)[None])
        cross.append(z)
    return net.latent_stack(torch.cat(cross, dim=1))[0][0, -1]


def test_block_starts_restart_every_refill_once_n_latents_are_held():
    assert block_starts(12, 4, 4).tolist() == [0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8]
    assert block_starts(9, 4, 2).tolist() == [0, 0, 0, 0, 2, 2, 4, 4, 6]
    s = block_starts(500, 16, 5)
    assert ((np.arange(500) - s) < 16).all() and (s % 5 == 0).all() and (np.diff(s) >= 0).all()


def test_cached_logits_equal_uncached_while_the_sequence_fits_in_the_context():
    net = network(dtype=torch.float32)
    x = tokens(L)
    with torch.no_grad():
        cached = stepwise(net, x)
        for m in range(1, L + 1):  # the uncached forward of the inputs so far, latents from c(m - 1)
            c = int(block_starts(m, N, N)[-1])
            uncached, _ = net(x[:, :m], latents=m - c)
            torch.testing.assert_close(cached[m - 1], uncached[0, -1], atol=1e-5, rtol=0)
        # a full window's forward (the training shape) is the cache's last block: latents L-N..L-1
        window, _ = net(x)
        torch.testing.assert_close(cached[L - N:], window[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize(("refill", "chunks"), [(N, None), (N // 2, None), (3, [5, 1, 11, 13, 1, 2, 7])])
def test_full_caches_equal_the_reference_computation(refill, chunks):
    net = network(1)
    x = tokens(40, seed=1)  # > L + N: the cross cache slides and the latents restart many times
    with torch.no_grad():
        got = stepwise(net, x, refill, chunks)
        for i in range(40):
            torch.testing.assert_close(got[i], reference(net, x, i, refill), atol=1e-10, rtol=0)


@pytest.mark.parametrize("refill", [N, N // 2])
def test_batched_path_equals_step_path(refill):
    model = PerceiverARModel(network(2), refill=refill)
    rng = np.random.default_rng(2)
    pieces = [rng.integers(4, V, size=n).tolist() for n in (1, 3, 4, 5, 21, 45)]
    fast = model.distributions(pieces)
    for a, b in zip(fast, step_path(model, pieces)):
        np.testing.assert_allclose(a, b, atol=1e-10, rtol=0)
        np.testing.assert_allclose(a.sum(1), 1.0, atol=1e-12)
    # the uncached baseline recomputes each prediction's block: the same numbers
    slow = PerceiverARModel(network(2), refill=refill, use_cache=False)
    for a, b in zip(fast[-2:], step_path(slow, pieces[-2:])):
        np.testing.assert_allclose(a, b, atol=1e-10, rtol=0)


def test_float32_batched_and_step_paths_agree():
    model = PerceiverARModel(network(3), dtype=torch.float32)
    piece = np.random.default_rng(3).integers(4, V, size=40).tolist()
    np.testing.assert_allclose(model.distributions([piece])[0], step_path(model, [piece])[0], atol=1e-5, rtol=0)


def test_causality_by_gradient_in_training_too():
    net = network(4, prefix_dropout=0.5)
    for train in (False, True):
        net.train(train)
        x = net.embed(tokens(L, seed=4)).detach().requires_grad_(True)
        logits = net.body(x)  # (1, N, v) for inputs L-N..L-1
        for r in range(N):
            (grad,) = torch.autograd.grad(logits[0, r].sum(), x, retain_graph=True)
            seen = grad[0].abs().sum(-1) > 0
            i = L - N + r
            assert not seen[i + 1:].any(), f"the prediction at {i} depends on a later input"
            assert seen[i], f"the prediction at {i} ignores its own input"


def test_prefix_dropout_leaves_out_a_share_of_the_prefix_in_training_only():
    net = network(5, prefix_dropout=0.5)
    x = net.embed(tokens(L, seed=5)).detach()
    with torch.no_grad():
        eval_a, eval_b = net.body(x), net.body(x)
        torch.testing.assert_close(eval_a, eval_b, atol=0, rtol=0)
        no_drop = network(5, prefix_dropout=0.0)
        torch.testing.assert_close(no_drop.body(x), eval_a, atol=0, rtol=0)  # eval: dropout is off
    net.train()
    p = L - N
    xs = x.expand(3, -1, -1).clone().requires_grad_(True)
    logits = net.body(xs)
    (grad,) = torch.autograd.grad(logits[:, -1].sum(), xs)
    seen = grad.abs().sum(-1) > 0  # (3, L): the inputs the last latent reached
    assert (seen[:, :p].sum(1) == p - int(p * 0.5)).all(), "each row keeps p - floor(p * rate) prefix inputs"
    assert seen[:, p:].all(), "latents are never dropped"
    assert not (seen[0, :p] == seen[1, :p]).all() or not (seen[1, :p] == seen[2, :p]).all(), "rows drop their own"
    torch.testing.assert_close(network(5, prefix_dropout=0.5).body(x), eval_a, atol=0, rtol=0)


def test_observe_leaves_the_state_it_was_given():
    model = PerceiverARModel(network(6), refill=N // 2)
    state = model.start([5, 6, 7] * 10)
    a = model.observe(state, 8)
    b = model.observe(state, 9)
    again = model.observe(state, 8)
    np.testing.assert_array_equal(model.predict(a), model.predict(again))
    assert not np.allclose(model.predict(a), model.predict(b))


@pytest.mark.parametrize("config", [{"latents": 0}, {"latents": 300, "context": 256}, {"dim": 30, "n_heads": 4},
                                    {"prefix_dropout": 1.0}, {"dropout": -0.1}])
def test_bad_config_is_a_settings_error(config):
    with pytest.raises(SettingsError):
        PerceiverARConfig(vocab_size=V, **config)
    with pytest.raises(SettingsError):
        PerceiverARModel(network(), refill=N + 1)


def test_presets_are_valid_configs():
    for name, preset in PRESETS.items():
        cfg = PerceiverARConfig(vocab_size=V, **preset["model"])
        assert cfg.latents <= cfg.context, name
    assert {k: PRESETS["v3"]["model"][k] for k in ("context", "dim", "n_heads", "n_layers", "latents")} == \
        {"context": 8192, "dim": 1024, "n_heads": 8, "n_layers": 8, "latents": 512}


def test_float32_logits_do_not_depend_on_how_far_into_the_piece_a_window_is():
    """Rotary angles of positions near 60,000 in float32 are off by ~4e-3 rad; layers.rotate
    takes cos and sin in float64, so a window's logits are the same wherever it lies."""
    net = network(7, dtype=torch.float32, dim=32, n_heads=2)
    x = tokens(L, seed=7)
    with torch.no_grad():
        for attn in (net.cross.attn, *(b.attn for b in net.blocks)):
            attn.qkv.weight.mul_(10)  # sharp attention, as trained weights have
        near, _ = net(x, positions=torch.arange(L))
        far, _ = net(x, positions=torch.arange(60_000, 60_000 + L))
    torch.testing.assert_close(far, near, atol=2e-5, rtol=0)


def test_bench_generation_reports_cached_uncached_and_the_peer_keys(monkeypatch):
    """The speed figures agree between paths (tiny sizes here), and the command prints the keys."""
    import json

    from typer.testing import CliRunner

    from notelm import benchmarks
    from notelm.cli import app

    r = benchmarks.perceiver_generation_speed(context=24, new_tokens=6, latents=8, dim=16, n_layers=2, n_heads=2)
    assert r["max_abs_log_prob_diff"] < 1e-4 and r["same_tokens"]
    monkeypatch.setattr(benchmarks, "perceiver_generation_speed", lambda **kw: dict(r))
    monkeypatch.setattr(benchmarks, "peer_generation_speed", lambda **kw: {"peer_tokens_per_s": 2.0})
    done = CliRunner().invoke(app, ["bench", "generation", "--family", "perceiver-ar", "--context", "24", "--tokens", "6", "--json"])
    assert done.exit_code == 0, done.output
    out = json.loads(done.output)
    assert {"cached_tokens_per_s", "uncached_tokens_per_s", "peer_tokens_per_s", "speedup_over_peer"} <= set(out)
