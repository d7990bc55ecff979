"""Data shipped inside the package: the `maestro-sample` piano performances (see its README.md
for what they are and their license, CC BY-NC-SA 4.0)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
MAESTRO_SAMPLE = HERE / "maestro-sample"
