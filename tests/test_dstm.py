"""Differentiable short-term models and the WaveNet baseline: the parallel (training) form and
the step-by-step form agree, nothing looks ahead, the fast weights follow the paper's rule,
and `notelm train ccstm|dcstm|wavenet` trains, saves, resumes and evaluates."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from notelm.config import SettingsError
from notelm.encodings.vocab import BOS_ID, PAD_ID, UNK_ID
from notelm.models import dstm
from notelm.models.neural import build_network, build_neural
from notelm.training import train

V = 20
CONFIGS = {
    "ccstm": {"filters": 8, "layers": 4, "code_size": 6, "dropout": 0.0, "vocab_size": V},
    "dcstm": {"filters": 8, "layers": 4, "code_size": 6, "dropout": 0.0, "vocab_size": V},
    "wavenet": {"filters": 8, "layers": 4, "dropout": 0.0, "vocab_size": V},
}
TINY = dict(corpus="essen-kinder", encoding="dstm-frames", preset="debug", progress=False, accelerator="cpu",
            devices=1, threads=1)


def sequences(seed=0, lengths=(1, 2, 17, 300, 600)):  # 300 and 600: across the parallel form's chunks
    rng = np.random.default_rng(seed)
    return [rng.integers(4, V, size=n) for n in lengths]


def step_path(model, seq):
    state, rows = model.start(), []
    for token in seq:
        rows.append(model.predict(state))
        state = model.observe(state, int(token))
    return np.array(rows)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_parallel_form_equals_step_form(name, dtype, tol):
    torch.manual_seed(0)
    model = build_neural(name, alphabet_size=V, config=CONFIGS[name], dtype=dtype)
    seqs = sequences()
    for fast, seq in zip(model.distributions(seqs), seqs):
        np.testing.assert_allclose(np.log(fast), np.log(step_path(model, seq)), atol=tol)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_chunks_continue_exactly(name):
    """A sequence fed in pieces of any size gives the logits of one call on the whole."""
    torch.manual_seed(1)
    net = build_network(name, CONFIGS[name]).double().eval()
    ids = torch.randint(4, V, (2, 50))
    with torch.no_grad():
        whole, _ = net(ids, None)
        state, parts = net.new_cache(2), []
        for a, b in [(0, 7), (7, 8), (8, 31), (31, 50)]:
            logits, state = net(ids[:, a:b], state)
            parts.append(logits)
    torch.testing.assert_close(torch.cat(parts, 1), whole, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_no_prediction_looks_ahead(name):
    """Changing the inputs after position i changes no prediction up to i (gradient-free, so
    it also covers the discrete codes' argmax)."""
    torch.manual_seed(2)
    net = build_network(name, CONFIGS[name]).double().eval()
    ids = torch.randint(4, V, (1, 40))
    other = ids.clone()
    other[0, 21:] = torch.randint(4, V, (19,))
    with torch.no_grad():
        a, _ = net(ids, None)
        b, _ = net(other, None)
    torch.testing.assert_close(a[0, :21], b[0, :21], atol=0, rtol=0)
    assert not torch.equal(a[0, 21:], b[0, 21:])


def test_causality_gradient_of_the_continuous_model():
    torch.manual_seed(3)
    net = build_network("ccstm", CONFIGS["ccstm"]).double().eval()
    x = torch.nn.functional.one_hot(torch.randint(4, V, (1, 30)), V).double().requires_grad_(True)
    h = net.codes(net.encoder(x.transpose(1, 2))[0])
    i = 12
    h[0, i].sum().backward()
    grad = x.grad[0].abs().sum(-1)
    assert (grad[i + 1:] == 0).all() and (grad[i - 15: i + 1] > 0).all()  # receptive field 16


def test_receptive_field_is_two_to_the_layers():
    torch.manual_seed(4)
    net = build_network("wavenet", CONFIGS["wavenet"]).double().eval()
    ids = torch.randint(4, V, (1, 60))
    other = ids.clone()
    other[0, :44] = torch.randint(4, V, (44,))  # position 59 sees 44..59: 16 frames
    with torch.no_grad():
        a, _ = net(ids, None)
        b, _ = net(other, None)
    torch.testing.assert_close(a[0, 59], b[0, 59], atol=0, rtol=0)
    assert dstm.WaveNetConfig(**CONFIGS["wavenet"]).receptive_field == 16


def test_fast_weights_follow_the_update_rule(monkeypatch):
    """With every code h = 1 (d ones) the DSTM is a smoothed count of the frames seen so far:
    p(x) = (d * W0 + d * count(x)) / sum, W0 = 1 / (100 d)."""
    net = build_network("ccstm", CONFIGS["ccstm"]).double().eval()
    d = CONFIGS["ccstm"]["code_size"]
    monkeypatch.setattr(net, "codes", lambda features: torch.ones(features.shape[0], features.shape[2], d,
                                                                  dtype=features.dtype))
    seq = [BOS_ID, 7, 7, 9, 7]  # the inputs; predictions after each
    with torch.no_grad():
        logits, state = net(torch.tensor([seq]), None)
    p = logits.softmax(-1)[0].numpy()
    classes = V - 3  # every token but PAD, BOS, UNK
    w0 = 0.01 / d
    counts = {7: [0, 1, 2, 2], 9: [0, 0, 0, 1]}
    for t in range(4):
        total = classes * d * w0 + d * t
        assert p[t, 7] == pytest.approx((d * w0 + d * counts[7][t]) / total, rel=1e-12)
        assert p[t, 9] == pytest.approx((d * w0 + d * counts[9][t]) / total, rel=1e-12)
    assert (p[:, [PAD_ID, BOS_ID, UNK_ID]] == 0).all()
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-12)
    assert state.fast.sum().item() == pytest.approx(d * 4)  # 4 frames learned; the last code waits for its successor


