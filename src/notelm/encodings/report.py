"""Round-trip reports and readable tokens, for tests, benchmarks and ``notelm encode``.

`roundtrip_report` checks the encodings' one promise, ``decode(encode(p)) == quantized(p)``,
over a corpus and counts the pieces an encoding refuses, by reason.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np

from notelm.encodings.base import Encoding, EncodingError
from notelm.errors import NotelmError
from notelm.pieces import COLUMNS, Piece

MAX_MISMATCHES = 5


def difference(got: Piece, want: Piece) -> str | None:
    """The first way two pieces differ, in words; None when they are equal."""
    if got == want:
        return None
    if got.time_unit != want.time_unit:
        return f"time unit {got.time_unit} != {want.time_unit}"
    if len(got) != len(want):
        return f"{len(got)} notes decoded, {len(want)} expected"
    if got.tracks != want.tracks:
        return "tracks differ"
    for col in COLUMNS:
        a, b = getattr(got, col), getattr(want, col)
        bad = np.flatnonzero(a != b)
        if len(bad):
            i = int(bad[0])
            return f"{col} of note {i}: {a[i]} decoded, {b[i]} expected ({len(bad)} notes differ)"
    return "pedals differ"


def _piece_id(piece: Piece, index: int) -> str:
    return piece.meta.id or piece.meta.source or f"#{index}"


def roundtrip_report(pieces: Iterable[Piece | NotelmError], encoding: Encoding) -> dict[str, Any]:
    """Encode and decode every piece; count exact round trips, skips (by reason), mismatches.

    ``exact`` means ``decode(encode(p)) == quantized(p)``. Items that are errors (a reader's
    ReadError for an unreadable tune) and pieces the encoding refuses count as skipped.
    An encoding that learns and is not fitted yet is fitted on the pieces first (in place, so
    the caller can go on to use it).
    """
    pieces = list(pieces)
    if not encoding.fitted:
        encoding.fit(p for p in pieces if isinstance(p, Piece))
    exact, skipped, mismatches = 0, 0, []
    reasons: Counter[str] = Counter()
    for i, piece in enumerate(pieces):
        if not isinstance(piece, Piece):
            skipped += 1
            reasons[getattr(piece, "reason", str(piece))] += 1
            continue
        try:
            ids = encoding.encode(piece)
            want = encoding.quantized(piece)
        except EncodingError as e:
            skipped += 1
            reasons[e.reason] += 1
            continue
        try:
            why = difference(encoding.decode(ids), want)
        except EncodingError as e:  # its own ids should always decode: a bug worth reporting
            why = f"decoding failed: {e}"
        if why is None:
            exact += 1
        elif len(mismatches) < MAX_MISMATCHES:
            mismatches.append({"id": _piece_id(piece, i), "reason": why})
    n_mismatch = len(pieces) - exact - skipped
    return {
        "encoding": encoding.name,
        "pieces": len(pieces),
        "exact": exact,
        "skipped": skipped,
        "mismatched": n_mismatch,
        "mismatches": mismatches,
        "skip_reasons": dict(reasons.most_common()),
    }


def show_tokens(piece: Piece, encoding: Encoding, limit: int | None = 64) -> str:
    """The first ``limit`` tokens of ``piece`` as one readable line (all when limit is None).

    An encoding that learns and is not fitted is shown as fitted on this piece alone (on a
    copy: the caller's encoding is left as it is).
    """
    if not encoding.fitted:
        encoding = copy.deepcopy(encoding).fit([piece])
    tokens = encoding.tokens(piece)
    shown = tokens if limit is None else tokens[:limit]
    more = len(tokens) - len(shown)
    return " ".join(shown) + (f" ... (+{more} more)" if more > 0 else "")
