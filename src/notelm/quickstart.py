"""``notelm quickstart``: the most complete job notelm can do on bundled data, in minutes.

It prepares and describes the bundled corpora, runs every model family on bundled data,
prints the leaderboards, writes generated melodies, a humanized Bach chorale and a continued
piano performance (MIDI, WAV, PNG), and writes a report to the output folder. The heavy rows
are built-in models (`notelm models list`); only an LSTM is trained here.

The leaderboard's IDyOM rows (Pearce 2005) predict the pitch of every note of the Essen
kinder songs with 10-fold cross-validation (piece i in fold i mod 10), with IDyOM's own
defaults (`mvs/params.lisp`): LTM escape C, STM escape AX with update exclusion, both
unbounded and interpolated; LTM with STM by a geometric mean with bias 7, viewpoints by a
geometric mean with bias 2. Two more rows show Pearce's published setting for LTM+ with STM
(C*I both, arithmetic, b = 2: 2.106 bits published) and a multiple-viewpoint system.

`neural_idyom_rows` adds the neural long-term model shipped with notelm (``builtin:``
`MELODY_LTM`, trained on the rest of Essen without any kinder song or copy of one) in the
LTM's place, with IDyOM's short-term model, and with IDyOM's BOTH+ system; their
combinations were tuned on that corpus's validation melodies (bench/bench_kinder.py,
bench/results/kinder.json), never on kinder.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from notelm import __version__
from notelm.corpora import load_corpus
from notelm.describe import corpus_info
from notelm.io.files import OutputError, OutputExistsError, atomic_write_text, check_output
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
MELODY_LTM = "builtin:essen-melody-lstm"
_VIEWPOINTS = {"viewpoints": "cpitch*dur,cpint,cpint*dur*ioi,cpitch", "viewpoint_combine": "geometric", "viewpoint_bias": 1.0}
NEURAL_IDYOM_ROWS = [  # the method and bias of each: bench/results/kinder.json (tuned on validation melodies)
    ("neural LTM (built-in, no kinder) + IDyOM STM, viewpoints cpitch*dur,cpint,cpint*dur*ioi,cpitch",
     {"ltm": MELODY_LTM, "models": "both", **_VIEWPOINTS, "combine": "geometric", "bias": 3.0}),
    ("neural LTM (built-in, no kinder) + IDyOM BOTH+ (LTM+ and STM), same viewpoints",
     {"ltm": MELODY_LTM, "models": "both+", **_VIEWPOINTS, "combine": "geometric", "bias": 4.0}),
]


def run_quickstart(out_dir: Path, *, force: bool, console: Console, progress_bar) -> dict:
    """The quickstart into ``out_dir`` (see the module docstring and `_own_folder`)."""
    with _own_folder(Path(out_dir), force=force):
        return _run(Path(out_dir), console, progress_bar)


# ---- the output folder: replace only what an earlier quickstart wrote ----------------------------

MARKER = ".notelm-quickstart.json"  # written into the folder; lists every file the quickstart wrote


def _files_under(folder: Path) -> set[str]:
    """Files and links under ``folder`` (links not followed), as relative POSIX paths."""
    found = set()
    for top, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if (Path(top) / d).is_symlink()]:
            found.add((Path(top) / name).relative_to(folder).as_posix())
    return found


def _manifest(out_dir: Path) -> list[str]:
    """The files an earlier quickstart wrote into ``out_dir`` by its marker; `OutputError`
    when the folder holds anything but is no quickstart output, so nothing of a user's is
    ever deleted (``--force`` included)."""
    marker = out_dir / MARKER
    if not marker.is_file():
        raise OutputError(out_dir, f"not empty and not a quickstart report (no {MARKER} in it); notelm deletes "
                                   "nothing it did not write, --force or not: choose another --out")
    try:
        files = json.loads(marker.read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError):
        files = None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise OutputError(marker, "damaged, so notelm cannot tell its files from yours and deletes nothing: "
                                  "choose another --out")
    return files


def _remove_files(out_dir: Path, files: list[str]) -> None:
    """Remove the listed files (never a folder, never outside ``out_dir``: a link is removed,
    not followed), then the folders they leave empty."""
    root = out_dir.resolve()
    emptied = set()
    for rel in files:
        path = out_dir / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts or not path.parent.resolve().is_relative_to(root):
            continue
        if path.is_symlink() or path.is_file():
            path.unlink()
            emptied.update(p for p in path.parents if p != out_dir and out_dir in p.parents)
    for folder in sorted(emptied, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty: something of the user's is in it
            folder.rmdir()


def _write_marker(out_dir: Path, files: set[str]) -> None:
    atomic_write_text(out_dir / MARKER, json.dumps({"written_by": f"notelm {__version__} quickstart",
                                                    "files": sorted(files - {MARKER})}, indent=2), force=True)


@contextlib.contextmanager
def _own_folder(out_dir: Path, *, force: bool):
    """Check ``out_dir`` before any work and make it the quickstart's: absent or empty, or an
    earlier quickstart's (``force`` replaces the files it wrote, and only those). On success
    the marker lists every file this run wrote; on failure or Ctrl-C they are removed again."""
    check_output(out_dir, folder=True)
    if out_dir.exists():
        if any(out_dir.iterdir()):
            previous = _manifest(out_dir)
            if not force:
                raise OutputExistsError(out_dir)
            _remove_files(out_dir, previous)
        elif not force:
            raise OutputExistsError(out_dir)
    created = not out_dir.exists()
    before = _files_under(out_dir) if not created else set()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_marker(out_dir, set())
        yield
        _write_marker(out_dir, _files_under(out_dir) - before)
    except BaseException:
        _remove_files(out_dir, sorted(_files_under(out_dir) - before))
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise


def _run(out_dir: Path, console: Console, progress_bar) -> dict:
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
    velocity = velocity_rows(out_dir, console, progress_bar)
    with progress_bar("long memory on maestro-sample"):
        memory = long_memory(console)
    with progress_bar("continuing a maestro-sample primer"):
        piano = piano_continuation(out_dir, console)
    report = {"corpora": infos, "leaderboard": leaderboard, "generated": generated, "neural": neural,
              "short_term": short_term, "velocity": velocity, "long_memory": memory, "piano": piano,
              "seconds": round(time.perf_counter() - started, 1)}
    atomic_write_text(out_dir / "report.json", json.dumps(report, indent=2))
    atomic_write_text(out_dir / "report.md", _markdown(report))
    console.print(f"report written to {out_dir}/report.md ({report['seconds']} s)")
    return report


ROW_KEYS = ("mean_ic_per_piece", "mean_ic_per_event", "mean_entropy", "events", "pieces", "seconds",
            "events_per_second", "models", "viewpoints", "folds", "ltm", "stm", "combine", "viewpoint_combine")


def idyom_rows(rows: list[tuple[str, dict]], progress=None) -> list[dict]:
    """Leaderboard rows: each (name, `run_idyom` settings) on the kinder songs, 10-fold CV."""
    from notelm.idyom import run_idyom

    corpus = load_corpus(LEADERBOARD_CORPUS)
    out = []
    for i, (name, settings) in enumerate(rows):
        if progress:
            progress(i, len(rows))
        summary = run_idyom(corpus, folds=10, **settings).summary()
        out.append({"model": name, **{k: summary[k] for k in ROW_KEYS}, "ltm_run": summary.get("ltm_run")})
    return out


def neural_idyom_rows(progress=None) -> list[dict]:
    """The built-in neural LTM with IDyOM's STM and with IDyOM's BOTH+ on the kinder songs (a
    few seconds each): the neural rows of the leaderboard (bench/results/kinder.json)."""
    return idyom_rows(NEURAL_IDYOM_ROWS, progress)


def _leaderboard(console: Console, progress_bar) -> list[dict]:
    """The IDyOM rows on the kinder songs, then the neural LTM's, as a table and as report rows."""
    with progress_bar("IDyOM models") as progress:
        rows = idyom_rows(IDYOM_ROWS + NEURAL_IDYOM_ROWS, progress)
    table = Table("model", "IC/piece", "IC/event", "entropy", "s",
                  title=f"Leaderboard: pitch of every note of {LEADERBOARD_CORPUS}, bits (IDyOM's LTMs by "
                        "10-fold CV; the neural LTM never saw a kinder song)")
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
# (row, model or builtin:NAME, settings, steps): the built-ins were trained longer (their model
# cards say how); the LSTM trained here shows what `notelm train` does in about 15 s
NEURAL_ROWS = [
    ("LSTM, trained here (800 steps)", "lstm", ["encoding.transpose=true", "train.val_every=800"], 800),
    ("LSTM (builtin:lstm-erk, 6,000 steps)", "builtin:lstm-erk", [], None),
    ("Transformer (builtin:transformer-erk, 3,000 steps)", "builtin:transformer-erk", [], None),
]


