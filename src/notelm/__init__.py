"""notelm: sequence models of symbolic music.

Read scores and performances into `Piece`s, turn them into tokens, train and evaluate models
that predict the next event, and generate music with them. See DESIGN.md for the map.
"""

from __future__ import annotations

__version__ = "0.1.0"

from notelm.errors import NotelmError


def __getattr__(name: str):
    # `Piece` loads numpy: imported when first asked for, so that the command line starts (and
    # answers Ctrl-C during start-up, `notelm.__main__`) without waiting for it
    if name == "Piece":
        from notelm.pieces import Piece

        return Piece
    raise AttributeError(f"module 'notelm' has no attribute {name!r}")


__all__ = ["NotelmError", "Piece", "__version__"]
