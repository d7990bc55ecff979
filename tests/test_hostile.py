"""Hostile and careless input (issue 14): every command against every class of bad input.

Each case of the table runs the real entry point (`notelm.cli.main`, in this process for
speed; the cases where only a real process tells the truth — Ctrl-C, exit statuses through
``sys.exit``, bytes a terminal cannot print — run ``python -m notelm``) and asserts the exit
status, no traceback, at most three lines on stderr, the line it must say, and that nothing
was created, changed or deleted in the folders it watches (names, sizes, mtimes).

Inputs are made in a temporary folder; one tiny markov run (a counting model: it trains in
well under a second) serves every command that needs a run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import notelm.cli as cli_module
from notelm.cli import main

PY = sys.executable
MAX_STDERR_LINES = 3


# ---- running the command line -------------------------------------------------------------------


@dataclass
class Result:
    code: int | str
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def cli(*args, env: dict | None = None) -> Result:
    """The entry point in this process (sys.argv as a shell would give it), stdout and stderr
    captured; an exception that escapes it is recorded as a traceback on stderr."""
    out, err = io.StringIO(), io.StringIO()
    old_env = {k: os.environ.get(k) for k in (env or {})}
    old_argv, old_every = sys.argv, getattr(cli_module, "PROGRESS_EVERY", 10.0)
    sys.argv = ["notelm", *map(str, args)]
    os.environ.update(env or {})
    cli_module.PROGRESS_EVERY = 3600.0  # a loaded machine's 10 s pause is no extra stderr line here
    code: int | str = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException:  # noqa: BLE001 - what escapes main() is what a user would see
                import traceback

                traceback.print_exc(file=err)
                code = "escaped"
    finally:
        sys.argv, cli_module.PROGRESS_EVERY = old_argv, old_every
        for k, v in old_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Result(code, out.getvalue(), err.getvalue())


def process(*args, env: dict | None = None, code: str | None = None, timeout: float = 120) -> Result:
    """``python -m notelm ARGS`` (or ``python -c CODE ARGS``) in a process of its own."""
    cmd = [PY, "-c", code, *map(str, args)] if code else [PY, "-m", "notelm", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, env={**os.environ, **(env or {})}, timeout=timeout)
    return Result(r.returncode, r.stdout.decode("utf-8", "replace"), r.stderr.decode("utf-8", "replace"))


def snapshot(*folders: Path) -> dict[str, tuple]:
    """Every entry under ``folders``: files by size and mtime, links by target, folders by name."""
    seen: dict[str, tuple] = {}
    for folder in folders:
        if not os.path.lexists(folder):
            continue
        for top, dirs, files in os.walk(folder):
            for name in dirs + files:
                p = Path(top) / name
                st = p.lstat()
                key = os.fsdecode(p)
                if p.is_symlink():
                    seen[key] = ("link", os.readlink(p))
                elif p.is_dir():
                    seen[key] = ("dir",)
                else:
                    seen[key] = ("file", st.st_size, st.st_mtime_ns)
    return seen


# ---- tiny inputs ------------------------------------------------------------------------------------


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def _track(events) -> bytes:
    data = b"".join(_vlq(d) + bytes(e) for d, e in events) + b"\x00\xff\x2f\x00"
    return b"MTrk" + struct.pack(">I", len(data)) + data


def midi_bytes(pitches=(60, 62, 64, 65, 67), *, fmt: int = 1, tpq: int = 480, tracks: int = 1,
               channel: int = 0, note_offs: bool = True) -> bytes:
    """A small MIDI file: one quarter note per pitch."""
    on, off = 0x90 | channel, 0x80 | channel
    events = []
    for p in pitches:
        events.append((0, (on, p, 80)))
        if note_offs:
            events.append((480, (off, p, 0)))
    body = _track(events)
    return b"MThd" + struct.pack(">IHHH", 6, fmt, tracks, tpq) + body * tracks


MUSICXML_NO_PARTS = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE score-partwise PUBLIC "-//Recordare//DTD MusicXML 3.1 Partwise//EN" "http://www.musicxml.org/dtds/partwise.dtd">
<score-partwise version="3.1"><part-list></part-list></score-partwise>
"""
MAESTRO_HEADER = "canonical_composer,canonical_title,split,year,midi_filename,audio_filename,duration\n"


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def fake_maestro(folder: Path, rows: list[tuple[str, str]], csv_bytes: bytes | None = None) -> Path:
    """A MAESTRO-layout folder: a csv listing (split, midi_filename) rows and those files."""
    for _, name in rows:
        if not name.startswith(("/", "..")):
            write(folder / name, midi_bytes())
    text = MAESTRO_HEADER + "".join(f"A,T,{split},2004,{name},x.wav,1.0\n" for split, name in rows)
    write(folder / "maestro-v3.0.0.csv", csv_bytes if csv_bytes is not None else text.encode())
    return folder


GOOD_PIECES = 10


@dataclass
class World:
    """What the cases share: a trained run, a folder of good MIDI files, a private cache."""

    root: Path
    run: Path
    good: Path  # a folder corpus of GOOD_PIECES readable MIDI files
    cache: Path
    net: Path  # a tiny neural run (a transformer trained for 4 steps), with its resume checkpoint


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("hostile")
    run = root / "run"
    r = cli("train", "markov", "--corpus", "essen-kinder", "--encoding", "melody", "--out", run)
    assert r.code == 0, r.err
    good = root / "good"
    for i in range(GOOD_PIECES):  # as many as idyom's default folds
        write(good / f"{i:02d}.mid", midi_bytes((60 + i, 62, 64, 65 + i % 3, 67)))
    net = root / "net"
    r = cli("train", "transformer", "--corpus", "essen-kinder", "--encoding", "melody", "--preset", "debug",
            "--max-steps", "4", "--set", "train.val_every=4", "--threads", "1", "--quiet", "--out", net)
    assert r.code == 0, r.err
    return World(root=root, run=run, good=good, cache=Path(os.environ["NOTELM_CACHE_DIR"]), net=net)


# ---- the table --------------------------------------------------------------------------------------


@dataclass
class Case:
    """One command line against one kind of bad input. ``args(world, here)`` builds the line;
    ``setup(world, here)`` makes the inputs in ``here``, the case's own folder; ``code`` is the
    exit status it must give, ``says`` what stderr must contain (or stdout, for ``out:...``);
    ``check(result, world, here)`` anything else. ``here`` and the run must be left as they
    were unless ``changes`` says what may change there."""

    name: str
    args: Callable[[World, Path], list]
    code: int
    says: str = ""
    setup: Callable[[World, Path], None] | None = None
    env: Callable[[World, Path], dict] | None = None
    check: Callable[[Result, World, Path], None] | None = None
    changes: bool = False
    in_process: bool = True
    marks: list = field(default_factory=list)


