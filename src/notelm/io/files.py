"""File plumbing shared by readers and writers: atomic writes, the no-overwrite rule, and the
one check every command makes of its output paths before it starts working.

Every writer of the command line (``generate --out/--wav/--png``, ``idyom --output
/--generate-out``, ``compare --png``, ``quickstart --out``, ``train --out``) calls
`check_output` on its paths first, so a path that cannot be written fails in one line naming
it before minutes of work, never after; an OS error while writing becomes `OutputError`, one
line naming the path, never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from notelm.errors import NotelmError


class OutputExistsError(NotelmError):
    """An output file exists and the user did not pass --force."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} exists; pass --force to overwrite it")


class OutputError(NotelmError):
    """An output path that cannot be written (a folder in the way, no permission, a full disk)."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = str(path), reason


def file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a file, or None when it is a regular file: readers and
    corpus listings give the same reasons ("a folder, not a file", "a broken symbolic link")."""
    path = Path(path)
    if path.is_file():
        return None
    if path.is_symlink() and not path.exists():
        return "a broken symbolic link"
    if path.is_dir():
        return "a folder, not a file"
    if path.exists():
        return "not a regular file (a pipe, device or socket)"
    return "no such file"


def _existing_target(path: Path, *, force: bool, folder: bool) -> None:
    """Refuse what is already at ``path`` and may not be replaced by a file (or folder)."""
    try:
        st = path.lstat()
    except (FileNotFoundError, NotADirectoryError):  # absent; a file above it is `check_output`'s to name
        return
    except OSError as e:
        raise OutputError(path, f"cannot be written ({e.strerror})") from None
    if folder:
        if stat.S_ISLNK(st.st_mode) and path.is_dir():
            return  # a link to a folder is a folder to write into
        if not stat.S_ISDIR(st.st_mode):
            raise OutputError(path, "is a file, not a folder")
        return
    if stat.S_ISDIR(st.st_mode) or (stat.S_ISLNK(st.st_mode) and path.is_dir()):
        raise OutputError(path, "is a folder; give a file name")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
        raise OutputError(path, "is not a regular file (a device, pipe or socket); notelm will not replace it")
    if not force:
        raise OutputExistsError(path)


def _nearest_existing(path: Path) -> tuple[Path, Path | None]:
    """The deepest existing ancestor of ``path`` and the first component below it that is
    missing (None when ``path``'s parent exists)."""
    parent, missing = path.parent, None
    while not os.path.lexists(parent):
        parent, missing = parent.parent, parent
    return parent, missing


def _probe(folder: Path, name: str) -> None:
    """Create and remove a temporary file named like the atomic writer's in ``folder``: the
    only sure test of writability (permissions, read-only mounts, /proc, name length), and
    ``os.access`` is no test for root."""
    if not folder.is_dir():
        raise OutputError(folder, "is a file, not a folder" if folder.exists() else "is a broken link, not a folder")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(folder / name, f"cannot be written ({e.strerror})") from None
    os.close(fd)
    os.unlink(tmp)


def check_output(path: str | Path, *, force: bool = False, folder: bool = False, probe: bool = True) -> Path:
    """Check, before any work, that ``path`` can be written; return it as a Path.

    A file target (``folder=False``) must not be a folder or a special file, and must not
    exist unless ``force``. A folder target (``folder=True``) must be a folder or absent
    (whether a non-empty folder may be used is the caller's rule). In both cases the nearest
    existing folder above must accept a new file. Raises `OutputError` or
    `OutputExistsError`, one line naming the path. ``probe=False`` skips the writability
    test (for many files in one folder that was tested already).
    """
    path = Path(path)
    if not str(path):
        raise OutputError("''", "an empty path")
    _existing_target(path, force=force, folder=folder)
    if not probe:
        return path
    if folder and path.is_dir():
        _probe(path, "notelm-probe")
        return path
    parent, missing = _nearest_existing(path)
    _probe(parent, (missing or path).name)
    return path


def check_distinct(paths: Iterable[str | Path | None]) -> None:
    """Refuse two outputs of one command at the same path (the second would replace the first)."""
    seen: dict[str, Path] = {}
    for p in paths:
        if p is None:
            continue
        key = os.path.abspath(p)
        if key in seen:
            raise OutputError(p, "given for two outputs; give each its own path")
        seen[key] = Path(p)


def check_not_inputs(outputs: Iterable[str | Path | None], inputs: Iterable[str | Path | None]) -> None:
    """Refuse an output that is one of the command's input files or lies inside one of its input
    folders, whatever --force says: notelm never replaces or adds to what it reads."""
    ins = [Path(i).resolve() for i in inputs if i is not None and Path(i).exists()]
    for out in outputs:
        if out is None:
            continue
        target = Path(out).resolve()
        for i in ins:
            if target == i:
                raise OutputError(out, "is an input of this command; choose another path (notelm never replaces "
                                       "what it reads, even with --force)")
            if i.is_dir() and target.is_relative_to(i):
                raise OutputError(out, f"is inside the input folder {i}; choose a path outside it")


@contextlib.contextmanager
def removed_on_failure(paths: Iterable[str | Path | None]) -> Iterator[None]:
    """Remove those of ``paths`` that did not exist on entry, and the folders made for them,
    if the block fails or is interrupted, so a failed or interrupted command leaves no
    partial output behind (files that existed are left as they are: each write is atomic)."""
    new = [Path(p) for p in paths if p is not None and not os.path.lexists(p)]
    folders = {a for p in new for a in Path(os.path.abspath(p)).parents if not os.path.lexists(a)}
    try:
        yield
    except BaseException:
        for p in new:
            with contextlib.suppress(OSError):
                if p.is_file() or p.is_symlink():
                    p.unlink()
        for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):
            with contextlib.suppress(OSError):  # not empty: someone else's files are in it
                folder.rmdir()
        raise


def _mkdir(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(folder, "is a file, not a folder") from None
    except OSError as e:
        raise OutputError(folder, f"cannot create the folder ({e.strerror})") from None


def atomic_write_bytes(path: str | Path, data: bytes, *, force: bool = False) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    A reader never sees a half-written file, and an interrupted run leaves the old one intact.
    Refuses to replace an existing file unless ``force``, and never replaces a folder or a
    special file; an OS error becomes `OutputError` naming the path.
    """
    path = Path(path)
    _existing_target(path, force=force, folder=False)
    _mkdir(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise OutputError(path, f"cannot be written ({e.strerror})") from None
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; an output file gets the usual rights
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise OutputError(path, f"cannot be written ({e.strerror})") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str, *, force: bool = False) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), force=force)
