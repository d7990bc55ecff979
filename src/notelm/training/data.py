"""Encoded corpora as memory-mapped token arrays, and the windows a network trains on.

A split is stored as two ``.npy`` files: ``{split}.npy``, the pieces one after another, each
as BOS followed by its tokens (t,), and ``{split}-offsets.npy``, where each piece starts
(P + 1,). They are opened with ``mmap_mode="r"``, so a corpus larger than memory trains in
bounded RAM, and written atomically once per run directory (``--resume`` reuses them).

Three kinds of data, one per kind of task (`notelm.training.tasks`):

- windows of one token array (`RandomWindows` for training, `EvalWindows` for validation);
- paired arrays (`PairArray`: a source and a target token per position of each piece, e.g. a
  note and its velocity), cut into windows of fixed length and step (`PairWindows`);
- piece-ordered segments (`SegmentStream`): each batch row walks through pieces one after
  another, segment by segment; a flag marks the rows whose segment starts a new piece.

Every training batch is a pure function of (seed, global batch number): batch g is drawn with
``default_rng([seed, g])`` (a segment stream's row r follows its own fixed walk), and process
r of w takes rows r, r + w, ... of it. So one process with batch B and w processes with B / w
each see the same data, and a run resumed at step g draws exactly the batches it would have
drawn. Evaluation windows follow `notelm.models.neural.window_starts`, the same windows the
model's `score` uses, so the validation loss is the test figure's definition.

Legend: t tokens of a split, P pieces, b batch, L window length, T segment length.
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
from notelm.models.neural import length_batches, window_starts
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
    a piece's BOS, padded (targets ignored) when the piece is shorter; "in-piece": a piece
    drawn with probability proportional to its length, then a crop anywhere inside it (never
    crossing into the next piece), padded when the piece is shorter.

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
        offsets = self.data.offsets
        if self.windows == "random":
            starts = rng.integers(0, max(1, len(tokens) - n + 1), size=self.batch_size)
        elif self.windows == "piece":
            starts = offsets[rng.integers(0, len(self.data), size=self.batch_size)]
        else:
            lengths = np.diff(offsets)
            piece = rng.choice(len(lengths), size=self.batch_size, p=lengths / lengths.sum())
            starts = offsets[piece] + (rng.random(self.batch_size) * np.maximum(1, lengths[piece] - n + 1)).astype(np.int64)
        rows = np.full((self.batch_size // self.world_size, n), PAD_ID, dtype=np.int64)
        for i, s in enumerate(starts[self.rank::self.world_size]):
            end = len(tokens) if self.windows == "random" else offsets[np.searchsorted(offsets, s, "right")]
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
        for group in length_batches([len(w[0]) for w in windows], max_batch_tokens):
            take = [windows[j] for j in group]
            longest = len(take[0][0])
            x = np.full((len(take), longest), PAD_ID, dtype=np.int64)
            y = np.full((len(take), longest), IGNORE, dtype=np.int64)
            for r, (xi, yi) in enumerate(take):
                x[r, : len(xi)], y[r, : len(yi)] = xi, yi
            self.mine.append((torch.from_numpy(x), torch.from_numpy(y)))

    def __len__(self) -> int:
        return len(self.mine)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return iter(self.mine)


# ---- paired arrays (sequence to sequence) ---------------------------------------------------------


def write_pairs(folder: str | Path, split: str, pairs: Sequence[tuple[np.ndarray, np.ndarray]],
                vocab_sizes: tuple[int, int]) -> None:
    """Store (source, target) pieces of equal lengths as ``{split}-source.npy``,
    ``{split}-target.npy`` and ``{split}-offsets.npy`` (no BOS: tasks add their own)."""
    folder = Path(folder)
    for (src, tgt) in pairs:
        if len(src) != len(tgt):
            raise ValueError(f"a source of {len(src)} tokens pairs with a target of {len(tgt)}")
    offsets = np.r_[0, np.cumsum([len(s) for s, _ in pairs])].astype(np.int64)
    for side, vocab, k in (("source", vocab_sizes[0], 0), ("target", vocab_sizes[1], 1)):
        dtype = np.uint16 if vocab <= np.iinfo(np.uint16).max else np.int32
        flat = np.concatenate([p[k] for p in pairs]).astype(dtype) if pairs else np.zeros(0, dtype)
        _save_npy(folder / f"{split}-{side}.npy", flat)
    _save_npy(folder / f"{split}-offsets.npy", offsets)


class PairArray:
    """A stored paired split, memory-mapped: ``source`` and ``target`` (t,), ``offsets`` (P + 1,)."""

    def __init__(self, folder: str | Path, split: str) -> None:
        folder = Path(folder)
        self.source = np.load(folder / f"{split}-source.npy", mmap_mode="r")
        self.target = np.load(folder / f"{split}-target.npy", mmap_mode="r")
        self.offsets = np.load(folder / f"{split}-offsets.npy")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def n_tokens(self) -> int:
        return len(self.target)

    def piece(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = self.offsets[i], self.offsets[i + 1]
        return np.asarray(self.source[a:b], np.int64), np.asarray(self.target[a:b], np.int64)


def pair_windows(n: int, length: int, step: int, *, cover: bool) -> list[tuple[int, int]]:
    """Windows (start, end) of at most ``length`` positions every ``step`` over n positions.
    Without ``cover``, the windows that fit whole (midi-translation's training windows: the
    tail after the last one is dropped; a piece shorter than ``length`` is one window); with it,
    also one window ending at n, so every position is in some window."""
    if n <= length:
        return [(0, n)] if n else []
    out = [(a, a + length) for a in range(0, n - length + 1, step)]
    if cover and out[-1][1] < n:
        out.append((n - length, n))
    return out


def pair_batch(data: PairArray, windows: Sequence[tuple[int, int, int]], length: int,
               targets: Sequence[tuple[int, int]] | None = None) -> tuple[torch.Tensor, ...]:
    """(source, source_padding, target_in, target_out) of windows (piece, start, end): each
    sequence starts with BOS (midi-translation's CLS: the decoder's start symbol); target_out
    is the target shifted left, IGNORE outside ``targets`` (per window, the scored range
    relative to its start; default all) and on padding."""
    b, n = len(windows), length + 1
    src = np.full((b, n), PAD_ID, np.int64)
    tgt_in = np.full((b, n), PAD_ID, np.int64)
    tgt_out = np.full((b, n), IGNORE, np.int64)
    for r, (i, a, e) in enumerate(windows):
        s, t = data.piece(i)
        m = e - a
        src[r, 0], src[r, 1:m + 1] = BOS_ID, s[a:e]
        tgt_in[r, 0], tgt_in[r, 1:m + 1] = BOS_ID, t[a:e]
        lo, hi = targets[r] if targets is not None else (0, m)
        tgt_out[r, lo:hi] = t[a + lo:a + hi]
    x = torch.from_numpy(src)
    return x, x == PAD_ID, torch.from_numpy(tgt_in[:, :-1].copy()), torch.from_numpy(tgt_out[:, :-1].copy())


def count_pair_windows(data: PairArray, length: int, step: int) -> int:
    """Training windows of every piece (`pair_windows` without cover)."""
    lengths = np.diff(data.offsets)
    return int(sum(len(pair_windows(int(n), length, step, cover=False)) for n in lengths))


class PairWindows:
    """Training batches of paired windows: every window of every piece (`pair_windows`,
    without cover) in a list; batch g draws ``batch_size`` of them with ``default_rng([seed,
    g])``; process r of w takes rows r, r + w, ... (see the module docstring)."""

    def __init__(self, data: PairArray, *, length: int, step: int, batch_size: int, seed: int,
                 batches_per_epoch: int | None, position: Callable[[], int], rank: int = 0, world_size: int = 1) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch_size ({batch_size}) must be divisible by the number of processes ({world_size})")
        self.data, self.length, self.batch_size, self.seed = data, length, batch_size, seed
        self.windows = np.array([(i, a, e) for i in range(len(data))
                                 for a, e in pair_windows(int(data.offsets[i + 1] - data.offsets[i]), length, step,
                                                          cover=False)], dtype=np.int64).reshape(-1, 3)
        if not len(self.windows):
            raise ValueError("no training windows: every piece is empty")
        self.batches_per_epoch = batches_per_epoch or max(1, len(self.windows) // batch_size)
        self.position, self.rank, self.world_size = position, rank, world_size

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        g = int(self.position())
        for k in range(self.batches_per_epoch - g % self.batches_per_epoch):
            yield self.batch(g + k)

    def batch(self, g: int) -> tuple[torch.Tensor, ...]:
        rng = np.random.default_rng([self.seed, g])
        rows = rng.integers(0, len(self.windows), size=self.batch_size)[self.rank::self.world_size]
        return pair_batch(self.data, [tuple(int(v) for v in self.windows[r]) for r in rows], self.length)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def owned_ranges(n: int, windows: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """For overlapping windows covering 0..n, the part of each window whose positions it
    scores: each position goes to the window where it has the most context on both sides
    (the window whose centre is nearest), so every position is scored exactly once.
    Returned relative to each window's start."""
    if not windows:
        return []
    centre = np.array([(a + e) / 2 for a, e in windows])
    pos = np.arange(n)
    inside = np.array([(pos >= a) & (pos < e) for a, e in windows])  # (w, n)
    dist = np.where(inside, np.abs(pos[None, :] + 0.5 - centre[:, None]), np.inf)
    owner = dist.argmin(axis=0)
    out = []
    for j, (a, _) in enumerate(windows):
        mine = np.flatnonzero(owner == j)
        out.append((int(mine[0]) - a, int(mine[-1]) + 1 - a) if len(mine) else (0, 0))
    return out


