"""A run as IDyOM's long-term model of pitch (models/pitch.py), and the leak filter that keeps
the kinder songs out of its training data (corpora.drop_copies)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from notelm.corpora import copies_of, drop_copies, load_corpus
from notelm.encodings import get_encoding
from notelm.models.base import SequenceModel
from notelm.models.neural import build_neural
from notelm.models.pitch import RunPitchModel
from notelm.pieces import Piece, PieceMeta
from notelm.viewpoints import Alphabets

SETTINGS = [("melody-events", {"pitch": "cpitch"}), ("melody-events", {"pitch": "cpint"}), ("melody", {})]


def tunes(seed=0, n=4):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(3, 12))
        dur = rng.choice([0.5, 1.0, 1.5], size=k)
        rest = rng.choice([0.0, 0.0, 0.5], size=k)
        onset = np.r_[0.0, np.cumsum(dur + rest)[:-1]]
        out.append(Piece(pitch=rng.integers(60, 72, size=k), onset=onset, duration=dur,
                         meta=PieceMeta(id=f"t{i}", title=f"tune {i}")))
    return out


def pitch_model(name, settings, pieces, seed=0):
    enc = get_encoding(name, **settings).fit(pieces)
    torch.manual_seed(seed)
    net = build_neural("lstm", alphabet_size=len(enc.vocab),
                       config={"embed_dim": 8, "hidden": 8, "layers": 1, "dropout": 0.0, "context": 16})
    alphabets = Alphabets.from_melodies(pieces)
    return RunPitchModel(net, enc, alphabets), [alphabets.melody(p) for p in pieces]


@pytest.mark.parametrize("name, settings", SETTINGS)
def test_batched_distributions_equal_the_step_path_and_are_proper(name, settings):
    model, melodies = pitch_model(name, settings, tunes())
    for fast, m in zip(model.distributions(melodies), melodies):
        assert fast.shape == (len(m), model.alphabet_size) and np.allclose(fast.sum(axis=1), 1) and (fast > 0).all()
        state, rows = model.start(timing=m), []
        for token in m:
            rows.append(model.predict(state))
            state = model.observe(state, token)
        np.testing.assert_allclose(fast, np.array(rows), atol=1e-9)


@pytest.mark.parametrize("name, settings", SETTINGS)
def test_a_notes_pitch_is_predicted_from_the_notes_before_it_alone(name, settings):
    """IDyOM sums over the note's own duration and ioi: changing them changes nothing before
    the next note, and changing an earlier note's timing does reach it."""
    pieces = tunes(1)
    model, melodies = pitch_model(name, settings, pieces)
    m = melodies[0]
    k = 2
    for change in ("dur", "onset"):
        values = getattr(m, change).copy()
        if change == "dur":
            values[k] = values[k] * 2
        else:
            values[k:] += 2520  # a rest of half a beat before note k
        other = replace(m, **{change: values})
        before, after = model.distributions([m])[0], model.distributions([other])[0]
        np.testing.assert_allclose(before[: k + 1], after[: k + 1], atol=1e-12)
        assert not np.allclose(before[k + 1], after[k + 1])


class Fixed(SequenceModel):
    """The same distribution before every token."""

    def __init__(self, p):
        self.p, self.alphabet_size = np.asarray(p, float), len(p)

    def start(self, primer=()):
        return None

    def predict(self, state):
        return self.p

    def observe(self, state, token):
        return None


def test_linked_tokens_are_marginalised_by_summing_over_duration_and_ioi():
    piece = Piece(pitch=np.array([60, 62, 60, 64]), onset=np.array([0.0, 1.0, 1.5, 2.0]),
                  duration=np.array([1.0, 0.5, 0.5, 1.0]))
    enc = get_encoding("melody").fit([piece])  # tokens 60|1|0, 62|1/2|1, 60|1/2|1/2, 64|1|1/2
    p = np.zeros(len(enc.vocab))
    for token, mass in {"60|1|0": 0.1, "60|1/2|1/2": 0.3, "62|1/2|1": 0.2, "64|1|1/2": 0.2}.items():
        p[enc.vocab.id(token)] = mass
    p[2] = 0.2  # EOS: not a pitch, dropped and renormalised away
    alphabets = Alphabets.from_melodies([piece])
    model = RunPitchModel(Fixed(p), enc, alphabets)
    d = model.distributions([alphabets.melody(piece)])[0]
    np.testing.assert_allclose(d[0], [0.4 / 0.8, 0.2 / 0.8, 0.2 / 0.8])


def test_a_run_of_another_encoding_is_refused():
    from notelm.errors import NotelmError

    with pytest.raises(NotelmError, match="melody-events or melody"):
        RunPitchModel(Fixed([1.0]), get_encoding("grid"), Alphabets.from_melodies(tunes()))


# ---- the leak filter ----------------------------------------------------------------------------


