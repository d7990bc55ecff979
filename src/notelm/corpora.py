"""Named corpora: where their files are, how to read them, their splits, and the cache.

Bundled corpora come inside music21's wheel (Essen, O'Neill's 1850, Ryan's Mammoth, the Bach
chorales), so they need no download. Local corpora (MAESTRO, POP909, Lakh, any folder, a
user's own thesession.org dump) are read from ``--root PATH``.

Corpus order is file order (sorted paths), then tune order within a file. Splits are the
dataset's own where it has them (MAESTRO's csv); otherwise a stable hash of a key of each
piece (`split_keys`): its id, or, for folk-tune collections, its tune. O'Neill's prints
several settings of a tune ("The Tenpenny Bit. 1st Setting.", "... 2nd Setting."), music21's
copy holds some tunes twice (overlapping files such as 1556-1624 and 1577-1624: "First of
June, The" / "The First of June"), and Essen has many variants of one ballad under one title,
so settings, variants and copies of a tune must share a split (the DSTM paper splits by tune
title; REFERENCE §2):

- ``split_by="title"``: the normalised title (`normalise_title`). A piece's split depends on
  the piece alone, so each Essen collection agrees with the whole of Essen.
- ``split_by="tune"``: pieces sharing a title or an opening form one tune, over the corpus
  (`_tune_keys`); this also catches copies filed under titles spelled apart, but a piece's
  split then depends on the other pieces loaded with it, so it is for corpora without
  sub-collections (O'Neill's, Ryan's, a thesession.org dump).

Fold ``i mod k`` holds piece ``i`` for k-fold cross-validation.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import re
import unicodedata
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path

import numpy as np

from notelm import cache as piece_cache
from notelm.errors import NotelmError, ReadError, UnknownNameError
from notelm.io import SUFFIXES, read_items
from notelm.io.files import file_problem
from notelm.pieces import Piece

SPLITS = ("train", "valid", "test")
DEFAULT_FRACTIONS = (0.8, 0.1, 0.1)
MUSIC21_LICENSE = "non-commercial (music21 corpus license.txt)"


@cache
def music21_corpus() -> Path:
    """The folder of music21's bundled corpus, found without importing music21 (slow)."""
    import importlib.util

    spec = importlib.util.find_spec("music21")
    if spec is None or not spec.origin:
        raise NotelmError("music21 is not installed; run the setup command in the README")
    return Path(spec.origin).parent / "corpus"


# ---- what a corpus is --------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusSpec:
    """How to find and read one corpus."""

    name: str
    description: str
    license: str
    files: Callable[[Path | None], list[Path | ReadError]]  # the source files, in corpus order (or why not)
    melodic: bool = False  # models see the monophonic line (Piece.melody())
    time_unit: str = "beat"  # for MIDI sources
    needs_root: bool = False
    own_splits: Callable[[Path], dict[str, str]] | None = None  # piece id -> split
    transform: Callable[[Piece], Piece] | None = None  # applied after reading (e.g. soprano only)
    reader: str = "file"  # "file": notelm.io by suffix; "thesession": rows of tunes.csv
    split_by: str = "id"  # what the split hashes: "id", "title" or "tune" (see split_keys)
    bundled_root: Callable[[], Path] | None = None  # a local-layout corpus shipped inside the package
    excludes: str | None = None  # a corpus whose pieces and copies are left out (`drop_copies`)
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS  # train/valid/test shares of hash splits

    def __post_init__(self) -> None:
        if self.split_by not in SPLIT_KEYS:
            raise ValueError(f"split_by must be one of {', '.join(SPLIT_KEYS)}; got {self.split_by!r}")


@dataclass
class Corpus:
    """The pieces of a corpus in corpus order, their splits, and what was skipped and why."""

    spec: CorpusSpec
    root: Path | None
    pieces: list[Piece]
    splits: list[str]  # split name of each piece
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}
    excluded: list[dict] = field(default_factory=list)  # {"id", "title", "reason"}: copies of `spec.excludes`

    @property
    def name(self) -> str:
        return self.spec.name

    def split(self, name: str) -> list[Piece]:
        if name not in SPLITS:
            raise NotelmError(f"unknown split {name!r}; splits are {', '.join(SPLITS)}")
        return [p for p, s in zip(self.pieces, self.splits) if s == name]

    def folds(self, k: int) -> np.ndarray:
        """Fold of each piece for k-fold cross-validation: piece i is in fold i mod k."""
        if k < 2:
            raise NotelmError("cross-validation needs at least 2 folds")
        return np.arange(len(self.pieces)) % k

    def melodies(self) -> list[Piece]:
        """The monophonic line of each piece, ties merged (what melodic models see)."""
        return [p.melody() for p in self.pieces]


