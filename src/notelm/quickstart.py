"""``notelm quickstart``: the most complete job notelm can do on bundled data, in minutes.

It prepares and describes the bundled corpora, runs every model that exists so far on a
bundled corpus, prints the leaderboard, writes a few generated melodies, and writes a report
to the output folder.

The leaderboard's IDyOM rows (Pearce 2005) predict the pitch of every note of the Essen
kinder songs with 10-fold cross-validation (piece i in fold i mod 10), with IDyOM's own
defaults (`mvs/params.lisp`): LTM escape C, STM escape AX with update exclusion, both
unbounded and interpolated; LTM with STM by a geometric mean with bias 7, viewpoints by a
geometric mean with bias 2. Two more rows show Pearce's published setting for LTM+ with STM
(C*I both, arithmetic, b = 2: 2.106 bits published) and a multiple-viewpoint system.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from notelm.corpora import load_corpus
from notelm.describe import corpus_info
from notelm.io.files import OutputExistsError, atomic_write_text
from notelm.models.ppm import PPMConfig

CORPORA = ("essen-kinder", "essen-erk", "essen", "oneills", "ryans", "bach-chorales-soprano")
LEADERBOARD_CORPUS = "essen-kinder"
C_STAR = PPMConfig(escape="c", update_exclusion=False)
# (row, run_idyom settings); what is not given is IDyOM's default
IDYOM_ROWS = [
    ("IDyOM STM", {"models": "stm"}),
    ("IDyOM LTM", {"models": "ltm"}),
    ("IDyOM LTM+", {"models": "ltm+"}),
    ("IDyOM BOTH (LTM + STM)", {"models": "both"}),
    ("IDyOM BOTH+ (LTM+ + STM)", {"models": "both+"}),
    ("IDyOM BOTH+, Pearce 2005 (C*I, arithmetic b=2)",
     {"models": "both+", "ltm_config": C_STAR, "stm_config": C_STAR, "combine": "arithmetic", "bias": 2.0}),
    ("IDyOM BOTH+, viewpoints cpitch*dur,cpint,cpint*dur*ioi,cpitch",
     {"models": "both+", "viewpoints": "cpitch*dur,cpint,cpint*dur*ioi,cpitch", "bias": 4.0, "viewpoint_bias": 1.0}),
]


def run_quickstart(out_dir: Path, *, force: bool, console: Console, progress_bar) -> dict:
    out_dir = Path(out_dir)
    if out_dir.exists():
        if not force:
            raise OutputExistsError(out_dir)
        shutil.rmtree(out_dir)
    started = time.perf_counter()
    infos = []
    for name in CORPORA:
        t0 = time.perf_counter()
        with progress_bar(f"reading {name}") as progress:
            corpus = load_corpus(name, progress=progress)
        info = corpus_info(corpus)
        info["seconds"] = round(time.perf_counter() - t0, 2)
        infos.append(info)
    table = Table("corpus", "pieces", "notes", "pitches", "range", "train/valid/test", "skipped", "s",
                  title="Bundled corpora (melodic line, ties merged)")
    for i in infos:
        s = i["splits"]
        table.add_row(i["corpus"], f"{i['pieces']:,}", f"{i['notes']:,}", str(i["distinct_pitches"]),
                      f"{i['pitch_min']}–{i['pitch_max']}", f"{s['train']}/{s['valid']}/{s['test']}",
                      str(len(i["skipped"])), f"{i['seconds']:.1f}")
    console.print(table)
    leaderboard = _leaderboard(console, progress_bar)
    generated = _generate(out_dir)
    neural = _neural(out_dir, console, progress_bar)
    short_term = _short_term(out_dir, console, progress_bar)
    report = {"corpora": infos, "leaderboard": leaderboard, "generated": generated, "neural": neural,
              "short_term": short_term, "seconds": round(time.perf_counter() - started, 1)}
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2))
    atomic_write_text(out_dir / "report.md", _markdown(report))
    console.print(f"report written to {out_dir}/report.md ({report['seconds']} s)")
    return report


def _leaderboard(console: Console, progress_bar) -> list[dict]:
    """The IDyOM rows on the kinder songs, as a table and as report rows."""
    from notelm.idyom import run_idyom

    corpus = load_corpus(LEADERBOARD_CORPUS)
    rows = []
    with progress_bar("IDyOM models") as progress:
        for i, (name, settings) in enumerate(IDYOM_ROWS):
            progress(i, len(IDYOM_ROWS))
            summary = run_idyom(corpus, folds=10, **settings).summary()
            rows.append({"model": name, **{k: summary[k] for k in (
                "mean_ic_per_piece", "mean_ic_per_event", "mean_entropy", "events", "pieces", "seconds",
                "events_per_second", "models", "viewpoints", "folds", "ltm", "stm", "combine", "viewpoint_combine")}})
    table = Table("model", "IC/piece", "IC/event", "entropy", "s",
                  title=f"Leaderboard: pitch of every note of {LEADERBOARD_CORPUS}, bits (10-fold CV)")
    for r in rows:
        table.add_row(r["model"], f"{r['mean_ic_per_piece']:.3f}", f"{r['mean_ic_per_event']:.3f}",
                      f"{r['mean_entropy']:.3f}", f"{r['seconds']:.2f}")
    console.print(table)
    return rows


def _generate(out_dir: Path) -> list[str]:
    """Two melodies from IDyOM's BOTH+ model of the kinder songs, as MIDI."""
    from notelm.idyom import generate_melodies

    paths = generate_melodies(load_corpus(LEADERBOARD_CORPUS), out_dir / "generated", n=2, models="both+",
                              viewpoints="cpitch,cpint*dur", seed=0, top_p=0.95)
    return [str(p) for p in paths]