def _primer(data: bytes | str, name: str):
    return lambda w, d: write(d / "in" / name, data)


def _gen(*extra):
    return lambda w, d: ["generate", w.run, "--out", d / "out.mid", *extra]


def _midi_folder(files: dict[str, bytes]):
    def setup(w, d):
        for name, data in files.items():
            write(d / "corpus" / name, data)
    return setup


def _json_out(check: Callable[[dict], None]):
    return lambda r, w, d: check(json.loads(r.out))


def _skipped(*pairs):
    """A check that `data info --json` lists each (name part, reason part) among its skipped."""
    def check(info: dict) -> None:
        for name, reason in pairs:
            assert any(name in s["path"] and reason in s["reason"] for s in info["skipped"]), info["skipped"]
    return _json_out(check)


def _dangling(w, d):
    write(d / "corpus" / "a.mid", midi_bytes())
    (d / "corpus" / "gone.mid").symlink_to(d / "nowhere.mid")
    (d / "corpus" / "folder.mid").mkdir()
    os.mkfifo(d / "corpus" / "pipe.mid")


def _marked_quickstart(w, d):
    """An earlier quickstart's folder (its marker lists report.md and generated/x.mid), plus a
    file of the user's put there later."""
    write(d / "qs" / "report.md", "old report")
    write(d / "qs" / "generated" / "x.mid", midi_bytes())
    write(d / "qs" / ".notelm-quickstart.json", json.dumps({"files": ["report.md", "generated/x.mid"]}))
    write(d / "qs" / "thesis.tex", "my thesis")


def _entry_as_folder(w, d):
    """The cache entry of corpus/a.mid replaced by a folder."""
    from notelm.cache import entry_path, file_key

    write(d / "corpus" / "a.mid", midi_bytes())
    write(d / "corpus" / "b.mid", midi_bytes((50, 52, 53)))
    old = os.environ["NOTELM_CACHE_DIR"]
    os.environ["NOTELM_CACHE_DIR"] = str(d / "cache")  # the case's own cache (its env)
    try:
        for name in ("a.mid", "b.mid"):
            key = file_key(d / "corpus" / name, {"time_unit": "beat", "kind": "file"})
            entry_path(key).mkdir(parents=True)
    finally:
        os.environ["NOTELM_CACHE_DIR"] = old


def _non_utf8_name(w, d):
    write(d / "corpus" / "ok.mid", midi_bytes())
    (d / "corpus").mkdir(exist_ok=True)
    Path(os.fsdecode(os.fsencode(d / "corpus") + b"/caf\xe9.mid")).write_bytes(midi_bytes((70, 72, 74)))


def _no_json_nan(r, w, d):
    assert "NaN" not in r.out and "Infinity" not in r.out


def _train_split_only(w, d):
    fake_maestro(d / "m", [("train", "2004/a.midi"), ("train", "2004/b.midi")])


CACHE = {"NOTELM_CACHE_DIR": None}  # marker: a case that sets its own cache


OUTPUTS = [
    # generate: --out / --wav / --png
    Case("outputs-generate-out-proc", lambda w, d: ["generate", w.run, "--out", "/proc/notelm.mid"], 1, "/proc/notelm.mid"),
    Case("outputs-generate-out-parent-file", lambda w, d: ["generate", w.run, "--out", d / "f" / "x.mid"], 1,
         "is a file, not a folder", setup=lambda w, d: write(d / "f", "a file")),
    Case("outputs-generate-out-folder", lambda w, d: ["generate", w.run, "--out", d], 1, "is a folder"),
    Case("outputs-generate-out-folder-force", lambda w, d: ["generate", w.run, "--out", d, "--force"], 1, "is a folder"),
    Case("outputs-generate-out-exists", _gen(), 1, "pass --force",
         setup=lambda w, d: write(d / "out.mid", b"mine")),
    # a special file of our own, never /dev/null: a writer without the guard replaces it (as root, for everyone)
    Case("outputs-generate-out-special-file-force", lambda w, d: ["generate", w.run, "--out", d / "pipe.mid",
                                                                  "--force"], 1, "not a regular file",
         setup=lambda w, d: os.mkfifo(d / "pipe.mid")),
    Case("outputs-generate-wav-proc-before-midi", _gen("--wav", "/proc/x.wav"), 1, "/proc/x.wav"),
    Case("outputs-generate-png-parent-file", lambda w, d: [*_gen()(w, d), "--png", d / "f" / "x.png"], 1,
         "is a file, not a folder", setup=lambda w, d: write(d / "f", "a file")),
    Case("outputs-generate-png-folder", lambda w, d: [*_gen()(w, d), "--png", d], 1, "is a folder"),
    Case("outputs-generate-wav-folder-force", lambda w, d: [*_gen()(w, d), "--wav", d, "--force"], 1, "is a folder"),
    Case("outputs-generate-two-outputs-one-path", lambda w, d: [*_gen()(w, d), "--png", d / "out.mid"], 1,
         "two outputs"),
    Case("outputs-generate-soundfont-missing-before-work", lambda w, d: [*_gen()(w, d), "--wav", d / "x.wav",
                                                                         "--soundfont", d / "no.sf2"], 1, "no.sf2"),
    # idyom --output / --generate-out
    Case("outputs-idyom-output-proc", lambda w, d: ["idyom", "folder", "--root", w.good, "--models", "stm",
                                                    "--output", "/proc/x.csv"], 1, "/proc/x.csv"),
    Case("outputs-idyom-output-folder", lambda w, d: ["idyom", "folder", "--root", w.good, "--models", "stm",
                                                      "--output", d, "--force"], 1, "is a folder"),
    Case("outputs-idyom-output-parent-file", lambda w, d: ["idyom", "folder", "--root", w.good, "--models", "stm",
                                                           "--output", d / "f" / "x.csv"], 1, "is a file, not a folder",
         setup=lambda w, d: write(d / "f", "a file")),
    Case("outputs-idyom-output-exists", lambda w, d: ["idyom", "folder", "--root", w.good, "--models", "stm",
                                                      "--output", d / "x.csv"], 1, "pass --force",
         setup=lambda w, d: write(d / "x.csv", "mine")),
    Case("outputs-idyom-generate-out-is-file", lambda w, d: ["idyom", "folder", "--root", w.good, "--models", "stm",
                                                             "--generate", 1, "--generate-out", d / "f"], 1,
         "is a file, not a folder", setup=lambda w, d: write(d / "f", "a file")),
    Case("outputs-idyom-generate-out-proc", lambda w, d: ["idyom", "folder", "--root", w.good, "--models", "stm",
                                                          "--generate", 1, "--generate-out", "/proc/gen"], 1, "/proc/gen"),
    Case("outputs-idyom-generate-out-exists-before-work", lambda w, d: [
        "idyom", "folder", "--root", w.good, "--models", "stm", "--generate", 1, "--generate-out", d,
        "--output", d / "events.csv"], 1, "pass --force",
        setup=lambda w, d: write(d / "folder-stm-000.mid", b"mine")),
    # compare --png
    Case("outputs-compare-png-over-config", lambda w, d: ["compare", d / "run", "--corpus", "essen-kinder",
                                                          "--png", d / "run" / "config.json"], 1, "inside the input folder",
         setup=lambda w, d: shutil.copytree(w.run, d / "run")),  # a copy: a writer that fails this spoils the run
    Case("outputs-compare-png-proc", lambda w, d: ["compare", w.run, "--corpus", "essen-kinder",
                                                   "--png", "/proc/board.png"], 1, "/proc/board.png"),
    Case("outputs-compare-png-folder-force", lambda w, d: ["compare", w.run, "--corpus", "essen-kinder",
                                                           "--png", d, "--force"], 1, "is a folder"),
    Case("outputs-compare-png-parent-file", lambda w, d: ["compare", w.run, "--corpus", "essen-kinder",
                                                          "--png", d / "f" / "b.png"], 1, "is a file, not a folder",
         setup=lambda w, d: write(d / "f", "a file")),
    Case("outputs-compare-png-force-writes", lambda w, d: ["compare", w.run, "--corpus", "essen-kinder",
                                                           "--png", d / "b.png", "--force"], 0, changes=True,
         setup=lambda w, d: write(d / "b.png", b"old"),
         check=lambda r, w, d: (d / "b.png").read_bytes().startswith(b"\x89PNG") or pytest.fail("not replaced")),
    # train --out (the path check before the library is called)
    Case("outputs-train-out-proc", lambda w, d: ["train", "markov", "--corpus", "essen-kinder", "--encoding",
                                                 "melody", "--out", "/proc/run"], 1, "/proc/run"),
    Case("outputs-train-out-is-file", lambda w, d: ["train", "markov", "--corpus", "essen-kinder", "--encoding",
                                                    "melody", "--out", d / "f"], 1, "is a file, not a folder",
         setup=lambda w, d: write(d / "f", "a file")),
    Case("outputs-train-out-parent-file", lambda w, d: ["train", "markov", "--corpus", "essen-kinder", "--encoding",
                                                        "melody", "--out", d / "f" / "run"], 1, "is a file, not a folder",
         setup=lambda w, d: write(d / "f", "a file")),
    # quickstart --out (no work starts: the check comes first)
    Case("outputs-quickstart-out-proc", lambda w, d: ["quickstart", "--out", "/proc/qs"], 1, "/proc/qs"),
    Case("outputs-quickstart-out-is-file", lambda w, d: ["quickstart", "--out", d / "f", "--force"], 1,
         "is a file, not a folder", setup=lambda w, d: write(d / "f", "a file")),
]

