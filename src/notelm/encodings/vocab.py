"""`Vocabulary`: readable string tokens <-> integer ids, saved with every model.

Four special tokens have fixed ids, the same in every vocabulary, so that padding, sequence
boundaries and unknown symbols mean the same thing to every model and sampler:
PAD 0, BOS 1, EOS 2, UNK 3. Content tokens follow from id 4 in the order given.

A model that wants the bare alphabet of an encoding (PPM reproducing IDyOM's figures counts
the distinct symbols of the corpus, nothing else) uses ``ids - N_SPECIAL`` over an alphabet of
``vocab.content_size`` symbols.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = range(4)
N_SPECIAL = len(SPECIALS)
NEVER_PREDICTED = (PAD_ID, BOS_ID, UNK_ID)  # specials no model emits (EOS ends a piece)


class Vocabulary:
    """An ordered set of tokens: the specials (ids 0-3), then the content tokens (ids 4...)."""

    def __init__(self, tokens: Iterable[str] = ()) -> None:
        content = [str(t) for t in tokens]
        clash = set(content) & set(SPECIALS)
        if clash:
            raise ValueError(f"content tokens may not be special tokens: {sorted(clash)}")
        if len(set(content)) != len(content):
            seen: set[str] = set()
            dup = next(t for t in content if t in seen or seen.add(t))
            raise ValueError(f"duplicate token {dup!r} in vocabulary")
        self._tokens: list[str] = [*SPECIALS, *content]
        self._ids: dict[str, int] = {t: i for i, t in enumerate(self._tokens)}

    # ---- lookups ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._tokens == other._tokens

    __hash__ = None

    def __repr__(self) -> str:
        return f"Vocabulary({self.content_size} tokens + {N_SPECIAL} specials)"

    @property
    def content_size(self) -> int:
        """Number of content (non-special) tokens."""
        return len(self._tokens) - N_SPECIAL

    @property
    def content_tokens(self) -> list[str]:
        return self._tokens[N_SPECIAL:]

    def id(self, token: str) -> int:
        """Id of ``token``; UNK's id when it is not in the vocabulary."""
        return self._ids.get(token, UNK_ID)

    def token(self, index: int) -> str:
        return self._tokens[int(index)]

    def ids(self, tokens: Sequence[str]) -> np.ndarray:
        """Ids of ``tokens`` (unknown ones -> UNK), int64, shape (t,)."""
        get = self._ids.get
        return np.fromiter((get(t, UNK_ID) for t in tokens), dtype=np.int64, count=len(tokens))

    def tokens(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """Tokens of ``ids``; an id outside the vocabulary raises IndexError."""
        table = self._tokens
        out = []
        for i in np.asarray(ids, dtype=np.int64).tolist():
            if not 0 <= i < len(table):
                raise IndexError(f"token id {i} outside the vocabulary (size {len(table)})")
            out.append(table[i])
        return out

    # ---- JSON ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {"specials": list(SPECIALS), "tokens": self.content_tokens}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocabulary:
        specials = tuple(data.get("specials", SPECIALS))
        if specials != SPECIALS:
            raise ValueError(f"vocabulary specials {specials} differ from notelm's {SPECIALS}")
        return cls(data["tokens"])

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Vocabulary:
        return cls.from_dict(json.loads(text))
