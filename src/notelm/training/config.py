"""Training settings, and how a run's settings are assembled from their sources.

A run's settings have three sections — ``model`` (the network family's config), ``train``
(`TrainConfig`) and ``encoding`` (the encoding's settings) — assembled in this order, each
source overriding the one before: the family's defaults, the preset (``debug``, ``small``,
``base``), a YAML or JSON file (``--config``), ``--set section.key=value`` pairs, and the
explicit ``--max-steps``/``--max-epochs`` flags.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from notelm.config import Config, SettingsError

SECTIONS = ("model", "train", "encoding")
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine", "noam")
WINDOWS = ("random", "piece", "in-piece")


@dataclass(frozen=True)
class TrainConfig(Config):
    """How a network is trained.

    batch_size: windows per optimiser step (over all processes). windows: "random" crops of
    the concatenated corpus (crossing piece boundaries, where BOS marks the new piece),
    "piece"-aligned windows that start at a piece's beginning, or "in-piece" crops that start
    anywhere in one piece and never cross into the next (a shorter piece is padded).
    window_step: a sequence-to-sequence model's training windows start every window_step
    positions (None: a third of the window: 42 for midi-translation's 128 notes).
    optimizer: "adam" or "adamw"; lr, weight_decay, betas, eps (Adam's epsilon). schedule: "constant", "cosine"
    (linear warmup, then cosine decay to min_lr_ratio * lr) or "noam" (lr * dim^-0.5 *
    min(step^-0.5, step * warmup^-1.5): Vaswani et al. 2017, Eq. 3; lr is then a factor).
    label_smoothing: of the cross-entropy (Szegedy et al. 2016). grad_clip: max gradient norm
    (None: off). max_steps / max_epochs: when to stop (an epoch is as many windows as the
    training tokens fill). val_every: validate every so many steps. patience: stop after so
    many validations without a better validation loss (None: never). seed: of everything.
    """

    batch_size: int = 32
    windows: str = "random"
    window_step: int | None = None
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: str = "constant"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    label_smoothing: float = 0.0
    grad_clip: float | None = 1.0
    max_steps: int | None = None
    max_epochs: int | None = None
    val_every: int = 200
    patience: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise SettingsError(f"train.{message}")

        def is_int(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        def is_num(v: Any) -> bool:
            return isinstance(v, (int, float)) and not isinstance(v, bool)

        need(is_int(self.batch_size) and self.batch_size >= 1, f"batch_size must be an int >= 1; got {self.batch_size!r}")
        need(self.window_step is None or (is_int(self.window_step) and self.window_step >= 1),
             f"window_step must be an int >= 1 or null; got {self.window_step!r}")
        need(self.windows in WINDOWS, f"windows must be one of {', '.join(WINDOWS)}; got {self.windows!r}")
        need(self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}; got {self.optimizer!r}")
        need(is_num(self.lr) and self.lr > 0, f"lr must be a number > 0; got {self.lr!r}")
        need(is_num(self.weight_decay) and self.weight_decay >= 0, f"weight_decay must be >= 0; got {self.weight_decay!r}")
        need(len(self.betas) == 2 and all(is_num(b) and 0 <= b < 1 for b in self.betas),
             f"betas must be two numbers in [0, 1); got {self.betas!r}")
        need(is_num(self.eps) and 0 < self.eps < 1, f"eps must be a number in (0, 1); got {self.eps!r}")
        need(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}; got {self.schedule!r}")
        need(is_int(self.warmup_steps) and self.warmup_steps >= 0, f"warmup_steps must be an int >= 0; got {self.warmup_steps!r}")
        need(self.schedule != "noam" or self.warmup_steps > 0, "warmup_steps must be > 0 for the noam schedule")
        need(is_num(self.min_lr_ratio) and 0 <= self.min_lr_ratio <= 1, f"min_lr_ratio must be in [0, 1]; got {self.min_lr_ratio!r}")
        need(is_num(self.label_smoothing) and 0 <= self.label_smoothing < 1,
             f"label_smoothing must be in [0, 1); got {self.label_smoothing!r}")
        need(self.grad_clip is None or (is_num(self.grad_clip) and self.grad_clip > 0),
             f"grad_clip must be a number > 0 or null; got {self.grad_clip!r}")
        for name in ("max_steps", "max_epochs", "patience"):
            v = getattr(self, name)
            need(v is None or (is_int(v) and v >= 1), f"{name} must be an int >= 1 or null; got {v!r}")
        need(is_int(self.val_every) and self.val_every >= 1, f"val_every must be an int >= 1; got {self.val_every!r}")
        need(is_int(self.seed), f"seed must be an int; got {self.seed!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        check_known("train", data, [f.name for f in fields(cls)])
        return super().from_dict(data)


def check_known(section: str, data: dict[str, Any], known: Sequence[str]) -> None:
    if unknown := sorted(set(data) - set(known)):
        raise SettingsError(f"unknown setting(s) {', '.join(f'{section}.{k}' for k in unknown)}; "
                            f"known: {', '.join(f'{section}.{k}' for k in sorted(known))}")


# ---- assembling settings ---------------------------------------------------------------------


def read_config_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """A settings file: YAML (.yaml, .yml) or JSON with sections model, train, encoding."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise SettingsError(f"{path}: no such config file")
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise SettingsError(f"{path}: not a valid {'JSON' if path.suffix == '.json' else 'YAML'} file ({e})") from None
    data = data or {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise SettingsError(f"{path}: expected sections {', '.join(SECTIONS)}, each a mapping of settings")
    check_known("config", data, SECTIONS)
    return data


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON first (YAML 1.1 reads 3e-4 as a string), else YAML (numbers,
    true/false, null, [lists]), else the text itself."""
    import yaml

    try:
        return json.loads(text)
    except ValueError:
        try:
            return yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            return text


def parse_pairs(pairs: Sequence[str]) -> dict[str, Any]:
    """``["transpose=true", "bins=3"]`` -> {"transpose": True, "bins": 3} (values: `parse_value`)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise SettingsError(f"--set takes key=value, not {pair!r}")
        out[key.strip()] = parse_value(value)
    return out


def parse_set(pairs: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["model.dim=64", "train.lr=3e-4"]`` -> {"model": {"dim": 64}, "train": {"lr": 0.0003}}."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in parse_pairs(pairs).items():
        section, dot, name = key.partition(".")
        if not dot or not name:
            raise SettingsError(f"--set expects section.key=value (sections: {', '.join(SECTIONS)}); got {key!r}")
        if section not in SECTIONS:
            raise SettingsError(f"--set {key}=...: unknown section {section!r}; sections: {', '.join(SECTIONS)}")
        out.setdefault(section, {})[name] = value
    return out


def merge(*layers: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Section-wise merge: later layers override earlier ones key by key."""
    out: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
    for layer in layers:
        for section, values in (layer or {}).items():
            out.setdefault(section, {}).update(values)
    return out