QUICKSTART = [
    Case("quickstart-force-never-deletes-a-users-folder", lambda w, d: ["quickstart", "--out", d / "thesis", "--force"],
         1, "not a quickstart report", setup=lambda w, d: write(d / "thesis" / "thesis.tex", "years of work")),
    Case("quickstart-refuses-a-users-folder-without-force", lambda w, d: ["quickstart", "--out", d / "thesis"], 1,
         "not a quickstart report", setup=lambda w, d: write(d / "thesis" / "chapter1.md", "work")),
    Case("quickstart-damaged-marker-deletes-nothing", lambda w, d: ["quickstart", "--out", d / "qs", "--force"], 1,
         "damaged", setup=lambda w, d: (write(d / "qs" / ".notelm-quickstart.json", "[1, 2"),
                                        write(d / "qs" / "report.md", "x"))),
    Case("quickstart-marked-folder-without-force", lambda w, d: ["quickstart", "--out", d / "qs"], 1, "pass --force",
         setup=_marked_quickstart),
]

INTERRUPTS = [
    Case("interrupt-usage-error-is-two-lines", lambda w, d: ["generate"], 2, "Missing argument"),
    Case("interrupt-unknown-command", lambda w, d: ["bogus"], 2, "No such command"),
]

OPTIONS = [
    Case("options-seed-negative", _gen("--seed", -1), 1, "seed must be"),
    Case("options-seed-too-big", _gen("--seed", 2**32), 1, "seed must be"),
    Case("options-seconds-inf", _gen("--seconds", "inf"), 1, "--seconds"),
    Case("options-seconds-nan", _gen("--seconds", "nan"), 1, "--seconds"),
    Case("options-seconds-negative", _gen("--seconds", -3), 1, "--seconds"),
    Case("options-seconds-huge", _gen("--seconds", 1e12), 1, "--seconds"),
    Case("options-temperature-inf", _gen("--temperature", "inf"), 1, "temperature must be"),
    Case("options-temperature-nan", _gen("--temperature", "nan"), 1, "temperature must be"),
    Case("options-temperature-negative", _gen("--temperature", -1), 1, "temperature must be"),
    Case("options-top-k-zero", _gen("--top-k", 0), 1, "top-k must be"),
    Case("options-top-p-two", _gen("--top-p", 2), 1, "top-p must be"),
    Case("options-top-p-zero", _gen("--top-p", 0), 1, "top-p must be"),
    Case("options-min-length-negative", _gen("--min-length", -5), 1, "min-length must be"),
    Case("options-length-huge", _gen("--length", 10**12), 1, "length must be"),
    Case("options-length-and-seconds", _gen("--length", 5, "--seconds", 2), 1, "not both"),
    Case("options-idyom-temperature-inf-ppm", lambda w, d: ["idyom", "folder", "--root", w.good, "--models", "stm",
                                                            "--generate", 1, "--generate-out", d / "g",
                                                            "--temperature", "inf"], 1, "temperature must be"),
    Case("options-idyom-temperature-nan-ppm", lambda w, d: ["idyom", "folder", "--root", w.good, "--generate", 1,
                                                            "--generate-out", d / "g", "--temperature", "nan"], 1,
         "temperature must be"),
    Case("options-idyom-seed-negative", lambda w, d: ["idyom", "folder", "--root", w.good, "--generate", 1,
                                                      "--generate-out", d / "g", "--seed", -1], 1, "seed must be"),
    Case("options-idyom-generate-negative", lambda w, d: ["idyom", "folder", "--root", w.good, "--generate", -1],
         1, "--generate must be"),
    Case("options-idyom-length-huge", lambda w, d: ["idyom", "folder", "--root", w.good, "--generate", 1,
                                                    "--generate-out", d / "g", "--length", 10**9], 1, "length must be"),
    Case("options-idyom-bias-inf", lambda w, d: ["idyom", "folder", "--root", w.good, "--models", "both",
                                                 "--bias", "inf"], 1, "bias must be a finite number"),
    Case("options-idyom-bias-nan", lambda w, d: ["idyom", "folder", "--root", w.good, "--bias", "nan"], 1,
         "bias must be"),
    Case("options-idyom-viewpoint-bias-inf", lambda w, d: ["idyom", "folder", "--root", w.good,
                                                           "--viewpoints", "cpitch,cpint", "--viewpoint-bias", "inf"],
         1, "bias must be a finite number"),
    Case("options-idyom-order-bound-1e20", lambda w, d: ["idyom", "folder", "--root", w.good,
                                                         "--order-bound", 10**20], 1, "order bound must be"),
    Case("options-idyom-stm-order-bound-1e20", lambda w, d: ["idyom", "folder", "--root", w.good,
                                                             "--stm-order-bound", "1e20"], 1, "order bound must be"),
    Case("options-idyom-folds-zero", lambda w, d: ["idyom", "folder", "--root", w.good, "--models", "ltm",
                                                   "--folds", 0], 1, "--folds"),
    Case("options-idyom-folds-more-than-pieces", lambda w, d: ["idyom", "folder", "--root", w.good, "--models", "ltm",
                                                               "--folds", 10**6], 1, "--folds"),
    Case("options-bench-tokens-zero", lambda w, d: ["bench", "generation", "--tokens", 0], 1, "--tokens"),
    Case("options-bench-preset-nosuch", lambda w, d: ["bench", "generation", "--preset", "nosuch"], 1,
         "unknown preset 'nosuch'"),
    Case("options-bench-device-bogus", lambda w, d: ["bench", "generation", "--device", "bogus"], 1, "--device"),
    Case("options-bench-device-cuda-absent", lambda w, d: ["bench", "generation", "--device", "cuda:7"], 1, "cuda:7"),
    Case("options-bench-device-mps-absent", lambda w, d: ["bench", "generation", "--device", "mps"], 1, "mps"),
    Case("options-bench-context-1e20", lambda w, d: ["bench", "generation", "--context", 10**20], 1, "--context"),
    Case("options-bench-context-1e20-float", lambda w, d: ["bench", "generation", "--context", "1e20"], 2, "--context"),
    Case("options-bench-context-below-tokens", lambda w, d: ["bench", "generation", "--context", 10], 1, "--context"),
    Case("options-encode-limit-negative", lambda w, d: ["encode", "essen-kinder", "-e", "melody", "--limit", -1], 1,
         "--limit"),
    Case("options-encode-limit-zero", lambda w, d: ["encode", "essen-kinder", "-e", "melody", "--limit", 0], 1,
         "--limit"),
    Case("options-encode-show-negative", lambda w, d: ["encode", "essen-kinder", "-e", "melody", "--show", -1], 1,
         "--show"),
    Case("options-workers-zero", lambda w, d: ["data", "info", "folder", "--root", w.good, "--workers", 0], 1,
         "--workers"),
    Case("options-workers-negative", lambda w, d: ["data", "prepare", "folder", "--root", w.good, "--workers", -2], 1,
         "--workers"),
]

