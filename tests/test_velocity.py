"""The velocity model (models/seq2seq.py): teacher forcing equals cached step-by-step decoding,
cached greedy equals the original's uncached greedy, the decoder is causal, source padding is
invisible, the window plan covers every note, and the batched and step paths agree."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from notelm.encodings.vocab import BOS_ID, N_SPECIAL, PAD_ID
from notelm.models.seq2seq import PRESETS, Seq2Seq, VelocityConfig, VelocityModel, window_plan

SOURCE_VOCAB = N_SPECIAL + 40


pytestmark = pytest.mark.usefixtures("one_thread")


def network(shared: bool = False, seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    config = VelocityConfig.from_dict({**PRESETS["debug"]["model"], "vocab_size": SOURCE_VOCAB, "shared_vocab": shared})
    return Seq2Seq(config).double().eval()


def pair(b: int, n: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    source = torch.randint(N_SPECIAL, SOURCE_VOCAB, (b, n + 1), generator=g)
    target = torch.randint(N_SPECIAL, N_SPECIAL + 128, (b, n + 1), generator=g)
    source[:, 0] = target[:, 0] = BOS_ID
    return source, target


@pytest.mark.parametrize("shared", [False, True])
def test_teacher_forcing_equals_cached_steps(shared):
    net = network(shared)
    source, target = pair(3, 12)
    full = net(source, target)
    memory = net.encode(source)
    state, steps = net.new_state(memory), []
    for t in range(target.shape[1]):
        z, state = net.decode(target[:, t: t + 1], memory, None, state)
        steps.append(z)
    assert full.shape == (3, 13, net.config.target_vocab_size + (SOURCE_VOCAB - N_SPECIAL if shared else 0))
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=0, atol=1e-10)
    assert state.length == 13


def test_a_state_branches():
    net = network()
    source, target = pair(1, 6)
    memory = net.encode(source)
    _, state = net.decode(target[:, :4], memory, None, net.new_state(memory))
    a, _ = net.decode(target[:, 4:5], memory, None, state)
    net.decode(target[:, 5:6], memory, None, state)  # another continuation of the same state
    b, _ = net.decode(target[:, 4:5], memory, None, state)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_decoder_is_causal_by_gradient():
    net = network()
    source, target = pair(2, 10)
    captured = {}

    def keep(module, args, out):
        out.retain_grad()
        captured["x"] = out

    hook = net.target_embed.register_forward_hook(keep)
    try:
        t = 5
        net(source, target)[:, t].sum().backward()
    finally:
        hook.remove()
    grad = captured["x"].grad.abs().sum(-1)  # (b, t)
    assert (grad[:, t + 1:] == 0).all()
    assert (grad[:, : t + 1] > 0).all()


def test_source_padding_changes_nothing():
    net = network()
    source, target = pair(1, 9)
    padded = torch.cat([source, torch.full((1, 5), PAD_ID)], 1)
    padding = padded == PAD_ID
    ref = net(source, target)
    got = net(padded, target, source_padding=padding)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-10)
    padded[:, -5:] = 7  # whatever stands under the padding
    torch.testing.assert_close(net(padded, target, source_padding=padding), ref, rtol=0, atol=1e-10)


def test_window_plan_covers_every_note_centrally():
    starts, owner = window_plan(10, 4, 2)
    assert starts.tolist() == [0, 2, 4, 6]
    # note i from the window where min(i - a, a + 3 - i) is largest, the earlier on a tie
    assert starts[owner].tolist() == [0, 0, 0, 2, 2, 4, 4, 6, 6, 6]
    for n in (1, 5, 17, 128, 129, 300):
        starts, owner = window_plan(n, 128, 64)
        a = starts[owner]
        i = np.arange(n)
        assert ((a <= i) & (i < a + 128)).all() and starts[-1] == max(0, n - 128)
        inner = (i >= 32) & (i < n - 32)
        assert (np.minimum(i - a, a + 127 - i)[inner] >= 31).all()


@pytest.mark.parametrize("cache", [True, False])
def test_batched_equals_step_path_over_windows(cache):
    model = VelocityModel(network(), stride=8, use_cache=cache)
    rng = np.random.default_rng(0)
    sources = [rng.integers(N_SPECIAL, SOURCE_VOCAB, n) for n in (40, 7)]
    targets = [rng.integers(N_SPECIAL, N_SPECIAL + 128, len(s)) for s in sources]
    batched = model.distributions(sources, targets)
    for source, target, dist in zip(sources, targets, batched):
        state, rows = model.start(source), []
        for tok in target:
            rows.append(model.predict(state))
            state = model.observe(state, tok)
        np.testing.assert_allclose(np.array(rows), dist, rtol=0, atol=1e-9)
        assert np.allclose(dist.sum(1), 1) and (dist > 0).all()
        assert dist[:, N_SPECIAL:].sum(1).min() > 1 - 1e-8  # all mass on velocities


def test_cached_greedy_equals_uncached():
    net = network(seed=3)
    rng = np.random.default_rng(1)
    sources = [rng.integers(N_SPECIAL, SOURCE_VOCAB, n) for n in (37, 16, 3)]
    cached = VelocityModel(net, stride=8).logits(sources)
    uncached = VelocityModel(net, stride=8, use_cache=False).logits(sources)
    for a, b in zip(cached, uncached):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)
        assert torch.equal(a.argmax(-1), b.argmax(-1))


def test_config_is_validated():
    from notelm.config import SettingsError

    with pytest.raises(SettingsError, match="divisible"):
        VelocityConfig(vocab_size=10, dim=30, n_heads=4)
    with pytest.raises(SettingsError, match="dropout"):
        VelocityConfig(vocab_size=10, dropout=1.5)
    with pytest.raises(SettingsError, match="unknown"):
        VelocityConfig.from_dict({"layers": 3})
    assert VelocityConfig.from_dict(VelocityConfig(vocab_size=9).to_dict()) == VelocityConfig(vocab_size=9)


# ---- the source without velocity (note-tokens velocity_bins=0) -----------------------------------


def _performance():
    from notelm.pieces import Piece

    return Piece(pitch=np.array([42, 60, 64, 67]), onset=np.array([0.0, 0.01, 1.0, 1.2]),
                 duration=np.array([0.1, 0.3, 0.6, 0.2]), velocity=np.array([50, 70, 90, 20]), time_unit="second")


def test_no_velocity_source_drops_only_the_velocity_bin():
    from notelm.encodings import encoding_from_dict, get_encoding

    piece = _performance()
    three = get_encoding("note-tokens").fit([piece])
    none = get_encoding("note-tokens", velocity_bins=0).fit([piece])
    one = get_encoding("note-tokens", velocity_bins=1).fit([piece])
    assert len(three.vocab) == 4 + 128 * 27  # the 3-bin vocabulary is as it was
    assert three.vocab.ids(["42-0-1-0"])[0] == 4 + ((42 * 3 + 0) * 3 + 1) * 3 + 0
    assert len(none.vocab) == 4 + 128 * 9 and none.tokens(piece)[0].count("-") == 2
    assert np.array_equal(none.encode(piece), one.encode(piece))
    assert [t.rsplit("-", 1)[0] for t in three.tokens(piece)] == none.tokens(piece)
    src, tgt = none.encode_pair(piece)
    assert none.target_vocab.tokens(tgt) == ["50", "70", "90", "20"]  # targets stay exact
    assert set(none.decode(src).velocity.tolist()) == {64}
    assert none.decode_pair(src, tgt).velocity.tolist() == [50, 70, 90, 20]
    flat = piece.with_notes(velocity=np.full(4, 100))
    assert np.array_equal(none.encode(flat), none.encode(piece))  # velocities leave no trace
    again = encoding_from_dict(none.to_dict())
    assert np.array_equal(again.encode(piece), src) and again.config.velocity_bins == 0


def test_sampling_is_reproducible_and_greedy_is_temperature_zero():
    model = VelocityModel(network(seed=4), stride=8)
    rng = np.random.default_rng(2)
    sources = [rng.integers(N_SPECIAL, SOURCE_VOCAB, n) for n in (30, 5)]
    a = model.sample_velocities(sources, seed=1)
    b = model.sample_velocities(sources, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(((x >= 0) & (x < 128)).all() and len(x) == len(s) for x, s in zip(a, sources))
    greedy = model.sample_velocities(sources, temperature=0)
    argmax = [z[:, N_SPECIAL:N_SPECIAL + 128].argmax(-1).numpy() for z in model.logits(sources)]
    assert all(np.array_equal(x, y) for x, y in zip(greedy, argmax))


def test_bins_sets_all_three_counts():
    from notelm.config import SettingsError
    from notelm.encodings import encoding_from_dict, get_encoding
    from notelm.training.config import parse_set

    enc = get_encoding("note-tokens", **parse_set(["encoding.bins=5,5,3"])["encoding"])
    assert (enc.config.dstart_bins, enc.config.duration_bins, enc.config.velocity_bins) == (5, 5, 3)
    assert len(enc.vocab) == 4 + 128 * 75
    assert encoding_from_dict(enc.to_dict()).config == enc.config
    with pytest.raises(SettingsError, match="three counts"):
        get_encoding("note-tokens", bins="5,5")


# ---- through the engine: notelm train velocity, open_run, evaluate ---------------------------------


def test_train_evaluate_and_humanize_a_velocity_run(tmp_path):
    import symusic

    from notelm.humanize import humanize
    from notelm.leaderboard import evaluate_run
    from notelm.models.base import ConditionalModel
    from notelm.runs import open_run
    from notelm.training import train

    folder = tmp_path / "midi"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in (0, 1, 2, 4, 5, 6, 3, 8, 11):  # hash splits: p3, p8 valid; p11 test; the rest train
        score = symusic.Score(480)
        track = symusic.Track("piano", 0, False)
        start = np.sort(rng.integers(0, 20000, 60)).astype(np.int32)
        track.notes = symusic.Note.from_numpy(start, rng.integers(50, 600, 60).astype(np.int32),
                                              rng.integers(40, 90, 60).astype(np.int8),
                                              rng.integers(30, 100, 60).astype(np.int8))
        score.tracks.append(track)
        (folder / f"p{i}.mid").write_bytes(bytes(score.dumps_midi()))
    run = train("velocity", out=tmp_path / "run", corpus="folder", root=folder, encoding="note-tokens",
                preset="debug", max_steps=3, overrides=["train.val_every=3", "encoding.velocity_bins=0"],
                progress=False, threads=1)
    model = open_run(run).model()
    assert isinstance(model, ConditionalModel) and model.alphabet_size == 132
    r = evaluate_run(run, corpus="folder", root=folder, split="test")
    assert r["variant"] == "no-velocity" and r["notes"] == 60
    assert r["global_step"] == r["best_step"] == 3  # which step's weights were scored
    assert [row["model"] for row in r["rows"]] == ["run", "mean", "pitch-mean"]
    assert all(0 <= row["mae_teacher_forced"] < 128 for row in r["rows"])
    done, skipped = humanize(folder / "p11.mid", tmp_path / "out.mid", model=run, temperature=0)
    assert done[0].notes == 60 and not skipped


def test_evaluate_names_the_step_of_best_weights():
    from notelm.cli import weights_step

    assert weights_step({"best_step": 4500, "global_step": 6950}) == ", weights of step 4,500 of 6,950"
    assert weights_step({"best_step": 3, "global_step": 3}) == weights_step({"global_step": 3}) == ""


def test_velocity_figures_by_hand():
    from notelm.velocity import velocity_figures

    true = [np.array([60, 70, 80]), np.array([50, 50, 60, 60])]
    flat = [np.full(3, 70.0), np.full(4, 55.0)]
    f = velocity_figures(true, argmax=flat, expected=flat, greedy=flat)
    assert f["mae_teacher_forced"] == pytest.approx((10 + 0 + 10 + 5 * 4) / 7)
    assert f["pearson"] == 0 and f["std_ratio"] == 0  # flat: no correlation, no spread
    half = [np.array([65, 70, 75]), np.array([52.5, 52.5, 57.5, 57.5])]
    f = velocity_figures(true, argmax=true, expected=true, greedy=half)
    assert f["mae_teacher_forced"] == 0 and f["pearson"] == pytest.approx(1) and f["std_ratio"] == pytest.approx(0.5)
    assert f["mae_greedy"] == pytest.approx((5 + 0 + 5 + 2.5 * 4) / 7)


def test_baselines_by_hand():
    from notelm.encodings import get_encoding
    from notelm.velocity import Baselines

    piece = _performance()  # pitches 42 60 64 67, velocities 50 70 90 20
    enc = get_encoding("note-tokens").fit([piece])
    s, t = enc.encode_pair(piece)
    base = Baselines.fit(enc, [s], [t])
    assert base.mean == 57.5 and base.pitch_mean[[42, 60, 64, 67]].tolist() == [50, 70, 90, 20]
    assert base.pitch_mean[10] == 57.5  # an unseen pitch gets the mean
    _, bins = enc.unpack(s)
    for b in range(3):  # each velocity bin's median of the velocities in it
        assert base.bin_median[b] == np.median(np.array([50, 70, 90, 20])[bins[:, 2] == b])
    assert base.figures("pitch-mean", enc, [s], [t])["mae_teacher_forced"] == 0


def test_target_dropout_one_reads_no_velocity():
    torch.manual_seed(0)
    config = VelocityConfig.from_dict({**PRESETS["debug"]["model"], "vocab_size": SOURCE_VOCAB, "target_dropout": 1.0})
    net = Seq2Seq(config).double().eval()
    source, target = pair(2, 10)
    other = target.clone()
    other[:, 1:] = torch.randint(N_SPECIAL, N_SPECIAL + 128, (2, 10))
    torch.testing.assert_close(net(source, target), net(source, other), rtol=0, atol=0)
    model = VelocityModel(net, stride=8)
    rng = np.random.default_rng(5)
    sources = [rng.integers(N_SPECIAL, SOURCE_VOCAB, 30)]
    targets = [rng.integers(N_SPECIAL, N_SPECIAL + 128, 30)]
    forced, free = model.logits(sources, targets)[0], model.logits(sources)[0]
    torch.testing.assert_close(forced, free, rtol=0, atol=1e-9)  # free-running equals teacher forcing


def test_original_loss_is_midi_translations_smoothed_kl():
    """bench_velocity.original_loss: zero for a model that predicts the smoothed target itself,
    log 128 - H(q) for a uniform one (its 2.486 is in these units)."""
    import math
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
    from bench_velocity import original_loss

    class Fixed:  # logits over the specials and the 128 velocities, teacher-forced
        def __init__(self, smoothed: bool) -> None:
            self.smoothed = smoothed

        def logits(self, sources, targets):
            out = []
            for t in targets:
                z = torch.zeros(len(t), N_SPECIAL + 128, dtype=torch.float64)
                if self.smoothed:
                    z[:, N_SPECIAL:] = math.log(0.1 / 127)
                    z[torch.arange(len(t)), torch.as_tensor(t)] = math.log(0.9)
                out.append(z)
            return out

    targets = [np.array([N_SPECIAL, 70, N_SPECIAL + 127]), np.array([50])]
    exact = original_loss(Fixed(True), None, targets)
    assert exact["original_loss"] == pytest.approx(0, abs=1e-12) and exact["nll"] == pytest.approx(-math.log(0.9))
    entropy = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1 / 127))
    uniform = original_loss(Fixed(False), None, targets)
    assert uniform["original_loss"] == pytest.approx(math.log(128) - entropy) and uniform["notes"] == 4
