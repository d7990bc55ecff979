"""The ``notelm`` command: parses, calls the library, prints. Nothing else lives here.

Every user error (a missing path, an unknown corpus, a corrupt file, an option out of range,
an output that cannot be written) becomes one line on stderr and exit status 1 — never a
traceback; a usage error exits 2, Ctrl-C 130, and a bug 3, in one line that names the command
(`run`). Writers check their output paths before any work (`check_outputs`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import threading
import time
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from notelm import __version__
from notelm.errors import NotelmError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Sequence models of symbolic music: corpora, encodings, models, evaluation, generation.",
)
data_app = typer.Typer(no_args_is_help=True, help="Corpora: list them, prepare (parse and cache) them, describe them.")
app.add_typer(data_app, name="data")

out = Console()
err = Console(stderr=True)

ROOT = typer.Option(None, "--root", help="Folder of a local corpus (maestro, pop909, lakh, folder, thesession).")
JSON = typer.Option(False, "--json", help="Print machine-readable JSON instead of a table.")
NO_CACHE = typer.Option(False, "--no-cache", help="Parse every file again; read and write no cache.")
WORKERS = typer.Option(None, "--workers", help="Parallel parsing processes (default: all cores).")
STRICT = typer.Option(False, "--strict", help="Fail on the first unreadable file instead of skipping it.")


PROGRESS_EVERY = 10.0  # seconds between progress lines off a terminal


@contextmanager
def progress_bar(description: str):
    """A progress callback ``(done, total)`` for long work: a bar on a terminal; elsewhere (a
    log file, a pipe, a CI job) a line every PROGRESS_EVERY seconds, ``notelm: reading essen:
    4,120/8,514 (48%), 20 s``, so long work is never silent. Work that finishes sooner prints
    nothing. Calling the callback is optional: a line still comes, with the time alone."""
    if err.is_terminal:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       console=err, transient=True)
        with bar:
            task = bar.add_task(description, total=None)
            yield lambda done, total: bar.update(task, completed=done, total=total)
        return
    state = {"done": None, "total": None}
    started, stop = time.monotonic(), threading.Event()

    def tick() -> None:
        while not stop.wait(PROGRESS_EVERY):
            err.print(_progress_line(description, state["done"], state["total"], time.monotonic() - started),
                      highlight=False, markup=False, soft_wrap=True)

    ticker = threading.Thread(target=tick, name="notelm-progress", daemon=True)
    ticker.start()
    try:
        yield lambda done, total: state.update(done=done, total=total)
    finally:
        stop.set()
        ticker.join()


def _progress_line(description: str, done: int | None, total: int | None, elapsed: float) -> str:
    counts = ""
    if done is not None:
        counts = f"{done:,}/{total:,} ({100 * done / total:.0f}%), " if total else f"{done:,} done, "
    return f"notelm: {description}: {counts}{elapsed:.0f} s"


def at_least(option: str, value: int | None, low: int) -> None:
    """Refuse an integer option below ``low`` (None: not given) in one line."""
    if value is not None and value < low:
        raise NotelmError(f"{option} must be >= {low}; got {value}")


def check_outputs(paths: list[Path | None], *, force: bool, folder: bool = False,
                  inputs: list[Path | str | None] = ()) -> None:
    """The check every writing command makes of its output paths before it starts working
    (`notelm.io.files.check_output`): no two outputs share a path, and none is one of
    ``inputs`` (files or folders the command reads) or inside one."""
    from notelm.io.files import check_distinct, check_not_inputs, check_output

    check_distinct(paths)
    check_not_inputs(paths, inputs)
    for path in paths:
        if path is not None:
            check_output(path, force=force, folder=folder)


def print_json(data) -> None:
    """Print a result as JSON, the one way every ``--json`` prints. NaN and Infinity are not
    JSON (strict parsers reject them) and mean a broken result, so a result holding one is
    refused in one line that names the field, never printed."""
    try:
        text = json.dumps(data, indent=2, allow_nan=False)
    except ValueError:
        where, value = _non_finite(data)
        raise NotelmError(f"the result's {where or 'value'} is {value}, not a finite number; "
                          "nothing printed (is the model broken?)") from None
    print(text)


def _non_finite(data, where: str = "") -> tuple[str, float] | tuple[None, None]:
    """The path (``rows[0].bits_per_event``) and value of the first non-finite number in ``data``."""
    if isinstance(data, float) and not math.isfinite(data):
        return where, data
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list | tuple) else ()
    for key, value in items:
        found = _non_finite(value, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}".lstrip("."))
        if found[0] is not None:
            return found
    return None, None


def load(corpus: str, root: Path | None, *, no_cache: bool = False, workers: int | None = None,
         strict: bool = False):
    from notelm.corpora import load_corpus

    with progress_bar(f"reading {corpus}") as progress:
        return load_corpus(corpus, root, use_cache=not no_cache, workers=workers, progress=progress, strict=strict)


# ---- notelm data ----------------------------------------------------------------------------------


@data_app.command("list")
def data_list(as_json: bool = JSON) -> None:
    """The corpora notelm knows, with piece counts and licenses.

    Example: notelm data list
    """
    from notelm.describe import corpus_list

    rows = corpus_list()
    if as_json:
        print_json(rows)
        return
    table = Table("corpus", "kind", "pieces", "license", "what")
    for r in rows:
        table.add_row(r["name"], r["kind"], "" if r["pieces"] is None else f"{r['pieces']:,}", r["license"],
                      r["description"])
    out.print(table)


@data_app.command("info")
def data_info(corpus: str, root: Path | None = ROOT, as_json: bool = JSON, no_cache: bool = NO_CACHE,
              workers: int | None = WORKERS, strict: bool = STRICT) -> None:
    """Pieces, notes, pitches, duration, split sizes and skipped files of a corpus.

    Example: notelm data info essen-kinder --json
    """
    from notelm.describe import corpus_info

    info = corpus_info(load(corpus, root, no_cache=no_cache, workers=workers, strict=strict))
    if as_json:
        print_json(info)
        return
    print_info(info)


def print_info(info: dict) -> None:
    table = Table(title=f"corpus {info['corpus']}", show_header=False)
    notes = "notes (melodic line, ties merged)" if info["melodic"] else "notes"
    table.add_row("pieces", f"{info['pieces']:,}")
    table.add_row(notes, f"{info['notes']:,}")
    table.add_row("distinct pitches", str(info["distinct_pitches"]))
    table.add_row("pitch range", f"{info['pitch_min']}–{info['pitch_max']}")
    table.add_row("total duration", f"{info['duration']:,.1f} {info['duration_unit']}")
    table.add_row("splits", ", ".join(f"{k} {v}" for k, v in info["splits"].items()))
    table.add_row("skipped", str(len(info["skipped"])))
    out.print(table)
    for s in info["skipped"][:10]:
        out.print(f"  skipped {s['path']}: {s['reason']}")
    if len(info["skipped"]) > 10:
        out.print(f"  ... and {len(info['skipped']) - 10} more (see --json)")


@data_app.command("prepare")
def data_prepare(corpus: str, root: Path | None = ROOT, workers: int | None = WORKERS,
                 strict: bool = STRICT) -> None:
    """Parse a corpus once, in parallel, into the cache; later commands read it in a blink.

    Example: notelm data prepare maestro --root ~/data/maestro-v3.0.0
    """
    from notelm.cache import cache_dir, usable

    c = load(corpus, root, workers=workers, strict=strict)
    where = f"cached in {cache_dir()}" if usable() else "read, not cached (the cache cannot be used)"
    out.print(f"{corpus}: {len(c.pieces):,} pieces {where}, {len(c.skipped)} skipped")


# ---- notelm idyom ---------------------------------------------------------------------------------


@app.command()
def idyom(
    corpus: str,
    root: Path | None = ROOT,
    models: str = typer.Option("both+", "--models", help="stm, ltm, ltm+, both (ltm with stm) or both+ (ltm+ with stm)."),
    escape: str | None = typer.Option(None, "--escape", help="a, b, c, d or ax, for every model (IDyOM: LTM c, STM ax)."),
    order_bound: str | None = typer.Option(None, "--order-bound", help="Longest context, or 'none' for PPM* (the default)."),
    interpolated: bool | None = typer.Option(None, "--interpolated/--no-interpolated", help="Interpolated smoothing (IDyOM's mixtures) or backoff (default: interpolated)."),
    update_exclusion: bool | None = typer.Option(None, "--update-exclusion/--no-update-exclusion", help="Count only in the contexts used (IDyOM: LTM off, STM on)."),
    stm_escape: str | None = typer.Option(None, "--stm-escape", help="Escape method of the STM (overrides --escape)."),
    stm_order_bound: str | None = typer.Option(None, "--stm-order-bound", help="Order bound of the STM, or 'none'."),
    stm_interpolated: bool | None = typer.Option(None, "--stm-interpolated/--stm-no-interpolated", help="Smoothing of the STM."),
    stm_update_exclusion: bool | None = typer.Option(None, "--stm-update-exclusion/--stm-no-update-exclusion", help="Update exclusion in the STM."),
    combine: str = typer.Option("geometric", "--combine", help="LTM with STM: arithmetic or geometric mean, entropy-weighted."),
    bias: float = typer.Option(7.0, "--bias", help="Bias b of the LTM-STM weights (entropy^-b)."),
    viewpoints: str = typer.Option("cpitch", "--viewpoints", help="Comma-separated: cpitch, cpint, cpitch-class, contour, and links with dur or ioi (cpint:dur or 'cpint*dur')."),
    viewpoint_combine: str | None = typer.Option(None, "--viewpoint-combine", help="Across viewpoints: arithmetic or geometric (default: as --combine)."),
    viewpoint_bias: float = typer.Option(2.0, "--viewpoint-bias", help="Bias of the viewpoint weights."),
    folds: int = typer.Option(10, "--folds", help="Cross-validation folds for LTM kinds (piece i in fold i mod k)."),
    ltm_run: str | None = typer.Option(None, "--ltm", help="A trained run (RUN or builtin:NAME, melody-events or melody encoding) in the LTM's place: ltm = the run, both = run + STM, ltm+/both+ add IDyOM's LTM+."),
    stm_run: str | None = typer.Option(None, "--stm", help="A trained run (e.g. a ccstm on melody-events) in the STM's place."),
    output: Path | None = typer.Option(None, "--output", help="Write the per-event table (piece, position, pitch, IC, entropy, each model's p) as CSV."),
    force: bool = typer.Option(False, "--force", help="Overwrite --output and generated files."),
    generate: int = typer.Option(0, "--generate", help="Also sample this many melodies (model trained on the whole corpus) as MIDI."),
    generate_out: Path = typer.Option(Path("notelm-runs/idyom"), "--generate-out", help="Folder for --generate."),
    length: int | None = typer.Option(None, "--length", help="Notes per generated melody (default: the corpus's median)."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature (0 = most likely note)."),
    top_k: int | None = typer.Option(None, "--top-k", help="Sample among the k most likely notes."),
    top_p: float | None = typer.Option(None, "--top-p", help="Sample from the smallest set of notes with this much probability."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed for --generate."),
    as_json: bool = JSON,
) -> None:
    """IDyOM on a corpus: information content of every note's pitch under STM/LTM/BOTH models.

    Example (Pearce 2005's LTM+ with STM, C*I, arithmetic b=2):
    notelm idyom essen-kinder --models both+ --escape c --no-update-exclusion --combine arithmetic --bias 2

    Example (a neural long-term model trained without kinder, with IDyOM's STM):
    notelm idyom essen-kinder --ltm builtin:essen-melody-lstm --models both --viewpoints cpitch
    """
    from notelm.generation import check_settings
    from notelm.idyom import (
        check_counts,
        check_generate_outputs,
        check_kind,
        combine_config,
        generate_melodies,
        run_idyom,
        smoothing,
    )
    from notelm.viewpoints import parse_viewpoints

    check_kind(models)
    ltm, stm = smoothing(escape=escape, order_bound=order_bound, interpolated=interpolated,
                         update_exclusion=update_exclusion, stm_escape=stm_escape, stm_order_bound=stm_order_bound,
                         stm_interpolated=stm_interpolated, stm_update_exclusion=stm_update_exclusion)
    parse_viewpoints(viewpoints)  # bad settings fail here, before the corpus is read
    combine_config(combine, bias)
    combine_config(viewpoint_combine or combine, viewpoint_bias, "viewpoint combination: ")
    check_settings(length=length, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    check_counts(models=models, folds=folds, generate=generate)
    if (ltm_run is not None or stm_run is not None) and generate:
        raise NotelmError("--generate samples from IDyOM's own models; to sample from a run: notelm generate RUN")
    check_outputs([output], force=force, inputs=[root])
    check_generate_outputs(corpus, generate_out, models=models, n=generate, force=force)
    settings = {"models": models, "ltm_config": ltm, "stm_config": stm, "combine": combine, "bias": bias,
                "viewpoints": viewpoints, "viewpoint_combine": viewpoint_combine, "viewpoint_bias": viewpoint_bias}
    data = load(corpus, root)
    with progress_bar(f"IDyOM {models} on {corpus}"):
        result = run_idyom(data, folds=folds, output=output, force=force, ltm=ltm_run, stm=stm_run, **settings)
    summary = result.summary()
    if generate:
        from notelm.io.files import removed_on_failure

        with progress_bar(f"generating {generate} melodies"), removed_on_failure([output]):
            paths = generate_melodies(data, generate_out, n=generate, length=length, temperature=temperature,
                                      top_k=top_k, top_p=top_p, seed=seed, force=force, **settings)
        summary["generated"] = [str(p) for p in paths]
    if as_json:
        print_json(summary)
        return
    table = Table(title=f"IDyOM {models} on {corpus} ({', '.join(summary['viewpoints'])})", show_header=False)
    table.add_row("mean IC per piece (bits)", f"{summary['mean_ic_per_piece']:.4f}")
    table.add_row("mean IC per event (bits)", f"{summary['mean_ic_per_event']:.4f}")
    table.add_row("mean entropy (bits)", f"{summary['mean_entropy']:.4f}")
    table.add_row("pieces / events", f"{summary['pieces']:,} / {summary['events']:,}")
    table.add_row("modelling time", f"{summary['seconds']:.2f} s ({summary['events_per_second']:,.0f} events/s)")
    for role in ("ltm", "stm"):
        if r := summary.get(f"{role}_run"):
            table.add_row(f"{role.upper()} run", f"{r['path']} ({r['model']}, {r['encoding']}, trained on {r['trained_on']})")
    for name in ("ltm", "stm"):
        if summary[name]:
            c = summary[name]
            table.add_row(name.upper(), f"escape {c['escape']}, order bound {c['order_bound'] if c['order_bound'] is not None else 'none'}, "
                          f"{'interpolated' if c['interpolated'] else 'backoff'}, update exclusion {'on' if c['update_exclusion'] else 'off'}")
    for name, what in (("combine", "LTM+STM"), ("viewpoint_combine", "viewpoints")):
        if summary[name]:
            table.add_row(what, f"{summary[name]['method']}, bias {summary[name]['bias']:g}")
    if summary["folds"]:
        table.add_row("cross-validation", f"{summary['folds']} folds")
    for reason, n in summary["skipped"].items():
        table.add_row("skipped pieces", f"{n:,}: {reason}")
    out.print(table)
    if output is not None:
        out.print(f"per-event table written to {output}")
    for p in summary.get("generated", []):
        out.print(f"generated {p}")


# ---- notelm quickstart ----------------------------------------------------------------------------


@app.command()
def encode(
    corpus: str,
    encoding: str = typer.Option(..., "--encoding", "-e", help="melody, grid, dstm-frames, performance, note-tokens, remi, tsd, midilike."),
    root: Path | None = ROOT,
    settings: list[str] = typer.Option([], "--set", help="An encoding setting, key=value (repeatable), e.g. --set transpose=true."),
    limit: int | None = typer.Option(None, "--limit", help="Use only the first N pieces."),
    show: int = typer.Option(1, "--show", help="Print the readable tokens of this many pieces."),
    roundtrip: bool = typer.Option(False, "--roundtrip", help="Encode and decode every piece; count exact round trips."),
    as_json: bool = JSON,
) -> None:
    """Turn a corpus into tokens: show them, or check that decoding gives the piece back.

    Encodings that learn an alphabet (melody) learn it from the whole corpus, as IDyOM does;
    note-tokens fits its bin edges on the training split, as midi-translation does.
    Example: notelm encode essen-kinder --encoding grid --show 2
    """
    from notelm.encodings import get_encoding
    from notelm.encodings.report import roundtrip_report, show_tokens

    at_least("--limit", limit, 1)
    at_least("--show", show, 0)
    c = load(corpus, root)
    pieces = c.pieces[:limit] if limit is not None else c.pieces
    from notelm.training.config import parse_pairs

    enc = get_encoding(encoding, **parse_pairs(settings))
    if enc.learns:
        enc.fit((c.split("train") or pieces) if enc.fits_on == "train" else pieces)
    if roundtrip:
        with progress_bar(f"round trips of {len(pieces):,} pieces"):
            report = roundtrip_report([*pieces, *(_skipped_items(c) if limit is None else [])], enc)
        if as_json:
            print_json(report)
        else:
            out.print(f"{report['pieces']} pieces: {report['exact']} exact, {report['skipped']} skipped, "
                      f"{report['mismatched']} mismatched")
            for reason, n in report["skip_reasons"].items():
                out.print(f"  skipped {n}: {reason}")
            for m in report["mismatches"]:
                out.print(f"  mismatch {m['id']}: {m['reason']}")
        return
    if not pieces:
        out.print(f"{corpus}: no pieces to show ({len(c.skipped)} files skipped)")
    shown = 0
    for piece in pieces:
        if shown >= show:
            break
        try:
            line = show_tokens(piece, enc)
        except NotelmError as e:
            out.print(f"{piece.meta.id}: skipped ({e})", markup=False)
            continue
        out.print(f"{piece.meta.id} ({len(enc.encode(piece))} tokens): {line}", markup=False, highlight=False)
        shown += 1


def _skipped_items(corpus) -> list:
    """The files a corpus skipped, as errors, so round-trip reports count them too."""
    from notelm.errors import ReadError

    return [ReadError(s["path"], s["reason"]) for s in corpus.skipped]


@app.command()
def quickstart(out_dir: Path = typer.Option(Path("notelm-runs/quickstart"), "--out", help="Where to write the report."),
               force: bool = typer.Option(False, "--force", help="Overwrite an earlier quickstart's report.")) -> None:
    """The main job on bundled data: prepare and describe the corpora, run every model that exists,
    print the leaderboard and write a report to ./notelm-runs/quickstart/.

    Example: notelm quickstart
    """
    from notelm.quickstart import run_quickstart

    run_quickstart(out_dir, force=force, console=out, progress_bar=progress_bar)


# ---- notelm models ---------------------------------------------------------------------------------

models_app = typer.Typer(no_args_is_help=True, help="Built-in trained models and the model families notelm trains.")
app.add_typer(models_app, name="models")


def _model_names() -> list[str]:
    from notelm.models.registry import names

    return names()


@models_app.command("list")
def models_list(as_json: bool = JSON) -> None:
    """The built-in trained models (use them as builtin:NAME wherever a run directory is taken).

    Example: notelm models list --json
    """
    from notelm.pretrained import listing

    rows = listing()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        out.print("no built-in models in this notelm")
        return
    table = Table("name", "family", "encoding", "parameters", "size", "trained on", "license")
    for r in rows:
        table.add_row(f"builtin:{r['name']}", r["family"], r["encoding"], f"{r['parameters'] or 0:,}",
                      f"{r['bytes'] / 2**20:.1f} MB", r["corpus"], r["license"] or "")
    out.print(table)


@models_app.command("families")
def models_families(as_json: bool = JSON) -> None:
    """The model families `notelm train` knows, with their kind and presets.

    Example: notelm models families
    """
    from notelm.models.registry import SPECS

    rows = [{"name": s.name, "kind": s.kind, "description": s.description,
             "presets": sorted(s.preset_table) if s.neural else []} for s in SPECS]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("model", "kind", "presets", "what")
    for r in rows:
        table.add_row(r["name"], r["kind"], ", ".join(r["presets"]), r["description"])
    out.print(table)


# ---- notelm train / evaluate / compare / generate / bench -----------------------------------------

bench_app = typer.Typer(no_args_is_help=True, help="Speed benchmarks of the neural engine.")
app.add_typer(bench_app, name="bench")


@app.command()
def train(
    model: str = typer.Argument(..., help="The model: " + ", ".join(_model_names()) + " (see notelm models families)."),
    corpus: str | None = typer.Option(None, "--corpus", help="Corpus to train on (not needed with --resume)."),
    root: Path | None = ROOT,
    encoding: str | None = typer.Option(None, "--encoding", help="Token encoding (grid, the default; melody, performance, note-tokens, remi, ...)."),
    config: Path | None = typer.Option(None, "--config", help="YAML or JSON file with sections model, train, encoding."),
    settings: list[str] = typer.Option([], "--set", help="A setting, section.key=value (repeatable), e.g. --set model.dim=64 --set train.lr=3e-4, or for ppm --set model.mode=both --set model.order_bound=5."),
    preset: str | None = typer.Option(None, "--preset", help="debug (seconds on CPU), small (the default) or base; neural models."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Stop after this many optimiser steps."),
    max_epochs: int | None = typer.Option(None, "--max-epochs", help="Stop after this many passes over the training tokens."),
    devices: str = typer.Option("auto", "--devices", help="Lightning devices: a number, a list like 0,1, or auto."),
    accelerator: str = typer.Option("auto", "--accelerator", help="cpu, gpu, mps or auto."),
    strategy: str = typer.Option("auto", "--strategy", help="Lightning strategy: auto, ddp, fsdp, ..."),
    num_nodes: int = typer.Option(1, "--num-nodes", help="Machines taking part (Lightning's cluster environment)."),
    precision: str | None = typer.Option(None, "--precision", help="32-true, bf16-mixed, 16-mixed, ..."),
    out_dir: Path = typer.Option(..., "--out", help="Run directory to create (or continue with --resume)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out exactly where it stopped."),
    force: bool = typer.Option(False, "--force", help="Replace the run directory in --out (only one notelm made)."),
    threads: int | None = typer.Option(None, "--threads", help="Torch threads per process (default one per core; 1 on a busy CPU). Ignored by counting models."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar or model summary."),
) -> None:
    """Train a model on an encoded corpus into a run directory: a neural model with Lightning,
    or a counting model (ppm, markov, repetition) in one pass over the training split.

    ppm settings: model.mode (ltm, ltm+, stm, both, both+), model.escape, model.order_bound, model.update_exclusion, model.interpolated, model.exclusion, model.shortest_deterministic, and in the both modes model.stm_KEY, model.combine, model.bias. markov: model.mode (ltm, stm), model.order, model.alpha, model.backoff. repetition: model.eps.

    Counting models refuse the flags of gradient training (--preset, --max-steps, --max-epochs, --devices, --accelerator, --strategy, --num-nodes, --precision, --resume) and any train.* setting; --threads and --quiet do not matter to them.

    Example: notelm train lstm --corpus essen-erk --encoding grid --set encoding.transpose=true --max-steps 2000 --out runs/lstm

    Example: notelm train ppm --corpus essen-kinder --encoding melody --set model.mode=both+ --out runs/ppm

    Example: notelm train ccstm --corpus oneills --encoding dstm-frames --max-steps 2500 --out runs/ccstm
    """
    from notelm.models.registry import names
    from notelm.training import train as train_model

    check_outputs([out_dir], force=True, folder=True, inputs=[root, config])
    dev = int(devices) if devices.isdigit() else devices
    # Lightning draws its own bar for networks; a counting model's pass is silent without this
    counting = model in names("counting")
    with progress_bar(f"training {model}") if counting and not quiet else contextlib.nullcontext():
        path = train_model(model, out=out_dir, corpus=corpus, root=root, encoding=encoding, config_file=config,
                           overrides=settings, preset=preset, max_steps=max_steps, max_epochs=max_epochs,
                           devices=dev, accelerator=accelerator, strategy=strategy, num_nodes=num_nodes,
                           precision=precision, resume=resume, force=force, progress=not quiet, threads=threads)
    if os.environ.get("LOCAL_RANK", "0") == "0":
        m = json.loads((path / "metrics.json").read_text())
        best = m.get("best_val_loss")
        if m.get("global_step") is None:  # a counting model
            learned = (f"counted {m['train_tokens']:,} training tokens ({m['counts']:,} n-grams) in "
                       f"{m['train_seconds']:.2f} s" if m["counts"] else "learns nothing from the corpus (only within each piece)")
            out.print(f"{path}: {model} {learned}; validation {m['valid_bits_per_event']:.4f} bits per token, "
                      f"accuracy {m['valid_accuracy']:.4f}")
            return
        out.print(f"{path}: {m['global_step']} steps in {m['train_seconds']:.0f} s, best validation "
                  + (f"{best:.4f} nats = {m['best_val_bits']:.4f} bits per token at step {m['best_step']}"
                     " (model.safetensors holds those weights)" if best is not None else "none"))


def weights_step(r: dict) -> str:
    """', weights of step B of G' for a run evaluated with its best weights from before its last step."""
    best, last = r.get("best_step"), r.get("global_step")
    return f", weights of step {best:,} of {last:,}" if best is not None and last is not None and best != last else ""


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="A run directory made by notelm train."),
    corpus: str = typer.Option(..., "--corpus", help="Corpus to evaluate on."),
    root: Path | None = ROOT,
    split: str = typer.Option("test", "--split", help="train, valid or test."),
    as_json: bool = JSON,
) -> None:
    """Bits per event and accuracy of a trained model on a corpus split (the evaluation PPM uses).

    Example: notelm evaluate runs/lstm --corpus essen-erk --split test --json
    """
    from notelm.leaderboard import evaluate_run

    with progress_bar(f"scoring {run} on {corpus} {split}"):
        r = evaluate_run(run, corpus=corpus, root=root, split=split)
    if as_json:
        print_json(r)
        return
    if "rows" in r:  # a velocity run: its figures and its baselines' in one table
        table = Table("model", "MAE teacher-forced", "MAE greedy", "MAE expected", "Pearson", "std ratio",
                      title=f"{r['model']} ({run}, {r['variant']}{weights_step(r)}) on {corpus} {split}: "
                            f"{r['pieces']} pieces, {r['notes']:,} notes; baselines {r['baselines']}")
        for row in r["rows"]:
            table.add_row(row["model"], *(f"{row[k] + 0.0:.3f}" for k in ("mae_teacher_forced", "mae_greedy", "mae_expected",
                                                                     "pearson", "std_ratio")))
        out.print(table)
        return
    table = Table(title=f"{r['model']} ({run}) on {corpus} {split}", show_header=False)
    table.add_row(r["unit"], f"{r['bits_per_event']:.4f}")
    table.add_row("accuracy (argmax)", f"{r['accuracy']:.4f}")
    table.add_row("mean IC per piece (bits)", f"{r['mean_ic_per_piece']:.4f}")
    table.add_row("pieces / events", f"{r['pieces']:,} / {r['events']:,}")
    table.add_row("skipped pieces", ", ".join(f"{k}: {v}" for k, v in r["skipped"].items()) or "none")
    out.print(table)


@app.command()
def compare(
    runs: list[Path] = typer.Argument(..., help="Run directories to compare."),
    corpus: str = typer.Option(..., "--corpus", help="Corpus to evaluate them on."),
    root: Path | None = ROOT,
    split: str = typer.Option("test", "--split", help="train, valid or test."),
    png: Path | None = typer.Option(None, "--png", help="Also draw the leaderboard as a bar chart (PNG)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing --png file."),
    as_json: bool = JSON,
) -> None:
    """A leaderboard of trained runs on one corpus split: bits per event (per encoding), accuracy.

    Example: notelm compare runs/lstm runs/transformer --corpus essen-erk --png leaderboard.png
    """
    from notelm.leaderboard import compare_runs, plot_leaderboard

    check_outputs([png], force=force, inputs=[root, *runs])
    with progress_bar(f"scoring {len(runs)} runs on {corpus} {split}") as progress:
        rows = compare_runs(runs, corpus=corpus, root=root, split=split, progress=progress)
    if png is not None:
        plot_leaderboard(rows, png, title=f"{corpus} {split}", force=force)
    if as_json:
        print_json(rows)
        return
    table = Table("run", "model", "encoding", "bits/event", "accuracy", "events", "size",
                  title=f"Leaderboard: {corpus} {split} (bits per event of each row's encoding)")
    for r in rows:
        table.add_row(Path(r["run"]).name, f"{r['model']} {r['mode']}" if r.get("mode") else r["model"], r["encoding"], f"{r['bits_per_event']:.4f}", f"{r['accuracy']:.4f}",
                      f"{r['events']:,}", f"{r['parameters']:,} parameters" if r["parameters"]
                      else f"{r['counts']:,} n-grams" if r.get("counts") is not None else "")
    out.print(table)
    if png is not None:
        out.print(f"chart written to {png}")


@app.command()
def generate(
    run: Path = typer.Argument(..., help="A run directory made by notelm train."),
    output: Path = typer.Option(..., "--out", help="MIDI file to write."),
    primer: Path | None = typer.Option(None, "--primer", help="A MIDI/ABC/MusicXML/kern file to continue."),
    length: int | None = typer.Option(None, "--length", help="Tokens to sample (default 512; sampling stops at the end of a piece)."),
    seconds: float | None = typer.Option(None, "--seconds", help="Seconds of music to make instead of --length."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature (0 = most likely token)."),
    top_k: int | None = typer.Option(None, "--top-k", help="Sample among the k most likely tokens."),
    top_p: float | None = typer.Option(None, "--top-p", help="Nucleus sampling: the smallest set with this much probability (default: none)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (reproducible output)."),
    no_stop: bool = typer.Option(False, "--no-stop", help="Do not stop at the end-of-piece token."),
    min_length: int = typer.Option(0, "--min-length", help="Hold the end-of-piece token back for this many tokens."),
    rules: bool = typer.Option(True, "--rules/--no-rules", help="Sample only events the encoding can write (performance: no re-strike of a key that is down; default)."),
    wav: Path | None = typer.Option(None, "--wav", help="Also render audio (a General MIDI SoundFont found offline)."),
    png: Path | None = typer.Option(None, "--png", help="Also draw the piano roll."),
    soundfont: Path | None = typer.Option(None, "--soundfont", help="SoundFont (.sf2/.sf3) for --wav."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
    as_json: bool = JSON,
) -> None:
    """Sample music from a trained model (the one sampler), as MIDI, and optionally WAV and PNG.

    Example: notelm generate runs/lstm --temperature 0.6 --seed 1 --out song.mid --wav song.wav --png song.png
    """
    from notelm.compose import generate as compose
    from notelm.generation import check_settings
    from notelm.io import write_midi
    from notelm.io.files import removed_on_failure

    check_settings(length=length, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                   min_length=min_length)
    check_outputs([output, wav, png], force=force, inputs=[run, primer])
    if wav is not None and soundfont is not None:
        from notelm.render import find_soundfont

        find_soundfont(soundfont)
    with progress_bar("generating") as progress, removed_on_failure([output, wav, png]):
        g = compose(run, primer=primer, length=length, seconds=seconds, temperature=temperature, top_k=top_k,
                    top_p=top_p, seed=seed, stop_at_eos=not no_stop, min_length=min_length, rules=rules)
        progress(1, 3)
        write_midi(g.piece, output, force=force)
        result = {"midi": str(output), "tokens": len(g.tokens) - g.primer_tokens, "primer_tokens": g.primer_tokens,
                  "notes": len(g.piece), "duration": g.piece.end, "time_unit": g.piece.time_unit,
                  "stopped_at_eos": g.stopped_at_eos}
        if png is not None:
            from notelm.render import plot_pianoroll

            plot_pianoroll(g.piece, png, force=force, mark_from=g.primer_end or None)
            result["png"] = str(png)
        progress(2, 3)
        if wav is not None:
            from notelm.render import render_wav

            rendered = render_wav(g.piece, wav, soundfont=soundfont, force=force)
            result.update(wav=str(wav), wav_seconds=rendered.seconds, synthesizer=rendered.synthesizer)
    if as_json:
        print_json(result)
        return
    out.print(f"{output}: {result['notes']} notes, {result['duration']:g} {result['time_unit']}s "
              f"({result['tokens']} tokens{', ended at the end-of-piece token' if g.stopped_at_eos else ''})")
    for key in ("png", "wav"):
        if key in result:
            out.print(f"{result[key]}" + (f" ({result['synthesizer']})" if key == "wav" else ""))


@app.command()
def humanize(
    source: Path = typer.Argument(..., help="A MIDI file, a score (MusicXML, kern, ABC) or a folder of them."),
    output: Path | None = typer.Option(None, "--out", help="MIDI file to write (for a folder: a folder, outside it). Default notelm-runs/humanize/NAME.mid (or NAME/)."),
    model: str = typer.Option("builtin:velocity", "--model", help="builtin:velocity (no velocity input), builtin:velocity-3bin, or a run made by notelm train velocity."),
    wav: bool = typer.Option(False, "--wav", help="Also render each output as WAV beside it."),
    png: bool = typer.Option(False, "--png", help="Also draw each output's piano roll, coloured by velocity, beside it."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the sampled velocities (same seed, same output)."),
    temperature: float = typer.Option(1.0, "--temperature", help="Sampling temperature (0 = the most likely velocity, note by note)."),
    soundfont: Path | None = typer.Option(None, "--soundfont", help="SoundFont (.sf2/.sf3) for --wav."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
    as_json: bool = JSON,
) -> None:
    """Give every note a performed velocity; timing, pedals, tracks and programs stay as they are.

    A folder is humanized file by file into --out (its structure kept); unreadable files are
    skipped and listed.

    Example: notelm humanize chorale.musicxml --out chorale.mid --wav --png
    """
    from notelm.humanize import humanize as run_humanize

    def told(path, written, why):
        if not as_json:
            out.print(f"{path}: skipped ({why})" if why else f"{path} -> {', '.join(str(h.midi) for h in written)}",
                      markup=False, highlight=False)

    with progress_bar(f"humanizing {source.name}") as progress:
        done, skipped = run_humanize(source, output, model=model, wav=wav, png=png, seed=seed, temperature=temperature,
                                     force=force, soundfont=soundfont, progress=progress, on_file=told)
    result = {"written": [{"source": str(h.source), "midi": str(h.midi), "notes": h.notes,
                           **{p.suffix[1:]: str(p) for p in h.extras}} for h in done],
              "skipped": [{"path": str(p), "reason": why} for p, why in skipped]}
    if as_json:
        print(json.dumps(result, indent=2))
        return
    if source.is_dir():
        out.print(f"{len(done)} file(s) written, {len(skipped)} skipped")
        return
    for h in done:
        out.print(f"{h.midi}: {h.notes} note{'' if h.notes == 1 else 's'} humanized" + "".join(f", {p}" for p in h.extras), markup=False)


@app.command("continue")
def continue_(
    primer: Path = typer.Argument(..., help="MIDI file to continue: its first --primer-seconds, or --from/--to."),
    seconds: float | None = typer.Option(None, "--seconds", help="Seconds of music to add (default 30)."),
    tokens: int | None = typer.Option(None, "--tokens", help="Tokens to sample instead of --seconds."),
    primer_seconds: float | None = typer.Option(None, "--primer-seconds", help="The primer is the file's first so many seconds (default 10)."),
    start: float | None = typer.Option(None, "--from", help="Where in the file the primer starts (seconds; default 0)."),
    end: float | None = typer.Option(None, "--to", help="Where in the file the primer ends (seconds)."),
    model: str = typer.Option("builtin:perceiver-ar", "--model", help="builtin:NAME or a run directory trained with --encoding performance."),
    temperature: float | None = typer.Option(None, "--temperature", help="Sampling temperature (default 1, with no top-p or top-k and --repeat-penalty 32: closest to the pianist; README)."),
    top_p: float | None = typer.Option(None, "--top-p", help="Nucleus sampling: the smallest set with this much probability (default: none)."),
    top_k: int | None = typer.Option(None, "--top-k", help="Sample among the k most likely tokens."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed (reproducible output)."),
    rules: bool = typer.Option(True, "--rules/--no-rules", help="Sample only events the encoding can write (performance: no re-strike of a key that is down; default)."),
    repeat_penalty: float | None = typer.Option(None, "--repeat-penalty", help="Striking again a pitch of the previous onset is r^n times less likely, n the onsets in a row that struck it (1: none; default 32, from the README's repetition table)."),
    output: Path | None = typer.Option(None, "--out", help="MIDI file to write (default: PRIMER-continued.mid in the current folder)."),
    wav: Path | None = typer.Option(None, "--wav", help="Also render audio (a General MIDI SoundFont found offline)."),
    png: Path | None = typer.Option(None, "--png", help="Also draw the piano roll (the primer's end marked)."),
    soundfont: Path | None = typer.Option(None, "--soundfont", help="SoundFont (.sf2/.sf3) for --wav."),
    continuation_only: bool = typer.Option(False, "--continuation-only", help="Write only the continuation, not the primer before it."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing output files."),
    as_json: bool = JSON,
) -> None:
    """Continue a piano performance: the primer is the stretch of the file you name (its first 10 s
    unless told), never a random window; the output holds the primer, then the continuation.
    Works with any run trained on the performance encoding (perceiver-ar, transformer, lstm, ...).

    Example: notelm continue primer.mid --seconds 20 --seed 1 --out continued.mid --wav continued.wav --png continued.png
    """
    from notelm import continuation as c
    from notelm.io import write_midi

    if seconds is not None and tokens is not None:
        raise NotelmError("give --seconds or --tokens, not both")
    output = output if output is not None else Path(f"{primer.stem}-continued.mid")
    check_outputs([output, wav, png], force=force, inputs=[primer])
    settings = {"temperature": c.TEMPERATURE if temperature is None else temperature,
                "top_p": c.TOP_P if top_p is None else top_p, "top_k": c.TOP_K if top_k is None else top_k,
                "rules": rules,
                "repeat_penalty": c.sampling_penalty(rules, repeat_penalty)}
    seconds = 30.0 if seconds is None and tokens is None else seconds
    with rate_bar("continuing", total=seconds if seconds is not None else tokens, unit="s" if tokens is None else "tokens") as bar:
        result = c.continue_file(primer, model, primer_seconds=primer_seconds, start=start, end=end, seconds=seconds,
                                 tokens=tokens, seed=seed, continuation_only=continuation_only, progress=bar, **settings)
    write_midi(result.piece, output, force=force)
    report = {"midi": str(output), "model": model, "primer": str(primer), "primer_seconds": result.primer_seconds,
              "primer_notes": len(result.primer), "primer_tokens": result.primer_tokens, "tokens": result.tokens,
              "notes": len(result.continuation), "seconds": result.continuation.end, "tokens_per_s": result.tokens_per_s,
              **settings, "seed": seed}
    if png is not None:
        from notelm.render import plot_pianoroll

        plot_pianoroll(result.piece, png, force=force, mark_from=None if continuation_only else result.primer_seconds)
        report["png"] = str(png)
    if wav is not None:
        from notelm.render import render_wav

        rendered = render_wav(result.piece, wav, soundfont=soundfont, force=force)
        report.update(wav=str(wav), wav_seconds=rendered.seconds, synthesizer=rendered.synthesizer)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    out.print(f"{output}: {report['primer_notes']} primer notes ({result.primer_seconds:g} s), then "
              f"{report['notes']} notes ({report['tokens']} tokens, {result.tokens_per_s:.0f} tokens/s)")
    for key in ("png", "wav"):
        if key in report:
            out.print(f"{report[key]}" + (f" ({report['synthesizer']})" if key == "wav" else ""))


@contextmanager
def rate_bar(description: str, *, total: float, unit: str):
    """A progress callback ``(tokens, seconds)`` drawing a bar of seconds (or tokens) made and
    the tokens per second on a terminal; elsewhere `progress_bar`'s line every PROGRESS_EVERY
    seconds, as all long work prints."""
    if not err.is_terminal:
        with progress_bar(description) as tick:
            yield lambda tokens, seconds: tick(round(seconds if unit == "s" else tokens), round(total))
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                   TimeElapsedColumn(), console=err, transient=True)
    first: list[float] = []  # when the first token came (the primer's prefill is not sampling)
    with bar:
        task = bar.add_task(description, total=total, info="")

        def update(tokens: int, seconds: float) -> None:
            if not first:
                first.append(time.perf_counter())
            rate = (tokens - 1) / max(time.perf_counter() - first[0], 1e-9)
            done = seconds if unit == "s" else tokens
            bar.update(task, completed=min(done, total), info=f"{done:.1f}/{total:g} {unit}, {rate:.0f} tokens/s")

        yield update


@bench_app.command("generation")
def bench_generation(
    family: str = typer.Option("transformer", "--family", help="transformer or perceiver-ar."),
    context: int = typer.Option(2048, "--context", help="Tokens of context when sampling."),
    new_tokens: int = typer.Option(64, "--tokens", help="Tokens to sample each way."),
    peer_tokens: int = typer.Option(4, "--peer-tokens", help="perceiver-ar: tokens the peer library samples (each is a full forward pass)."),
    preset: str = typer.Option("small", "--preset", help="Transformer size: debug, small or base."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    as_json: bool = JSON,
) -> None:
    """Sampling speed with and without the KV cache, same model, same run: a Transformer, or
    Perceiver AR (512 latents, 512 wide, 8 layers, 8 heads) against perceiver-ar-pytorch's
    generate when the [bench] extra is installed.

    Example: notelm bench generation --family perceiver-ar --context 2048 --json
    """
    from notelm.benchmarks import (
        generation_speed,
        machine,
        peer_generation_speed,
        perceiver_generation_speed,
    )

    if context < new_tokens + 2:
        raise NotelmError(f"--context must exceed --tokens + 1 ({new_tokens + 1})")
    if family not in ("transformer", "perceiver-ar"):
        raise NotelmError(f"--family must be transformer or perceiver-ar; got {family!r}")
    with progress_bar(f"sampling at context {context:,}"):
        if family == "transformer":
            r = generation_speed(context=context, new_tokens=new_tokens, preset=preset, device=device)
        else:
            r = perceiver_generation_speed(context=context, new_tokens=new_tokens, device=device)
            r.update(peer_generation_speed(context=context, new_tokens=peer_tokens) if device == "cpu" else
                     {"peer_tokens_per_s": None, "peer_note": "the peer is measured on the CPU only"})
            if r["peer_tokens_per_s"]:
                r["speedup_over_peer"] = r["cached_tokens_per_s"] / r["peer_tokens_per_s"]
    r["machine"] = machine()
    if as_json:
        print_json(r)
        return
    name = f"{preset} transformer" if family == "transformer" else "perceiver-ar"
    peer = (f"; perceiver-ar-pytorch {r['peer_tokens_per_s']:.2f} tokens/s ({r['speedup_over_peer']:.0f}x slower)"
            if r.get("peer_tokens_per_s") else f"; peer: {r['peer_note']}" if "peer_note" in r else "")
    out.print(f"context {context}, {name} on {device}: cached {r['cached_tokens_per_s']:.1f} tokens/s, "
              f"uncached {r['uncached_tokens_per_s']:.1f} tokens/s ({r['speedup']:.1f}x){peer}; "
              f"largest log-probability difference {r['max_abs_log_prob_diff']:.2e}")


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit."),
          debug: bool = typer.Option(False, "--debug", help="Show the traceback of an internal error "
                                     "(also NOTELM_DEBUG=1; accepted anywhere on the line).")) -> None:
    if version:
        print(f"notelm {__version__}")
        raise typer.Exit()


# ---- the entry point: exit statuses and the last-resort handler -----------------------------------

EXIT_USER, EXIT_INTERNAL, EXIT_INTERRUPTED = 1, 3, 130  # and 2 for usage errors (click's own)


def _command_name(args: list[str]) -> str:
    """``notelm generate`` or ``notelm data info``: the command a line of arguments runs."""
    groups = {g.name for g in app.registered_groups}  # commands that take a subcommand
    words = [a for a in args if not a.startswith("-")][:2]
    return " ".join(["notelm", *words[: 2 if words and words[0] in groups else 1]])


def _take_debug(args: list[str]) -> bool:
    """Remove ``--debug`` from the arguments (before any ``--``); whether it was there."""
    end = args.index("--") if "--" in args else len(args)
    found = "--debug" in args[:end]
    args[:end] = [a for a in args[:end] if a != "--debug"]
    return found


def _fit_consoles() -> None:
    """Off a terminal (a pipe, a file), print tables and lines whole instead of cutting them at
    80 columns, and never fail on a character the stream cannot encode (a file name that is
    not valid UTF-8 reaches Python as surrogates)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")
    for console in (out, err):
        if not console.is_terminal:
            console.width = 10_000


def _say(command: str, message: str) -> None:
    err.print(f"{command}: {message}", highlight=False, markup=False, soft_wrap=True)


def _usage_error(e: Exception) -> int:
    """Click's usage errors in two lines (its own format takes four), --help pages as they are."""
    kinds = {c.__name__ for c in type(e).__mro__}
    ctx = getattr(e, "ctx", None)
    if "NoArgsIsHelpError" in kinds or "UsageError" not in kinds:
        e.show()
        return e.exit_code
    err.print(f"Error: {e.format_message()}", highlight=False, markup=False, soft_wrap=True)
    if ctx is not None:
        err.print(f"Try '{ctx.command_path} --help' for help.", highlight=False, markup=False)
    return e.exit_code


def _internal_error(command: str, e: BaseException, debug: bool) -> int:
    """The safety net: an exception no code path expected, in one line naming the command."""
    if debug:
        traceback.print_exception(e)
    what = (str(e).strip().splitlines() or [""])[0][:300]
    hint = "" if debug else " (run with --debug or NOTELM_DEBUG=1 for the traceback)"
    _say(command, f"internal error: {type(e).__name__}{': ' + what if what else ''}{hint}")
    return EXIT_INTERNAL


def run(args: list[str]) -> int:
    """Run the command line ``args``; its exit status: 0, 1 (what the user gave is wrong), 2
    (usage), 3 (an internal error: a bug), 130 (interrupted)."""
    args = list(args)
    debug = _take_debug(args) or os.environ.get("NOTELM_DEBUG", "") not in ("", "0")
    command = _command_name(args)
    _fit_consoles()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = lambda message, category, *rest: _say(command, f"warning: {message}")
            code = app(args=args, prog_name="notelm", standalone_mode=False)
    except NotelmError as e:
        if debug:
            traceback.print_exception(e)
        err.print(f"notelm: error: {e}", highlight=False, markup=False, soft_wrap=True)
        return EXIT_USER
    except KeyboardInterrupt:  # typer turns most into Exit(130), below; this catches the rest
        code = EXIT_INTERRUPTED
    except (typer.Exit, SystemExit) as e:
        code = getattr(e, "exit_code", getattr(e, "code", 0))
    except MemoryError:
        _say(command, "error: out of memory (ask for less: a shorter --length, a smaller corpus or model)")
        return EXIT_USER
    except Exception as e:  # click's usage errors (its own classes, or the copy typer vendors), then bugs
        kinds = {c.__name__ for c in type(e).__mro__}
        if "ClickException" in kinds:
            return _usage_error(e)
        if "Abort" in kinds:  # end of input at a prompt
            _say(command, "aborted")
            return EXIT_USER
        return _internal_error(command, e, debug)
    code = 0 if code is None else code
    if code == EXIT_INTERRUPTED:
        _say(command, "interrupted")
    return code if isinstance(code, int) else EXIT_USER


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the command line (``sys.argv`` unless given) and exit with its status."""
    sys.exit(run(sys.argv[1:] if argv is None else argv))