def hash_split(piece_id: str, fractions: tuple[float, float, float] = DEFAULT_FRACTIONS) -> str:
    """A split that depends only on the piece id: stable across runs, machines and orderings."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-9:
        raise NotelmError(f"split fractions must be three non-negative numbers summing to 1, not {fractions}")
    # a file name that is not UTF-8 reaches Python with surrogates: hash the name's own bytes
    u = int.from_bytes(hashlib.sha1(piece_id.encode("utf-8", "surrogateescape")).digest()[:8], "big") / 2**64
    edges = np.cumsum(fractions)
    return SPLITS[min(int(np.searchsorted(edges, u, side="right")), 2)]


# ---- split keys: what hash_split hashes ---------------------------------------------------------

# Spellings that differ between transcriptions of one title: German umlauts written out (Essen
# writes "Maedchen"), and Essen's lot/lux files, whose CP437 bytes read as C1 controls.
_SPELLINGS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "\x84": "ae", "\x94": "oe",
                            "\x81": "ue", "\x8e": "ae", "\x99": "oe", "\x9a": "ue",
                            "&": " and ", "'": "", "\u2019": "", "\u2018": "", "`": ""})
_ORDINAL = r"(?:\d+(?:st|nd|rd|th)|first|second|third|fourth|fifth|another|alternative)"
_KIND = r"(?:settings?|versions?|variations?|variants?|parts?|strains?)"
# Markers of a setting or variant, matched at the end of the words-only title, repeatedly:
# "1st Setting", "2nd part", "Setting 2", "(with) Variations", "No. 2" (dots and brackets are
# gone by then), a bare number of one or two digits (longer ones are years: "Spirit of 1880"),
# a roman numeral, "the". A bare "part" or "setting" stays ("Happy to Meet and Sorry to Part").
_TRAILING = re.compile(rf"(?:\s(?:{_ORDINAL}\s{_KIND}|{_KIND}\s(?:\d+|[ivx]+)|(?:with\s)?variations?|variants?"
                       rf"|(?:no|nr|number)\s\d+|\d{{1,2}}|ii|iii|iv|the))+$")


def normalise_title(title: str) -> str:
    """A tune title reduced to what its settings, variants and copies share.

    Lower case, no accents, no punctuation, no bracketed asides ("(1st Setting)", "(Die
    Nonne)", "(or Jefferson and Liberty)", Essen's catalogue numbers "(4-31)"), no page
    references (", S. 44"), no setting or variant markers ("2nd Setting", "No. 2",
    "Variation", a trailing number), no leading or trailing "the" ("Trumpet Hornpipe, The"),
    no final "s" on words of four letters or more, so possessives and plurals spelled either
    way agree ("The Sailor' Hornpipe", "Sailor's Hornpipe"), and a final "ie" spelled "y"
    ("Wandering Willie", "Wandering Willy"). "" when nothing is left.
    """
    text = title.lower().translate(_SPELLINGS)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    bare = re.sub(r"\([^()]*\)|\[[^\[\]]*\]", " ", text)  # bracketed asides
    text = bare if re.search(r"[^\W_]", bare) else text  # unless the title is all aside
    text = re.sub(r",?\s*\bs\.\s*\d+\w*\s*$", " ", text)  # Essen's page references: ", S. 44"
    words = " " + " ".join(re.findall(r"[^\W_]+", text))
    words = _TRAILING.sub("", words)
    words = re.sub(r"^\s*the\s", " ", words + " ")
    words = [w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w for w in words.split()]
    return " ".join(w[:-2] + "y" if len(w) > 3 and w.endswith("ie") else w for w in words)


def split_keys(pieces: list[Piece], split_by: str = "id") -> list[str]:
    """What each piece's split hashes: its id, its normalised title ("title"; the id where the
    title normalises to nothing), or the key of its tune ("tune", `_tune_keys`)."""
    if split_by not in SPLIT_KEYS:
        raise NotelmError(f"split_by must be one of {', '.join(SPLIT_KEYS)}; got {split_by!r}")
    return SPLIT_KEYS[split_by](pieces)


def _title_keys(pieces: list[Piece]) -> list[str]:
    return [f"title:{t}" if (t := normalise_title(p.meta.title)) else p.meta.id for p in pieces]


def _tune_keys(pieces: list[Piece]) -> list[str]:
    """Pieces are one tune when they share a normalised title or the same opening (the first
    _OPENING pitch intervals), transitively: the opening catches copies whose titles are spelled
    apart (O'Neill's "Young Terence McDonough" / "Mac Donough", "The Dublin Hornpipie") or
    differ ("The Short Grass" / "Put on your Clothes": the same notes). A tune's key is the
    least normalised title among its pieces; a piece with no title nor shared opening keeps
    its id. Joining two unrelated tunes costs only a coarser split; splitting one leaks."""
    own = _title_keys(pieces)
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = x = parent[parent[x]]
        return x

    for key, piece in zip(own, pieces):
        if (opening := _opening(piece)) is not None:
            a, b = root(key), root("opening:" + hashlib.sha1(opening).hexdigest())
            if a != b:
                parent[max(a, b)] = min(a, b)
    best: dict[str, str] = {}
    for key in own:
        r = root(key)
        best[r] = min(best.get(r, key), key)
    return [best[root(key)] for key in own]


def copies_of(pieces: list[Piece], reference: list[Piece]) -> list[str | None]:
    """Which of ``pieces`` are copies of a ``reference`` piece, and why (None: not a copy).

    A copy is what the corpora's tune grouping (`_tune_keys`) puts in one tune with a
    reference piece: the same normalised title ("title"), the same opening 16 intervals, so
    transposed copies too ("opening"), or joined to one through other pieces ("tune": a piece
    with the opening of a piece that has a reference title). Openings are read from the
    melodic line, ties merged (what a melodic model sees).
    """
    lines = [p.melody() for p in reference] + [p.melody() for p in pieces]
    keys = _tune_keys(lines)
    tunes = set(keys[: len(reference)])
    titles = {t for p in reference if (t := normalise_title(p.meta.title))}
    openings = {o for p in lines[: len(reference)] if (o := _opening(p)) is not None}
    out: list[str | None] = []
    for line, key in zip(lines[len(reference):], keys[len(reference):]):
        if key not in tunes:
            out.append(None)
        elif normalise_title(line.meta.title) in titles:
            out.append("title")
        elif _opening(line) in openings:
            out.append("opening")
        else:
            out.append("tune")
    return out


def drop_copies(pieces: list[Piece], reference: list[Piece]) -> tuple[list[Piece], list[dict]]:
    """``pieces`` without the copies of ``reference`` pieces (`copies_of`), and what was dropped:
    ``{"id", "title", "reason"}`` for each. For a training set that must not hold a test song."""
    reasons = copies_of(pieces, reference)
    kept = [p for p, r in zip(pieces, reasons) if r is None]
    dropped = [{"id": p.meta.id, "title": p.meta.title, "reason": r} for p, r in zip(pieces, reasons) if r]
    return kept, dropped


def _opening(piece: Piece) -> bytes | None:
    if len(piece.pitch) <= _OPENING:
        return None
    return np.diff(np.asarray(piece.pitch[: _OPENING + 1], np.int64)).tobytes()


# Intervals in a shared opening: 16 (two bars of a reel) join 16 more of O'Neill's tunes than
# titles alone (1,751 -> 1,735), 52 more of Ryan's; in all Essen 499 more (largest group 122).
_OPENING = 16
SPLIT_KEYS: dict[str, Callable[[list[Piece]], list[str]]] = {
    "id": lambda pieces: [p.meta.id for p in pieces],
    "title": _title_keys,
    "tune": _tune_keys,
}


# ---- the registry ------------------------------------------------------------------------------


def _glob(folder: str, pattern: str) -> Callable[[Path | None], list[Path]]:
    return lambda root: sorted((music21_corpus() / folder).glob(pattern))


def _essen_collections() -> dict[str, list[str]]:
    """Essen collections by file name: erk5/erk10/... -> "erk", kinder0 -> "kinder"."""
    groups: dict[str, list[str]] = {}
    for path in sorted((music21_corpus() / "essenFolksong").glob("*.abc")):
        groups.setdefault(re.sub(r"\d+$", "", path.stem).lower(), []).append(path.name)
    return groups


def _essen(names: list[str] | None, without: tuple[str, ...] = ()) -> Callable[[Path | None], list[Path]]:
    folder = music21_corpus() / "essenFolksong"
    return lambda root: (sorted(folder / n for n in names) if names
                         else sorted(p for p in folder.glob("*.abc") if p.name not in without))


def _soprano(piece: Piece) -> Piece:
    """The part named Soprano (the first part when none is: some chorales open with a horn)."""
    if len(piece.tracks) <= 1:
        return piece
    names = [t.name.strip().lower() for t in piece.tracks]
    k = next((i for i, n in enumerate(names) if n.startswith("soprano")), 0)
    return piece.with_notes(piece.track == k)


def _bach_files(root: Path | None) -> list[Path]:
    folder = music21_corpus() / "bach"
    return sorted(p for p in folder.iterdir() if p.name.startswith("bwv") and p.suffix in (".mxl", ".xml"))


def _walk(root: Path | None, suffixes: tuple[str, ...], exclude: tuple[str, ...] = ()) -> list[Path]:
    """Every entry under ``root`` with one of ``suffixes``, sorted: files, and also what only
    looks like one (a folder named ``x.mid``, a broken link), which `load_corpus` lists as
    skipped with the reason instead of dropping it without a word."""
    assert root is not None
    return sorted(
        p for p in root.rglob("*")
        if p.suffix.lower() in suffixes and not set(p.relative_to(root).parts) & set(exclude)
    )


def _not_a_file(path: Path) -> str | None:
    """Why a listed ``path`` cannot be read as a file (None when it is a regular file)."""
    why = file_problem(path)
    return "listed in the corpus metadata but missing" if why == "no such file" else why


MAESTRO_SPLITS = {"train": "train", "validation": "valid", "test": "test"}


def _csv_rows(path: Path) -> tuple[list[str], list[dict]]:
    """The header and rows of a UTF-8 csv file; `NotelmError` naming it when it is not one."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            return list(reader.fieldnames or []), list(reader)
    except UnicodeDecodeError as e:
        raise NotelmError(f"{path}: not UTF-8 text (byte {e.start}); a MAESTRO csv is UTF-8") from None
    except (csv.Error, OSError) as e:
        raise NotelmError(f"{path}: not a readable csv file ({e})") from None


