"""Resume checkpoints that cannot run code: safetensors for the tensors, JSON for the rest.

Lightning's checkpoint is a nested structure — weights, optimiser moments, scheduler state,
loop counters, callback states — that it normally pickles, and unpickling a file runs whatever
the file says. `SafeCheckpointIO` is Lightning's checkpoint plug-in that stores the same
structure without pickle: every tensor goes into one safetensors file under the path of its
place in the structure, and the structure itself, with each tensor replaced by a reference, goes
as JSON into the safetensors header's metadata. Loading reads raw numbers and JSON only; a leaf
that is neither a tensor nor a JSON value is refused when saving (it would be a bug), and a file
that is not ours is refused when loading.

JSON cannot tell a tuple from a list nor keep integer dict keys (the optimiser's state is
keyed by parameter index), so those are written as tagged objects: ``{"__tuple__": [...]}``,
``{"__dict__": [[key, value], ...]}``; tensors are ``{"__tensor__": "name"}``.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins import CheckpointIO

from notelm.errors import NotelmError

FORMAT = "notelm-checkpoint/1"
META_KEY = "notelm.checkpoint"
_TAGS = ("__tensor__", "__tuple__", "__dict__")


class CheckpointError(NotelmError):
    """A resume checkpoint that is not one notelm wrote, or is damaged."""


def _flatten(value: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(value, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = value.detach().to("cpu").contiguous().clone()
        return {"__tensor__": name}
    if isinstance(value, dict):
        plain = all(isinstance(k, str) and k not in _TAGS for k in value)
        if plain:
            return {k: _flatten(v, tensors, f"{path}/{k}") for k, v in value.items()}
        for k in value:
            if not isinstance(k, str | int | float | bool) and k is not None:
                raise TypeError(f"checkpoint key {k!r} at {path} is not a JSON value")
        return {"__dict__": [[k, _flatten(v, tensors, f"{path}/{k}")] for k, v in value.items()]}
    if isinstance(value, tuple):
        return {"__tuple__": [_flatten(v, tensors, f"{path}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, list):
        return [_flatten(v, tensors, f"{path}[{i}]") for i, v in enumerate(value)]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"checkpoint value at {path} is a {type(value).__name__}, not a tensor or a JSON value")


def _unflatten(value: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(value, dict):
        if "__tensor__" in value:
            name = value["__tensor__"]
            if not isinstance(name, str) or name not in tensors:
                raise CheckpointError(f"the checkpoint refers to a tensor it does not hold ({name!r})")
            return tensors[name]
        if "__tuple__" in value:
            return tuple(_unflatten(v, tensors) for v in value["__tuple__"])
        if "__dict__" in value:
            return {k: _unflatten(v, tensors) for k, v in value["__dict__"]}
        return {k: _unflatten(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_unflatten(v, tensors) for v in value]
    return value


def checkpoint_bytes(checkpoint: dict[str, Any]) -> bytes:
    """A checkpoint structure as the bytes of a safetensors file (see the module docstring)."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(checkpoint, tensors, "")
    return save(tensors, metadata={META_KEY: json.dumps({"format": FORMAT, "checkpoint": skeleton})})


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint structure stored at ``path`` (raw numbers and JSON: nothing runs)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a notelm resume checkpoint ({e})") from None
    try:
        header = json.loads(meta[META_KEY])
    except (KeyError, ValueError):
        raise CheckpointError(f"{path}: not a notelm resume checkpoint (no {META_KEY} header)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"{path}: a resume checkpoint of another format ({header.get('format')!r}; "
                              f"this notelm reads {FORMAT})" if isinstance(header, dict) else f"{path}: damaged header")
    checkpoint = _unflatten(header.get("checkpoint"), tensors)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: damaged checkpoint (not a mapping)")
    return checkpoint


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary name in the same folder, then rename: a reader never sees half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class SafeCheckpointIO(CheckpointIO):
    """Lightning's checkpoint plug-in, writing and reading `checkpoint_bytes` files atomically."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any = None) -> None:
        write_atomically(Path(path), checkpoint_bytes(checkpoint))

    def load_checkpoint(self, path, map_location: Any = None, weights_only: bool | None = None) -> dict[str, Any]:
        return read_checkpoint(path)

    def remove_checkpoint(self, path) -> None:
        Path(path).unlink(missing_ok=True)