class PairEvalWindows:
    """Every position of every piece of a split in overlapping windows (`pair_windows` with
    cover, `owned_ranges`), batched; window j to process j mod world_size."""

    def __init__(self, data: PairArray, *, length: int, step: int, batch_size: int = 64,
                 rank: int = 0, world_size: int = 1) -> None:
        jobs = []  # (piece, start, end, owned lo, owned hi)
        for i in range(len(data)):
            n = int(data.offsets[i + 1] - data.offsets[i])
            wins = pair_windows(n, length, step, cover=True)
            for (a, e), (lo, hi) in zip(wins, owned_ranges(n, wins)):
                jobs.append((i, a, e, lo, hi))
        jobs = jobs[rank::world_size]
        self.mine = [pair_batch(data, [j[:3] for j in jobs[k:k + batch_size]], length,
                                [j[3:] for j in jobs[k:k + batch_size]]) for k in range(0, len(jobs), batch_size)]

    def __len__(self) -> int:
        return len(self.mine)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        return iter(self.mine)


# ---- piece-ordered segments --------------------------------------------------------------------


class SegmentStream:
    """Batches (x, y, starts) of consecutive segments: row r of the global batch walks through
    pieces in its own fixed random order (``default_rng([seed, r, cycle])`` permutations, one
    after another), each piece cut into segments of T inputs from its BOS on; x (b, T) and
    y (b, T) are inputs and next tokens (padding ignored at a piece's end), starts (b,) bool
    marks rows whose segment is a piece's first. Global batch g is segment g of every row, so
    resuming at step g needs only the carried state; process r of w takes rows r, r + w, ..."""

    def __init__(self, data: TokenArray, *, length: int, batch_size: int, seed: int, batches_per_epoch: int,
                 position: Callable[[], int], rank: int = 0, world_size: int = 1) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch_size ({batch_size}) must be divisible by the number of processes ({world_size})")
        self.data, self.length, self.seed = data, length, seed
        self.batch_size, self.batches_per_epoch, self.position = batch_size, batches_per_epoch, position
        self.rows = list(range(rank, batch_size, world_size))
        lengths = np.diff(data.offsets)  # BOS + tokens per piece
        self.segments = np.maximum(1, -(-(lengths - 1) // length))  # segments of T inputs per piece
        self._walks: dict[int, tuple[list[np.ndarray], list[np.ndarray]]] = {}  # row -> per cycle: pieces, cumulative segments

    def __len__(self) -> int:
        return self.batches_per_epoch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        g = int(self.position())
        for k in range(self.batches_per_epoch - g % self.batches_per_epoch):
            yield self.batch(g + k)

    def locate(self, row: int, g: int) -> tuple[int, int]:
        """(piece, segment within it) that row ``row`` reads at global batch ``g``."""
        pieces, ends = self._walks.setdefault(row, ([], []))
        per_cycle = int(self.segments.sum())
        cycle, k = divmod(g, per_cycle)
        while len(pieces) <= cycle:
            order = np.random.default_rng([self.seed, row, len(pieces)]).permutation(len(self.segments))
            pieces.append(order)
            ends.append(np.cumsum(self.segments[order]))
        j = int(np.searchsorted(ends[cycle], k, side="right"))
        before = int(ends[cycle][j - 1]) if j else 0
        return int(pieces[cycle][j]), k - before

    def batch(self, g: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n, tokens = self.length, self.data.tokens
        x = np.full((len(self.rows), n), PAD_ID, np.int64)
        y = np.full((len(self.rows), n), IGNORE, np.int64)
        starts = np.zeros(len(self.rows), bool)
        for i, row in enumerate(self.rows):
            piece, seg = self.locate(row, g)
            a, end = int(self.data.offsets[piece]), int(self.data.offsets[piece + 1])
            lo = a + seg * n
            chunk = np.asarray(tokens[lo: min(lo + n + 1, end)], np.int64)
            x[i, : min(n, len(chunk))] = chunk[:n]
            y[i, : len(chunk) - 1] = chunk[1:]
            starts[i] = seg == 0
        return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(starts)

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class SegmentEval:
    """Every piece of a split streamed from its start in segments of T inputs: pieces in
    batches of ``batch_size`` rows (piece j to process j mod world_size), one batch of segments
    after another; a row whose piece has ended pads (nothing scored). The first segment of a
    group marks every row as a start."""

    def __init__(self, data: TokenArray, *, length: int, batch_size: int = 16, rank: int = 0, world_size: int = 1) -> None:
        pieces = list(range(len(data)))[rank::world_size]
        pieces.sort(key=lambda i: data.offsets[i + 1] - data.offsets[i])
        self.mine = []
        for k in range(0, len(pieces), batch_size):
            group = pieces[k:k + batch_size]
            seqs = [np.asarray(data.tokens[data.offsets[i]:data.offsets[i + 1]], np.int64) for i in group]
            segments = max(1, -(-(max(len(s) for s in seqs) - 1) // length))
            for seg in range(segments):
                x = np.full((len(group), length), PAD_ID, np.int64)
                y = np.full((len(group), length), IGNORE, np.int64)
                for r, s in enumerate(seqs):
                    chunk = s[seg * length: seg * length + length + 1]
                    x[r, : min(length, len(chunk))] = chunk[:length]
                    if len(chunk) > 1:
                        y[r, : len(chunk) - 1] = chunk[1:]
                starts = np.full(len(group), seg == 0)
                self.mine.append((torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(starts)))

    def __len__(self) -> int:
        return len(self.mine)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        return iter(self.mine)