def _maestro_csv(root: Path) -> Path:
    candidates = sorted(root.glob("maestro*.csv")) or sorted(root.glob("*.csv"))
    for c in candidates:
        if "midi_filename" in _csv_rows(c)[0]:
            return c
    raise NotelmError(f"{root}: no MAESTRO metadata csv (with a midi_filename column) in this folder")


def _maestro_rows(root: Path) -> tuple[Path, list[dict]]:
    path = _maestro_csv(root)
    header, rows = _csv_rows(path)
    if "split" not in header:
        raise NotelmError(f"{path}: no 'split' column; MAESTRO's csv gives each file's split "
                          f"({', '.join(MAESTRO_SPLITS)})")
    return path, rows


def _maestro_entry(root: Path, csv_path: Path, row: dict) -> Path | ReadError:
    """The file a csv row names, or why it is not read: a path outside ``root`` (absolute, or
    climbing out with ``..``: notelm reads nothing outside the corpus folder), or a split
    MAESTRO does not have."""
    name = row.get("midi_filename") or ""
    where = root / name
    if not name or Path(name).is_absolute() or os.path.normpath(name).split(os.sep)[0] == "..":
        return ReadError(where if name else csv_path, f"outside --root ({name!r} in {csv_path.name}); "
                         "notelm reads only files under the corpus folder")
    if row.get("split") not in MAESTRO_SPLITS:
        return ReadError(where, f"unknown split {row.get('split')!r} in {csv_path.name} "
                         f"(MAESTRO's are {', '.join(MAESTRO_SPLITS)})")
    return where


