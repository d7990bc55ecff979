"""The Compressive Transformer and Transformer-XL: one piece read at once, by segments or token by
token gives the same numbers; memories reset per row; the reconstruction loss trains the
compressor and nothing else; no memory is the plain Transformer; predictions never look ahead."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from notelm.config import SettingsError
from notelm.models.compressive import (
    COMPRESSIONS,
    PRESETS,
    CompressiveConfig,
    CompressiveTransformer,
    XLConfig,
)
from notelm.models.transformer import Transformer, TransformerConfig

V = 20
TINY = {"vocab_size": V, "dim": 16, "n_layers": 2, "n_heads": 2, "context": 8, "mem_len": 8, "cmem_len": 8,
        "ratio": 2, "dropout": 0.0}


def network(seed=0, **options) -> CompressiveTransformer:
    torch.manual_seed(seed)
    return CompressiveTransformer(CompressiveConfig(**{**TINY, **options})).double().eval()


def tokens(b=2, t=60, seed=1) -> torch.Tensor:
    return torch.randint(4, V, (b, t), generator=torch.Generator().manual_seed(seed))


def read_in_chunks(net, x, cuts, state=None):
    outs = []
    for a, b in zip(cuts[:-1], cuts[1:]):
        logits, state, _ = net(x[:, a:b], state)
        outs.append(logits)
    return torch.cat(outs, dim=1), state


@pytest.mark.parametrize("options", [{}, {"compression": "dilated", "ratio": 4, "context": 8},
                                     {"memory_layers": (2,), "compression": "max"}, {"cmem_len": 0},
                                     {"mem_len": 0}])
def test_a_piece_at_once_by_segments_and_token_by_token_agree(options):
    net = network(**options)
    x = tokens()  # 60 tokens: 7.5 segments, memories full and compressing from the third on
    with torch.no_grad():
        whole, state, _ = net(x)
        by_token, _ = read_in_chunks(net, x, list(range(61)))
        ragged, _ = read_in_chunks(net, x, [0, 3, 8, 9, 21, 40, 60])
    torch.testing.assert_close(by_token, whole, atol=1e-12, rtol=0)
    torch.testing.assert_close(ragged, whole, atol=1e-12, rtol=0)
    if options.get("cmem_len", 8) and options.get("mem_len", 8):
        assert state.layers[0].cmem.length == 8 if "memory_layers" not in options else state.layers[1].cmem.length == 8


@pytest.mark.parametrize("name", ["compressive", "xl"])
def test_streaming_evaluation_equals_start_predict_observe(name):
    """`notelm evaluate`'s path (whole pieces at once, batched and padded) against the sampler's
    (one token at a time through the model interface), pieces shorter and longer than the span."""
    from notelm.models.neural import neural_model

    model = neural_model(name, network(9, cmem_len=0 if name == "xl" else 8))
    rng = np.random.default_rng(0)
    pieces = [rng.integers(4, V, size=n) for n in (1, 7, 8, 9, 45)]
    fast = model.distributions(pieces)
    for seq, d in zip(pieces, fast):
        state, rows = model.start(), []
        for token in seq:
            rows.append(model.predict(state))
            state = model.observe(state, int(token))
        np.testing.assert_allclose(d, np.array(rows), atol=1e-12, rtol=0)
    branch = model.observe(model.start(pieces[-1][:20]), 5)  # the state it came from stays valid
    np.testing.assert_allclose(model.predict(model.start(pieces[-1][:20])), fast[-1][20], atol=1e-12)
    assert model.predict(branch).shape == (V,)


def test_the_cached_step_path_equals_the_recomputed_one_with_gradients_on():
    net = network(1)
    x = tokens(1, 30)
    with torch.no_grad():
        cached, _ = read_in_chunks(net, x, list(range(31)))
    recomputed, _ = read_in_chunks(net, x, list(range(31)))  # grad enabled: keys recomputed, no KV cache
    torch.testing.assert_close(recomputed.detach(), cached, atol=1e-12, rtol=0)


def test_memories_reach_back_across_segments_as_far_as_their_span():
    net = network(2)
    x = tokens(1, 40)
    y = x.clone()
    y[0, 2] = (x[0, 2] + 1 - 4) % (V - 4) + 4  # change one early token
    with torch.no_grad():
        a, _, _ = net(x)
        b, _, _ = net(y)
    assert (a[0, :2] == b[0, :2]).all()  # before it: the same
    assert not torch.allclose(a[0, 24:], b[0, 24:])  # three segments later, through memory and cmem
    xl = network(2, cmem_len=0)  # without compressed memory the span is segment + memory: 16 tokens
    with torch.no_grad():
        a, _, _ = xl(x)
        b, _, _ = xl(y)
    assert not torch.allclose(a[0, 8:16], b[0, 8:16])
    # layer 1 reaches 16 back, layer 2 over layer 1's memories (XL's stacked span), then no further
    torch.testing.assert_close(a[0, 32:], b[0, 32:], atol=1e-12, rtol=0)


def test_causality_by_gradient():
    """Logits at i depend on inputs 0..i of its segment and on nothing after; earlier segments
    reach it only through memories, which carry no gradient (Dai et al. Eq. 1's SG)."""
    net = network(3)
    emb = net.embed(tokens(1, 24)).detach().requires_grad_(True)
    logits, _, _ = net.body(emb)
    i = 19  # in the third segment (16..23)
    logits[0, i].sum().backward()
    grad = emb.grad[0].abs().sum(dim=-1)
    assert (grad[i + 1:] == 0).all()
    assert (grad[16: i + 1] > 0).all()
    assert (grad[:16] == 0).all()


def test_reset_rows_start_a_new_piece_and_the_others_go_on():
    net = network(4)
    x, fresh = tokens(2, 40, seed=5), tokens(1, 24, seed=6)
    with torch.no_grad():
        _, state, _ = net(x[:, :16])
        state = net.reset(state, torch.tensor([True, False]))
        y = torch.cat([fresh, x[1:, 16:40]], dim=0)
        logits, _, _ = net(y, state)
        alone, _, _ = net(fresh)
        going_on, _, _ = net(x[1:])
    torch.testing.assert_close(logits[0], alone[0], atol=1e-10, rtol=0)
    torch.testing.assert_close(logits[1], going_on[0, 16:], atol=1e-10, rtol=0)


def test_state_survives_its_tensors_mid_segment():
    net = network(5)
    x = tokens(2, 41)
    with torch.no_grad():
        whole, _, _ = net(x)
        _, state, _ = net(x[:, :29])  # mid-segment, memories and compressed memories full
        tensors = net.state_tensors(state)
        assert all(isinstance(t, torch.Tensor) and t.shape[0] == 2 for t in tensors.values())
        rest, _, _ = net(x[:, 29:], net.state_from_tensors({k: t.clone() for k, t in tensors.items()}))
    torch.testing.assert_close(rest, whole[:, 29:], atol=1e-12, rtol=0)
    assert net.state_from_tensors(net.state_tensors(None)) is None


def test_state_tensors_have_one_shape_whatever_the_piece_has_seen():
    """Memories are saved at full size (empty slots in front), so processes whose rows started
    pieces at different times gather them alike; continuing from them changes nothing."""
    net = network(8, mem_len=16, cmem_len=8)
    x = tokens(2, 48)
    with torch.no_grad():
        whole, _, _ = net(x)
        shapes = []
        for cut in (8, 24, 40):  # memory half full; full, nothing compressed yet; compressing
            _, state, _ = net(x[:, :cut])
            tensors = net.state_tensors(state)
            shapes.append({k: tuple(t.shape) for k, t in tensors.items()})
            back = net.state_from_tensors(tensors)
            assert [ls.cmem.length for ls in back.layers] == [ls.cmem.length for ls in state.layers]  # as long as it was
            rest, _, _ = net(x[:, cut:], back)
            torch.testing.assert_close(rest, whole[:, cut:], atol=1e-12, rtol=0)
    assert shapes[0] == shapes[1] == shapes[2]
    assert shapes[0]["layer0.mem"] == (2, 16, 16) and shapes[0]["layer0.cmem_pos"] == (2, 8)


@pytest.mark.parametrize("kind", ["conv", "dilated"])
def test_reconstruction_loss_trains_the_compressors_and_nothing_else(kind):
    net = network(6, compression=kind, ratio=4, context=8).train()
    x = tokens(2, 33)
    _, state, _ = net(x[:, :16])
    logits, _, aux = net(x[:, 16:24], state)  # this segment evicts from a full memory
    main = torch.nn.functional.cross_entropy(logits.reshape(-1, V), x[:, 17:25].reshape(-1))
    assert aux["reconstruction"] > 0
    params = dict(net.named_parameters())

    def grads(loss):
        net.zero_grad(set_to_none=True)
        loss.backward(retain_graph=True)
        return {n for n, p in params.items() if p.grad is not None and bool(p.grad.abs().sum() > 0)}

    from_aux, from_main = grads(aux["reconstruction"]), grads(main)
    assert from_aux and all(".compress." in n for n in from_aux)
    assert from_aux == {n for n in params if ".compress." in n}
    assert not any(".compress." in n for n in from_main)  # compressed memories reach the main loss detached
    assert all(p.requires_grad for p in net.parameters())  # nothing frozen (the library's bug)
    assert {f"blocks.{i}.attn.qkv.weight" for i in (0, 1)} <= from_main


def test_pooling_has_no_reconstruction_loss_and_xl_none_at_all():
    for net in (network(compression="mean").train(), network(cmem_len=0).train()):
        _, _, aux = net(tokens(1, 24))
        assert aux == {}


def test_no_memory_is_the_plain_transformer_on_one_segment():
    t_cfg = {k: TINY[k] for k in ("vocab_size", "dim", "n_layers", "n_heads", "dropout")}
    torch.manual_seed(7)
    plain = Transformer(TransformerConfig(**t_cfg, context=8)).double().eval()
    net = network(mem_len=0, cmem_len=0)
    net.load_state_dict(plain.state_dict())  # the same block layout: every weight has its place
    x = tokens(3, 8)
    with torch.no_grad():
        want, _ = plain(x)
        got, _, _ = net(x)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    full = network()  # with memories, a Transformer's weights load too: only the compressors are extra
    missing, unexpected = full.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all(".compress." in k for k in missing)


def test_compressed_slots_sit_at_the_latest_position_of_their_group():
    net = network(ratio=4, context=8, mem_len=8)
    with torch.no_grad():
        _, state, _ = net(tokens(1, 24))
    assert state.layers[0].mem.pos.tolist() == [list(range(16, 24))]
    assert state.layers[0].cmem.pos.tolist() == [[3, 7, 11, 15]]


def test_presets_and_xl_are_valid_configs():
    for preset in PRESETS.values():
        CompressiveConfig(vocab_size=V, **preset["model"])
    seed = CompressiveConfig(vocab_size=V, **PRESETS["seed"]["model"])
    assert seed.memory_layer_indices == (4, 5) and seed.span == 64 + 64 + 4 * 256
    assert XLConfig(vocab_size=V).cmem_len == 0
    assert CompressiveConfig.from_dict(seed.to_dict()) == seed
    assert set(COMPRESSIONS) == {"conv", "max", "mean", "dilated"}


@pytest.mark.parametrize("options", [{"context": 10, "ratio": 4}, {"memory_layers": (3,)}, {"memory_layers": (1, 1)},
                                     {"compression": "lstm"}, {"compression": "dilated", "ratio": 3, "context": 9,
                                                               "mem_len": 9}, {"dropout": 1.0}, {"mem_len": -1}])
def test_bad_settings_are_one_clear_error(options):
    with pytest.raises(SettingsError):
        CompressiveConfig(**{**TINY, **options})
    with pytest.raises(SettingsError, match="cmem_len must be 0"):
        XLConfig(vocab_size=V, cmem_len=4)


# ---- through the engine: notelm train's segment task ---------------------------------------------


RUN = dict(corpus="essen-kinder", encoding="grid", preset="debug", progress=False, accelerator="cpu", devices=1,
           threads=1)


def test_resume_carries_the_memories_on_exactly(tmp_path):
    """A run stopped mid-piece and resumed trains as one that never stopped, dropout included:
    the carried memories come back from the (safetensors) checkpoint as they were."""
    from safetensors.torch import load_file

    from notelm.training import train

    kw = dict(RUN, overrides=["train.val_every=2", "model.dropout=0.1", "train.batch_size=2"])
    train("compressive", out=tmp_path / "straight", max_steps=4, **kw)
    train("compressive", out=tmp_path / "split", max_steps=2, **kw)
    train("compressive", out=tmp_path / "split", max_steps=4, resume=True, progress=False, accelerator="cpu",
          devices=1, threads=1)
    a, b = load_file(str(tmp_path / "straight" / "model.safetensors")), load_file(str(tmp_path / "split" / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
