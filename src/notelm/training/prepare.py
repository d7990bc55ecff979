"""A new run directory's settings and data: what `notelm train` does before any training.

1. Settings are assembled (family defaults < preset < ``--config`` file < ``--set`` < flags)
   and checked before any corpus is read (`assemble_settings`).
2. The corpus is read, the encoding fitted (if it learns) on the training split, and the train
   and valid splits are encoded into memory-mapped arrays under ``RUN/data``
   (`prepare_data`): token arrays, or for a sequence-to-sequence model paired source and
   target arrays (`notelm.training.data`).
3. ``config.json`` and ``encoding.json`` are written (`prepare_run`).

Counting models (`notelm.training.symbolic`) read and encode their corpus the same way.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from notelm import __version__
from notelm.errors import NotelmError
from notelm.runs import CONFIG, ENCODING, RUN_FORMAT, write_json
from notelm.training.config import (
    SettingsError,
    TrainConfig,
    check_known,
    merge,
    parse_set,
    read_config_file,
)


def assemble_settings(model: str, *, preset: str, config_file: str | Path | None, overrides: list[str],
                      max_steps: int | None, max_epochs: int | None) -> dict[str, dict[str, Any]]:
    """The model/train/encoding settings of a new run of neural model ``model``, validated."""
    from notelm.models.neural import network_spec

    record = network_spec(model)
    presets = record.preset_table
    if preset not in presets:
        raise SettingsError(f"unknown preset {preset!r} for {model}; presets: {', '.join(presets)}")
    flags = {"train": {k: v for k, v in (("max_steps", max_steps), ("max_epochs", max_epochs)) if v is not None}}
    if flags["train"]:  # an explicit flag replaces the other limit too
        flags["train"].setdefault("max_steps", None)
        flags["train"].setdefault("max_epochs", None)
    settings = merge(presets[preset], read_config_file(config_file) if config_file else {},
                     parse_set(overrides), flags)
    config_class = record.config_class
    check_known("model", settings["model"], [f.name for f in fields(config_class) if f.name != "vocab_size"])
    if "vocab_size" in settings["model"]:
        raise SettingsError("model.vocab_size comes from the encoding; it cannot be set")
    # validate now, before reading any corpus (sizes with a small stand-in vocabulary)
    from notelm.models.neural import check_size

    stand_in = {"vocab_size": 64, **({"target_vocab_size": 64} if record.kind == "seq2seq" else {})}
    check_size(model, config_class.from_dict({**settings["model"], **stand_in}))
    TrainConfig.from_dict(settings["train"])
    return settings


def tokens_per_second(encoding, sequences: list[np.ndarray], limit: int = 200) -> float | None:
    """Tokens per second of music in the training data (for ``generate --seconds``)."""
    from notelm.encodings.base import to_seconds

    tokens = seconds = 0.0
    for ids in sequences[:limit]:
        try:
            end = to_seconds(encoding.decode(ids)).end
        except NotelmError:
            continue
        tokens, seconds = tokens + len(ids), seconds + end
    return tokens / seconds if seconds > 0 else None


def encode_pairs(encoding, pieces) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict]:
    """(source, target) ids of every piece an encoding with ``encode_pair`` can represent, and
    the skipped ones by reason."""
    from collections import Counter

    from notelm.encodings.base import EncodingError

    out, skipped = [], Counter()
    for piece in pieces:
        try:
            source, target = encoding.encode_pair(piece)
        except EncodingError as e:
            skipped[e.reason] += 1
            continue
        if len(source):
            out.append((np.asarray(source, np.int64), np.asarray(target, np.int64)))
        else:
            skipped["no tokens"] += 1
    return out, skipped


def read_splits(corpus: str, root: str | Path | None, splits: tuple[str, ...] = ("train", "valid")):
    """The corpus and the pieces of each split, as models see them (a melodic corpus's line)."""
    from notelm.corpora import load_corpus

    c = load_corpus(corpus, root)
    parts = [c.split(s) for s in splits]
    if c.spec.melodic:
        parts = [[p.melody() for p in part] for part in parts]
    return c, parts


def prepare_data(out: Path, *, corpus: str, root: str | Path | None, encoding: str,
                 settings: dict[str, Any], paired: bool = False) -> tuple[Any, list, list, dict]:
    """Read the corpus, fit the encoding (if it learns) on the training split, encode the train
    and valid splits into ``out/data`` and write encoding.json. Returns the encoding, the
    train and valid ids (pairs of ids when ``paired``), and the ``data`` section of config.json."""
    from notelm.encodings import get_encoding
    from notelm.encodings.base import EncodingError
    from notelm.training.data import encode_pieces, write_pairs, write_split

    enc = get_encoding(encoding, **settings)
    if paired and not callable(getattr(enc, "encode_pair", None)):
        raise SettingsError(f"a sequence-to-sequence model needs an encoding of (source, target) pairs; "
                            f"{encoding} has none (note-tokens has)")
    c, (train_pieces, valid_pieces) = read_splits(corpus, root)
    for name, part in (("train", train_pieces), ("valid", valid_pieces)):
        if not part:  # e.g. maestro-sample: test performances only
            raise NotelmError(f"{corpus}: its {name} split has no pieces; training needs pieces in train and valid")
    if getattr(enc, "learns", False):
        try:
            enc.fit(train_pieces)
        except EncodingError as e:
            raise NotelmError(f"{corpus}: the {encoding} encoding cannot be fitted on the train split: {e}") from None
    encode = encode_pairs if paired else encode_pieces
    train_ids, train_skip = encode(enc, train_pieces)
    valid_ids, valid_skip = encode(enc, valid_pieces)
    if not train_ids or not valid_ids:
        raise NotelmError(f"{corpus}: the {encoding} encoding could represent no piece of the "
                          f"{'train' if not train_ids else 'valid'} split (skipped: {dict(train_skip + valid_skip)})")
    if paired:
        sizes = (len(enc.vocab), len(enc.target_vocab))
        write_pairs(out / "data", "train", train_ids, sizes)
        write_pairs(out / "data", "valid", valid_ids, sizes)
        lengths = {"train": sum(len(s) for s, _ in train_ids), "valid": sum(len(s) for s, _ in valid_ids)}
        rate = tokens_per_second(enc, [s for s, _ in train_ids])
    else:
        write_split(out / "data", "train", train_ids, len(enc.vocab))
        write_split(out / "data", "valid", valid_ids, len(enc.vocab))
        lengths = {"train": sum(len(s) for s in train_ids), "valid": sum(len(s) for s in valid_ids)}
        rate = tokens_per_second(enc, train_ids)
    write_json(out / ENCODING, enc.to_dict())
    data = {"corpus": corpus, "root": None if root is None else str(root), "melodic": c.spec.melodic,
            "pieces": {"train": len(train_ids), "valid": len(valid_ids)},
            "tokens": {k: int(v) for k, v in lengths.items()},
            "skipped": dict(train_skip + valid_skip), "tokens_per_second": rate}
    return enc, train_ids, valid_ids, data


def prepare_run(out: Path, model: str, *, corpus: str, root: str | Path | None, encoding: str,
                settings: dict[str, dict[str, Any]], preset: str) -> dict:
    """Read and encode the corpus into ``out/data`` and write config.json and encoding.json."""
    from notelm.models.neural import network_spec

    record = network_spec(model)
    enc, _, _, data = prepare_data(out, corpus=corpus, root=root, encoding=encoding,
                                   settings=settings["encoding"], paired=record.kind == "seq2seq")
    sizes = {"vocab_size": len(enc.vocab)}
    if record.kind == "seq2seq":
        sizes["target_vocab_size"] = len(enc.target_vocab)
    config = {
        "format": RUN_FORMAT,
        "notelm_version": __version__,
        "model": {"name": model, "kind": record.kind, "preset": preset, "description": record.description,
                  "config": {**record.config_class.from_dict({**settings["model"], **sizes}).to_dict()}},
        "encoding": {"name": encoding, "settings": settings["encoding"]},
        "data": data,
        "train": TrainConfig.from_dict(settings["train"]).to_dict(),
    }
    write_json(out / CONFIG, config)
    return config