def _maestro_files(root: Path | None) -> list[Path | ReadError]:
    csv_path, rows = _maestro_rows(root)
    return [_maestro_entry(root, csv_path, row) for row in rows]  # csv order, as MAESTRO lists them


def _maestro_splits(root: Path) -> dict[str, str]:
    return {row["midi_filename"]: MAESTRO_SPLITS[row["split"]] for row in _maestro_rows(root)[1]
            if row.get("split") in MAESTRO_SPLITS and row.get("midi_filename")}


def _maestro_sample() -> Path:
    from notelm.bundled import MAESTRO_SAMPLE

    return MAESTRO_SAMPLE


def _specs() -> dict[str, CorpusSpec]:
    specs = [
        CorpusSpec("essen", "Essen Folksong Collection, all ABC files (~8,500 melodies)", MUSIC21_LICENSE,
                   _essen(None), melodic=True, split_by="title"),
        CorpusSpec("oneills", "O'Neill's Music of Ireland (1850), Irish dance tunes", MUSIC21_LICENSE,
                   _glob("oneills1850", "*.abc"), melodic=True, split_by="tune"),
        CorpusSpec("ryans", "Ryan's Mammoth Collection (1883), fiddle tunes", MUSIC21_LICENSE,
                   _glob("ryansMammoth", "*.abc"), melodic=True, split_by="tune"),
        CorpusSpec("bach-chorales", "J. S. Bach's four-part chorales (MusicXML), all parts", MUSIC21_LICENSE,
                   _bach_files),
        CorpusSpec("bach-chorales-soprano", "J. S. Bach's chorales, soprano line only", MUSIC21_LICENSE,
                   _bach_files, melodic=True, transform=_soprano),
        CorpusSpec("maestro", "MAESTRO piano performances (v1-v3 layout: csv + YEAR/*.midi)",
                   "CC BY-NC-SA 4.0", _maestro_files, time_unit="second", needs_root=True,
                   own_splits=_maestro_splits),
        CorpusSpec("maestro-sample", "12 MAESTRO test-split piano performances shipped with notelm (49 minutes)",
                   "CC BY-NC-SA 4.0 (MAESTRO; see its README.md)",
                   lambda root: _maestro_files(_maestro_sample()), time_unit="second",
                   own_splits=lambda root: _maestro_splits(_maestro_sample()), bundled_root=_maestro_sample),
        CorpusSpec("pop909", "POP909 pop-song piano arrangements (MELODY, BRIDGE, PIANO tracks)", "MIT",
                   lambda root: _walk(root, (".mid", ".midi"), exclude=("versions",)), needs_root=True),
        CorpusSpec("lakh", "Lakh MIDI dataset, or any folder of MIDI files", "CC BY 4.0 (Lakh MIDI)",
                   lambda root: _walk(root, (".mid", ".midi")), needs_root=True),
        CorpusSpec("folder", "any folder, recursively, every supported format", "the files' own",
                   lambda root: _walk(root, SUFFIXES), needs_root=True),
        CorpusSpec("thesession", "a user's own thesession.org dump (tunes.csv): loader only",
                   "ODbL with restrictions: never shipped or processed by notelm's authors",
                   lambda root: [_thesession_csv(root)], melodic=True, needs_root=True, reader="thesession",
                   split_by="tune"),
    ]
    collections = _essen_collections()
    # Pearce 2005's Dataset 7 held out: a long-term model trained on the rest of Essen, without
    # any copy of a kinder song, is evaluated on all of kinder (bench/bench_kinder.py), so this
    # corpus needs no test split: 90% train, 10% valid (early stopping, combination biases)
    specs.append(CorpusSpec("essen-without-kinder", "Essen without the kinder collection and without any copy "
                            "of a kinder song (same title or opening)", MUSIC21_LICENSE,
                            _essen(None, without=tuple(collections.get("kinder", ()))), melodic=True,
                            split_by="title", excludes="essen-kinder", fractions=(0.9, 0.1, 0.0)))
    for coll, files in collections.items():
        specs.append(CorpusSpec(f"essen-{coll}", f"Essen collection {coll!r} ({', '.join(files)})",
                                MUSIC21_LICENSE, _essen(files), melodic=True, split_by="title"))
    return {s.name: s for s in specs}


