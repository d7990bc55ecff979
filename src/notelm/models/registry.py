"""Every model notelm can train, one record per name: ``spec("transformer")``.

A record says what kind of model it is, where its parts live and how it is described:

- kind ``"counting"``: built in one pass over the training split (ppm, markov, repetition);
  ``settings`` turns ``--set model.*`` values into the saved config and ``build`` makes the
  untrained model over ``symbols`` from it (`notelm.models.symbolic`).
- kind ``"lm"``: a next-token network trained by the language-model task;
  ``"seq2seq"``: a source -> target network trained with teacher forcing;
  ``"segments"``: a network trained on consecutive segments of a piece, its state carried
  from one to the next (`notelm.training.tasks`). ``config`` is its frozen config class,
  ``network`` its module, ``presets`` its preset table, ``windowed`` whether it attends over
  at most ``config.context`` inputs, ``width`` the config field that is its model width
  (the Noam schedule's d_model), ``adapter`` what turns a trained network into the model
  every command uses (default: `notelm.models.neural.NeuralModel`, windowed or recurrent; a
  sequence-to-sequence family gives its `ConditionalModel`).

Parts are named as ``"module:attribute"`` and imported when first used, so listing models
(``notelm train --help``) never loads torch. ``notelm train``'s names, its help, ``compare``
and the quickstart read this table; an unknown name lists the known ones.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from notelm.errors import UnknownNameError

KINDS = ("counting", "lm", "seq2seq", "segments")


def resolve(path: str) -> Any:
    """The attribute named by ``"package.module:attribute"``."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class ModelSpec:
    """One model name: its kind, its parts (``module:attribute`` paths) and a one-line description."""

    name: str
    kind: str
    description: str
    config: str = ""
    network: str = ""
    presets: str = ""
    windowed: bool = False
    width: str = "dim"
    settings: str = ""  # counting models: --set values -> saved config
    build: str = ""  # counting models: (saved config, symbols) -> model
    adapter: str = ""  # neural: (network, **options) -> the model (default notelm.models.neural.NeuralModel)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {self.kind!r}")

    @property
    def neural(self) -> bool:
        return self.kind != "counting"

    @property
    def config_class(self) -> type:
        return resolve(self.config)

    @property
    def network_class(self) -> type:
        return resolve(self.network)

    @property
    def preset_table(self) -> dict[str, dict[str, dict[str, Any]]]:
        return resolve(self.presets) if self.presets else {}

    def model_width(self, config: Any) -> int:
        """The model width of a built config (the Noam schedule's d_model)."""
        return int(getattr(config, self.width))


_T, _L, _D = "notelm.models.transformer", "notelm.models.lstm", "notelm.models.dstm"
_C, _V = "notelm.models.compressive", "notelm.models.seq2seq"
_S, _P = "notelm.models.symbolic", "notelm.models.perceiver_ar"
SPECS: tuple[ModelSpec, ...] = (
    ModelSpec("ppm", "counting", "PPM as IDyOM defines it (LTM, LTM+, STM, or LTM with STM), smoothed down to order -1",
              settings=f"{_S}:ppm_settings", build=f"{_S}:build_ppm"),
    ModelSpec("markov", "counting", "fixed-order Markov chain (long- or short-term), additive or backoff smoothing",
              settings=f"{_S}:markov_settings", build=f"{_S}:build_markov"),
    ModelSpec("repetition", "counting", "the previous token again (a baseline)",
              settings=f"{_S}:repetition_settings", build=f"{_S}:build_repetition"),
    ModelSpec("lstm", "lm", "embedding, LSTM, dropout, linear (the grid tutorial's network)",
              f"{_L}:LSTMConfig", f"{_L}:LSTM", f"{_L}:PRESETS", width="hidden"),
    ModelSpec("transformer", "lm", "decoder-only, pre-norm, rotary positions, SDPA, KV cache",
              f"{_T}:TransformerConfig", f"{_T}:Transformer", f"{_T}:PRESETS", windowed=True),
    ModelSpec("ccstm", "lm", "differentiable short-term model, continuous codes (fast weights over a dilated-conv encoder)",
              f"{_D}:CCSTMConfig", f"{_D}:DSTM", f"{_D}:DSTM_PRESETS", width="filters"),
    ModelSpec("dcstm", "lm", "differentiable short-term model, discrete codes (Gumbel-softmax / straight-through)",
              f"{_D}:DCSTMConfig", f"{_D}:DSTM", f"{_D}:DSTM_PRESETS", width="filters"),
    ModelSpec("wavenet", "lm", "causal dilated convolutions (WaveNet-style long-term model)",
              f"{_D}:WaveNetConfig", f"{_D}:WaveNet", f"{_D}:WAVENET_PRESETS", width="filters"),
    ModelSpec("compressive", "segments", "Compressive Transformer: XL memories plus compressed memories, over whole pieces",
              f"{_C}:CompressiveConfig", f"{_C}:CompressiveTransformer", f"{_C}:PRESETS"),
    ModelSpec("xl", "segments", "Transformer-XL: memories of the last segments in every layer, over whole pieces",
              f"{_C}:XLConfig", f"{_C}:CompressiveTransformer", f"{_C}:XL_PRESETS"),
    ModelSpec("velocity", "seq2seq", "midi-translation's encoder-decoder: note tokens -> exact velocities (humanize)",
              f"{_V}:VelocityConfig", f"{_V}:Seq2Seq", f"{_V}:PRESETS", windowed=True, adapter=f"{_V}:VelocityModel"),
    ModelSpec("perceiver-ar", "lm", "Perceiver AR: latents cross-attend to a long context, then self-attend; cached generation",
              f"{_P}:PerceiverARConfig", f"{_P}:PerceiverAR", f"{_P}:PRESETS", windowed=True,
              adapter=f"{_P}:PerceiverARModel"),
)
REGISTRY: dict[str, ModelSpec] = {s.name: s for s in SPECS}


def spec(name: str) -> ModelSpec:
    """The record of model ``name``; an unknown name lists the known ones."""
    if name not in REGISTRY:
        raise UnknownNameError("model", name, list(REGISTRY))
    return REGISTRY[name]


def names(kind: str | None = None) -> list[str]:
    """Model names in table order, of one kind (``"neural"``: every kind but counting)."""
    return [s.name for s in SPECS if kind is None or s.kind == kind or (kind == "neural" and s.neural)]
