"""Counting models (PPM, the Markov chain, repetition) as the models of run directories.

``notelm train ppm|markov|repetition`` builds one of these on an encoded corpus (see
`notelm.training.symbolic`); this module says what their settings are, how a saved config
becomes a model again, and how a model over the symbols an encoding emits is seen as a model
over the encoding's whole vocabulary, so that it is evaluated, compared and sampled exactly
as a neural run is:

- Symbols: an encoded piece holds content tokens and EOS (ids 2, 4, 5, ..., V-1), never
  PAD, BOS or UNK (`notelm.encodings.base.Encoding.encode` refuses a piece it cannot spell).
  The counting model sees those V-3 ids as symbols 0..V-4 (EOS first), so PPM's order -1
  and the Markov chain's smoothing spread mass over tokens a piece can hold, nothing else.
- Probabilities over the vocabulary are the model's, mixed with ``FLOOR`` of a uniform, as
  the neural adapter does (`notelm.models.neural.FLOOR`): PAD, BOS and UNK get ~1e-11 each,
  nothing is zero, and a PPM and an LSTM on one encoding are scored over the same alphabet.

PPM settings (``--set model.KEY=VALUE``): ``mode`` is one of IDyOM's kinds — "ltm" (learns
the training split, frozen while predicting; the default), "ltm+" (also learns every piece it
predicts), "stm" (learns nothing from the corpus: a fresh model learns each piece as it goes),
"both" / "both+" (LTM or LTM+ with an STM, combined by entropy weights: ``combine``
"geometric" or "arithmetic", ``bias``). The smoothing keys are `PPMConfig`'s (escape,
order_bound, shortest_deterministic, interpolated, exclusion, update_exclusion); in the both
modes they set both models and ``stm_KEY`` overrides one for the STM, as ``notelm idyom``'s
``--stm-*`` options do; a key not given takes IDyOM's default for that kind of model (LTM:
escape C, no update exclusion; STM: escape AX, update exclusion). The saved config is the
resolved one: ``{"mode", "ltm", "stm", "combine", "vocab_size"}`` with the parts a mode has.

Markov settings: `MarkovConfig`'s keys (order, alpha, backoff) and ``mode``, "ltm" (counts the
training split; the default) or "stm" (counts only the piece it predicts: Bjare et al.'s MC-n).
Repetition: `RepetitionConfig`'s eps.

Legend: V vocabulary size, S = V - 3 symbols, n events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import numpy as np

from notelm.config import SettingsError
from notelm.encodings.vocab import EOS_ID, N_SPECIAL
from notelm.errors import UnknownNameError
from notelm.evaluation import predict_distributions
from notelm.models.base import SequenceModel
from notelm.models.combine import METHODS, CombineConfig, Combined
from notelm.models.markov import MarkovChain, MarkovConfig, Repetition, RepetitionConfig
from notelm.models.ppm import PPM, PPMConfig

FLOOR = 1e-10  # the share of a uniform over the vocabulary, as notelm.models.neural.FLOOR
PPM_MODES = ("ltm", "ltm+", "stm", "both", "both+")


# ---- the vocabulary adapter ---------------------------------------------------------------------


def vocabulary_symbols(vocab_size: int) -> np.ndarray:
    """The token ids a piece can hold, in symbol order: EOS, then the content ids (S,)."""
    return np.r_[EOS_ID, np.arange(N_SPECIAL, vocab_size)].astype(np.int64)


class VocabularyModel(SequenceModel):
    """A model over symbols 0..S-1 as a model over token ids 0..V-1 (module docstring)."""

    def __init__(self, model: SequenceModel, vocab_size: int) -> None:
        self.model, self.alphabet_size = model, int(vocab_size)
        self.ids = vocabulary_symbols(vocab_size)
        if model.alphabet_size != len(self.ids):
            raise ValueError(f"a model over {len(self.ids)} symbols fits a vocabulary of {vocab_size}; "
                             f"got {model.alphabet_size}")
        self.symbol = np.full(vocab_size, -1, np.int64)
        self.symbol[self.ids] = np.arange(len(self.ids))

    def __repr__(self) -> str:
        return f"VocabularyModel({self.model!r}, vocab_size={self.alphabet_size})"

    def symbols(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Token ids as the model's symbols; PAD, BOS, UNK or an id outside V: ValueError."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        inside = (ids >= 0) & (ids < self.alphabet_size)
        out = np.where(inside, self.symbol[np.where(inside, ids, 0)], -1)
        if (out < 0).any():
            raise ValueError(f"token {ids[out < 0][0]} is not one a piece can hold "
                             f"(EOS or a content id 4..{self.alphabet_size - 1})")
        return out

    def expand(self, p: np.ndarray) -> np.ndarray:
        """Distributions over symbols (..., S) as distributions over the vocabulary (..., V)."""
        out = np.full((*p.shape[:-1], self.alphabet_size), FLOOR / self.alphabet_size)
        out[..., self.ids] += (1.0 - FLOOR) * p
        return out

    def start(self, primer: Sequence[int] = ()) -> Any:
        return self.model.start([int(s) for s in self.symbols(primer)])

    def predict(self, state: Any) -> np.ndarray:
        return self.expand(self.model.predict(state))

    def observe(self, state: Any, token: int) -> Any:
        return self.model.observe(state, int(self.symbols([token])[0]))

    def distributions(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """The distribution before every event: (n, V) per piece."""
        return [self.expand(d) for d in predict_distributions(self.model, [self.symbols(s) for s in sequences])]

    def score(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Per-event log2 probabilities from the model's own fast path."""
        logp = self.model.score([self.symbols(s) for s in sequences])
        return [np.log2((1.0 - FLOOR) * np.exp2(x) + FLOOR / self.alphabet_size) for x in logp]

    def fit(self, sequences: Sequence[Sequence[int]]) -> VocabularyModel:
        """Train the model on pieces of token ids (a model with nothing to learn ignores them)."""
        if getattr(self.model, "trainable", hasattr(self.model, "fit")):
            self.model.fit([self.symbols(s) for s in sequences])
        return self