CORPORA = [
    Case("corpora-non-utf8-file-name-is-read", lambda w, d: ["data", "info", "folder", "--root", d / "corpus", "--json"],
         0, setup=_non_utf8_name, check=_json_out(lambda i: i["pieces"] == 2 or pytest.fail(str(i)))),
    Case("corpora-non-utf8-file-name-printed", lambda w, d: ["encode", "folder", "--root", d / "corpus", "-e", "melody",
                                                             "--show", 2], 0, "", setup=_non_utf8_name,
         in_process=False),
    Case("corpora-noteless-midi-first-idyom-stm", lambda w, d: ["idyom", "folder", "--root", d / "corpus", "--models",
                                                                "stm", "--json"], 0,
         setup=_midi_folder({"a.mid": midi_bytes(note_offs=False), "b.mid": midi_bytes(), "c.mid": midi_bytes((50, 55))}),
         check=_json_out(lambda s: s["pieces"] == 2 or pytest.fail(str(s)))),
    Case("corpora-drums-only-midi-first-idyom", lambda w, d: ["idyom", "folder", "--root", d / "corpus", "--models",
                                                              "both", "--folds", 2, "--json"], 0,
         setup=_midi_folder({"a.mid": midi_bytes(channel=9), "b.mid": midi_bytes(), "c.mid": midi_bytes((50, 55))}),
         check=_json_out(lambda s: s["skipped"] == {"no melody (drum tracks only)": 1} or pytest.fail(str(s)))),
    Case("corpora-only-drums-idyom", lambda w, d: ["idyom", "folder", "--root", d / "corpus", "--models", "stm"], 1,
         "no piece has a melody", setup=_midi_folder({"a.mid": midi_bytes(channel=9)})),
    Case("corpora-noteless-midi-is-skipped-with-reason", lambda w, d: ["data", "info", "folder", "--root",
                                                                       d / "corpus", "--json"], 0,
         setup=_midi_folder({"a.mid": midi_bytes(note_offs=False), "b.mid": midi_bytes()}),
         check=_skipped(("a.mid", "no notes"))),
    Case("corpora-format2-midi-refused-with-reason", lambda w, d: ["data", "info", "folder", "--root", d / "corpus",
                                                                   "--json"], 0,
         setup=_midi_folder({"a.mid": midi_bytes(fmt=2, tracks=2), "b.mid": midi_bytes()}),
         check=_skipped(("a.mid", "format-2"))),
    Case("corpora-tpq0-midi-skipped-with-reason", lambda w, d: ["data", "info", "folder", "--root", d / "corpus",
                                                                "--json"], 0,
         setup=_midi_folder({"a.mid": midi_bytes(tpq=0), "b.mid": midi_bytes()}),
         check=_skipped(("a.mid", "0 ticks per quarter"))),
    Case("corpora-dangling-link-folder-pipe-listed", lambda w, d: ["data", "info", "lakh", "--root", d / "corpus",
                                                                   "--json"], 0, setup=_dangling,
         check=_skipped(("gone.mid", "broken symbolic link"), ("folder.mid", "a folder"), ("pipe.mid", "not a regular"))),
    Case("corpora-dangling-link-strict", lambda w, d: ["data", "info", "folder", "--root", d / "corpus", "--strict"], 1,
         "a folder, not a file (and 2 more skipped)", setup=_dangling),
    Case("corpora-maestro-csv-not-utf8", lambda w, d: ["data", "info", "maestro", "--root", d / "m"], 1,
         "not UTF-8", setup=lambda w, d: fake_maestro(d / "m", [("train", "2004/a.midi")],
                                                       (MAESTRO_HEADER + "Fr\xe9d\xe9ric,T,train,2004,2004/a.midi,x,1\n")
                                                       .encode("latin-1"))),
    Case("corpora-maestro-csv-without-split", lambda w, d: ["data", "info", "maestro", "--root", d / "m"], 1,
         "no 'split' column", setup=lambda w, d: fake_maestro(d / "m", [("train", "2004/a.midi")],
                                                               b"midi_filename,duration\n2004/a.midi,1\n")),
    Case("corpora-maestro-unknown-split", lambda w, d: ["data", "info", "maestro", "--root", d / "m", "--json"], 0,
         setup=lambda w, d: fake_maestro(d / "m", [("train", "2004/a.midi"), ("holdout", "2004/b.midi")]),
         check=_skipped(("b.midi", "unknown split 'holdout'"))),
    Case("corpora-maestro-absolute-path-outside-root", lambda w, d: ["data", "info", "maestro", "--root", d / "m",
                                                                     "--json"], 0,
         setup=lambda w, d: fake_maestro(d / "m", [("train", "2004/a.midi"), ("train", str(w.good / "00.mid"))]),
         check=_json_out(lambda i: (i["pieces"] == 1 and any("outside --root" in s["reason"] for s in i["skipped"]))
                         or pytest.fail(str(i)))),
    Case("corpora-maestro-dotdot-outside-root", lambda w, d: ["data", "info", "maestro", "--root", d / "m", "--json"],
         0, setup=lambda w, d: (write(d / "outside.midi", midi_bytes()),
                                fake_maestro(d / "m", [("train", "2004/a.midi"), ("test", "../outside.midi")])),
         check=_skipped(("outside.midi", "outside --root"))),
    Case("corpora-empty-folder-idyom", lambda w, d: ["idyom", "folder", "--root", d / "corpus"], 1,
         "no piece has a melody", setup=lambda w, d: (d / "corpus").mkdir()),
    Case("corpora-empty-folder-encode", lambda w, d: ["encode", "folder", "--root", d / "corpus", "-e", "melody"], 0,
         setup=lambda w, d: (d / "corpus").mkdir(),
         check=lambda r, w, d: "no pieces to show" in r.out or pytest.fail(r.out)),
    Case("corpora-folder-root-is-a-file", lambda w, d: ["data", "info", "folder", "--root", w.good / "00.mid"], 1,
         "not a folder"),
]

