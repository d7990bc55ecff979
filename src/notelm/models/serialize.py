"""What a counting model learned, as flat named arrays, and back — without pickle.

A run directory stores these arrays in ``counts.safetensors`` (`notelm.runs`); loading one
reads raw numbers only, and checks them before any numba kernel touches them, since the
kernels do not check bounds: a damaged or hostile file is refused, never read out of bounds.

- PPM: its trie, the (n, 7) int32 node array that the kernels read (`notelm.models.ppm`),
  cut to the rows in use. Rows are checked to form a trie as `_add_child` builds one: every
  child pointer points forward (FIRST > row), every sibling pointer backward (NEXT < row), and
  each node but the root is pointed at exactly once, so no walk can loop or leave the array.
- Markov chain: per order, its n-gram and context count tables (sorted int64 keys, counts).
- Repetition, and a PPM in mode "stm" (whose tries live in each piece's state): nothing.
- Combined models: each part's arrays under its name (``ltm/trie``, ``stm/...``).

Legend: n trie nodes, k table entries.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from notelm.models.base import SequenceModel
from notelm.models.combine import Combined
from notelm.models.markov import MarkovChain, Repetition
from notelm.models.ppm import C_FULL, C_UPEX, END, FIRST, N_FIELDS, N_KIDS, NEXT, PPM, SYM
from notelm.models.symbolic import VocabularyModel


class CountsError(ValueError):
    """Stored counts that do not fit the model they are loaded into."""


# ---- models -> arrays ---------------------------------------------------------------------------


def model_arrays(model: SequenceModel, prefix: str = "") -> dict[str, np.ndarray]:
    """Everything ``model`` learned, as named arrays (see the module docstring)."""
    if isinstance(model, VocabularyModel):
        return model_arrays(model.model, prefix)
    if isinstance(model, Combined):
        return {k: v for name, part in model.models.items() for k, v in model_arrays(part, f"{prefix}{name}/").items()}
    if isinstance(model, PPM):
        if model._trie is None:  # an STM: nothing outlives a piece
            return {}
        model._close_open()
        return {f"{prefix}trie": np.ascontiguousarray(model._trie.nodes[: model._trie.n])}
    if isinstance(model, MarkovChain):
        out = {}
        for what, tables in (("ngrams", model._ngrams), ("contexts", model._contexts)):
            for o, table in enumerate(tables):
                out[f"{prefix}{what}.{o}.keys"] = table.keys
                out[f"{prefix}{what}.{o}.counts"] = table.counts
        return out
    if isinstance(model, Repetition):
        return {}
    raise TypeError(f"cannot store a {type(model).__name__}")


def count_entries(model: SequenceModel) -> int:
    """How many n-grams the model has counted (PPM trie nodes but the root, Markov n-gram
    table entries): the size of a counting model, as parameters are a network's."""
    total = 0
    for key, array in model_arrays(model).items():
        name = key.rsplit("/", 1)[-1]
        if name == "trie":
            total += len(array) - 1
        elif name.startswith("ngrams.") and name.endswith(".keys"):
            total += len(array)
    return total


# ---- arrays -> models ---------------------------------------------------------------------------


def load_model_arrays(model: SequenceModel, arrays: Mapping[str, np.ndarray]) -> SequenceModel:
    """Fill the untrained ``model`` (built from the same config) with stored arrays, checked;
    CountsError when they are missing, extra, or not a valid structure for it."""
    expected = set(model_arrays(model))
    if set(arrays) != expected:
        raise CountsError(f"the counts do not fit the configured model (missing {sorted(expected - set(arrays))[:3]}, "
                          f"unexpected {sorted(set(arrays) - expected)[:3]})")
    _load(model, arrays, "")
    return model


def _load(model: SequenceModel, arrays: Mapping[str, np.ndarray], prefix: str) -> None:
    if isinstance(model, VocabularyModel):
        _load(model.model, arrays, prefix)
    elif isinstance(model, Combined):
        for name, part in model.models.items():
            _load(part, arrays, f"{prefix}{name}/")
    elif isinstance(model, PPM) and model._trie is not None:
        nodes = check_trie(arrays[f"{prefix}trie"], model.alphabet_size)
        model._trie.nodes, model._trie.n = nodes, len(nodes)
    elif isinstance(model, MarkovChain):
        size = model.alphabet_size
        for what, tables in (("ngrams", model._ngrams), ("contexts", model._contexts)):
            for o, table in enumerate(tables):
                key_limit = size ** (o + 1) if what == "ngrams" else size ** o
                table.keys, table.counts = check_table(arrays[f"{prefix}{what}.{o}.keys"],
                                                       arrays[f"{prefix}{what}.{o}.counts"], key_limit)


def check_trie(nodes: np.ndarray, alphabet_size: int) -> np.ndarray:
    """A stored PPM trie (n, 7) int32, checked to be one the kernels can walk safely."""
    if nodes.dtype != np.int32 or nodes.ndim != 2 or nodes.shape[1] != N_FIELDS or len(nodes) < 1:
        raise CountsError(f"a PPM trie is an (n, {N_FIELDS}) int32 array; got {nodes.shape} {nodes.dtype}")
    n, row = len(nodes), np.arange(len(nodes))
    first, after, sym = nodes[:, FIRST], nodes[:, NEXT], nodes[:, SYM]
    checks = (  # in order: a later check may rely on an earlier one (bincount on valid indices)
        ("child pointers", lambda: ((first == -1) | ((first > row) & (first < n))).all()),
        ("sibling pointers", lambda: ((after == -1) | ((after >= 1) & (after < row))).all() and after[0] == -1),
        ("one parent per node", lambda: np.array_equal(
            np.bincount(np.r_[first[first != -1], after[after != -1]], minlength=n), np.r_[0, np.ones(n - 1, np.int64)])),
        ("symbols", lambda: sym[0] == -1 and ((sym[1:] >= 0) & (sym[1:] < alphabet_size)).all()),
        ("counts", lambda: (nodes[:, [C_FULL, C_UPEX]] >= 0).all()),
        ("child counts", lambda: ((nodes[:, N_KIDS] >= 0) & (nodes[:, N_KIDS] <= alphabet_size)).all()),
        ("end marks", lambda: np.isin(nodes[:, END], (0, 1)).all()),
    )
    for name, ok in checks:
        if not ok():
            raise CountsError(f"the PPM trie is damaged ({name})")
    return np.ascontiguousarray(nodes)


def check_table(keys: np.ndarray, counts: np.ndarray, key_limit: int) -> tuple[np.ndarray, np.ndarray]:
    """A stored count table: sorted unique int64 keys below ``key_limit``, counts >= 1."""
    ok = (keys.dtype == np.int64 and counts.dtype == np.int64 and keys.ndim == counts.ndim == 1
          and len(keys) == len(counts) and (np.diff(keys) > 0).all() and (counts >= 1).all()
          and (len(keys) == 0 or (keys[0] >= 0 and keys[-1] < key_limit)))
    if not ok:
        raise CountsError("a Markov count table is damaged (keys must be sorted, unique and in range; counts >= 1)")
    return keys, counts


# ---- files --------------------------------------------------------------------------------------


def counts_bytes(model: SequenceModel, metadata: dict[str, str]) -> bytes:
    """The model's arrays as a safetensors file's bytes."""
    from safetensors.numpy import save

    return save(model_arrays(model), metadata=metadata)


def read_counts(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a safetensors file (raw numbers: nothing is unpickled)."""
    from safetensors.numpy import load_file

    return load_file(str(path))