@cache
def registry() -> dict[str, CorpusSpec]:
    return _specs()


def get_spec(name: str) -> CorpusSpec:
    specs = registry()
    if name not in specs:
        raise UnknownNameError("corpus", name, list(specs))
    return specs[name]


# ---- thesession.org dumps (a user's own copy; never downloaded or shipped here) ---------------


def _thesession_csv(root: Path | None) -> Path:
    assert root is not None
    path = root if root.is_file() else root / "tunes.csv"
    if not path.is_file():
        raise NotelmError(f"{root}: expected thesession.org's tunes.csv (or its path)")
    return path


def read_thesession(path: Path) -> list[Piece | ReadError]:
    """Each row (one setting of a tune) of thesession.org's tunes.csv becomes an ABC tune."""
    from notelm.io.abc import _via_abc2midi

    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    need = {"setting_id", "name", "meter", "mode", "abc"}
    if rows and not need <= set(rows[0]):
        raise ReadError(path, f"not a thesession.org tunes.csv (needs columns {', '.join(sorted(need))})")
    tunes = [
        f"X:{r['setting_id']}\nT:{r['name']}\nM:{r['meter']}\nL:1/8\nK:{r['mode']}\n{r['abc']}\n\n"
        for r in rows
    ]
    items = _via_abc2midi(path, "", tunes)
    # ids name the setting; titles group settings of one tune (splits must not straddle them)
    return [
        replace(item, meta=replace(item.meta, id=f"setting-{r['setting_id']}", title=r["name"]))
        if isinstance(item, Piece) else item
        for item, r in zip(items, rows)
    ]


