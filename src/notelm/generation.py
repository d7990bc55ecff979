"""The one sampler loop for every `SequenceModel`, its filters, and sampled melodies as pieces.

`sample` draws tokens one at a time: predict, filter, draw, observe. The filters act on
log-probabilities as logit filters do on logits (log p differs from a logit by a constant):
temperature divides them (T -> 0 approaches argmax; T = 0 is argmax), top-k keeps the k most
likely tokens, top-p (nucleus, Holtzman et al. 2020) the smallest set whose probability
reaches p; they apply in that order, as in Hugging Face's and x-transformers' samplers.

Legend: A alphabet size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from notelm.errors import NotelmError
from notelm.models.base import SequenceModel
from notelm.pieces import Piece, PieceMeta


class SamplingError(NotelmError, ValueError):
    """A sampling setting that cannot be used."""


MAX_TOKENS = 1_000_000  # one sample; a MAESTRO performance is ~20k events, more is a typo or a hang
MAX_SEED = 2**32 - 1  # seeds numpy, torch and Lightning all take


def _is_int(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | np.integer)


def _is_number(value: object) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float | np.integer | np.floating)


def check_seed(seed: object) -> None:
    """Raise `SamplingError` unless ``seed`` is None or an int in 0..2**32-1."""
    if seed is not None and (not _is_int(seed) or not 0 <= seed <= MAX_SEED):
        raise SamplingError(f"seed must be an int from 0 to {MAX_SEED} (2**32 - 1); got {seed!r}")


def check_settings(*, length: int | None = None, temperature: float = 1.0, top_k: int | None = None,
                   top_p: float | None = None, seed: object = None, min_length: int = 0) -> None:
    """Raise `SamplingError` with the reason for a setting out of range. ``seed`` may also be
    a numpy Generator (the sampler's own callers pass one)."""
    if length is not None and (not _is_int(length) or not 0 <= length <= MAX_TOKENS):
        raise SamplingError(f"length must be an int >= 0 (at most {MAX_TOKENS:,}); got {length!r}")
    if not _is_int(min_length) or not 0 <= min_length <= MAX_TOKENS:
        raise SamplingError(f"min-length must be an int >= 0 (at most {MAX_TOKENS:,}); got {min_length!r}")
    if not _is_number(temperature) or not 0 <= temperature < math.inf:
        raise SamplingError(f"temperature must be a finite number >= 0; got {temperature!r}")
    if top_k is not None and (not _is_int(top_k) or top_k < 1):
        raise SamplingError(f"top-k must be an int >= 1; got {top_k!r}")
    if top_p is not None and (not _is_number(top_p) or not 0 < top_p <= 1):
        raise SamplingError(f"top-p must be a number in (0, 1]; got {top_p!r}")
    if not isinstance(seed, np.random.Generator):
        check_seed(seed)


def filter_log_probs(log_p: np.ndarray, *, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None) -> np.ndarray:
    """Filtered, renormalised log-probabilities (A,); removed tokens get -inf. T = 0 keeps
    only the most likely token (the first of ties)."""
    log_p = np.asarray(log_p, dtype=np.float64)
    if temperature == 0:
        out = np.full_like(log_p, -np.inf)
        out[int(np.argmax(log_p))] = 0.0
        return out
    z = log_p / temperature
    if top_k is not None and top_k < len(z):
        z = z.copy()
        z[np.argsort(-z, kind="stable")[top_k:]] = -np.inf  # ties at the edge: the first ones stay
    z = z - np.logaddexp.reduce(z)
    if top_p is not None and top_p < 1:
        order = np.argsort(-z, kind="stable")
        mass = np.cumsum(np.exp(z[order]))
        cut = int(np.searchsorted(mass, top_p * (1 - 1e-12))) + 1  # smallest prefix reaching p
        z[order[cut:]] = -np.inf
        z = z - np.logaddexp.reduce(z)
    return z


def draw(probs: np.ndarray, rng: np.random.Generator, **filters: Any) -> int:
    """One token from a distribution (A,) after `filter_log_probs`."""
    with np.errstate(divide="ignore"):
        p = np.exp(filter_log_probs(np.log(np.asarray(probs, dtype=np.float64)), **filters))
    return int(rng.choice(len(p), p=p / p.sum()))


def sample(model: SequenceModel, *, length: int, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, seed: int | np.random.Generator | None = None,
           primer: Sequence[int] = (), state: Any = None, stop: Sequence[int] = (),
           until: Callable[[int], bool] | None = None, progress: Callable[[int], None] | None = None,
           rules: Any = None) -> list[int]:
    """``length`` tokens sampled from ``model`` after ``primer`` (not included in the result).

    ``state``: continue from this state instead of ``model.start(primer)`` (e.g. a model
    started with extra context). ``seed``: an int (reproducible) or a numpy Generator.
    ``stop``: tokens that end the sample early (the stop token is the last one returned),
    e.g. ``(EOS_ID,)`` to stop at the end of a piece, as the grid tutorial does. ``until``:
    called with each token; True ends the sample after it (e.g. enough seconds of music).
    ``progress``: called with the number of tokens sampled so far, after each. ``rules``: the
    tokens that may come next and how much (``weights()``, factors (A,) the probabilities are
    multiplied by, 0 for a token that may not come, and ``observe(token)``), e.g. an
    encoding's `rules` started on the primer.
    """
    check_settings(length=length, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    state = model.start(primer) if state is None else state
    out = []
    for _ in range(length):
        probs = model.predict(state)
        if rules is not None:
            probs = probs * rules.weights()[: len(probs)]
        token = draw(probs, rng, temperature=temperature, top_k=top_k, top_p=top_p)
        if rules is not None:
            rules.observe(token)
        out.append(token)
        if progress is not None:
            progress(len(out))
        if token in stop or (until is not None and until(token)):
            break
        state = model.observe(state, token)
    return out


def melody_piece(pitch: Sequence[int], duration: Sequence[float], *, title: str = "",
                 piece_id: str = "") -> Piece:
    """A monophonic piece: notes one after another (no rests), durations in beats."""
    duration = np.asarray(duration, dtype=np.float64)
    onset = np.r_[0.0, np.cumsum(duration)[:-1]] if len(duration) else np.zeros(0)
    return Piece(pitch=np.asarray(pitch), onset=onset, duration=duration,
                 meta=PieceMeta(id=piece_id, title=title))