def _neural(out_dir: Path, console: Console, progress_bar) -> list[dict]:
    """LSTM and Transformer models of essen-erk (grid encoding, transposed to C, the
    tutorial's setting): one trained here in seconds, the built-ins trained longer; each
    evaluated on the test split and sampled once as MIDI, WAV and a piano-roll PNG."""
    from notelm.compose import generate
    from notelm.io import write_midi
    from notelm.leaderboard import evaluate_run
    from notelm.render import SoundFontNotFoundError, plot_pianoroll, render_wav
    from notelm.training import train

    rows = []
    for i, (label, model, settings, steps) in enumerate(NEURAL_ROWS):
        with progress_bar(f"{label} on {NEURAL_CORPUS}") as progress:
            progress(i, len(NEURAL_ROWS))
            run = model if model.startswith("builtin:") else train(
                model, out=out_dir / "runs" / model, corpus=NEURAL_CORPUS, encoding=NEURAL_ENCODING,
                preset="small", overrides=settings, max_steps=steps, progress=False, threads=1)
        row = {"label": label, **evaluate_run(run, corpus=NEURAL_CORPUS, split="test")}
        g = generate(run, temperature=0.8, seed=0, min_length=64)  # at least four 4/4 bars of 16ths
        stem = out_dir / "generated" / f"{model.removeprefix('builtin:')}-{NEURAL_CORPUS}"
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
        table.add_row(r["label"], r["encoding"], f"{r['bits_per_event']:.3f}", f"{r['accuracy']:.3f}",
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
    ("CCSTM-512 (builtin:ccstm-oneills, 2,500 steps)", "builtin:ccstm-oneills", [], None),
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
            run = model if model.startswith("builtin:") else train(
                model, out=out_dir / "runs" / f"stm-{model}", corpus=STM_CORPUS, encoding=STM_ENCODING,
                overrides=settings, max_steps=steps, progress=False, threads=1, **({"preset": "small"} if steps else {}))
        rows.append({"label": label, **evaluate_run(run, corpus=STM_CORPUS, split="test")})
    table = Table("model", "nats/frame", "bits/frame", "precision", "EVT nats", "EVT precision",
                  title=f"Leaderboard (short-term): {STM_CORPUS} test split, {STM_ENCODING} "
                        "(16th-note frames, 49 classes)")
    for r in rows:
        table.add_row(r["label"], f"{r['nll_nats']:.3f}", f"{r['nll_bits']:.3f}", f"{r['precision']:.3f}",
                      f"{r['evt_nll_nats']:.3f}", f"{r['evt_precision']:.3f}")
    console.print(table)
    return rows


# ---- the bundled performances, scored ------------------------------------------------------------


@functools.cache
def _sample_test_pieces() -> tuple:
    """maestro-sample's performances (MAESTRO's test split), read once per process."""
    return tuple(load_corpus("maestro-sample").split("test"))


def sample_bits(run: str, events: int) -> tuple:
    """The opened ``run`` and the bits (-log2 p) of each of the first ``events`` events of
    every maestro-sample performance, through the model's batched scoring in float32."""
    import torch

    from notelm.runs import open_run
    from notelm.training.data import encode_pieces

    r = open_run(run)
    sequences, _ = encode_pieces(r.encoding(), list(_sample_test_pieces()))
    scores = r.model(dtype=torch.float32).score([s[:events] for s in sequences])
    return r, [-s for s in scores]


def nats_per_event(bits: list) -> float:
    """Mean nats per event over every event of ``bits`` (one array per piece), 4 decimals."""
    return round(float(sum(b.sum() for b in bits)) / sum(len(b) for b in bits) * math.log(2), 4)


# ---- long memory: a Compressive Transformer beside a Transformer ---------------------------------

# built-ins of one size trained on the same data (MAESTRO's training split as performance events,
# the same steps and tokens per step: bench/builtin_compressive.sh); scored on the first
# MEMORY_EVENTS events of each maestro-sample performance (MAESTRO's test split, never trained on)
MEMORY_RUNS = ("builtin:compressive-maestro", "builtin:transformer-maestro")
MEMORY_EVENTS = 2048
MEMORY_BUCKET = 512


def long_memory(console: Console, *, runs: tuple[str, ...] = MEMORY_RUNS, events: int = MEMORY_EVENTS) -> list[dict]:
    """Nats per event of a small Compressive Transformer and a Transformer of the same size on
    maestro-sample, overall and by position within the piece (buckets of `MEMORY_BUCKET` events):
    the Transformer sees at most its window (256 events), the Compressive Transformer reads each
    piece from its start, its memories reaching 768 events back per layer. About 30 s on two CPU
    cores; prints a table and returns one row per run."""
    from notelm.evaluation import by_position

    rows = []
    for run in runs:
        t0 = time.perf_counter()
        r, bits = sample_bits(run, events)
        n = sum(len(b) for b in bits)
        curve = by_position(bits, MEMORY_BUCKET)
        rows.append({"model": run, "family": r.model_name, "parameters": r.metrics.get("parameters"),
                     "test_nats_per_event": nats_per_event(bits), "events": n, "pieces": len(bits),
                     "by_position": {"start": curve["start"], "nats_per_event": [round(x, 4) for x in curve["nats_per_event"]]},
                     "seconds": round(time.perf_counter() - t0, 1)})
    starts = rows[0]["by_position"]["start"] if rows else []
    table = Table("model", "parameters", "nats/event", *(f"events {a:,}-{a + MEMORY_BUCKET - 1:,}" for a in starts),
                  title=f"Long memory: maestro-sample (MAESTRO test), first {events:,} events of each performance")
    for row in rows:
        table.add_row(row["model"], f"{row['parameters']:,}", f"{row['test_nats_per_event']:.3f}",
                      *(f"{x:.3f}" for x in row["by_position"]["nats_per_event"]))
    console.print(table)
    return rows


def _short_term_markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["", f"## Leaderboard (short-term): {STM_CORPUS}, {STM_ENCODING}, test split", "",
             "Negative log-likelihood per 16th-note frame and precision (how often the most probable frame "
             "is the one that comes); EVT: the same only at frames where the pitch changes (Bjare, Lattner & "
             "Widmer 2022). Every model learns within the piece it predicts; the CCSTM's encoder was "
             "trained on the train split (the built-in's model card says how).", "",
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
        lines.append(f"| {r['label']} | {r['corpus']} | {r['encoding']} | {r['unit']} | {r['bits_per_event']:.3f} | "
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
              "mean entropy of the predictions; modelling time. IDyOM's long-term models are trained by "
              "10-fold cross-validation; the neural long-term model (`" + MELODY_LTM + "`) was trained on "
              "the rest of Essen without any kinder song or copy of one, so it predicts every melody.", "",
              "| model | IC per piece | IC per event | entropy | seconds |", "|---|---:|---:|---:|---:|"]
    for r in report["leaderboard"]:
        lines.append(f"| {r['model']} | {r['mean_ic_per_piece']:.3f} | {r['mean_ic_per_event']:.3f} | "
                     f"{r['mean_entropy']:.3f} | {r['seconds']:.2f} |")
    if report["generated"]:
        lines += ["", "## Generated", ""] + [f"- `{p}`" for p in report["generated"]]
    lines += _neural_markdown(report.get("neural", []))
    lines += _short_term_markdown(report.get("short_term", []))
    lines += velocity_markdown(report.get("velocity", {}))
    lines += _memory_markdown(report.get("long_memory", []))
    lines += _piano_markdown(report.get("piano", {}))
    skipped = [s for i in report["corpora"] for s in i["skipped"]]
    if skipped:
        lines += ["", "### Skipped", ""] + [f"- `{s['path']}`: {s['reason']}" for s in skipped]
    return "\n".join(lines) + "\n"


# ---- velocities: the built-in velocity models and humanize ----------------------------------------

VELOCITY_CORPUS = "maestro-sample"  # 12 bundled MAESTRO test-split performances
VELOCITY_MODELS = ("velocity", "velocity-3bin")
VELOCITY_NOTES = 1000  # first notes of each performance: keeps the rows to seconds
CHORALE = "bach/bwv66.6"  # music21's corpus


def velocity_rows(out_dir: Path, console: Console, progress_bar) -> dict:
    """The built-in velocity models and their baselines on the bundled MAESTRO test-split
    performances (the first `VELOCITY_NOTES` notes of each), and a Bach chorale from music21
    humanized by ``builtin:velocity`` as MIDI, WAV and a PNG piano roll coloured by velocity."""
    from music21 import corpus as m21

    from notelm.humanize import humanize_file, load_humanizer
    from notelm.render import SoundFontNotFoundError
    from notelm.velocity import evaluate_velocity_run

    tables = []
    for i, name in enumerate(VELOCITY_MODELS):
        with progress_bar(f"builtin:{name} on {VELOCITY_CORPUS}") as progress:
            progress(i, len(VELOCITY_MODELS))
            tables.append(evaluate_velocity_run(f"builtin:{name}", corpus=VELOCITY_CORPUS, split="test",
                                                notes_per_piece=VELOCITY_NOTES))
    table = Table("model", "source", "MAE teacher-forced", "MAE greedy", "MAE expected", "Pearson", "std ratio",
                  title=f"Velocities: {VELOCITY_CORPUS} (MAESTRO test split), first {VELOCITY_NOTES} notes of each "
                        "performance; baselines fitted on maestro-mini's train split")
    for t in tables:
        for r in t["rows"]:
            label = f"builtin:{r['model']}" if r["model"] in VELOCITY_MODELS else r["model"]
            table.add_row(label, t["variant"], *(f"{r[k] + 0.0:.2f}" for k in ("mae_teacher_forced", "mae_greedy",
                                                                           "mae_expected", "pearson", "std_ratio")))
    console.print(table)
    model, encoding = load_humanizer("builtin:velocity")
    chorale = Path(str(m21.getWork(CHORALE)))
    target = out_dir / "humanized" / "bach-bwv66.6.mid"
    try:
        [done] = humanize_file(chorale, target, model, encoding, wav=True, png=True, seed=0)
    except SoundFontNotFoundError as e:
        console.print(f"no WAV: {e}")
        [done] = humanize_file(chorale, target, model, encoding, png=True, seed=0)
    files = [str(done.midi), *map(str, done.extras)]
    console.print(f"humanized {CHORALE} ({done.notes} notes): {', '.join(files)}")
    return {"corpus": VELOCITY_CORPUS, "notes_per_piece": VELOCITY_NOTES, "tables": tables,
            "humanized": {"score": CHORALE, "notes": done.notes, "files": files}}


def velocity_markdown(result: dict) -> list[str]:
    """The report's section for `velocity_rows`."""
    if not result:
        return []
    lines = ["", f"## Velocities: {result['corpus']}, first {result['notes_per_piece']} notes of each performance", "",
             "Mean absolute error of the predicted velocity (teacher-forced argmax: midi-translation's val_dist; "
             "greedy decoding; the mean of the predicted distribution), and of the greedy velocities the "
             "within-piece Pearson correlation and standard deviation relative to the pianist's. `velocity`: "
             "no velocity in its input (the humanizer); `velocity-3bin`: each note's velocity bin in its input "
             "(the original's task).", "",
             "| model | source | MAE teacher-forced | MAE greedy | MAE expected | Pearson | std ratio |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for t in result["tables"]:
        for r in t["rows"]:
            label = f"builtin:{r['model']}" if r["model"] in VELOCITY_MODELS else r["model"]
            lines.append(f"| {label} | {t['variant']} | " + " | ".join(
                f"{r[k] + 0.0:.2f}" for k in ("mae_teacher_forced", "mae_greedy", "mae_expected", "pearson", "std_ratio")) + " |")
    h = result["humanized"]
    lines += ["", f"Humanized: music21's `{h['score']}` ({h['notes']} notes): "
              + ", ".join(f"`{Path(f).name}`" for f in h["files"])]
    return lines


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
    from notelm.bundled import MAESTRO_SAMPLE
    from notelm.continuation import continue_file
    from notelm.io import write_midi
    from notelm.render import SoundFontNotFoundError, plot_pianoroll, render_wav

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
    r, bits = sample_bits(run, PIANO_EVENTS)
    events = sum(len(b) for b in bits)
    row.update(test_nats_per_event=nats_per_event(bits), test_events=events, test_pieces=len(bits),
               parameters=r.metrics.get("parameters"), valid_nats_per_event=r.metrics.get("best_val_loss"),
               elapsed_seconds=round(time.perf_counter() - t0, 1))
    table = Table("model", "primer", "continued", "tokens/s", "test nats/event", "events", title=(
        "Piano continuation (built-in Perceiver AR); test NLL on maestro-sample (MAESTRO's test split)"))
    table.add_row(run, f"{c.primer_seconds:g} s of Chopin Op. 10 No. 12", f"{seconds:g} s, {row['notes']} notes",
                  f"{row['tokens_per_s']:.0f}", f"{row['test_nats_per_event']:.3f}", f"{events:,}")
    console.print(table)
    return row


def _memory_markdown(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    starts = rows[0]["by_position"]["start"]
    lines = ["", "## Long memory: maestro-sample (MAESTRO test split), performance events", "",
             f"Nats per event over the first {MEMORY_EVENTS:,} events of each performance, overall and by position "
             "within the piece: a Compressive Transformer reading each piece from its start (memories and "
             "compressed memories) beside a Transformer of the same width and depth that sees its window only; "
             "both trained the same steps on the same tokens (their model cards say how).", "",
             "| model | parameters | nats/event | " + " | ".join(f"events {a:,}+" for a in starts) + " |",
             "|---|---:|---:|" + "---:|" * len(starts)]
    for r in rows:
        lines.append(f"| {r['model']} | {r['parameters']:,} | {r['test_nats_per_event']:.3f} | "
                     + " | ".join(f"{x:.3f}" for x in r["by_position"]["nats_per_event"]) + " |")
    return lines


def _piano_markdown(row: dict) -> list[str]:
    if not row:
        return []
    files = ", ".join(f"`{Path(row[k]).name}`" for k in ("midi", "wav", "png") if row.get(k))
    return ["", "## Piano continuation (Perceiver AR)", "",
            f"`{row['model']}` continued the first {row['primer_seconds']:g} s of `{row['primer']}` for "
            f"{row['seconds']:g} s: {row['notes']} notes, {row['tokens']} tokens at {row['tokens_per_s']:.0f} "
            f"tokens/s ({files}). Test NLL over the first {PIANO_EVENTS:,} events of each maestro-sample "
            f"performance: {row['test_nats_per_event']:.3f} nats per event ({row['test_events']:,} events)."]
