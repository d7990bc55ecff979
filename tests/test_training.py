"""Training end to end on a tiny corpus and tiny networks: run directories round-trip, a
resumed run continues exactly, two DDP processes match one, and the CLI's train / evaluate /
generate work and fail with one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from notelm.errors import NotelmError
from notelm.models.neural import build_network
from notelm.runs import RunError, load_weights, open_run, save_weights
from notelm.training import SettingsError, train
from notelm.training.checkpoints import read_checkpoint
from notelm.training.config import TrainConfig, parse_set, read_config_file
from notelm.training.schedules import schedule

TINY = dict(corpus="essen-kinder", encoding="grid", preset="debug", progress=False, accelerator="cpu", devices=1,
            threads=1)


def notelm(*args, cwd=None, timeout=300):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "notelm", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def weights(run: Path) -> dict:
    return load_file(str(run / "model.safetensors"))


# ---- settings -----------------------------------------------------------------------------------


def test_set_pairs_are_parsed_as_yaml_scalars():
    assert parse_set(["model.dim=64", "train.lr=3e-4", "encoding.transpose=true", "train.grad_clip=null"]) == {
        "model": {"dim": 64}, "train": {"lr": 3e-4, "grad_clip": None}, "encoding": {"transpose": True}}
    with pytest.raises(SettingsError, match="section.key=value"):
        parse_set(["dim=64"])
    with pytest.raises(SettingsError, match="unknown section 'optim'"):
        parse_set(["optim.lr=1"])


def test_config_file_sections(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  dim: 32\ntrain:\n  lr: 0.01\n")
    assert read_config_file(path) == {"model": {"dim": 32}, "train": {"lr": 0.01}}
    path.write_text("modle:\n  dim: 32\n")
    with pytest.raises(SettingsError, match="config.modle"):
        read_config_file(path)


def test_train_config_refuses_bad_values():
    with pytest.raises(SettingsError, match="train.schedule"):
        TrainConfig(schedule="linear")
    with pytest.raises(SettingsError, match="train.unknown"):
        TrainConfig.from_dict({"unknown": 1})


def test_schedules():
    cos = schedule("cosine", warmup=10, total=110, min_ratio=0.1, dim=64)
    assert cos(0) == pytest.approx(0.1) and cos(9) == pytest.approx(1.0) and cos(109) == pytest.approx(0.1)
    noam = schedule("noam", warmup=100, total=0, min_ratio=0, dim=64)
    peak = noam(99)
    assert peak == pytest.approx(64 ** -0.5 * 100 ** -0.5)
    assert noam(49) < peak and noam(399) == pytest.approx(peak / 2)
    assert schedule("constant", warmup=0, total=0, min_ratio=0, dim=1)(5) == 1.0


# ---- run directories ----------------------------------------------------------------------------


def test_weights_round_trip_with_tied_embeddings(tmp_path):
    torch.manual_seed(0)
    cfg = {"dim": 16, "n_layers": 2, "n_heads": 2, "context": 16, "dropout": 0.0, "vocab_size": 20}
    a = build_network("transformer", cfg).eval()
    save_weights(a, tmp_path / "w.safetensors")
    torch.manual_seed(1)
    b = build_network("transformer", cfg).eval()
    load_weights(b, tmp_path / "w.safetensors")
    x = torch.randint(4, 20, (2, 10))
    torch.testing.assert_close(a(x)[0], b(x)[0], atol=0, rtol=0)
    assert b.head.weight is b.embed.weight


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "lstm"
    train("lstm", out=out, max_steps=6, overrides=["train.val_every=3"], **TINY)
    return out


def test_run_directory_holds_the_artifacts(tiny_run):
    for name in ("config.json", "encoding.json", "model.safetensors", "metrics.json", "README.md",
                 "checkpoints/last.safetensors", "checkpoints/best.safetensors", "data/train.npy", "data/valid-offsets.npy",
                 "logs/csv/metrics.csv"):
        assert (tiny_run / name).is_file(), name
    assert list((tiny_run / "logs" / "tensorboard").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (tiny_run / "checkpoints").iterdir()) == ["best.safetensors", "last.safetensors"]  # no temp files
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["global_step"] == 6 and [h["step"] for h in metrics["val_history"]] == [3, 6]
    assert metrics["best_val_loss"] == min(h["val_loss"] for h in metrics["val_history"])
    best = read_checkpoint(tiny_run / "checkpoints" / "best.safetensors")  # tensors and JSON, no pickle
    assert best["global_step"] == metrics["best_step"]
    saved = weights(tiny_run)  # the best checkpoint holds the weights of model.safetensors
    state = {k.removeprefix("network."): v for k, v in best["state_dict"].items()}
    assert set(saved) <= set(state)
    for k, v in saved.items():
        torch.testing.assert_close(state[k], v, atol=0, rtol=0)
    assert "lstm on essen-kinder" in (tiny_run / "README.md").read_text()


def test_best_checkpoint_of_a_final_validation(tmp_path):
    """The last steps are validated after fit (5 is no multiple of 3); when that validation is
    the best, best.safetensors is the final checkpoint."""
    out = tmp_path / "run"
    train("lstm", out=out, max_steps=5, overrides=["train.val_every=3", "train.lr=0.01"], **TINY)
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["step"] for h in metrics["val_history"]] == [3, 5]
    best = read_checkpoint(out / "checkpoints" / "best.safetensors")
    assert best["global_step"] == metrics["best_step"]


def test_loaded_run_scores_like_its_network(tiny_run):
    run = open_run(tiny_run)
    model = run.model()
    net = build_network("lstm", run.config["model"]["config"])
    load_weights(net, tiny_run / "model.safetensors")
    seq = np.array([10, 11, 11, 12, 2])
    with torch.no_grad():
        logits, _ = net.double().eval()(torch.tensor([[1, *seq[:-1]]]), None)
    # the adapter's softmax is over the allowed tokens (EOS and the content tokens)
    allowed = [2, *range(4, logits.shape[-1])]
    direct = torch.log_softmax(logits[0][:, allowed], -1)
    expected = direct[np.arange(len(seq)), [allowed.index(t) for t in seq]].numpy() / np.log(2)
    np.testing.assert_allclose(model.score([seq])[0], expected, atol=1e-8)  # FLOOR is 1e-10


def test_incompatible_run_is_refused_in_one_line(tiny_run, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(tiny_run, old)
    config = json.loads((old / "config.json").read_text())
    config["format"], config["notelm_version"] = 0, "0.0.1"
    (old / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match="run format 0"):
        open_run(old)
    r = notelm("evaluate", old, "--corpus", "essen-kinder")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "retrain it" in r.stderr


def test_resume_continues_exactly(tmp_path):
    kw = dict(TINY, overrides=["train.val_every=4", "model.dropout=0.1"])
    train("lstm", out=tmp_path / "straight", max_steps=8, **kw)
    train("lstm", out=tmp_path / "split", max_steps=4, **kw)
    train("lstm", out=tmp_path / "split", max_steps=8, resume=True, progress=False, accelerator="cpu", devices=1)
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-6, rtol=0)
    ha = json.loads((tmp_path / "straight" / "metrics.json").read_text())["val_history"]
    hb = json.loads((tmp_path / "split" / "metrics.json").read_text())["val_history"]
    assert [h["step"] for h in ha] == [h["step"] for h in hb] == [4, 8]
    np.testing.assert_allclose([h["val_loss"] for h in ha], [h["val_loss"] for h in hb], rtol=1e-6)


def test_resume_needs_a_run_made_by_train(tmp_path):
    with pytest.raises(RunError, match="not a run directory"):
        train("lstm", out=tmp_path, resume=True, progress=False)


def test_ddp_two_cpu_processes_match_one(tmp_path):
    """Lightning DDP with gloo on 2 CPU processes: each takes half of every batch; the
    gradients are averaged, so the run matches one process with the whole batch."""
    common = ["train", "lstm", "--corpus", "essen-kinder", "--preset", "debug", "--max-steps", "4",
              "--set", "train.val_every=2", "--accelerator", "cpu", "--quiet", "--threads", "1"]
    one = notelm(*common, "--devices", "1", "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    two = notelm(*common, "--devices", "2", "--strategy", "ddp", "--out", tmp_path / "two", timeout=180)
    assert two.returncode == 0, two.stderr
    assert_runs_match(tmp_path / "one", tmp_path / "two")


def assert_runs_match(one, two, steps=None):
    """Two runs of the same training (one process and DDP): the same validation losses (at
    ``steps``, when given) and the same weights but for a few."""
    ha = json.loads((one / "metrics.json").read_text())["val_history"]
    hb = json.loads((two / "metrics.json").read_text())["val_history"]
    if steps is not None:
        assert [h["step"] for h in ha] == [h["step"] for h in hb] == steps
    np.testing.assert_allclose([h["val_loss"] for h in ha], [h["val_loss"] for h in hb], rtol=1e-4)
    a, b = weights(one), weights(two)
    for k in a:
        # float32 sums in another order: Adam divides by the gradient's own size, so where a
        # gradient is almost zero its rounding can flip a step (up to lr); a few such weights
        # differ, the rest agree. Half-batch gradients (no averaging) would move them all.
        diff = (a[k] - b[k]).abs()
        assert (diff > 2e-3).float().mean() < 0.01, (k, diff.max())
        assert diff.mean() < 1e-4


def test_ddp_segments_two_processes_match_one_and_resume(tmp_path):
    """The segment task under DDP: each process streams half of the rows of every batch with
    their memories; the run matches one process, and its checkpoint (the memories of every
    row, gathered) resumes exactly as a straight run continues."""
    common = ["train", "compressive", "--corpus", "essen-kinder", "--encoding", "grid", "--preset", "debug",
              "--set", "train.val_every=2", "--accelerator", "cpu", "--quiet", "--threads", "1"]
    one = notelm(*common, "--max-steps", "4", "--devices", "1", "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    two = notelm(*common, "--max-steps", "2", "--devices", "2", "--strategy", "ddp", "--out", tmp_path / "two",
                 timeout=180)
    assert two.returncode == 0, two.stderr
    assert "deprecated" not in two.stderr
    more = notelm("train", "compressive", "--out", tmp_path / "two", "--resume", "--max-steps", "4", "--devices", "2",
                  "--strategy", "ddp", "--accelerator", "cpu", "--quiet", "--threads", "1", timeout=180)
    assert more.returncode == 0, more.stderr
    assert_runs_match(tmp_path / "one", tmp_path / "two", steps=[2, 4])


# ---- the command line ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "tf"
    r = notelm("train", "transformer", "--corpus", "essen-kinder", "--encoding", "grid", "--preset", "debug",
               "--max-steps", "40", "--set", "train.val_every=40", "--out", out, "--quiet", "--threads", "1")
    assert r.returncode == 0, r.stderr
    return out


def test_cli_evaluate_json(cli_run):
    r = notelm("evaluate", cli_run, "--corpus", "essen-kinder", "--split", "test", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert {"bits_per_event", "accuracy", "events"} <= set(result)
    uniform = np.log2(134 - 3)  # the grid's tokens a model may emit
    assert result["events"] > 1000 and 0 < result["bits_per_event"] < uniform - 3, result  # it learned
    assert 0.3 < result["accuracy"] <= 1


def test_cli_generate_midi_png_wav(cli_run, tmp_path):
    from notelm.io import read

    mid, png, wav = tmp_path / "g.mid", tmp_path / "g.png", tmp_path / "g.wav"
    r = notelm("generate", cli_run, "--length", "48", "--seed", "3", "--temperature", "0.8", "--out", mid,
               "--png", png, "--wav", wav, "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["tokens"] <= 48 and png.stat().st_size > 1000 and wav.stat().st_size > 1000
    piece = read(mid)[0]
    assert len(piece) == result["notes"]
    again = notelm("generate", cli_run, "--length", "48", "--seed", "3", "--temperature", "0.8", "--out", mid)
    assert again.returncode == 1 and "--force" in again.stderr  # never overwrites silently


def test_cli_compare_writes_a_chart(cli_run, tmp_path):
    png = tmp_path / "board.png"
    baseline = tmp_path / "repetition"
    assert notelm("train", "repetition", "--corpus", "essen-kinder", "--encoding", "grid", "--out", baseline).returncode == 0
    r = notelm("compare", baseline, cli_run, "--corpus", "essen-kinder", "--png", png, "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    alone = {Path(row["run"]).name: json.loads(notelm("evaluate", row["run"], "--corpus", "essen-kinder",
                                                       "--json").stdout)["bits_per_event"] for row in rows}
    assert [Path(row["run"]).name for row in rows] == sorted(alone, key=alone.get)  # best first
    assert all(row["bits_per_event"] == alone[Path(row["run"]).name] for row in rows)  # each row its own figure
    assert rows[0]["bits_per_event"] < rows[1]["bits_per_event"] and png.stat().st_size > 1000


@pytest.mark.parametrize("args, message", [
    (["train", "gru", "--corpus", "essen-kinder", "--out", "{tmp}/x"], "unknown model 'gru'"),
    (["train", "lstm", "--corpus", "essen-kinder", "--set", "model.width=3", "--out", "{tmp}/x"], "model.width"),
    (["train", "lstm", "--corpus", "essen-kinder", "--set", "train.lr=-1", "--out", "{tmp}/x"], "train.lr"),
    (["train", "lstm", "--corpus", "essen-kinder", "--preset", "huge", "--out", "{tmp}/x"], "unknown preset"),
    (["evaluate", "{tmp}/nothing", "--corpus", "essen-kinder"], "no such run directory"),
    (["generate", "{tmp}/nothing", "--out", "{tmp}/x.mid"], "no such run directory"),
    (["generate", "{tmp}/nothing", "--out", "{tmp}/x.mid", "--top-p", "2"], "top-p"),
    (["train", "velocity", "--corpus", "maestro-sample", "--encoding", "note-tokens", "--preset", "debug",
      "--out", "{tmp}/x"], "maestro-sample: its train split has no pieces"),  # test performances only
])
def test_cli_bad_input_is_one_line(args, message, tmp_path):
    r = notelm(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert r.returncode != 0 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr


def test_train_refuses_a_used_directory(tiny_run):
    with pytest.raises(NotelmError, match="--resume"):
        train("lstm", out=tiny_run, max_steps=2, **TINY)


# ---- windows ------------------------------------------------------------------------------------


@pytest.fixture()
def token_array(tmp_path):
    from notelm.training.data import TokenArray, write_split

    rng = np.random.default_rng(0)
    pieces = [np.r_[rng.integers(4, 30, size=n), 2] for n in (3, 10, 40, 7, 25)]
    write_split(tmp_path, "train", pieces, 30)
    return TokenArray(tmp_path, "train"), pieces


def test_random_windows_are_a_function_of_the_batch_number(token_array):
    from notelm.training.data import RandomWindows

    data, _ = token_array
    one = RandomWindows(data, length=8, batch_size=4, seed=1, batches_per_epoch=5, position=lambda: 0)
    halves = [RandomWindows(data, length=8, batch_size=4, seed=1, batches_per_epoch=5, position=lambda: 0,
                            rank=r, world_size=2) for r in (0, 1)]
    x, y = one.batch(3)
    x0, _ = halves[0].batch(3)
    x1, _ = halves[1].batch(3)
    assert torch.equal(x[0::2], x0) and torch.equal(x[1::2], x1)
    assert torch.equal(x[:, 1:], y[:, :-1])  # targets are the inputs shifted by one
    resumed = RandomWindows(data, length=8, batch_size=4, seed=1, batches_per_epoch=5, position=lambda: 7)
    batches = list(resumed)
    assert len(batches) == 3 and torch.equal(batches[0][0], one.batch(7)[0])  # the rest of epoch 2


def test_piece_windows_start_at_a_piece_and_pad(token_array):
    from notelm.training.data import IGNORE, RandomWindows

    data, pieces = token_array
    loader = RandomWindows(data, length=16, batch_size=8, seed=0, batches_per_epoch=1, position=lambda: 0,
                           windows="piece")
    x, y = loader.batch(0)
    assert (x[:, 0] == 1).all()  # BOS
    for row in y:  # each row is one piece's beginning, padded with IGNORE after its end
        piece = next(p for p in pieces if np.array_equal(row[: min(16, len(p))].numpy(), p[:16]))
        assert (row[len(piece):] == IGNORE).all()


def test_eval_windows_predict_every_token_once(token_array):
    from notelm.training.data import IGNORE, EvalWindows

    data, pieces = token_array
    for world in (1, 2):
        targets = []
        for rank in range(world):
            for x, y in EvalWindows(data, context=8, stride=4, rank=rank, world_size=world):
                assert x.shape[1] <= 8
                targets += y[y != IGNORE].tolist()
        assert sorted(targets) == sorted(np.concatenate(pieces).tolist())


def test_cli_bench_generation_json():
    r = notelm("bench", "generation", "--context", "96", "--tokens", "16", "--preset", "debug", "--json")
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["cached_tokens_per_s"] > 0 and result["uncached_tokens_per_s"] > 0
    assert result["max_abs_log_prob_diff"] < 1e-4 and result["machine"]["cpus"]


def test_bench_neural_smoke():
    bench = Path(__file__).parent.parent / "bench" / "bench_neural.py"
    r = subprocess.run([sys.executable, str(bench), "--smoke"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "tokens/s" in r.stdout


def test_noam_schedule_and_label_smoothing_in_a_run(tmp_path):
    """A run with AdamW, the Noam schedule and label smoothing trains, and the learning rate
    it logs is Noam's at every logged step."""
    import csv

    run = train("transformer", out=tmp_path / "noam", max_steps=8, **dict(TINY, overrides=[
        "train.schedule=noam", "train.warmup_steps=4", "train.lr=1.0", "train.optimizer=adamw",
        "train.label_smoothing=0.2", "train.val_every=4", "model.dropout=0.0"]))
    dim = json.loads((run / "config.json").read_text())["model"]["config"]["dim"]
    assert dim == 16  # the debug preset: Noam's rate at optimiser step s is 16^-0.5 min(s^-0.5, s 4^-1.5)
    noam = {1: 0.03125, 2: 0.0625, 3: 0.09375, 4: 0.125, 5: 0.11180339887, 6: 0.10206207261,
            7: 0.09449111825, 8: 0.08838834765}  # by hand: 0.25 * s / 8 up to s = 4, then 0.25 / sqrt(s)
    logged = {int(r["step"]): float(r["lr"]) for r in csv.DictReader((run / "logs" / "csv" / "metrics.csv").open())
              if r.get("lr")}
    # Lightning logs the rate of the step about to be taken at logged step g: optimiser step g + 1
    assert logged and all(lr == pytest.approx(noam[step + 1], rel=1e-6) for step, lr in logged.items())  # float32 logs
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 8 and np.isfinite(metrics["best_val_loss"])


