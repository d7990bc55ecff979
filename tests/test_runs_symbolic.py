"""Counting models as run directories: what they learned survives a save and a load exactly,
with no pickle; damaged counts are refused; `notelm train ppm|markov|repetition` makes runs
that evaluate, compare and generate like neural ones, and refuses the flags of gradient
training in one line."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import step_path
from notelm.config import SettingsError
from notelm.encodings.vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from notelm.errors import NotelmError
from notelm.models.ppm import NEXT, PPM, SYM, PPMConfig, TrieError, check_trie
from notelm.models.serialize import count_entries, model_arrays
from notelm.models.symbolic import build_counting, model_settings
from notelm.runs import COUNTS, RunError, load_counts, open_run, save_counts
from notelm.training import train

VOCAB = 12  # 4 specials + 8 content tokens: the models see EOS and 8 symbols
SETTINGS = [
    ("ppm", {}),
    ("ppm", {"mode": "ltm+", "order_bound": 3, "escape": "d"}),
    ("ppm", {"mode": "stm"}),
    ("ppm", {"mode": "both+", "update_exclusion": True, "stm_escape": "c", "combine": "arithmetic", "bias": 2}),
    ("markov", {"order": 3}),
    ("markov", {"order": 1, "backoff": False, "alpha": 0.5}),
    ("markov", {"order": 2, "mode": "stm"}),
    ("repetition", {"eps": 0.2}),
]


def notelm(*args, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "notelm", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def pieces(seed: int, n: int = 6) -> list[np.ndarray]:
    """Pieces of content ids 4..11 with repeated motifs, each ended by EOS."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        motif = rng.integers(4, VOCAB, size=rng.integers(2, 6))
        body = np.concatenate([motif if rng.random() < 0.6 else rng.integers(4, VOCAB, size=3) for _ in range(5)])
        out.append(np.r_[body, EOS_ID])
    return out


def trained(name: str, values: dict):
    return build_counting(name, model_settings(name, values, VOCAB)).fit(pieces(0))


# ---- the model over a vocabulary ----------------------------------------------------------------


@pytest.mark.parametrize("name, values", SETTINGS)
def test_distributions_are_proper_and_paths_agree(name, values):
    test = pieces(1, 3)
    d = trained(name, values).distributions(test)
    for p, s in zip(d, test):
        assert p.shape == (len(s), VOCAB) and (p > 0).all()
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
        assert (p[:, [PAD_ID, BOS_ID, UNK_ID]] < 1e-10).all()  # never in a piece: only the floor
    np.testing.assert_allclose(np.concatenate(step_path(trained(name, values), test)), np.concatenate(d), atol=1e-9)
    scores = trained(name, values).score(test)
    np.testing.assert_allclose(np.concatenate(scores),
                               np.concatenate([np.log2(p[np.arange(len(s)), s]) for p, s in zip(d, test)]), atol=1e-6)


def test_tokens_a_piece_cannot_hold_are_refused():
    model = trained("ppm", {})
    with pytest.raises(ValueError, match="token 1"):
        model.score([[4, 5, BOS_ID]])


# ---- counts round trip -----------------------------------------------------------------------


@pytest.mark.parametrize("name, values", SETTINGS)
def test_reloaded_model_predicts_identically(name, values, tmp_path):
    config = model_settings(name, values, VOCAB)
    model = trained(name, values)
    save_counts(model, tmp_path / COUNTS)
    again = load_counts(build_counting(name, config), tmp_path / COUNTS)
    test = pieces(2, 4)
    for a, b in zip(model.distributions(test), again.distributions(test)):
        np.testing.assert_array_equal(a, b)  # bit for bit
    state_a, state_b = model.start([5, 6]), again.start([5, 6])  # the step path too (sampling uses it)
    for token in (7, 5, 6):
        np.testing.assert_array_equal(model.predict(state_a), again.predict(state_b))
        state_a, state_b = model.observe(state_a, token), again.observe(state_b, token)


def test_counts_file_is_plain_arrays(tmp_path):
    from safetensors.numpy import load_file

    model = trained("ppm", {"mode": "both"})
    save_counts(model, tmp_path / COUNTS)
    arrays = load_file(str(tmp_path / COUNTS))
    assert set(arrays) == {"ltm/trie"} and arrays["ltm/trie"].dtype == np.int32
    assert count_entries(model) == len(arrays["ltm/trie"]) - 1 > 0
    assert model_arrays(trained("ppm", {"mode": "stm"})) == {} and model_arrays(trained("repetition", {})) == {}
    markov = model_arrays(trained("markov", {"order": 2}))
    assert sorted(markov) == sorted(f"{w}.{o}.{k}" for w in ("ngrams", "contexts") for o in range(3)
                                    for k in ("keys", "counts"))


def _damage(nodes: np.ndarray, how: str) -> np.ndarray:
    nodes = nodes.copy()
    if how == "pointer":
        nodes[3, NEXT] = len(nodes) + 5
    elif how == "symbol":
        nodes[2, SYM] = 99
    elif how == "loop":
        nodes[1, NEXT] = 1
    elif how == "shape":
        nodes = nodes[:, :5].copy()
    return nodes


