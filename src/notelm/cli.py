"""The ``notelm`` command: parses, calls the library, prints. Nothing else lives here.

Every user error (a missing path, an unknown corpus, a corrupt file) becomes one line on
stderr and exit status 1 — never a traceback.
"""

from __future__ import annotations

import json
import sys
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


@contextmanager
def progress_bar(description: str):
    """A progress callback ``(done, total)``; draws a bar on a terminal, nothing otherwise."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err, transient=True, disable=not err.is_terminal)
    with bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


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
        print(json.dumps(rows, indent=2))
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
        print(json.dumps(info, indent=2))
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
    from notelm.cache import cache_dir

    c = load(corpus, root, workers=workers, strict=strict)
    out.print(f"{corpus}: {len(c.pieces):,} pieces cached in {cache_dir()}, {len(c.skipped)} skipped")


# ---- notelm quickstart ----------------------------------------------------------------------------


@app.command()
def quickstart(out_dir: Path = typer.Option(Path("notelm-runs/quickstart"), "--out", help="Where to write the report."),
               force: bool = typer.Option(False, "--force", help="Overwrite an earlier quickstart's report.")) -> None:
    """The main job on bundled data: prepare and describe the corpora, run every model that exists,
    print the leaderboard and write a report to ./notelm-runs/quickstart/.

    Example: notelm quickstart
    """
    from notelm.quickstart import run_quickstart

    run_quickstart(out_dir, force=force, console=out, progress_bar=progress_bar)


@app.callback(invoke_without_command=True)
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        print(f"notelm {__version__}")
        raise typer.Exit()


def main() -> None:
    """Entry point: run the app, turning user errors into one line and a non-zero exit."""
    try:
        app(standalone_mode=False)
    except NotelmError as e:
        err.print(f"notelm: error: {e}", highlight=False, markup=False, soft_wrap=True)
        sys.exit(1)
    except KeyboardInterrupt:
        err.print("notelm: interrupted")
        sys.exit(130)
    except (typer.Exit, SystemExit) as e:
        sys.exit(getattr(e, "exit_code", getattr(e, "code", 0)))
    except Exception as e:  # click's usage errors
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            sys.exit(1)
        raise
