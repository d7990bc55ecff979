"""Encoded corpora as memory-mapped token arrays, and the windows a network trains on.

A split is stored as two ``.npy`` files: ``{split}.npy``, the pieces one after another, each
as BOS followed by its tokens (t,), and ``{split}-offsets.npy``, where each piece starts
(P + 1,). They are opened with ``mmap_mode="r"``, so a corpus larger than memory trains in
bounded RAM, and written atomically once per run directory (``--resume`` reuses them).

Training windows (`RandomWindows`) are a pure function of (seed, global batch number): batch
g is drawn with ``default_rng([seed, g])``, and process r of w takes rows r, r + w, ... of it.
So one process with batch B and w processes with B / w each see the same windows, and a run
resumed at step g draws exactly the batches it would have drawn. Evaluation windows
(`EvalWindows`) follow `notelm.models.neural.window_starts`, the same windows the model's
`score` uses, so the validation loss is the test figure's definition.

Legend: t tokens of a split, P pieces, b batch, L window length.
"""

from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from notelm.encodings.base import Encoding, EncodingError
from notelm.encodings.vocab import BOS_ID, PAD_ID
from notelm.models.neural import window_starts
from notelm.pieces import Piece

IGNORE = -100  # target id that the loss skips (torch's default ignore_index)


# ---- encoding and storing ---------------------------------------------------------------------


def encode_pieces(encoding: Encoding, pieces: Sequence[Piece]) -> tuple[list[np.ndarray], Counter]:
    """Token ids of every piece the encoding can represent, and the skipped ones by reason."""
    out, skipped = [], Counter()
    for piece in pieces:
        try:
            ids = encoding.encode(piece)
        except EncodingError as e:
            skipped[e.reason] += 1
            continue
        if len(ids):
            out.append(np.asarray(ids, dtype=np.int64))
        else:
            skipped["no tokens"] += 1
    return out, skipped


def _save_npy(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_split(folder: str | Path, split: str, sequences: Sequence[np.ndarray], vocab_size: int) -> None:
    """Store pieces as ``{split}.npy`` (BOS + tokens, concatenated) and ``{split}-offsets.npy``."""
    dtype = np.uint16 if vocab_size <= np.iinfo(np.uint16).max else np.int32
    lengths = np.array([len(s) + 1 for s in sequences], dtype=np.int64)
    offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    tokens = np.empty(int(offsets[-1]), dtype=dtype)
    for start, s in zip(offsets[:-1], sequences):
        tokens[start] = BOS_ID
        tokens[start + 1: start + 1 + len(s)] = s
    folder = Path(folder)
    _save_npy(folder / f"{split}.npy", tokens)
    _save_npy(folder / f"{split}-offsets.npy", offsets)


class TokenArray:
    """A stored split, memory-mapped: ``tokens`` (t,) and ``offsets`` (P + 1,)."""

    def __init__(self, folder: str | Path, split: str) -> None:
        folder = Path(folder)
        self.tokens = np.load(folder / f"{split}.npy", mmap_mode="r")
        self.offsets = np.load(folder / f"{split}-offsets.npy")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_tokens(self) -> int:
        """Tokens to predict (BOS is an input only)."""
        return len(self.tokens) - len(self)

    def piece(self, i: int) -> np.ndarray:
        """Tokens of piece i, without its BOS."""
        return np.asarray(self.tokens[self.offsets[i] + 1: self.offsets[i + 1]], dtype=np.int64)


# ---- training windows ----------------------------------------------------------------------------


class RandomWindows:
    """An epoch of training batches (x, y), each (b, L) long tensors; y is x shifted by one.

    ``position()`` gives the global batch number to start from (the trainer's global step),
    read at every ``iter``; an epoch is ``batches_per_epoch`` batches, so a run resumed in
    mid-epoch yields the rest of that epoch. windows="random": crops anywhere in the stream
    (crossing piece boundaries, where BOS marks the new piece); "piece": windows starting at
    a piece's BOS, padded (targets ignored) when the piece is shorter.

    ``state_dict``/``load_state_dict`` exist so that Lightning counts the loader as
    resumable; the state is the global step, which the checkpoint already holds.
    """

    def __init__(self, data: TokenArray, *, length: int, batch_size: int, seed: int, batches_per_epoch: int,
                 position: Callable[[], int], rank: int = 0, world_size: int = 1, windows: str = "random") -> None:
        if batch_size % world_size:
            raise ValueError(f"batch_size ({batch_size}) must be divisible by the number of processes ({world_size})")
        self.data, self.length, self.batch_size, self.seed = data, length, batch_size, seed
        self.batches_per_epoch, self.position = batches_per_epoch, position
        self.rank, self.world_size, self.windows = rank, world_size, windows

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = int(self.position())
        for k in range(self.batches_per_epoch - g % self.batches_per_epoch):
            yield self.batch(g + k)

    def batch(self, g: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Global batch g, this process's rows."""
        rng = np.random.default_rng([self.seed, g])
        tokens, n = self.data.tokens, self.length + 1
        if self.windows == "random":
            starts = rng.integers(0, max(1, len(tokens) - n + 1), size=self.batch_size)
        else:
            starts = self.data.offsets[rng.integers(0, len(self.data), size=self.batch_size)]
        rows = np.full((self.batch_size // self.world_size, n), PAD_ID, dtype=np.int64)
        for i, s in enumerate(starts[self.rank::self.world_size]):
            end = len(tokens) if self.windows == "random" else self.data.offsets[np.searchsorted(self.data.offsets, s, "right")]
            chunk = tokens[s: min(s + n, end)]
            rows[i, : len(chunk)] = chunk
        x, y = torch.from_numpy(rows[:, :-1]), torch.from_numpy(rows[:, 1:].copy())
        y[y == PAD_ID] = IGNORE
        return x, y

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


# ---- evaluation windows ------------------------------------------------------------------------


class EvalWindows:
    """Every piece of a split cut into the model's evaluation windows, batched: (x, y) with
    y = IGNORE except at the positions the window owns (`window_starts`). Window j (in
    order of length) goes to process j mod world_size; the loss sums are added up over
    processes."""

    def __init__(self, data: TokenArray, *, context: int | None, stride: int, max_batch_tokens: int = 16384,
                 rank: int = 0, world_size: int = 1) -> None:
        windows = []  # (inputs, targets) per window
        for i in range(len(data)):
            seq = data.piece(i)
            inputs = np.r_[BOS_ID, seq[:-1]]
            starts = window_starts(len(seq), context, stride)
            for a in np.unique(starts):
                owned = np.flatnonzero(starts == a)
                b = int(owned[-1]) + 1
                target = np.full(b - a, IGNORE, dtype=np.int64)
                target[owned[0] - a:] = seq[owned[0]: b]
                windows.append((inputs[a:b], target))
        windows.sort(key=lambda w: len(w[0]))
        windows = windows[rank::world_size]  # every process gets windows of every length
        self.mine = []
        while windows:
            longest = len(windows[-1][0])
            take = [windows.pop() for _ in range(min(len(windows), max(1, max_batch_tokens // longest)))]
            x = np.full((len(take), longest), PAD_ID, dtype=np.int64)
            y = np.full((len(take), longest), IGNORE, dtype=np.int64)
            for r, (xi, yi) in enumerate(take):
                x[r, : len(xi)], y[r, : len(yi)] = xi, yi
            self.mine.append((torch.from_numpy(x), torch.from_numpy(y)))

    def __len__(self) -> int:
        return len(self.mine)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self.mine)
