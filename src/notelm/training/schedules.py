"""Learning-rate schedules as multipliers of the base learning rate, for ``LambdaLR``.

- constant: 1 (after an optional linear warmup).
- cosine: linear warmup over ``warmup`` steps, then a cosine from 1 down to ``min_ratio`` at
  ``total`` steps (Loshchilov & Hutter 2017, SGDR, without restarts), flat after.
- noam: dim^-0.5 * min(step^-0.5, step * warmup^-1.5) (Vaswani et al. 2017, Eq. 3), with the
  base learning rate as the factor in front (the paper's factor is 1; the Annotated
  Transformer uses 1 or 2).

Steps count from 1 for the first optimiser step (``LambdaLR`` calls with 0 first, so the
functions below take ``step + 1``).
"""

from __future__ import annotations

import math
from collections.abc import Callable


def constant(*, warmup: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        s = step + 1
        return min(1.0, s / warmup) if warmup else 1.0

    return f


def cosine(*, warmup: int, total: int, min_ratio: float) -> Callable[[int], float]:
    def f(step: int) -> float:
        s = step + 1
        if warmup and s <= warmup:
            return s / warmup
        progress = min(1.0, (s - warmup) / max(1, total - warmup))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def noam(*, warmup: int, dim: int) -> Callable[[int], float]:
    def f(step: int) -> float:
        s = step + 1
        return dim ** -0.5 * min(s ** -0.5, s * warmup ** -1.5)

    return f


def schedule(name: str, *, warmup: int, total: int, min_ratio: float, dim: int) -> Callable[[int], float]:
    """The multiplier function of schedule ``name`` ("constant", "cosine", "noam")."""
    return {
        "constant": lambda: constant(warmup=warmup),
        "cosine": lambda: cosine(warmup=warmup, total=total, min_ratio=min_ratio),
        "noam": lambda: noam(warmup=warmup, dim=dim),
    }[name]()
