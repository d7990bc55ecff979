"""Entropy-weighted combination of models over one alphabet (IDyOM's LTM+STM "BOTH").

Each model's distribution is weighted by its relative entropy raised to -b (Pearce 2005
Eq. 6.10; IDyOM `mvs/prediction-sets.lisp`: `relative-entropy`, `weight`):

    w_m = (H_m / H_max)^(-b),  H_m = -sum_x p_m(x) log2 p_m(x),  H_max = log2 |A|

so a confident (low-entropy) model counts more, the more so the larger the bias b. Then

- arithmetic (Eq. 6.9): p(x) = sum_m w_m p_m(x) / sum_m w_m;
- geometric (Eq. 7.1):  p(x) = prod_m p_m(x)^(w_m / sum_m w_m) / Z.

As in IDyOM, H_m / H_max is taken as 1 when H_max = 0 (a one-symbol alphabet). IDyOM never
meets H_m = 0 (its distributions have no zeros) and would fail there (`(expt 0.0 -b)`); we take
the limit instead: models with zero entropy share all the weight.

Legend: m model, A alphabet size, N events.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from notelm.config import Config
from notelm.evaluation import entropy, predict_distributions
from notelm.models.base import SequenceModel

METHODS = ("arithmetic", "geometric")


@dataclass(frozen=True)
class CombineConfig(Config):
    """method: "arithmetic" or "geometric"; bias: the exponent b >= 0 (0 = equal weights).

    Defaults are IDyOM's for LTM+STM (`mvs/params.lisp`: geometric, bias 7); Pearce (2005)
    reports arithmetic with b = 2 for Dataset 7, see `pearce2005`.
    """

    method: str = "geometric"
    bias: float = 7.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")
        if isinstance(self.bias, bool) or not isinstance(self.bias, int | float) or not self.bias >= 0:
            raise ValueError(f"bias must be a number >= 0; got {self.bias!r}")

    @classmethod
    def pearce2005(cls) -> CombineConfig:
        """Arithmetic mean with b = 2, as in Pearce (2005) Table 6.x for LTM+ with STM."""
        return cls(method="arithmetic", bias=2.0)



def entropy_weights(distributions: Sequence[np.ndarray], bias: float) -> np.ndarray:
    """Normalised weights (m, ...) of m distributions of shape (..., A)."""
    size = distributions[0].shape[-1]
    h = np.stack([entropy(d) for d in distributions])  # (m, ...)
    relative = h / np.log2(size) if size > 1 else np.ones_like(h)
    if bias == 0:
        return np.full_like(relative, 1.0 / len(distributions))
    zero = relative <= 0.0
    with np.errstate(divide="ignore"):
        log_w = -bias * np.log(relative)  # log (H/H_max)^(-b); +inf where H = 0
    # The limit H -> 0: the zero-entropy models take all the weight, in equal shares.
    log_w = np.where(zero.any(axis=0), np.where(zero, 0.0, -np.inf), log_w)
    w = np.exp(log_w - log_w.max(axis=0))
    return w / w.sum(axis=0)


def combine(distributions: Sequence[np.ndarray], config: CombineConfig) -> np.ndarray:
    """Combine m distributions of shape (..., A) into one of the same shape."""
    weights = entropy_weights(distributions, config.bias)[..., None]  # (m, ..., 1)
    stacked = np.stack(distributions)  # (m, ..., A)
    if config.method == "arithmetic":
        out = (weights * stacked).sum(axis=0)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(weights > 0, weights * np.log(stacked), 0.0)
        log_p = terms.sum(axis=0)
        out = np.exp(log_p - log_p.max(axis=-1, keepdims=True))
    return out / out.sum(axis=-1, keepdims=True)


class Combined(SequenceModel):
    """Several models over one alphabet, predicting as one (e.g. {"ltm": ..., "stm": ...}).

    Components keep their own states; `fit` trains the trainable ones (an STM is skipped).
    """

    def __init__(self, models: Mapping[str, SequenceModel], *,
                 config: CombineConfig | None = None) -> None:
        if len(models) < 1:
            raise ValueError("Combined needs at least one model")
        sizes = {name: m.alphabet_size for name, m in models.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"models must share one alphabet; alphabet sizes: {sizes}")
        self.models = dict(models)
        self.config = config or CombineConfig()
        self.alphabet_size = next(iter(sizes.values()))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Each part's arrays under its name (``ltm/trie``, ...)."""
        return {f"{name}/{k}": v for name, m in self.models.items() for k, v in m.to_arrays().items()}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> Combined:
        for name, m in self.models.items():
            m.load_arrays({k.removeprefix(f"{name}/"): v for k, v in arrays.items() if k.startswith(f"{name}/")})
        return self

    def fit(self, sequences: Sequence[Sequence[int]]) -> Combined:
        for model in self.models.values():
            if getattr(model, "trainable", hasattr(model, "fit")):
                model.fit(sequences)
        return self

    def start(self, primer: Sequence[int] = ()) -> dict[str, Any]:
        return {name: m.start(primer) for name, m in self.models.items()}

    def predict(self, state: dict[str, Any]) -> np.ndarray:
        return combine([m.predict(state[name]) for name, m in self.models.items()], self.config)

    def observe(self, state: dict[str, Any], token: int) -> dict[str, Any]:
        return {name: m.observe(state[name], token) for name, m in self.models.items()}

    def component_distributions(self, sequences: Sequence[Sequence[int]]) -> dict[str, list[np.ndarray]]:
        """Each component's distributions before every event (its fast path where it has one)."""
        return {name: predict_distributions(m, sequences) for name, m in self.models.items()}

    def combine_pieces(self, components: Mapping[str, list[np.ndarray]]) -> list[np.ndarray]:
        """Combine per-piece component distributions (as from `component_distributions`)."""
        per_piece = zip(*components.values(), strict=True)
        return [combine(list(dists), self.config) for dists in per_piece]

    def distributions(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """The combined distribution before every event, one (length, A) array per piece."""
        return self.combine_pieces(self.component_distributions(sequences))

    def score(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        return [np.log2(d[np.arange(len(s)), np.asarray(s, np.int64)])
                for d, s in zip(self.distributions(sequences), sequences, strict=True)]