NOTHING_TO_SCORE = [
    Case("score-evaluate-encoding-cannot-represent", lambda w, d: ["evaluate", w.run, "--corpus", "maestro", "--root",
                                                                   d / "m", "--split", "train"], 1, "nothing to score",
         setup=_train_split_only),
    Case("score-evaluate-json-encoding-cannot-represent", lambda w, d: [
        "evaluate", w.run, "--corpus", "maestro", "--root", d / "m", "--split", "train", "--json"], 1,
        "nothing to score", setup=_train_split_only, check=_no_json_nan),
    Case("score-evaluate-empty-split", lambda w, d: ["evaluate", w.run, "--corpus", "maestro", "--root", d / "m",
                                                     "--split", "test", "--json"], 1, "no pieces in its test split",
         setup=_train_split_only, check=_no_json_nan),
    Case("score-compare-empty-split-no-png", lambda w, d: ["compare", w.run, "--corpus", "maestro", "--root", d / "m",
                                                           "--split", "valid", "--png", d / "board.png"], 1,
         "no pieces in its valid split", setup=_train_split_only),
    Case("score-compare-json-encoding-cannot-represent", lambda w, d: [
        "compare", w.run, w.run, "--corpus", "maestro", "--root", d / "m", "--split", "train", "--json"], 1,
        "nothing to score", setup=_train_split_only, check=_no_json_nan),
    Case("score-evaluate-empty-folder", lambda w, d: ["evaluate", w.run, "--corpus", "folder", "--root", d / "c"], 1,
         "no pieces in its test split", setup=lambda w, d: (d / "c").mkdir()),
    Case("score-evaluate-unknown-split", lambda w, d: ["evaluate", w.run, "--corpus", "essen-kinder", "--split",
                                                       "validation"], 1, "unknown split"),
]

SINGLE_FILES = [
    Case("single-primer-tpq0", _gen("--primer", "{in}/p.mid"), 1, "0 ticks per quarter", setup=_primer(midi_bytes(tpq=0), "p.mid")),
    Case("single-primer-musicxml-no-parts", _gen("--primer", "{in}/p.musicxml"), 1, "p.musicxml",
         setup=_primer(MUSICXML_NO_PARTS, "p.musicxml")),
    Case("single-primer-directory", lambda w, d: ["generate", w.run, "--out", d / "out.mid", "--primer", w.good], 1,
         "a folder, not a file"),
    Case("single-primer-directory-named-mid", _gen("--primer", "{in}/dir.mid"), 1, "a folder, not a file",
         setup=lambda w, d: (d / "in" / "dir.mid").mkdir(parents=True)),
    Case("single-primer-empty", _gen("--primer", "{in}/p.mid"), 1, "p.mid", setup=_primer(b"", "p.mid")),
    Case("single-primer-corrupt", _gen("--primer", "{in}/p.mid"), 1, "p.mid",
         setup=_primer(b"MThd\x00\x00\x00\x06\x00\x01\x00\x05\x01\xe0MTrk\xff\xff", "p.mid")),
    Case("single-primer-random-bytes", _gen("--primer", "{in}/p.mid"), 1, "p.mid", setup=_primer(os.urandom(300), "p.mid")),
    Case("single-primer-empty-abc", _gen("--primer", "{in}/p.abc"), 1, "p.abc", setup=_primer("", "p.abc")),
    Case("single-primer-abc-without-notes", _gen("--primer", "{in}/p.abc"), 1, "p.abc",
         setup=_primer("X:1\nT:t\nK:C\n", "p.abc")),
    Case("single-primer-kern-garbage", _gen("--primer", "{in}/p.krn"), 1, "p.krn",
         setup=_primer("**kern\n*M4/4\n4qqq\n*-\n", "p.krn")),
    Case("single-primer-noteless-midi", _gen("--primer", "{in}/p.mid"), 1, "no notes",
         setup=_primer(midi_bytes(note_offs=False), "p.mid")),
    Case("single-primer-drums-only", _gen("--primer", "{in}/p.mid"), 1, "p.mid",
         setup=_primer(midi_bytes(channel=9), "p.mid")),
    Case("single-primer-format2", _gen("--primer", "{in}/p.mid"), 1, "format-2",
         setup=_primer(midi_bytes(fmt=2, tracks=2), "p.mid")),
    Case("single-primer-outside-vocabulary-names-file", _gen("--primer", "{in}/p.mid"), 1, "p.mid: cannot be a primer",
         setup=_primer(midi_bytes((120, 121)), "p.mid")),
    Case("single-primer-dangling-link", _gen("--primer", "{in}/p.mid"), 1, "broken symbolic link",
         setup=lambda w, d: ((d / "in").mkdir(), (d / "in" / "p.mid").symlink_to(d / "gone.mid"))),
    Case("single-primer-fifo-does-not-hang", _gen("--primer", "{in}/p.mid"), 1, "not a regular file",
         setup=lambda w, d: ((d / "in").mkdir(), os.mkfifo(d / "in" / "p.mid"))),
    Case("single-primer-unsupported-type", _gen("--primer", "{in}/p.txt"), 1, "unsupported file type '.txt'",
         setup=_primer("hello", "p.txt")),
    Case("single-primer-missing", _gen("--primer", "{in}/nope.mid"), 1, "no such file"),
    Case("single-run-missing", lambda w, d: ["generate", d / "norun", "--out", d / "o.mid"], 1, "no such run directory"),
]