def test_the_leak_filter_removes_an_injected_copy_of_a_kinder_song():
    kinder = load_corpus("essen-kinder").pieces
    others = load_corpus("essen-fink").pieces[:60]
    song = next(p for p in kinder if len(p.melody()) > 20)
    retitled = replace(song.transpose(3), meta=replace(song.meta, id="copy-1", title="Ein ganz anderer Titel"))
    same_title = replace(others[0], meta=replace(others[0].meta, id="copy-2", title=song.meta.title.lower() + " (2)"))
    training = [*others[1:30], retitled, *others[30:], same_title]
    kept, dropped = drop_copies(training, kinder)
    assert {d["id"]: d["reason"] for d in dropped if d["id"].startswith("copy")} == {"copy-1": "opening", "copy-2": "title"}
    assert all(p.meta.id not in ("copy-1", "copy-2") for p in kept)
    assert len(kept) + len(dropped) == len(training)
    assert copies_of(kinder[:5], kinder) == ["title"] * 5  # a song is a copy of itself


def test_a_corpus_that_excludes_kinder_drops_its_songs_and_their_copies(monkeypatch):
    """essen-without-kinder's mechanism on fink + kinder itself (all of Essen takes a minute to
    parse into a fresh cache): every kinder song and fink's copies of them are left out, listed."""
    from notelm import corpora

    spec = corpora.get_spec("essen-without-kinder")
    assert spec.excludes == "essen-kinder" and spec.fractions[2] == 0
    assert not {f.name for f in spec.files(None)} & {f.name for f in corpora.get_spec("essen-kinder").files(None)}
    files = corpora.get_spec("essen-fink").files(None) + corpora.get_spec("essen-kinder").files(None)
    test_spec = replace(spec, name="fink-and-kinder-without-kinder", files=lambda root: files)
    real = corpora.get_spec
    monkeypatch.setattr(corpora, "get_spec", lambda name: test_spec if name == test_spec.name else real(name))
    c = load_corpus(test_spec.name)
    kinder = load_corpus("essen-kinder").pieces
    assert not {p.meta.id for p in kinder} & {p.meta.id for p in c.pieces}
    excluded = {d["id"]: d["reason"] for d in c.excluded}
    assert len(excluded) == 213 + 3 and {excluded[i] for i in ("fink0#62", "fink0#63", "fink0#444")} == {"title"}
    assert set(c.splits) == {"train", "valid"}  # its test set is kinder


# ---- notelm idyom --ltm RUN ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def fink_run(tmp_path_factory):
    """A (barely) trained melody-events LSTM on essen-fink: no kinder song in it."""
    from notelm.training import train

    out = tmp_path_factory.mktemp("runs") / "fink-lstm"
    train("lstm", out=out, corpus="essen-fink", encoding="melody-events", preset="debug", max_steps=2,
          overrides=["train.val_every=2"], progress=False, accelerator="cpu", devices=1, threads=1)
    return out


def idyom_cli(*args):
    from typer.testing import CliRunner

    from notelm.cli import app

    return CliRunner().invoke(app, ["idyom", "essen-kinder", *args])


def test_idyom_ltm_run_is_the_runs_pitch_model_and_combines_with_idyoms_stm(fink_run):
    import json

    from notelm.idyom import build_system, run_pitch_model
    from notelm.models.combine import CombineConfig, combine, mean_ic
    from notelm.models.mvs import MultipleViewpointModel

    melodies, coders = build_system(load_corpus("essen-kinder").melodies(), "cpitch")
    neural = run_pitch_model(fink_run, coders[0].alphabets, "essen-kinder")[0].distributions(melodies)
    stm = MultipleViewpointModel(coders=coders, kind="stm").distributions(melodies)
    alone = idyom_cli("--ltm", str(fink_run), "--models", "ltm", "--json")
    assert alone.exit_code == 0, alone.output
    summary = json.loads(alone.stdout)
    assert (summary["pieces"], summary["events"], summary["folds"]) == (213, 8393, None)
    assert summary["ltm_run"]["trained_on"] == "essen-fink"
    assert summary["mean_ic_per_piece"] == pytest.approx(mean_ic(neural, melodies), abs=1e-9)
    both = json.loads(idyom_cli("--ltm", str(fink_run), "--models", "both", "--combine", "arithmetic",
                                "--bias", "2", "--json").stdout)
    by_hand = [combine([n, s], CombineConfig("arithmetic", 2.0)) for n, s in zip(neural, stm)]
    assert both["mean_ic_per_piece"] == pytest.approx(mean_ic(by_hand, melodies), abs=1e-9)


def test_idyom_refuses_a_run_that_saw_the_corpus_and_misplaced_runs_in_one_line(fink_run, tmp_path):
    import json
    import shutil

    saw = tmp_path / "saw-kinder"
    shutil.copytree(fink_run, saw)
    config = json.loads((saw / "config.json").read_text())
    config["data"]["corpus"] = "essen"  # all of Essen holds kinder0.abc
    (saw / "config.json").write_text(json.dumps(config))
    for args, message in [(["--ltm", str(saw), "--models", "ltm"], "must not have seen them"),
                          (["--ltm", str(fink_run), "--models", "stm"], "--ltm replaces the long-term model"),
                          (["--stm", str(fink_run), "--models", "ltm"], "--stm replaces the short-term model"),
                          (["--ltm", str(tmp_path / "none"), "--models", "ltm"], "no such run directory")]:
        r = idyom_cli(*args)
        assert r.exit_code != 0 and message in str(r.exception), (args, r.output)