# ---- loading -------------------------------------------------------------------------------------


def _cached(path: Path, time_unit: str, kind: str) -> tuple[str, list[Piece | ReadError] | None]:
    """The cache key of a source file and its cached items (None when not cached yet)."""
    key = piece_cache.file_key(path, {"time_unit": time_unit, "kind": kind})
    return key, piece_cache.load(key, path)


def _read_file(args: tuple[str, str, str, bool]) -> tuple[str, list[Piece | ReadError], str | None]:
    """Worker: read one file, through the cache when ``use_cache``; returns (path, items, why
    its cache entry could not be written or None)."""
    path_s, time_unit, kind, use_cache = args
    path = Path(path_s)
    key, items, note = "", None, None
    if use_cache:
        try:
            key, items = _cached(path, time_unit, kind)
        except OSError as e:
            return path_s, [ReadError(path, f"cannot read it ({e.strerror})")], None
    if items is None:
        try:
            items = read_thesession(path) if kind == "thesession" else read_items(path, time_unit=time_unit)
        except ReadError as e:
            items = [e]
        if use_cache:
            note = piece_cache.store(key, items, path)
    return path_s, items, note


def _ignore_interrupts() -> None:
    """Worker initializer: Ctrl-C is the parent's to handle (one line), not every worker's traceback."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _parse_in_parallel(todo: list, n_workers: int, collect: Callable) -> None:
    """`_read_file` over ``todo`` in ``n_workers`` processes, each result to ``collect``.

    A worker that dies (killed, out of memory, a parser crashing in C) fails the batch in one
    line (`concurrent.futures`' BrokenProcessPool; a `multiprocessing.Pool` would wait for its
    result forever). Workers ignore Ctrl-C, which is the parent's to handle: when the parent is
    interrupted or fails, the workers are stopped at once rather than left to finish the corpus."""
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(n_workers, initializer=_ignore_interrupts)
    try:
        for result in pool.map(_read_file, todo, chunksize=max(1, len(todo) // (8 * n_workers))):
            collect(*result)
    except BrokenProcessPool:
        raise NotelmError("a process reading the corpus died (out of memory, or a parser crashed); "
                          "run again with --workers 1 to see which file") from None
    except BaseException:
        _quiet_pool_teardown()
        call_queue = getattr(pool, "_call_queue", None)
        if call_queue is not None:  # its feeder thread may block on a pipe the stopped workers no
            call_queue.cancel_join_thread()  # longer read: exiting must not wait for it
        for process in list((getattr(pool, "_processes", None) or {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def _quiet_pool_teardown() -> None:
    """The pool's manager thread may still try to settle a future that the teardown above
    cancelled (a race inside `concurrent.futures`); it would print a thread traceback after our
    one line. That error, and only that, is silenced from here on (the process is ending)."""
    import threading
    from concurrent.futures import InvalidStateError

    previous = threading.excepthook

    def hook(args) -> None:
        if args.exc_type is not None and issubclass(args.exc_type, InvalidStateError):
            return
        previous(args)

    threading.excepthook = hook


def _check_workers(workers: int | None) -> int | None:
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise NotelmError(f"--workers must be an int >= 1; got {workers!r}")
    return workers


def load_corpus(
    name: str,
    root: str | Path | None = None,
    *,
    fractions: tuple[float, float, float] | None = None,
    workers: int | None = None,
    use_cache: bool = True,
    progress: Callable[[int, int], None] | None = None,
    strict: bool = False,
) -> Corpus:
    """Read a named corpus (through the cache); unreadable files are skipped and listed.

    ``fractions``: train/valid/test shares of the hash splits (default: the corpus's own,
    80/10/10 for most). ``progress(done, total)`` is called as files finish. ``strict`` turns
    the first skipped file into an error. ``use_cache=False`` parses everything again and
    writes nothing; a cache that cannot be used is a warning (`notelm.cache.CacheWarning`),
    never a failure.
    """
    spec = get_spec(name)
    _check_workers(workers)
    root_path = _check_root(spec, root)
    listed = spec.files(root_path)
    refused = [e for e in listed if isinstance(e, ReadError)]
    refused += [ReadError(f, why) for f in listed if not isinstance(f, ReadError) and (why := _not_a_file(f))]
    files = [f for f in listed if not isinstance(f, ReadError) and f.is_file()]
    use_cache = use_cache and piece_cache.usable()
    kind = spec.reader
    results: dict[str, list[Piece | ReadError]] = {}
    notes: list[str] = []
    todo = []
    for f in files:  # cache hits are cheap: serve them here, parse the rest in parallel
        hit = None
        if use_cache:
            with contextlib.suppress(OSError):  # the worker reports it
                hit = _cached(f, spec.time_unit, kind)[1]
        if hit is not None:
            results[str(f)] = hit
        else:
            todo.append((str(f), spec.time_unit, kind, use_cache))

    def collect(path_s: str, items: list[Piece | ReadError], note: str | None) -> None:
        results[path_s] = items
        if note:
            notes.append(note)
        if progress:
            progress(len(results), len(files))

    if progress:
        progress(len(results), len(files))
    n_workers = max(1, min(workers or _cpu_count(), len(todo)))
    if n_workers > 1:
        _parse_in_parallel(todo, n_workers, collect)
    else:
        for job in todo:
            collect(*_read_file(job))
    if notes:
        warnings.warn(piece_cache.CacheWarning(
            f"{len(notes)} cache entr{'y' if len(notes) == 1 else 'ies'} could not be written ({notes[0]}); "
            "those files are parsed again next time"), stacklevel=2)
    return _assemble(spec, root_path, files, refused, results, fractions or spec.fractions, strict)


def _assemble(spec, root, files, refused, results, fractions, strict) -> Corpus:
    skipped = [{"path": e.path, "reason": e.reason} for e in refused]
    pieces: list[Piece] = []
    for f in files:
        for item in results[str(f)]:
            if isinstance(item, ReadError):
                skipped.append({"path": item.path, "reason": item.reason})
            else:
                pieces.append(item)
    if strict and skipped:
        raise NotelmError(f"{skipped[0]['path']}: {skipped[0]['reason']} (and {len(skipped) - 1} more skipped)"
                          if len(skipped) > 1 else f"{skipped[0]['path']}: {skipped[0]['reason']}")
    if root is not None and spec.reader == "file":  # ids relative to the root, so they do not depend on where it lives
        pieces = [_relative_id(p, root) for p in pieces]
    if spec.transform is not None:
        pieces = [spec.transform(p) for p in pieces]
    excluded: list[dict] = []
    if spec.excludes is not None:
        pieces, excluded = drop_copies(pieces, load_corpus(spec.excludes).pieces)
    own = spec.own_splits(root) if spec.own_splits is not None else {}
    keys = split_keys(pieces, spec.split_by)
    splits = [own.get(p.meta.id) or hash_split(key, fractions) for p, key in zip(pieces, keys)]
    return Corpus(spec=spec, root=root, pieces=pieces, splits=splits, skipped=skipped, excluded=excluded)


def _relative_id(piece: Piece, root: Path) -> Piece:
    source = piece.meta.source
    path, _, tune = source.partition("#")
    try:
        rel = Path(path).relative_to(root).as_posix()
    except ValueError:
        return piece
    return replace(piece, meta=replace(piece.meta, id=rel + (f"#{tune}" if tune else "")))


def _check_root(spec: CorpusSpec, root: str | Path | None) -> Path | None:
    if not spec.needs_root:
        if root is not None:
            raise NotelmError(f"corpus {spec.name!r} is bundled; it takes no --root")
        return spec.bundled_root() if spec.bundled_root is not None else None
    if root is None:
        raise NotelmError(f"corpus {spec.name!r} needs --root PATH (the folder holding it)")
    path = Path(root).expanduser()
    if not path.exists():
        raise NotelmError(f"{path}: no such folder")
    if spec.reader == "file" and not path.is_dir():
        raise NotelmError(f"{path}: not a folder")
    return path.resolve()


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
