"""What a counting model learned, as a safetensors file, and back — without pickle.

Every counting model gives its own arrays (``to_arrays``) and takes them back checked
(``load_arrays``): PPM its trie (`notelm.models.ppm.check_trie`), the Markov chain its count
tables (`notelm.models.markov.check_table`); repetition and a PPM STM hold nothing; combined
models hold each part's arrays under its name (``ltm/trie``, ``stm/...``). A run directory
stores them in ``counts.safetensors`` (`notelm.runs`); loading reads raw numbers only, and
the checks run before any numba kernel touches them, since the kernels do not check bounds:
a damaged or hostile file is refused, never read out of bounds.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from notelm.models.base import SequenceModel


class CountsError(ValueError):
    """Stored counts that do not fit the model they are loaded into."""


def model_arrays(model: SequenceModel) -> dict[str, np.ndarray]:
    """Everything ``model`` learned, as named arrays."""
    if not callable(getattr(model, "to_arrays", None)):
        raise TypeError(f"cannot store a {type(model).__name__}")
    return model.to_arrays()


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


def load_model_arrays(model: SequenceModel, arrays: Mapping[str, np.ndarray]) -> SequenceModel:
    """Fill the untrained ``model`` (built from the same config) with stored arrays, checked;
    CountsError when they are missing, extra, or not a valid structure for it."""
    expected = set(model_arrays(model))
    if set(arrays) != expected:
        raise CountsError(f"the counts do not fit the configured model (missing {sorted(expected - set(arrays))[:3]}, "
                          f"unexpected {sorted(set(arrays) - expected)[:3]})")
    try:
        return model.load_arrays(dict(arrays))
    except ValueError as e:  # TrieError, a damaged count table
        raise CountsError(str(e)) from None


def counts_bytes(model: SequenceModel, metadata: dict[str, str]) -> bytes:
    """The model's arrays as a safetensors file's bytes."""
    from safetensors.numpy import save

    return save(model_arrays(model), metadata=metadata)


def read_counts(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a safetensors file (raw numbers: nothing is unpickled)."""
    from safetensors.numpy import load_file

    return load_file(str(path))
