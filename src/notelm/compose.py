"""Music from a trained run: encode a primer, sample with `notelm.generation.sample` (the one
sampler), decode, and trim to a length in seconds.

Every model keeps its state between steps (the LSTM its recurrent state, the Transformer its
KV cache, PPM its context chain and, in modes stm/ltm+/both, what it has learned of the piece
so far; `notelm.models.symbolic`), so each sampled token costs one token's work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from notelm.encodings.vocab import EOS_ID
from notelm.errors import NotelmError
from notelm.generation import MAX_TOKENS
from notelm.models.base import SequenceModel
from notelm.pieces import Piece

DEFAULT_LENGTH = 512  # tokens, when neither a length nor a duration is asked for


@dataclass(frozen=True)
class Generated:
    """A generated piece (primer included), its token ids, and how the sampling went."""

    piece: Piece
    tokens: list[int]
    primer_tokens: int
    stopped_at_eos: bool
    primer_end: float  # where the primer ends in the piece's time unit (0 without one)


def primer_tokens(encoding, path: str | Path, *, melodic: bool) -> tuple[list[int], float]:
    """Token ids of the first piece in a file (up to its EOS) and where it ends. A primer the
    run's encoding cannot represent is a `NotelmError` that names the file."""
    from notelm.encodings.base import content_ids
    from notelm.io import read

    piece = read(path)[0]
    if melodic:
        piece = piece.melody()
    if not len(piece):
        raise NotelmError(f"{path}: no notes to continue (its melodic line is empty)" if melodic
                          else f"{path}: no notes to continue")
    try:
        ids = content_ids(encoding.encode(piece), len(encoding.vocab))
    except NotelmError as e:
        raise NotelmError(f"{path}: cannot be a primer for this run's {encoding.name} encoding ({e})") from None
    return [int(t) for t in ids], encoding.decode(ids).end


def _trim(piece: Piece, seconds: float) -> Piece:
    """The notes that start within ``seconds`` (the grid's beats count at 120 qpm)."""
    from notelm.encodings.base import to_seconds

    onset = to_seconds(piece).onset
    return piece.with_notes(onset < seconds)


class NoEarlyEnd(SequenceModel):
    """``model`` with EOS held back until ``min_length`` tokens have been sampled after the
    primer (Hugging Face's ``min_length``): its probability goes to the other tokens. A state
    is (the model's state, tokens observed after the primer)."""

    def __init__(self, model: SequenceModel, min_length: int) -> None:
        self.model, self.min_length = model, min_length
        self.alphabet_size = model.alphabet_size

    def start(self, primer=()):
        return self.model.start(primer), 0

    def predict(self, state) -> np.ndarray:
        inner, sampled = state
        p = self.model.predict(inner)
        if sampled < self.min_length:
            p = p.copy()
            p[EOS_ID] = 1e-12
            p /= p.sum()
        return p

    def observe(self, state, token: int):
        inner, sampled = state
        return self.model.observe(inner, token), sampled + 1


def generate(run: str | Path, *, primer: str | Path | None = None, length: int | None = None,
             seconds: float | None = None, temperature: float = 1.0, top_k: int | None = None,
             top_p: float | None = None, seed: int | None = None, stop_at_eos: bool = True,
             min_length: int = 0, rules: bool = True) -> Generated:
    """Sample from the model of run directory ``run`` (see the module docstring).

    ``length``: tokens to sample; ``seconds``: music to make (sampled tokens are estimated from
    the training data's tokens per second, and the piece is trimmed to it). Sampling stops at
    EOS (the end of a piece) unless ``stop_at_eos`` is False, and never before ``min_length``
    sampled tokens. ``rules``: where the encoding has rules (``performance``: no re-strike of a
    key that is down, ...), sample only the events they allow.
    """
    from notelm.generation import check_settings, sample
    from notelm.runs import open_run

    if length is not None and seconds is not None:
        raise NotelmError("give --length or --seconds, not both")
    if seconds is not None and not 0 < seconds < math.inf:
        raise NotelmError(f"--seconds must be a finite number > 0; got {seconds}")
    check_settings(length=length, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                   min_length=min_length)
    r = open_run(run)
    if r.kind == "seq2seq":
        raise NotelmError(f"{run}: a {r.model_name} run predicts velocities for given notes; "
                          "use notelm humanize FILE --model RUN")
    encoding = r.encoding()
    if r.counting:
        model = r.model()
    else:
        import torch

        model = r.model(dtype=torch.float32)
    melodic = bool(r.config["data"].get("melodic", True))
    prime, prime_end = primer_tokens(encoding, primer, melodic=melodic) if primer else ([], 0.0)
    if seconds is not None:
        rate = r.config["data"].get("tokens_per_second") or 8.0
        length = math.ceil(seconds * rate * 1.25) + 8
        if length > MAX_TOKENS:
            raise NotelmError(f"--seconds {seconds:g} needs about {length:,} tokens of this run's encoding, "
                              f"more than one sample may have ({MAX_TOKENS:,})")
    length = DEFAULT_LENGTH if length is None else length
    if min_length:
        model = NoEarlyEnd(model, min_length)
    tokens = sample(model, length=length, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                    primer=prime, stop=(EOS_ID,) if stop_at_eos else (),
                    rules=encoding.rules(prime) if rules else None)
    ids = [t for t in prime + tokens if t != EOS_ID] if not stop_at_eos else prime + tokens
    piece = encoding.decode(np.asarray(ids, dtype=np.int64))
    if seconds is not None:
        piece = _trim(piece, seconds)
    title = f"{r.model_name} on {r.config['data']['corpus']} (T={temperature}, seed={seed})"
    piece = replace(piece, meta=replace(piece.meta, title=title, id=f"{Path(run).name}-generated"))
    return Generated(piece=piece, tokens=prime + tokens, primer_tokens=len(prime),
                     stopped_at_eos=bool(tokens) and tokens[-1] == EOS_ID, primer_end=prime_end)
