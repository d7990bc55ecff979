"""Training neural models: settings, memory-mapped data and windows, schedules, the Lightning
task, and `train` — the entry point behind ``notelm train``."""

from __future__ import annotations

from notelm.training.config import SettingsError, TrainConfig
from notelm.training.train import train

__all__ = ["SettingsError", "TrainConfig", "train"]
