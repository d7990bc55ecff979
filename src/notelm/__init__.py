"""notelm: sequence models of symbolic music.

Read scores and performances into `Piece`s, turn them into tokens, train and evaluate models
that predict the next event, and generate music with them. See DESIGN.md for the map.
"""

from __future__ import annotations

__version__ = "0.1.0"

from notelm.errors import NotelmError
from notelm.pieces import Piece

__all__ = ["NotelmError", "Piece", "__version__"]