def test_dcstm_codes_are_one_hot_at_evaluation_and_soft_in_training():
    torch.manual_seed(5)
    for codes in ("gumbel", "straight-through"):
        net = build_network("dcstm", {**CONFIGS["dcstm"], "codes": codes})
        features = torch.randn(2, 8, 9)
        net.eval()
        h = net.codes(features)
        assert ((h == 0) | (h == 1)).all() and (h.sum(-1) == 1).all()
        net.train()
        net.anneal(1.0)
        assert net.tau == pytest.approx(0.1)
        h = net.codes(features)
        np.testing.assert_allclose(h.sum(-1).detach().numpy(), 1.0, atol=1e-6)
        assert ((h == 0) | (h == 1)).all() == (codes == "straight-through")


@pytest.mark.parametrize("name,bad", [("ccstm", {"codes": "gumbel"}), ("dcstm", {"codes": "continuous"}),
                                      ("ccstm", {"activation": "tanh"}), ("wavenet", {"layers": 0})])
def test_bad_settings_are_domain_errors(name, bad):
    with pytest.raises(SettingsError):
        build_network(name, {**CONFIGS[name], **bad})


@pytest.mark.parametrize("name", ["ccstm", "dcstm", "wavenet"])
def test_train_evaluate_round_trip(name, tmp_path):
    from notelm.leaderboard import evaluate_run

    run = train(name, out=tmp_path / name, max_steps=6, overrides=["train.val_every=3"], **TINY)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 6 and np.isfinite(metrics["best_val_loss"])
    result = evaluate_run(run, corpus="essen-kinder", split="valid")
    # the training validation and notelm evaluate see the same frames through the same model
    assert result["bits_per_event"] == pytest.approx(metrics["best_val_bits"], rel=1e-4)


def test_shipped_run_reproduces_its_row_of_the_table():
    """bench/runs holds the small trained runs behind bench/results/dstm-oneills.json; notelm
    evaluate gives their rows back."""
    from pathlib import Path

    from notelm.leaderboard import evaluate_run

    bench = Path(__file__).parent.parent / "bench"
    run, table = bench / "runs" / "dstm-oneills" / "ccstm-32", bench / "results" / "dstm-oneills.json"
    if not run.is_dir() or not table.is_file():
        pytest.skip("bench/runs or bench/results absent")
    row = next(r for r in json.loads(table.read_text())["rows"] if r["model"] == "ccstm-32")
    got = evaluate_run(run, corpus="oneills", split="test")
    for key in ("nll_nats", "precision", "evt_nll_nats", "evt_precision", "events", "evt_events"):
        assert got[key] == pytest.approx(row[key], rel=1e-6), key