# ---- settings -----------------------------------------------------------------------------------


def _config(cls, values: dict[str, Any], where: str):
    """``cls`` from a dict, every problem a one-line SettingsError naming ``where``."""
    known = [f.name for f in fields(cls)]
    if unknown := sorted(set(values) - set(known)):
        raise SettingsError(f"unknown setting(s) {', '.join(f'{where}.{k}' for k in unknown)}; "
                            f"known: {', '.join(f'{where}.{k}' for k in sorted(known))}")
    try:
        return cls.from_dict(dict(values))
    except (TypeError, ValueError) as e:
        raise SettingsError(f"{where}: {e}") from None


def ppm_settings(values: dict[str, Any]) -> dict[str, Any]:
    """--set/--config keys of a PPM run -> the saved, resolved config (module docstring)."""
    values = dict(values)
    mode = values.pop("mode", "ltm")
    if mode not in PPM_MODES:
        raise SettingsError(f"model.mode must be one of {', '.join(PPM_MODES)}; got {mode!r}")
    keys = [f.name for f in fields(PPMConfig)]
    both = mode.startswith("both")
    has_stm = mode == "stm" or both
    known = ["mode", *keys, *(f"stm_{k}" for k in keys if has_stm), *(("combine", "bias") if both else ())]
    if unknown := sorted(set(values) - set(known)):
        why = "" if not any(k.startswith("stm_") or k in ("combine", "bias") for k in unknown) else \
            f" (with mode {mode}; stm_* keys need an STM, combine and bias mode both or both+)"
        raise SettingsError(f"unknown setting(s) {', '.join(f'model.{k}' for k in unknown)}{why}; "
                            f"known: {', '.join(f'model.{k}' for k in sorted(known))}")
    plain = {k: values[k] for k in keys if k in values}
    config: dict[str, Any] = {"mode": mode}
    if mode != "stm":
        config["ltm"] = _config(PPMConfig, {**PPMConfig.idyom_ltm().to_dict(), **plain}, "model").to_dict()
    if has_stm:
        stm = {**PPMConfig.idyom_stm().to_dict(), **plain,
               **{k: values[f"stm_{k}"] for k in keys if f"stm_{k}" in values}}
        config["stm"] = _config(PPMConfig, stm, "model (stm)").to_dict()
    if both:
        combine = {"method": values.get("combine", "geometric"), "bias": values.get("bias", 7.0)}
        if combine["method"] not in METHODS:
            raise SettingsError(f"model.combine must be one of {', '.join(METHODS)}; got {combine['method']!r}")
        config["combine"] = _config(CombineConfig, combine, "model").to_dict()
    return config