# ---- neural models: LSTM and Transformer on the tutorial's data -----------------------------------

NEURAL_CORPUS, NEURAL_ENCODING = "essen-erk", "grid"
# (model, settings, steps): about a minute each on two CPU cores, one torch thread (see training/train.py)
NEURAL_ROWS = [
    ("lstm", ["encoding.transpose=true", "train.val_every=500"], 3500),
    ("transformer", ["encoding.transpose=true", "model.context=128", "train.warmup_steps=50", "train.val_every=100"], 400),
]


def _neural(out_dir: Path, console: Console, progress_bar) -> list[dict]:
    """Train small LSTM and Transformer models on essen-erk (grid encoding, transposed to C,
    the tutorial's setting), evaluate them on the test split, and write one generated song
    each as MIDI, WAV and a piano-roll PNG."""
    from notelm.compose import generate
    from notelm.io import write_midi
    from notelm.leaderboard import evaluate_run
    from notelm.render import SoundFontNotFoundError, plot_pianoroll, render_wav
    from notelm.training import train

    rows = []
    for i, (model, settings, steps) in enumerate(NEURAL_ROWS):
        with progress_bar(f"training {model} on {NEURAL_CORPUS}") as progress:
            progress(i, len(NEURAL_ROWS))
            run = train(model, out=out_dir / "runs" / model, corpus=NEURAL_CORPUS, encoding=NEURAL_ENCODING,
                        preset="small", overrides=settings, max_steps=steps, progress=False, threads=1)
        row = evaluate_run(run, corpus=NEURAL_CORPUS, split="test")
        g = generate(run, temperature=0.8, seed=0, min_length=64)  # at least four 4/4 bars of 16ths
        stem = out_dir / "generated" / f"{model}-{NEURAL_CORPUS}"
        row["midi"] = str(write_midi(g.piece, stem.with_suffix(".mid")))
        row["png"] = str(plot_pianoroll(g.piece, stem.with_suffix(".png")))
        try:
            row["wav"] = str(render_wav(g.piece, stem.with_suffix(".wav")).path)
        except SoundFontNotFoundError as e:
            row["wav"] = None
            console.print(f"no WAV: {e}")
        rows.append(row)
    table = Table("model", "encoding", "bits/step", "accuracy", "parameters", "train s",
                  title=f"Leaderboard (neural): {NEURAL_CORPUS} test split, bits per 16th-note grid step "
                        "(not per note: not comparable with the IDyOM rows)")
    for r in rows:
        table.add_row(r["model"], r["encoding"], f"{r['bits_per_event']:.3f}", f"{r['accuracy']:.3f}",
                      f"{r['parameters']:,}", f"{r['train_seconds']:.0f}")
    console.print(table)
    return rows


# ---- short-term models: the DSTM paper's frames -------------------------------------------------

