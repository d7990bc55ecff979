"""The on-disk cache of parsed files: one ``.npz`` per source file, keyed by its content.

The key hashes the file's bytes, its type (the suffix: the same bytes are a MIDI file as
``.mid`` and nothing as ``.abc``), the reader's options and ``READER_VERSION``, so an edited
file or a changed reader is parsed again and nothing stale is ever served. Entries hold
plain arrays and a JSON string (no pickles: ``allow_pickle=False``), and are written
atomically, so two processes preparing the same corpus cannot corrupt each other.

The cache is a convenience, never a condition: a cache folder that cannot be used (a file in
its place, no permission) or an entry that cannot be written is one warning line
(`CacheWarning`), and the files are read without it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import platformdirs

from notelm.errors import NotelmError, ReadError
from notelm.io.files import atomic_write_bytes
from notelm.pieces import COLUMNS, Piece, PieceMeta, Track

READER_VERSION = 6  # bump when a reader's output (or the key) changes for the same file


class CacheWarning(UserWarning):
    """The cache cannot be used; files are read without it."""


def cache_dir() -> Path:
    """``$NOTELM_CACHE_DIR``, else the user's cache directory (e.g. ~/.cache/notelm)."""
    env = os.environ.get("NOTELM_CACHE_DIR")
    return Path(env) if env else Path(platformdirs.user_cache_dir("notelm"))


_usable: dict[str, bool] = {}  # cache folder -> whether it takes entries (checked once a process)


def usable() -> bool:
    """Whether the cache folder can be created and written; if not, warn once and say no."""
    folder = cache_dir() / "files"
    if str(folder) not in _usable:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=folder, prefix=".probe-")
            os.close(fd)
            os.unlink(probe)
            _usable[str(folder)] = True
        except OSError as e:
            warnings.warn(CacheWarning(f"the cache {cache_dir()} cannot be used ({e.strerror}); "
                                       "reading every file without it (set NOTELM_CACHE_DIR to a folder)"), stacklevel=2)
            _usable[str(folder)] = False
    return _usable[str(folder)]


def file_key(path: Path, options: dict) -> str:
    h = hashlib.blake2b(digest_size=20)
    h.update(json.dumps({"reader": READER_VERSION, "suffix": path.suffix.lower(), **options}, sort_keys=True).encode())
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def entry_path(key: str) -> Path:
    return cache_dir() / "files" / key[:2] / f"{key}.npz"


def encode_items(items: list[Piece | ReadError], path: Path) -> bytes:
    """Serialise a file's pieces (and the errors of its unreadable parts) to .npz bytes."""
    pieces = [p for p in items if isinstance(p, Piece)]
    header = {
        "path": str(path),
        "order": ["p" if isinstance(p, Piece) else "e" for p in items],
        "errors": [{"path": e.path, "reason": e.reason} for e in items if isinstance(e, ReadError)],
        "pieces": [
            {"meta": asdict(p.meta), "tracks": [asdict(t) for t in p.tracks], "time_unit": p.time_unit}
            for p in pieces
        ],
    }
    arrays = {c: np.concatenate([getattr(p, c) for p in pieces] or [np.zeros(0)]) for c in COLUMNS}
    arrays["offsets"] = np.cumsum([0] + [len(p) for p in pieces])
    arrays["pedals"] = np.concatenate([p.pedals for p in pieces] or [np.zeros((0, 2))])
    arrays["pedal_offsets"] = np.cumsum([0] + [len(p.pedals) for p in pieces])
    buf = io.BytesIO()
    np.savez(buf, header=np.array(json.dumps(header)), **arrays)
    return buf.getvalue()


def decode_items(data: Path | bytes, path: Path) -> list[Piece | ReadError]:
    """The items of a cache entry, as if read from ``path``.

    Entries are keyed by content, so the same bytes under another name (a copied file) share
    one entry; their sources and ids are rewritten from the entry's path to ``path``.
    """
    with np.load(data if isinstance(data, Path) else io.BytesIO(data), allow_pickle=False) as z:
        header = json.loads(str(z["header"]))
        arrays = {name: z[name] for name in z.files if name != "header"}
    old = Path(header["path"])

    def moved(text: str, prefix: str, new: str) -> str:
        return new + text[len(prefix):] if text.startswith(prefix) else text

    off, poff = arrays["offsets"], arrays["pedal_offsets"]
    pieces = []
    for i, info in enumerate(header["pieces"]):
        meta = info["meta"]
        meta["tempos"] = tuple(tuple(t) for t in meta["tempos"])
        meta["source"] = moved(meta["source"], str(old), str(path))
        meta["id"] = moved(meta["id"], old.stem, path.stem)
        cols = {c: arrays[c][off[i] : off[i + 1]] for c in COLUMNS}
        pieces.append(
            Piece(
                **cols,
                time_unit=info["time_unit"],
                tracks=tuple(Track(**t) for t in info["tracks"]),
                pedals=arrays["pedals"][poff[i] : poff[i + 1]],
                meta=PieceMeta(**meta),
            )
        )
    errors = iter(ReadError(moved(e["path"], str(old), str(path)), e["reason"]) for e in header["errors"])
    it = iter(pieces)
    return [next(it) if kind == "p" else next(errors) for kind in header["order"]]


def load(key: str, source: Path) -> list[Piece | ReadError] | None:
    """The cached items of ``source`` under ``key``, or None if absent or unreadable (then it
    is parsed again)."""
    path = entry_path(key)
    if not path.is_file():
        return None
    try:
        return decode_items(path, source)
    except Exception:  # a truncated or foreign file in our cache folder: parse the source again
        return None


def store(key: str, items: list[Piece | ReadError], source: Path) -> str | None:
    """Write the entry of ``source``; None, or why it could not be written (the caller warns:
    a worker process cannot)."""
    try:
        atomic_write_bytes(entry_path(key), encode_items(items, source), force=True)
    except NotelmError as e:  # OutputError: an entry replaced by a folder, a full disk
        return str(e)
    return None
