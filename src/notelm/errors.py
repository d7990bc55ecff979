"""Domain errors: what a user did wrong or what a file is, never an internal bug.

The CLI turns every `NotelmError` into one line on stderr and a non-zero exit. Corrupt files
are common in large collections (Lakh, user folders), so readers wrap every parser failure
in `ReadError`, and batch loaders skip and count such files instead of stopping.
"""

from __future__ import annotations


class NotelmError(Exception):
    """Base class of the errors a user can cause; the message is the whole explanation."""


class ReadError(NotelmError):
    """A file could not be read as music (missing, corrupt, unsupported, unparsable)."""

    def __init__(self, path: object, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self):  # picklable across worker processes despite the two-argument init
        return (type(self), (self.path, self.reason))


class UnknownNameError(NotelmError, ValueError):
    """A name (corpus, model, encoding, ...) that no registry knows."""

    def __init__(self, kind: str, name: str, known: list[str]) -> None:
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}")