STM_CORPUS, STM_ENCODING = "oneills", "dstm-frames"
# (row, model, settings, steps): models that learn within each piece, and a small CCSTM trained
# for about a minute (bench/results/dstm-oneills.json has the full table, trained longer)
STM_ROWS = [
    ("repetition", "repetition", [], None),
    ("MC-3 (short-term)", "markov", ["model.order=3", "model.mode=stm"], None),
    ("PPM (short-term, IDyOM's STM)", "ppm", ["model.mode=stm"], None),
    # receptive field 32 and a high learning rate: the most a CCSTM learns in a minute on one core
    ("CCSTM-32 (small, 1 minute)", "ccstm", ["model.layers=5", "model.filters=32", "model.code_size=64",
                                             "model.context=256", "train.lr=5e-3", "train.val_every=500",
                                             "train.warmup_steps=20"], 1500),
]


def _short_term(out_dir: Path, console: Console, progress_bar) -> list[dict]:
    """Short-term models on O'Neill's tunes as the DSTM paper's 16th-note frames: each learns
    within the piece it predicts; NLL in nats and precision, on the test split."""
    from notelm.leaderboard import evaluate_run
    from notelm.training import train

    rows = []
    for i, (label, model, settings, steps) in enumerate(STM_ROWS):
        with progress_bar(f"{label} on {STM_CORPUS}") as progress:
            progress(i, len(STM_ROWS))
            run = train(model, out=out_dir / "runs" / f"stm-{model}", corpus=STM_CORPUS, encoding=STM_ENCODING,
                        overrides=settings, max_steps=steps, progress=False, threads=1,
                        **({"preset": "small"} if steps else {}))
        rows.append({"label": label, **evaluate_run(run, corpus=STM_CORPUS, split="test")})
    table = Table("model", "nats/frame", "bits/frame", "precision", "EVT nats", "EVT precision",
                  title=f"Leaderboard (short-term): {STM_CORPUS} test split, {STM_ENCODING} "
                        "(16th-note frames, 49 classes)")
    for r in rows:
        table.add_row(r["label"], f"{r['nll_nats']:.3f}", f"{r['nll_bits']:.3f}", f"{r['precision']:.3f}",
                      f"{r['evt_nll_nats']:.3f}", f"{r['evt_precision']:.3f}")
    console.print(table)
    return rows


def _short_term_markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["", f"## Leaderboard (short-term): {STM_CORPUS}, {STM_ENCODING}, test split", "",
             "Negative log-likelihood per 16th-note frame and precision (how often the most probable frame "
             "is the one that comes); EVT: the same only at frames where the pitch changes (Bjare, Lattner & "
             "Widmer 2022). Every model learns within the piece it predicts; the CCSTM's encoder was "
             "trained on the train split.", "",
             "| model | nats/frame | bits/frame | precision | EVT nats | EVT precision | frames |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['label']} | {r['nll_nats']:.3f} | {r['nll_bits']:.3f} | {r['precision']:.3f} | "
                     f"{r['evt_nll_nats']:.3f} | {r['evt_precision']:.3f} | {r['events']:,} |")
    return lines


