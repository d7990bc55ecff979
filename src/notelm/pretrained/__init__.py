"""Built-in trained models: run directories shipped inside the package, addressed as
``builtin:NAME`` wherever a run directory is taken (`notelm.runs.open_run`).

Each folder ``NAME/`` is a run directory without its training data, logs or checkpoints:
``config.json``, ``encoding.json``, ``model.safetensors`` (or ``counts.safetensors``),
``metrics.json`` and the model card ``README.md`` (training data, exact command, license,
parameters and figures), and optionally ``evaluation.json``, the figures measured on held-out
data when it was made (``{"split": ..., "corpus": ..., "figures": {...}}``). They load with
no network: safetensors and JSON only. All of them together stay under 40 MB.
"""

from __future__ import annotations

import json
from pathlib import Path

from notelm.errors import NotelmError, UnknownNameError

HERE = Path(__file__).parent
BUDGET_BYTES = 40 * 2**20


def names() -> list[str]:
    """The built-in models, by name."""
    return sorted(p.name for p in HERE.iterdir() if (p / "config.json").is_file())


def builtin_path(name: str) -> Path:
    """The folder of built-in model ``name``; an unknown name lists the known ones."""
    if name not in names():
        known = names()
        if not known:
            raise NotelmError(f"unknown built-in model {name!r}; this notelm ships none")
        raise UnknownNameError("built-in model", name, known)
    return HERE / name


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def describe(name: str) -> dict:
    """``{name, family, parameters, bytes, corpus, license, metrics}`` of a built-in model."""
    from notelm.corpora import get_spec
    from notelm.runs import open_run

    run = open_run(HERE / name)
    corpus = run.config["data"].get("corpus")
    try:
        license_ = get_spec(corpus).license
    except NotelmError:
        license_ = None
    metrics = {k: run.metrics.get(k) for k in ("best_val_loss", "best_val_bits", "valid_bits_per_event",
                                                  "global_step", "train_seconds") if run.metrics.get(k) is not None}
    evaluation = HERE / name / "evaluation.json"
    if evaluation.is_file():
        metrics["evaluation"] = json.loads(evaluation.read_text())
    return {"name": name, "family": run.model_name, "encoding": run.config["encoding"]["name"],
            "parameters": run.metrics.get("parameters") or run.metrics.get("counts"),
            "bytes": folder_bytes(HERE / name), "corpus": corpus, "license": license_, "metrics": metrics}


def listing() -> list[dict]:
    return [describe(n) for n in names()]