@pytest.mark.parametrize("how", ["pointer", "symbol", "loop", "shape"])
def test_damaged_trie_is_refused(how, tmp_path):
    from safetensors.numpy import save_file

    model = trained("ppm", {})
    nodes = model_arrays(model)["trie"]
    check_trie(nodes, model.model.alphabet_size)  # the real one passes
    save_file({"trie": _damage(nodes, how)}, str(tmp_path / COUNTS))
    with pytest.raises(RunError, match="trie"):
        load_counts(build_counting("ppm", model_settings("ppm", {}, VOCAB)), tmp_path / COUNTS)
    with pytest.raises(TrieError):
        check_trie(_damage(nodes, how), model.model.alphabet_size)


def test_wrong_or_corrupt_counts_are_refused(tmp_path):
    save_counts(trained("markov", {"order": 1}), tmp_path / COUNTS)
    with pytest.raises(RunError, match="do not fit"):
        load_counts(build_counting("markov", model_settings("markov", {"order": 2}, VOCAB)), tmp_path / COUNTS)
    (tmp_path / COUNTS).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(RunError, match="cannot read the counts"):
        load_counts(build_counting("markov", model_settings("markov", {"order": 1}, VOCAB)), tmp_path / COUNTS)


# ---- settings ----------------------------------------------------------------------------------


def test_ppm_settings_resolve_as_idyom_does():
    both = model_settings("ppm", {"mode": "both", "order_bound": 4, "stm_escape": "c"})
    assert both["ltm"] == {**PPMConfig.idyom_ltm().to_dict(), "order_bound": 4}
    assert both["stm"] == {**PPMConfig.idyom_stm().to_dict(), "order_bound": 4, "escape": "c"}
    assert both["combine"] == {"method": "geometric", "bias": 7.0}
    assert model_settings("ppm", {"mode": "stm"}) == {"mode": "stm", "stm": PPMConfig.idyom_stm().to_dict()}
    assert set(model_settings("ppm", {})) == {"mode", "ltm"}


@pytest.mark.parametrize("name, values, message", [
    ("ppm", {"mode": "lt"}, "model.mode"),
    ("ppm", {"escape": "z"}, "escape must be one of"),
    ("ppm", {"bias": 2}, "model.bias"),
    ("ppm", {"stm_escape": "c"}, r"stm_\* keys need an STM"),
    ("ppm", {"mode": "both", "combine": "median"}, "model.combine"),
    ("markov", {"order": -1}, "order must be"),
    ("markov", {"ordr": 2}, "model.ordr"),
    ("markov", {"mode": "both"}, "model.mode"),
    ("repetition", {"eps": 1.5}, "eps"),
    ("ppm", {"vocab_size": 3}, "comes from the encoding"),
])
def test_bad_settings_are_one_settings_error(name, values, message):
    with pytest.raises(SettingsError, match=message):
        model_settings(name, values)


def test_a_stm_learns_nothing_from_the_corpus():
    config = model_settings("ppm", {"mode": "stm"}, VOCAB)
    test = pieces(3, 2)
    fitted = build_counting("ppm", config).fit(pieces(0))
    fresh = build_counting("ppm", config)
    for a, b in zip(fitted.distributions(test), fresh.distributions(test)):
        np.testing.assert_array_equal(a, b)
    direct = PPM(alphabet_size=VOCAB - 3, config=PPMConfig.idyom_stm(), mode="stm")
    np.testing.assert_allclose(fresh.score(test)[0], direct.score([fresh.symbols(test[0])])[0], atol=1e-9)


# ---- notelm train ppm|markov|repetition ---------------------------------------------------------


@pytest.fixture(scope="module")
def ppm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("counting") / "ppm"
    train("ppm", out=out, corpus="essen-kinder", encoding="grid", progress=False,
          overrides=["model.mode=both+", "model.order_bound=5"])
    return out


def test_ppm_run_directory(ppm_run):
    for name in ("config.json", "encoding.json", "counts.safetensors", "metrics.json", "README.md",
                 "data/train.npy", "data/valid-offsets.npy"):
        assert (ppm_run / name).is_file(), name
    config = json.loads((ppm_run / "config.json").read_text())
    assert {"format", "notelm_version", "model", "encoding", "data"} <= set(config) and "train" not in config
    assert config["model"]["name"] == "ppm" and config["model"]["config"]["mode"] == "both+"
    assert config["model"]["config"]["ltm"]["order_bound"] == 5 and config["encoding"]["name"] == "grid"
    metrics = json.loads((ppm_run / "metrics.json").read_text())
    assert 0 < metrics["valid_bits_per_event"] < 6 and metrics["counts"] > 100
    assert metrics["best_val_loss"] == pytest.approx(metrics["valid_bits_per_event"] * np.log(2))
    assert "ppm on essen-kinder" in (ppm_run / "README.md").read_text()