def _neural_markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["", f"## Leaderboard (neural): {NEURAL_CORPUS}, grid encoding, test split", "",
             "Bits per event of the grid encoding (one event = one 16th-note step: a pitch, a hold `_` or a "
             "rest `r`, and the end-of-song token), so these figures are not comparable with the IDyOM rows "
             "above (bits per note, pitch only).", "",
             "| model | corpus | encoding | unit | bits/event | accuracy | parameters | training s | generated |",
             "|---|---|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        files = ", ".join(f"`{Path(r[k]).name}`" for k in ("midi", "wav", "png") if r.get(k))
        lines.append(f"| {r['model']} | {r['corpus']} | {r['encoding']} | {r['unit']} | {r['bits_per_event']:.3f} | "
                     f"{r['accuracy']:.3f} | {r['parameters']:,} | {r['train_seconds']:.0f} | {files} |")
    return lines


def _markdown(report: dict) -> str:
    lines = ["# notelm quickstart", "", "## Bundled corpora", "",
             "| corpus | pieces | notes | distinct pitches | range | train/valid/test | skipped |",
             "|---|---:|---:|---:|---|---|---:|"]
    for i in report["corpora"]:
        s = i["splits"]
        lines.append(f"| {i['corpus']} | {i['pieces']:,} | {i['notes']:,} | {i['distinct_pitches']} | "
                     f"{i['pitch_min']}–{i['pitch_max']} | {s['train']}/{s['valid']}/{s['test']} | {len(i['skipped'])} |")
    lines += ["", f"## Leaderboard: {LEADERBOARD_CORPUS}, pitch, 10-fold cross-validation", "",
              "Mean information content (bits per note) per piece then over pieces, and over all notes; "
              "mean entropy of the predictions; modelling time.", "",
              "| model | IC per piece | IC per event | entropy | seconds |", "|---|---:|---:|---:|---:|"]
    for r in report["leaderboard"]:
        lines.append(f"| {r['model']} | {r['mean_ic_per_piece']:.3f} | {r['mean_ic_per_event']:.3f} | "
                     f"{r['mean_entropy']:.3f} | {r['seconds']:.2f} |")
    if report["generated"]:
        lines += ["", "## Generated", ""] + [f"- `{p}`" for p in report["generated"]]
    lines += _neural_markdown(report.get("neural", []))
    lines += _short_term_markdown(report.get("short_term", []))
    skipped = [s for i in report["corpora"] for s in i["skipped"]]
    if skipped:
        lines += ["", "### Skipped", ""] + [f"- `{s['path']}`: {s['reason']}" for s in skipped]
    return "\n".join(lines) + "\n"


# ---- piano continuation: the built-in Perceiver AR on a bundled performance ------------------------

PIANO_MODEL = "builtin:perceiver-ar"
PIANO_PRIMER = "2011/MIDI-Unprocessed_07_R1_2011_MID--AUDIO_R1-D3_03_Track03_wav.midi"  # maestro-sample: Chopin, Op. 10 No. 12
PIANO_EVENTS = 2048  # events of each maestro-sample piece in the NLL row (all twelve: minutes)


def piano_continuation(out_dir: Path, console: Console, *, run: str = PIANO_MODEL, seconds: float = 20.0) -> dict:
    """Continue the first 10 s of a `maestro-sample` performance for ``seconds`` with the
    built-in Perceiver AR (the README's sampling defaults, seed 0) -> ``piano/continued.mid``,
    ``.wav`` and ``.png`` in ``out_dir``; and a row of test NLL: nats per event over the first
    `PIANO_EVENTS` events of each of the twelve maestro-sample performances (MAESTRO's test
    split, never trained on). About half a minute on two CPU cores."""
    import math

    import numpy as np
    import torch

    from notelm.bundled import MAESTRO_SAMPLE
    from notelm.continuation import continue_file
    from notelm.io import write_midi
    from notelm.render import SoundFontNotFoundError, plot_pianoroll, render_wav
    from notelm.runs import open_run
    from notelm.training.data import encode_pieces

    t0 = time.perf_counter()
    stem = Path(out_dir) / "piano" / "continued"
    c = continue_file(MAESTRO_SAMPLE / PIANO_PRIMER, run, seconds=seconds, seed=0)
    row = {"model": run, "primer": PIANO_PRIMER, "primer_seconds": c.primer_seconds, "seconds": seconds,
           "notes": len(c.continuation), "tokens": c.tokens, "tokens_per_s": round(c.tokens_per_s, 1),
           "midi": str(write_midi(c.piece, stem.with_suffix(".mid"), force=True)),
           "png": str(plot_pianoroll(c.piece, stem.with_suffix(".png"), force=True, mark_from=c.primer_seconds))}
    try:
        row["wav"] = str(render_wav(c.piece, stem.with_suffix(".wav"), force=True).path)
    except SoundFontNotFoundError as e:
        row["wav"] = None
        console.print(f"no WAV: {e}")
    r = open_run(run)
    sequences, _ = encode_pieces(r.encoding(), load_corpus("maestro-sample").split("test"))
    sequences = [s[:PIANO_EVENTS] for s in sequences]
    scores = r.model(dtype=torch.float32).score(sequences)
    events = sum(len(s) for s in scores)
    row.update(test_nats_per_event=-float(sum(s.sum() for s in scores)) * math.log(2) / events, test_events=events,
               test_pieces=len(scores), parameters=r.metrics.get("parameters"),
               valid_nats_per_event=r.metrics.get("best_val_loss"), elapsed_seconds=round(time.perf_counter() - t0, 1))
    row["test_nats_per_event"] = float(np.round(row["test_nats_per_event"], 4))
    table = Table("model", "primer", "continued", "tokens/s", "test nats/event", "events", title=(
        "Piano continuation (built-in Perceiver AR); test NLL on maestro-sample (MAESTRO's test split)"))
    table.add_row(run, f"{c.primer_seconds:g} s of Chopin Op. 10 No. 12", f"{seconds:g} s, {row['notes']} notes",
                  f"{row['tokens_per_s']:.0f}", f"{row['test_nats_per_event']:.3f}", f"{events:,}")
    console.print(table)
    return row