# ---- resume checkpoints never run code ------------------------------------------------------------


class _Payload:
    """Unpickling this would create the marker file (what a hostile checkpoint does)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("where", ["checkpoints/last.safetensors", "checkpoints/last.ckpt"])
def test_a_pickled_checkpoint_is_refused_and_its_payload_never_runs(tiny_run, tmp_path, where):
    import pickle
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "checkpoints" / "last.safetensors").unlink()
    marker = tmp_path / "payload-ran"
    (run / where).write_bytes(pickle.dumps({"state_dict": {}, "hook": _Payload(marker)}))
    r = notelm("train", "lstm", "--out", run, "--resume", "--max-steps", "12", "--quiet", "--threads", "1")
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert ("not a notelm resume checkpoint" if where.endswith("safetensors") else "pickle") in r.stderr
    assert not marker.exists()


def test_a_checkpoint_with_a_foreign_key_resumes_and_nothing_in_it_runs(tmp_path):
    """A real checkpoint with one extra key whose value is a pickle: the key is inert data."""
    import pickle

    from notelm.training.checkpoints import checkpoint_bytes

    out = tmp_path / "run"
    train("lstm", out=out, max_steps=4, overrides=["train.val_every=2"], **TINY)
    marker = tmp_path / "payload-ran"
    state = read_checkpoint(out / "checkpoints" / "last.safetensors")
    state["extra"] = pickle.dumps(_Payload(marker)).decode("latin-1")
    (out / "checkpoints" / "last.safetensors").write_bytes(checkpoint_bytes(state))
    train("lstm", out=out, max_steps=6, resume=True, progress=False, accelerator="cpu", devices=1, threads=1)
    assert not marker.exists()
    assert json.loads((out / "metrics.json").read_text())["global_step"] == 6


def test_resume_before_the_first_validation_starts_from_step_zero(tmp_path):
    """A run killed before its first checkpoint is not a dead end: --resume trains it from the
    start on the data already prepared; --force replaces it; a folder notelm did not make is
    never replaced."""
    out = tmp_path / "run"
    train("lstm", out=out, max_steps=2, overrides=["train.val_every=2"], **TINY)
    for p in (out / "checkpoints").iterdir():
        p.unlink()
    train("lstm", out=out, max_steps=4, resume=True, progress=False, accelerator="cpu", devices=1, threads=1)
    assert json.loads((out / "metrics.json").read_text())["global_step"] == 4
    with pytest.raises(NotelmError, match="not empty"):
        train("lstm", out=out, max_steps=2, **TINY)
    train("lstm", out=out, max_steps=2, force=True, **TINY)
    assert json.loads((out / "metrics.json").read_text())["global_step"] == 2
    (out / "thesis.tex").write_text("years of work")
    with pytest.raises(NotelmError, match="did not write"):
        train("lstm", out=out, max_steps=2, force=True, **TINY)
    assert (out / "thesis.tex").read_text() == "years of work" and (out / "config.json").is_file()


def test_resume_refuses_settings_it_cannot_apply(tmp_path):
    out = tmp_path / "run"
    train("lstm", out=out, max_steps=4, overrides=["train.val_every=2"], **TINY)
    with pytest.raises(SettingsError, match="--set"):
        train("lstm", out=out, resume=True, overrides=["model.hidden=64"], progress=False)
    with pytest.raises(SettingsError, match="--corpus"):
        train("lstm", out=out, resume=True, corpus="essen-erk", progress=False)
    with pytest.raises(SettingsError, match="step 4 already"):
        train("lstm", out=out, resume=True, max_steps=3, progress=False)
