"""The benchmark peers (bench/peers/) at tiny sizes, when the [bench] extra is installed.

Each test imports its library with importorskip, so without the extra (as in CI) they skip.
Beyond "it runs", they pin the library behaviours the peer modules rely on and report:
the frozen key/value projections of compressive-transformer-pytorch and their fix, its padding
and memory rotation, perceiver-ar-pytorch's ignore_index=0, and T5's shared vocabulary.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parent.parent / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

TINY_CT = {"dim": 16, "depth": 2, "heads": 2, "seq_len": 8, "mem_len": 8, "cmem_len": 8, "memory_layers": (1, 2)}
TINY_PAR = {"context": 64, "latents": 16, "dim": 64, "depth": 1, "heads": 2, "dim_head": 32}
TINY_T5 = {"d_model": 32, "d_ff": 64, "num_layers": 1, "num_heads": 2, "d_kv": 16}


def pieces(n: int = 3, length: int = 60, vocab: int = 40) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(4, vocab, size=length + 7 * i) for i in range(n)]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_compressive_published_freezes_memory_kv_and_fix_undoes_it():
    pytest.importorskip("compressive_transformer_pytorch")
    from peers import compressive

    report = compressive.freeze_report(40, pieces(), steps=4, batch=2, test=pieces(1), **TINY_CT)
    pub, fix = report["published"], report["fixed"]
    # the first step trains every layer; from the second (the first that compresses) the memory layers' to_kv stop
    assert pub["kv_frozen_at"] == {"layer 1": 2, "layer 2": 2}
    for layer in ("layer 1", "layer 2"):
        assert pub["kv_change"][layer]["step 1"] > 0
        assert pub["kv_change"][layer]["step 4"] == pub["kv_change"][layer]["step 1"]
        assert fix["kv_change"][layer]["step 4"] > fix["kv_change"][layer]["step 1"]
    assert fix["kv_frozen_at"] == {}
    assert np.isfinite(fix["test"]["nats_per_token"]) and fix["test"]["tokens"] == 60 + 1


def test_compressive_gradients_padding_and_rotation():
    pytest.importorskip("compressive_transformer_pytorch")
    from peers import compressive

    published = compressive.gradient_check(compressive.build(40, **TINY_CT))
    fixed = compressive.gradient_check(compressive.build(40, fixed=True, **TINY_CT))
    for layer in ("layer 1", "layer 2"):
        assert published["main"][layer]["to_kv"] is False  # the main loss's gradient is lost (ctp.py:269)
        assert fixed["main"][layer]["to_kv"] is True
        for g in (published, fixed):  # the auxiliary loss trains the compressor only
            assert g["aux"][layer] == {"to_kv": False, "compressor": True}
            assert g["main"][layer]["compressor"] is False
    pad = compressive.reconstruction_check(seq_len=5, mem_len=5)
    assert (pad["evicted"], pad["compressed"], pad["expected_compressed"]) == (5, 1, 2)  # len % ratio padding
    span = compressive.reconstruction_check(seq_len=8, mem_len=16)
    assert (span["evicted"], span["old_memory_keys"]) == (8, 16)  # keys over the whole memory
    assert compressive.rotation_check(compressive.build(40, **TINY_CT))["partial_forward_returns_rolled_memories"]
    g = compressive.generation_speed(compressive.build(40, **TINY_CT), primer=16, new_tokens=12, vocab_size=40)
    assert g["new_tokens"] == 12 and g["returned_tokens"] == 12 - (16 - 8)  # it drops primer - last segment from its output


def test_compressive_lanes_are_consecutive_windows():
    pytest.importorskip("compressive_transformer_pytorch")
    from peers import compressive

    ps = pieces()
    wins = list(compressive.lanes(ps, batch=2, seq_len=8))
    stream = compressive.stream(ps)
    lane = len(stream) // 2
    assert all(w.shape == (2, 9) for w in wins)
    assert torch.equal(wins[1][:, 0], wins[0][:, -1])  # windows overlap by the one token predicted across them
    assert torch.equal(wins[0][1], torch.from_numpy(stream[lane : lane + 9]))


def test_perceiver_ar_speed_and_padding():
    pytest.importorskip("perceiver_ar_pytorch")
    from peers import perceiver_ar

    model = perceiver_ar.build(40, **TINY_PAR)
    assert model.cross_attn_seq_len == 48  # the prefix; the last 16 positions are the latents
    g = perceiver_ar.generation_speed(model, new_tokens=2)
    assert g["new_tokens"] == 2 and g["latents"] == 16
    t = perceiver_ar.training_speed(model, steps=1, warmup=0)
    assert t["tokens_per_s"] == pytest.approx(4 * t["predicted_tokens_per_s"])
    assert perceiver_ar.loss_ignores(model, 0)  # notelm's PAD
    assert not perceiver_ar.loss_ignores(model, 39)  # e.g. the seed's PAD 389: counted
    with pytest.raises(ValueError):
        perceiver_ar.build(40, context=64, latents=64)


def test_t5_shared_vocabulary_training_and_predictions():
    pytest.importorskip("transformers")
    from peers import t5

    src, tgt = np.array([1, 4, 10, 4 + 9599]), np.array([1, 4, 4 + 64, 4 + 127])  # BOS, then three notes
    inputs, labels = t5.to_t5(src, tgt)
    assert inputs.tolist() == [t5.SOURCE0, t5.SOURCE0 + 6, t5.SOURCE0 + 9599, t5.EOS]
    assert labels.tolist() == [t5.VELOCITY0, t5.VELOCITY0 + 64, t5.VELOCITY0 + 127, t5.EOS]
    with pytest.raises(ValueError):
        t5.to_t5(np.array([4, 5]), np.array([4]))
    assert t5.noam(4000, d_model=256, warmup=4000) == pytest.approx(256**-0.5 * 4000**-0.5)

    rng = np.random.default_rng(0)
    pairs = [(rng.integers(4, 300, size=20), rng.integers(4 + 30, 4 + 90, size=20))]
    wins = t5.windows(pairs, size=8, step=4)
    assert len(wins) == 4 and wins[0][0].shape == (9,)
    model = t5.build(300, seed=0, **TINY_T5)
    assert model.config.decoder_start_token_id == t5.PAD and model.config.vocab_size == t5.SOURCE0 + 296
    for setting in t5.SETTINGS:
        r = t5.train_steps(model, t5.batches(wins, batch=2), 1, setting=setting, warmup=10)
        assert len(r["losses"]) == 1 and np.isfinite(r["nll"][0])
    p = t5.predict(model, *next(t5.batches(wins, batch=2)))
    assert p["argmax"].shape == p["expected"].shape == p["true"].shape == p["previous"].shape == (2, 8)
    assert (p["previous"][:, 0] == -1).all() and (p["previous"][:, 1:] == p["true"][:, :-1]).all()
    assert ((p["expected"] >= 0) & (p["expected"] <= 127)).all() and ((p["true"] >= 30) & (p["true"] < 90)).all()
    assert ((p["other_mass"] >= 0) & (p["other_mass"] <= 1)).all()
    with pytest.raises(ValueError):
        t5.train_steps(model, t5.batches(wins, batch=2), 1, setting="nope")