def test_loading_a_run_never_unpickles(ppm_run, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("something was unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    run = open_run(ppm_run)
    assert run.counting and run.model().score([[EOS_ID]])[0].shape == (1,)


def test_run_model_equals_the_model_built_in_memory(ppm_run):
    """The saved run predicts exactly as the model counted from the same data in memory."""
    from notelm.training.data import TokenArray

    run = open_run(ppm_run)
    data = TokenArray(ppm_run / "data", "train")
    in_memory = build_counting("ppm", run.config["model"]["config"]).fit([data.piece(i) for i in range(len(data))])
    valid = TokenArray(ppm_run / "data", "valid")
    test = [valid.piece(i) for i in range(3)]
    for a, b in zip(in_memory.distributions(test), run.model().distributions(test)):
        np.testing.assert_array_equal(a, b)


def test_other_run_format_is_refused_in_one_line(ppm_run, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(ppm_run, old)
    config = json.loads((old / "config.json").read_text())
    config["format"] = 99
    (old / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match="run format 99"):
        open_run(old)
    r = notelm("generate", old, "--out", tmp_path / "x.mid")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "retrain it" in r.stderr


def test_cli_evaluate_and_compare(ppm_run, tmp_path):
    r = notelm("evaluate", ppm_run, "--corpus", "essen-kinder", "--split", "test", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["model"] == "ppm" and result["mode"] == "both+" and result["events"] > 1000
    assert 0 < result["bits_per_event"] < 6 and 0 < result["accuracy"] <= 1
    png = tmp_path / "board.png"
    rows = json.loads(notelm("compare", ppm_run, ppm_run, "--corpus", "essen-kinder", "--png", png, "--json").stdout)
    assert rows[0]["bits_per_event"] == rows[1]["bits_per_event"] == result["bits_per_event"] and png.is_file()


def test_cli_generate_midi(ppm_run, tmp_path):
    mido = pytest.importorskip("mido")
    mid, png = tmp_path / "g.mid", tmp_path / "g.png"
    r = notelm("generate", ppm_run, "--length", "64", "--seed", "1", "--out", mid, "--png", png, "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    notes = [m for track in mido.MidiFile(mid).tracks for m in track if m.type == "note_on" and m.velocity > 0]
    assert len(notes) == result["notes"] > 0 and png.stat().st_size > 1000
    again = notelm("generate", ppm_run, "--length", "64", "--seed", "1", "--out", mid)
    assert again.returncode == 1 and "--force" in again.stderr


def test_stm_run_on_dstm_frames(tmp_path):
    out = tmp_path / "stm"
    train("markov", out=tmp_path / "markov", corpus="essen-kinder", encoding="dstm-frames", overrides=["model.order=2"])
    r = notelm("train", "ppm", "--corpus", "essen-kinder", "--encoding", "dstm-frames", "--set", "model.mode=stm",
               "--out", out)
    assert r.returncode == 0, r.stderr
    assert "learns nothing from the corpus" in " ".join(r.stdout.split())
    from safetensors.numpy import load_file

    assert load_file(str(out / COUNTS)) == {}
    run = open_run(out)
    assert run.config["model"]["config"]["stm"]["escape"] == "ax" and run.model().alphabet_size == 53
    rows = json.loads(notelm("compare", out, tmp_path / "markov", "--corpus", "essen-kinder", "--json").stdout)
    assert {row["model"] for row in rows} == {"ppm", "markov"}
    uniform = np.log2(53 - 3)  # the tokens a piece can hold
    assert all(0 < row["bits_per_event"] < uniform - 2 for row in rows)  # far better than guessing
    assert rows[0]["bits_per_event"] <= rows[1]["bits_per_event"]  # best first


@pytest.mark.parametrize("args, message", [
    (["train", "ppm", "--corpus", "essen-kinder", "--max-steps", "5", "--out", "{tmp}/x"], "--max-steps: for neural models only"),
    (["train", "markov", "--corpus", "essen-kinder", "--devices", "2", "--precision", "16-mixed", "--out", "{tmp}/x"],
     "--devices, --precision: for neural models only"),
    (["train", "ppm", "--corpus", "essen-kinder", "--resume", "--out", "{tmp}/x"], "--resume"),
    (["train", "ppm", "--corpus", "essen-kinder", "--set", "train.lr=0.1", "--out", "{tmp}/x"], "no train.* settings"),
    (["train", "ppm", "--corpus", "essen-kinder", "--set", "model.escape=q", "--out", "{tmp}/x"], "escape must be"),
    (["train", "gru", "--corpus", "essen-kinder", "--out", "{tmp}/x"], "unknown model 'gru'"),
])
def test_cli_bad_input_is_one_line(args, message, tmp_path):
    r = notelm(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert r.returncode == 1 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert not (tmp_path / "x").exists()


def test_used_directory_is_refused_and_a_failed_run_leaves_nothing(ppm_run, tmp_path):
    with pytest.raises(NotelmError, match="not empty"):
        train("ppm", out=ppm_run, corpus="essen-kinder", encoding="grid")
    with pytest.raises(SettingsError, match="62 bits"):  # found only once the vocabulary is known
        train("markov", out=tmp_path / "big", corpus="essen-kinder", encoding="grid", overrides=["model.order=40"])
    assert not (tmp_path / "big").exists()
    assert Path(ppm_run / "counts.safetensors").is_file()