CACHE_CASES = [
    Case("cache-dir-is-a-file", lambda w, d: ["data", "info", "folder", "--root", w.good, "--json"], 0,
         "cannot be used", setup=lambda w, d: write(d / "cachefile", "x"),
         env=lambda w, d: {"NOTELM_CACHE_DIR": str(d / "cachefile")},
         check=_json_out(lambda i: i["pieces"] == GOOD_PIECES or pytest.fail(str(i)))),
    Case("cache-dir-is-a-file-parallel", lambda w, d: ["data", "prepare", "folder", "--root", w.good, "--workers", 2],
         0, "cannot be used", setup=lambda w, d: write(d / "cachefile", "x"),
         env=lambda w, d: {"NOTELM_CACHE_DIR": str(d / "cachefile")}),
    Case("cache-dir-cannot-be-created", lambda w, d: ["data", "info", "folder", "--root", w.good], 0,
         "cannot be used", env=lambda w, d: {"NOTELM_CACHE_DIR": "/proc/notelm-cache"}),
    Case("cache-entry-replaced-by-folder", lambda w, d: ["data", "info", "folder", "--root", d / "corpus", "--json",
                                                         "--workers", 1], 0, "could not be written",
         setup=_entry_as_folder, env=lambda w, d: {"NOTELM_CACHE_DIR": str(d / "cache")},
         check=_json_out(lambda i: i["pieces"] == 2 or pytest.fail(str(i)))),
    Case("cache-entry-replaced-by-folder-parallel", lambda w, d: ["data", "prepare", "folder", "--root", d / "corpus",
                                                                  "--workers", 2], 0, "could not be written",
         setup=_entry_as_folder, env=lambda w, d: {"NOTELM_CACHE_DIR": str(d / "cache")}),
]

TABLES = [
    Case("tables-piped-are-whole", lambda w, d: ["data", "list"], 0, "",
         check=lambda r, w, d: ("essen-kinder" in r.out and "…" not in r.out) or pytest.fail(r.out[:500])),
]

# Damaged run directories, resume checkpoints and training options (the training engine).


def _damage(name: str, text: str | Callable[[dict], dict]):
    """A copy of the run with ``name`` replaced by ``text`` (or its JSON changed by a function)."""
    def setup(w, d):
        shutil.copytree(w.run, d / "run")
        path = d / "run" / name
        path.write_text(text if isinstance(text, str) else json.dumps(text(json.loads(path.read_text()))))
    return setup


def _absurd_order(config: dict) -> dict:
    config["model"]["config"]["order"] = 10**12
    return config


def _net_copy(change: Callable[[Path], None]):
    """A copy of the tiny neural run with one thing changed by ``change(run_folder)``."""
    def setup(w, d):
        shutil.copytree(w.net, d / "run")
        change(d / "run")
    return setup


def _nan_weights(run: Path) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(run / "model.safetensors"))
    name = next(iter(state))
    state[name][...] = float("nan")
    save_file(state, str(run / "model.safetensors"))


def _truncated_checkpoint(run: Path) -> None:
    path = run / "checkpoints" / "last.safetensors"
    path.write_bytes(path.read_bytes()[:100])