def build_ppm(config: dict[str, Any], symbols: int) -> SequenceModel:
    mode = config["mode"]
    if mode not in PPM_MODES:
        raise SettingsError(f"model.mode must be one of {', '.join(PPM_MODES)}; got {mode!r}")
    parts: dict[str, SequenceModel] = {}
    if "ltm" in config:
        parts["ltm"] = PPM(alphabet_size=symbols, config=_config(PPMConfig, config["ltm"], "model.ltm"),
                           mode="ltm+" if mode.endswith("+") else "ltm")
    if "stm" in config:
        parts["stm"] = PPM(alphabet_size=symbols, config=_config(PPMConfig, config["stm"], "model.stm"), mode="stm")
    if set(parts) != ({"stm"} if mode == "stm" else {"ltm", "stm"} if mode.startswith("both") else {"ltm"}):
        raise SettingsError(f"model config of mode {mode} holds the parts {sorted(parts)}")
    if len(parts) == 1:
        return next(iter(parts.values()))
    return Combined(parts, config=_config(CombineConfig, config.get("combine", {}), "model.combine"))


MARKOV_MODES = ("ltm", "stm")


def markov_settings(values: dict[str, Any]) -> dict[str, Any]:
    """`MarkovConfig`'s keys and ``mode``: "ltm" (counts the training split) or "stm"
    (counts only the piece it predicts, learning each event after predicting it)."""
    values = dict(values)
    mode = values.pop("mode", "ltm")
    if mode not in MARKOV_MODES:
        raise SettingsError(f"model.mode must be one of {', '.join(MARKOV_MODES)}; got {mode!r}")
    if unknown := sorted(set(values) - {f.name for f in fields(MarkovConfig)}):
        known = sorted(["mode", *(f.name for f in fields(MarkovConfig))])
        raise SettingsError(f"unknown setting(s) {', '.join(f'model.{k}' for k in unknown)}; "
                            f"known: {', '.join(f'model.{k}' for k in known)}")
    return {"mode": mode, **_config(MarkovConfig, values, "model").to_dict()}


def build_markov(config: dict[str, Any], symbols: int) -> MarkovChain:
    config = dict(config)
    mode = config.pop("mode", "ltm")
    if mode not in MARKOV_MODES:
        raise SettingsError(f"model.mode must be one of {', '.join(MARKOV_MODES)}; got {mode!r}")
    online = {} if mode == "ltm" else {"mode": mode}
    return MarkovChain(alphabet_size=symbols, config=_config(MarkovConfig, config, "model"), **online)


def repetition_settings(values: dict[str, Any]) -> dict[str, Any]:
    """`RepetitionConfig`'s keys (eps)."""
    return _config(RepetitionConfig, values, "model").to_dict()


def build_repetition(config: dict[str, Any], symbols: int) -> Repetition:
    return Repetition(alphabet_size=symbols, config=_config(RepetitionConfig, config, "model"))


def _counting(name: str):
    from notelm.models.registry import resolve, spec

    record = spec(name)
    if record.kind != "counting":
        raise UnknownNameError("counting model", name, _counting_names())
    return resolve(record.settings), resolve(record.build)


def _counting_names() -> list[str]:
    from notelm.models.registry import names

    return names("counting")


def model_settings(name: str, values: dict[str, Any], vocab_size: int | None = None) -> dict[str, Any]:
    """The saved model config of family ``name`` from user settings (validated)."""
    if "vocab_size" in values:
        raise SettingsError("model.vocab_size comes from the encoding; it cannot be set")
    config = _counting(name)[0](values)
    return config if vocab_size is None else {**config, "vocab_size": int(vocab_size)}


def build_counting(name: str, config: dict[str, Any]) -> VocabularyModel:
    """The untrained model of a saved config (with its ``vocab_size``), over the vocabulary."""
    config = dict(config)
    vocab_size = config.pop("vocab_size", None)
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= N_SPECIAL:
        raise SettingsError(f"model.vocab_size must be an int > {N_SPECIAL}; got {vocab_size!r}")
    symbols = vocab_size - N_SPECIAL + 1  # the content tokens and EOS
    try:
        model = _counting(name)[1](config, symbols)
    except SettingsError:
        raise
    except ValueError as e:  # e.g. a Markov order whose n-gram codes overflow for this vocabulary
        raise SettingsError(f"model: {e}") from None
    return VocabularyModel(model, vocab_size)
