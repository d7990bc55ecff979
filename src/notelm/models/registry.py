"""Models by name: ``build_model("ppm", alphabet_size=27, config={"escape": "c"}, mode="stm")``.

Each builder takes the alphabet size, a config (a `PPMConfig`-like dict, or the config object
itself) and the family's own keyword options, and returns a `SequenceModel`.

Every name is also a kind of run directory (`notelm train NAME`): the ``COUNTING`` models are
built in one pass over the training split (`notelm.training.symbolic`, whose run settings are
in `notelm.models.symbolic`), the ``NEURAL`` ones trained by Lightning (`notelm.training.train`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from notelm.errors import UnknownNameError
from notelm.models.base import SequenceModel
from notelm.models.markov import MarkovChain, MarkovConfig, Repetition, RepetitionConfig
from notelm.models.ppm import PPM, PPMConfig


def _config(cls, config):
    if config is None or isinstance(config, cls):
        return config
    return cls.from_dict(dict(config))


def build_ppm(*, alphabet_size: int, config: PPMConfig | dict | None = None, mode: str = "ltm") -> PPM:
    """PPM (IDyOM's smoothing; see models/ppm.py) in mode "stm", "ltm" or "ltm+"."""
    return PPM(alphabet_size=alphabet_size, config=_config(PPMConfig, config), mode=mode)


def build_markov(*, alphabet_size: int, config: MarkovConfig | dict | None = None) -> MarkovChain:
    """A fixed-order Markov chain with additive or backoff smoothing."""
    return MarkovChain(alphabet_size=alphabet_size, config=_config(MarkovConfig, config))


def build_repetition(*, alphabet_size: int, config: RepetitionConfig | dict | None = None) -> Repetition:
    """Predicts the previous symbol again (a baseline)."""
    return Repetition(alphabet_size=alphabet_size, config=_config(RepetitionConfig, config))


COUNTING = ("ppm", "markov", "repetition")
NEURAL = ("lstm", "transformer", "ccstm", "dcstm", "wavenet")  # the families of `notelm.models.neural.NETWORKS`


def _neural_builder(name: str) -> Callable[..., SequenceModel]:
    def build(*, alphabet_size: int, config: dict | None = None, **options: Any) -> SequenceModel:
        # imported here: torch loads only when a network is asked for
        from notelm.models.neural import build_neural

        return build_neural(name, alphabet_size=alphabet_size, config=config, **options)

    build.__doc__ = f"An untrained {name} network as a model (`notelm.models.neural`); `notelm train {name}` trains one."
    return build


MODELS: dict[str, Callable[..., SequenceModel]] = {
    "ppm": build_ppm,
    "markov": build_markov,
    "repetition": build_repetition,
    **{name: _neural_builder(name) for name in NEURAL},
}


def build_model(name: str, **options: Any) -> SequenceModel:
    """The model registered as ``name``, built with ``options``; unknown names list the known."""
    if name not in MODELS:
        raise UnknownNameError("model", name, list(MODELS))
    return MODELS[name](**options)