def _object_data(run: Path) -> None:
    import numpy as np

    np.save(run / "data" / "train.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)


def _other_family(run: Path) -> None:
    config = json.loads((run / "config.json").read_text())
    config["model"]["name"] = "lstm"  # the weights and settings are a transformer's
    (run / "config.json").write_text(json.dumps(config))


def _train(d, *extra):
    return ["train", "lstm", "--corpus", "essen-kinder", "--preset", "debug", "--max-steps", "2", "--threads", "1",
            "--out", d / "new", *extra]


def _nothing_new(r, w, d):
    assert not (d / "new").exists(), "a refused train left a run directory behind"


DAMAGED_RUNS = [
    Case("config-json-a-list", lambda w, d: ["evaluate", d / "run", "--corpus", "essen-kinder"], 1, "config.json",
         setup=_damage("config.json", "[1, 2]")),
    Case("config-json-null", lambda w, d: ["generate", d / "run", "--out", d / "o.mid"], 1, "config.json",
         setup=_damage("config.json", "null")),
    Case("encoding-json-a-list", lambda w, d: ["evaluate", d / "run", "--corpus", "essen-kinder"], 1,
         "encoding.json", setup=_damage("encoding.json", "[]")),
    Case("encoding-json-vocab-null", lambda w, d: ["evaluate", d / "run", "--corpus", "essen-kinder"], 1,
         "encoding.json", setup=_damage("encoding.json", lambda e: {**e, "vocab": None})),
    Case("config-absurd-order", lambda w, d: ["evaluate", d / "run", "--corpus", "essen-kinder"], 1, "order",
         setup=_damage("config.json", _absurd_order)),
    Case("train-set-model-order-huge", lambda w, d: ["train", "markov", "--corpus", "essen-kinder", "--encoding",
                                                     "melody", "--set", "model.order=1000000000000",
                                                     "--out", d / "run"], 1, "order"),
    Case("nan-weights", lambda w, d: ["evaluate", d / "run", "--corpus", "essen-kinder", "--json"], 1, "NaN",
         setup=_net_copy(_nan_weights)),
    Case("model-name-of-another-family", lambda w, d: ["evaluate", d / "run", "--corpus", "essen-kinder"], 1,
         "config.json", setup=_net_copy(_other_family)),
    Case("truncated-resume-checkpoint", lambda w, d: ["train", "transformer", "--out", d / "run", "--resume",
                                                      "--max-steps", "9", "--quiet"], 1,
         "not a notelm resume checkpoint", setup=_net_copy(_truncated_checkpoint)),
    Case("object-dtype-training-data", lambda w, d: ["train", "transformer", "--out", d / "run", "--resume",
                                                     "--max-steps", "9", "--quiet"], 1, "train.npy",
         setup=_net_copy(_object_data)),
    Case("resume-with-a-new-corpus", lambda w, d: ["train", "transformer", "--out", d / "run", "--resume",
                                                   "--corpus", "essen-erk"], 1, "--resume continues",
         setup=_net_copy(lambda run: None)),
    Case("resume-max-steps-behind", lambda w, d: ["train", "transformer", "--out", d / "run", "--resume",
                                                  "--max-steps", "1"], 1, "already",
         setup=_net_copy(lambda run: None)),
    Case("train-lr-infinity", lambda w, d: _train(d, "--set", "train.lr=Infinity"), 1, "train.lr", check=_nothing_new),
    Case("train-betas-a-number", lambda w, d: _train(d, "--set", "train.betas=5"), 1, "train.betas", check=_nothing_new),
    Case("train-seed-negative", lambda w, d: _train(d, "--set", "train.seed=-1"), 1, "train.seed", check=_nothing_new),
    Case("train-absurd-hidden", lambda w, d: _train(d, "--set", "model.hidden=99999999"), 1, "parameters",
         check=_nothing_new),
    Case("train-devices-abc", lambda w, d: _train(d, "--devices", "abc"), 1, "--devices", check=_nothing_new),
    Case("train-devices-uneven", lambda w, d: _train(d, "--devices", "5", "--accelerator", "cpu"), 1, "divisible",
         check=_nothing_new),
    Case("train-accelerator-gpu", lambda w, d: _train(d, "--accelerator", "gpu"), 1, "gpu", check=_nothing_new),
    Case("train-precision-bogus", lambda w, d: _train(d, "--precision", "bogus"), 1, "precision", check=_nothing_new),
    Case("train-strategy-bogus", lambda w, d: _train(d, "--strategy", "bogus"), 1, "strategy", check=_nothing_new),
    Case("train-num-nodes-zero", lambda w, d: _train(d, "--num-nodes", "0"), 1, "--num-nodes", check=_nothing_new),
]

CASES = OUTPUTS + QUICKSTART + INTERRUPTS + OPTIONS + CORPORA + NOTHING_TO_SCORE + SINGLE_FILES + CACHE_CASES + TABLES \
    + DAMAGED_RUNS


def _expand(args: list, here: Path) -> list:
    return [str(a).replace("{in}", str(here / "in")) for a in args]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=c.marks) for c in CASES])
def test_hostile_input(case: Case, world: World, tmp_path: Path):
    here = tmp_path / "here"
    here.mkdir()
    if case.setup:
        case.setup(world, here)
    env = case.env(world, here) if case.env else {}
    watched = (here, world.run, world.good)
    before = snapshot(*watched)
    args = _expand(case.args(world, here), here)
    r = cli(*args, env=env) if case.in_process else process(*args, env=env)
    shown = f"\n$ notelm {' '.join(args)}\nexit {r.code}\nstderr:\n{r.err}\nstdout:\n{r.out[-2000:]}"
    assert "Traceback" not in r.err + r.out, shown
    assert r.code == case.code, shown
    assert len(r.err_lines) <= MAX_STDERR_LINES, shown
    if case.says:
        assert case.says in r.err, shown
    if case.code != 0:
        assert r.err_lines, shown  # a failure always says why
    if not case.changes:
        assert snapshot(*watched) == before, "files changed" + shown
    if case.check:
        case.check(r, world, here)


# ---- cases a table cannot hold ------------------------------------------------------------------


def test_quickstart_force_replaces_only_its_own_files(world, tmp_path, monkeypatch):
    """An earlier quickstart's files are replaced; the user's file beside them stays, and so
    does what a manifest entry pointing outside the folder names."""
    import notelm.quickstart as qs

    _marked_quickstart(world, tmp_path)
    outside = write(tmp_path / "outside.txt", "keep me")
    marker = tmp_path / "qs" / qs.MARKER
    marker.write_text(json.dumps({"files": ["report.md", "generated/x.mid", "../outside.txt", str(outside)]}))

    def fake_run(out_dir, console, progress_bar):
        write(out_dir / "report.md", "new report")
        write(out_dir / "runs" / "markov" / "config.json", "{}")
        return {}

    monkeypatch.setattr(qs, "_run", fake_run)
    r = cli("quickstart", "--out", tmp_path / "qs", "--force")
    assert r.code == 0, r.err
    assert (tmp_path / "qs" / "thesis.tex").read_text() == "my thesis"
    assert outside.read_text() == "keep me"
    assert (tmp_path / "qs" / "report.md").read_text() == "new report"
    assert not (tmp_path / "qs" / "generated").exists()  # the old run's, emptied and gone
    assert sorted(json.loads(marker.read_text())["files"]) == ["report.md", "runs/markov/config.json"]


@pytest.mark.parametrize("failure, code", [(KeyboardInterrupt, 130), (ZeroDivisionError, 3)])
def test_quickstart_leaves_nothing_when_it_fails(world, tmp_path, monkeypatch, failure, code):
    import notelm.quickstart as qs

    def fake_run(out_dir, console, progress_bar):
        write(out_dir / "generated" / "a.mid", b"half")
        raise failure()

    monkeypatch.setattr(qs, "_run", fake_run)
    r = cli("quickstart", "--out", tmp_path / "qs")
    assert r.code == code and "Traceback" not in r.err and len(r.err_lines) == 1, r.err
    assert not (tmp_path / "qs").exists()


def test_generate_interrupted_leaves_no_partial_output(world, tmp_path, monkeypatch):
    """Ctrl-C after the MIDI file is written but before the piano roll: exit 130, one line, and
    the MIDI file is gone again."""
    import notelm.render as render

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(render, "plot_pianoroll", interrupted)
    r = cli("generate", world.run, "--out", tmp_path / "a.mid", "--png", tmp_path / "a.png")
    assert r.code == 130 and r.err_lines == ["notelm generate: interrupted"], r.err
    assert list(tmp_path.iterdir()) == []


def test_internal_error_is_one_line_exit_3_and_a_traceback_only_on_request(world, tmp_path, monkeypatch):
    import notelm.compose as compose

    monkeypatch.setattr(compose, "generate", lambda *a, **k: 1 / 0)
    args = ("generate", world.run, "--out", tmp_path / "a.mid")
    r = cli(*args)
    assert r.code == 3 and len(r.err_lines) == 1 and "Traceback" not in r.err, r.err
    assert r.err_lines[0].startswith("notelm generate: internal error: ZeroDivisionError: division by zero")
    assert "--debug" in r.err_lines[0]
    for extra, env in (((), {"NOTELM_DEBUG": "1"}), (("--debug",), {})):
        r = cli(*args, *extra, env=env)
        assert r.code == 3 and "Traceback" in r.err and "ZeroDivisionError" in r.err_lines[-1], r.err


def test_internal_error_exit_status_in_a_real_process(world, tmp_path):
    code = ("import sys, notelm.compose as c; c.generate = lambda *a, **k: 1 / 0; sys.argv[0] = 'notelm'; "
            "from notelm.cli import main; main()")
    r = process("generate", world.run, "--out", tmp_path / "a.mid", code=code)
    assert r.code == 3 and len(r.err_lines) == 1 and "internal error: ZeroDivisionError" in r.err, r.err


# The reader of each file made slow (0.3 s a file: Essen's 31 files then take 4.5 s or more) and
# marking, in the file STARTED, that parsing has begun: Ctrl-C then comes in the middle of the
# parse however fast the machine (a fixed sleep raced a fast machine's whole parse).
SLOW_PARSE = """
import functools, os, sys, time
from pathlib import Path
import notelm.corpora as c
read = c._read_file
@functools.wraps(read)
def slow(job):
    Path(os.environ["STARTED"]).touch()
    time.sleep(0.3)
    return read(job)
c._read_file = slow
sys.argv[0] = "notelm"
from notelm.cli import main
main()
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_exits_130_with_one_line(tmp_path, workers):
    """SIGINT to the process group (as a terminal's Ctrl-C) in the middle of parsing all of
    Essen: exit 130, one line, no worker tracebacks, and promptly."""
    started = tmp_path / "started"
    p = subprocess.Popen([PY, "-c", SLOW_PARSE, "data", "info", "essen", "--no-cache", "--workers", str(workers)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         env={**os.environ, "NOTELM_CACHE_DIR": str(tmp_path / "cache"), "STARTED": str(started)},
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not started.exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), p.communicate()[1]
    time.sleep(0.5)
    os.killpg(p.pid, signal.SIGINT)
    sent = time.monotonic()
    out, err = p.communicate(timeout=60)
    assert time.monotonic() - sent < 5
    assert p.returncode == 130 and err.strip() == "notelm data info: interrupted", err


def test_cache_key_holds_the_file_type(tmp_path):
    """The same bytes as .mid and as .abc are different files: a MIDI file renamed .abc gives
    what --no-cache gives (nothing), though its bytes are cached as a MIDI file."""
    write(tmp_path / "c" / "a.mid", midi_bytes())
    write(tmp_path / "c" / "b.mid", midi_bytes((50, 52)))
    env = {"NOTELM_CACHE_DIR": str(tmp_path / "cache")}
    assert json.loads(cli("data", "info", "folder", "--root", tmp_path / "c", "--json", env=env).out)["pieces"] == 2
    for name in ("a", "b"):
        (tmp_path / "c" / f"{name}.mid").rename(tmp_path / "c" / f"{name}.abc")
    cached = json.loads(cli("data", "info", "folder", "--root", tmp_path / "c", "--json", env=env).out)
    fresh = json.loads(cli("data", "info", "folder", "--root", tmp_path / "c", "--json", "--no-cache").out)
    assert cached["pieces"] == fresh["pieces"] == 0 and len(cached["skipped"]) == 2


def test_json_refuses_non_finite_numbers(capsys):
    from notelm.cli import print_json
    from notelm.errors import NotelmError

    with pytest.raises(NotelmError, match=r"rows\[1\]\.bits_per_event is nan"):
        print_json({"rows": [{"bits_per_event": 1.0}, {"bits_per_event": float("nan")}]})
    assert capsys.readouterr().out == ""


def test_a_write_that_fails_is_one_line_naming_the_path(tmp_path, monkeypatch):
    import errno

    from notelm.io.files import OutputError, atomic_write_bytes

    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(OutputError, match=r"x\.bin: cannot be written \(No space left on device\)"):
        atomic_write_bytes(tmp_path / "x.bin", b"data")
    assert list(tmp_path.iterdir()) == []  # no temporary file left behind


def test_long_work_off_a_terminal_prints_progress_lines(monkeypatch):

    monkeypatch.setattr(cli_module, "PROGRESS_EVERY", 0.01)
    with contextlib.redirect_stderr(io.StringIO()) as err, cli_module.progress_bar("reading things") as progress:
        progress(3, 4)
        waited = time.monotonic()
        while not err.getvalue() and time.monotonic() - waited < 10:  # the line comes from a thread
            time.sleep(0.01)
    lines = err.getvalue().splitlines()
    assert lines and all(line.startswith("notelm: reading things: 3/4 (75%), ") for line in lines), lines


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_refused_before_work(world, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    r = cli("generate", world.run, "--out", folder / "a.mid")
    assert r.code == 1 and "a.mid: cannot be written" in r.err


def test_a_worker_that_dies_fails_the_batch_in_one_line_instead_of_hanging(tmp_path):
    """A parsing process killed from outside (the OOM killer, a crashing parser): one line and
    exit 1, promptly — never a parent waiting for its result forever."""
    started = tmp_path / "started"
    p = subprocess.Popen([PY, "-c", SLOW_PARSE, "data", "info", "essen", "--no-cache", "--workers", "2"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "NOTELM_CACHE_DIR": str(tmp_path / "cache"), "STARTED": str(started)})
    children: list[int] = []
    deadline = time.monotonic() + 60
    while not (started.exists() and children) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
        with contextlib.suppress(OSError):
            children = [int(c) for c in Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()]
    assert started.exists() and children, p.communicate()[1]
    os.kill(children[0], signal.SIGKILL)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 1 and "Traceback" not in err and "died" in err and len(err.strip().splitlines()) == 1, err
