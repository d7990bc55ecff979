"""`NeuralModel`: any torch network that maps token ids to next-token logits, as a
`SequenceModel` — the one adapter every neural family (LSTM, Transformer, ...) goes through.

A network implements ``forward(idx (b, t), state) -> (logits (b, t, v), state)`` and
``new_cache(batch)`` (the empty state to extend: a `KVCache`, or None for a recurrent
network that starts from zeros). The adapter adds what the model interface promises:

- Every piece starts with BOS (id 1) as the first input, so the first event is predicted too.
- Probabilities are float64, never zero: the softmax over the tokens a model may emit (PAD,
  BOS and UNK are never targets, so they get no mass) mixed with ``FLOOR`` of a uniform.
- Windowed networks (a Transformer's context L) see at most L inputs. The prediction after
  m inputs uses the window starting at a(m) = max(0, ceil((m - L) / S)) * S with stride S:
  the window that gives it the most context on a grid of starts every S tokens. Positions
  count from the window's start. `distributions` (the batched path, one forward pass per
  window, windows batched together) and `start`/`predict`/`observe` (the step path, which
  extends the KV cache and re-fills it from the last window when the window moves) therefore
  see exactly the same inputs, and agree to rounding.
- Recurrent networks are not windowed: the state carries the whole piece (an LSTM's (h, c); a
  DSTM's fast weights and its encoder's last inputs; a WaveNet's last inputs).

Legend: n events of a piece, t window length, v vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from notelm.encodings.vocab import BOS_ID, NEVER_PREDICTED, PAD_ID
from notelm.errors import UnknownNameError
from notelm.models.base import SequenceModel

FLOOR = 1e-10  # mass spread uniformly so that no event has probability zero
SMALL_CALL = 128  # tokens: a forward pass this short runs on `step_threads` threads, without oneDNN


@contextmanager
def short_call(threads: int | None, *, onednn: bool = True) -> Iterator[None]:
    """A short forward pass on ``threads`` torch threads (None: as they are) and, with
    ``onednn`` False, without oneDNN, whose float32 kernels (GELU, LayerNorm) look up a
    primitive on every call: ~9 us for a GELU of 256 values against ~2 us for PyTorch's own,
    and a one-token step is nothing but such calls (~20% of a Compressive Transformer step at
    the seed config). Both are process-wide settings, put back as they were afterwards."""
    before, enabled = torch.get_num_threads(), torch.backends.mkldnn.enabled
    if threads:
        torch.set_num_threads(threads)
    if not onednn:
        torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.set_num_threads(before)
        torch.backends.mkldnn.enabled = enabled


# ---- networks by family name ---------------------------------------------------------------------


def network_spec(name: str):
    """The registry record of neural model ``name`` (`notelm.models.registry`)."""
    from notelm.models.registry import names, spec

    record = spec(name)
    if not record.neural:
        raise UnknownNameError("neural model", name, names("neural"))
    return record


MAX_PARAMETERS = 2 * 10**9  # 8 GB of float32 weights: a larger one is a typo, not a model
MAX_CONTEXT = 2**22


def build_network(name: str, config: dict[str, Any]) -> nn.Module:
    """A freshly initialised network of family ``name`` from its config dict. Absurd sizes
    (a typo such as ``model.hidden=99999999``) are refused before any memory is taken: the
    network is first built on PyTorch's meta device, which allocates nothing."""
    record = network_spec(name)
    cfg = record.config_class.from_dict(config)
    check_size(name, cfg)
    return record.network_class(cfg)


def check_size(name: str, cfg: Any) -> None:
    """Refuse a config whose network would be absurdly large (see `build_network`)."""
    from notelm.config import SettingsError

    record = network_spec(name)
    context = getattr(cfg, "context", 0)
    if isinstance(context, int) and context > MAX_CONTEXT:
        raise SettingsError(f"{name}: context {context:,} is beyond notelm's limit of {MAX_CONTEXT:,} tokens")
    with torch.device("meta"):
        size = sum(p.numel() for p in record.network_class(cfg).parameters())
    if size > MAX_PARAMETERS:
        raise SettingsError(f"{name}: these settings make a network of {size:,} parameters, beyond notelm's "
                            f"limit of {MAX_PARAMETERS:,}; check the model.* sizes")


# ---- probabilities -----------------------------------------------------------------------------


def allowed_tokens(vocab_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(v,) bool: the tokens a model may emit (everything but PAD, BOS and UNK). Every loss
    and every distribution over a vocabulary uses this one mask."""
    mask = torch.ones(vocab_size, dtype=torch.bool, device=device)
    mask[list(NEVER_PREDICTED)] = False
    return mask


def probabilities(logits: torch.Tensor, allowed: torch.Tensor) -> np.ndarray:
    """Float64 probabilities (..., v) from logits: softmax over the allowed tokens, then
    mixed with FLOOR of a uniform so nothing is zero."""
    z = logits.to(torch.float64).masked_fill(~allowed, float("-inf"))
    p = torch.softmax(z, dim=-1)
    return ((1.0 - FLOOR) * p + FLOOR / logits.shape[-1]).cpu().numpy()


def length_batches(lengths: Sequence[int], max_tokens: int) -> list[list[int]]:
    """Indices of items grouped into batches of similar length, longest first: each batch holds
    as many items as fit ``max_tokens`` at its longest item's length (at least one)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    out = []
    while order:
        longest = max(1, lengths[order[-1]])
        out.append([order.pop() for _ in range(min(len(order), max(1, max_tokens // longest)))])
    return out


def window_starts(n: int, context: int | None, stride: int) -> np.ndarray:
    """Start of the window used for the prediction after each of m = 1..n inputs: (n,)."""
    m = np.arange(1, n + 1)
    if context is None:
        return np.zeros(n, dtype=np.int64)
    return np.maximum(0, -((context - m) // stride)) * stride  # ceil((m - L) / S) * S, floored at 0


# ---- the adapter ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NeuralState:
    """A piece in progress: BOS + tokens so far, the window start, the network's state after
    ``history[start:]`` (KV cache or recurrent state) and the logits for the next token.
    Never changed once made: `NeuralModel.observe` makes a new one (the caches copy on write)."""

    history: tuple[int, ...]
    start: int = 0
    cache: Any = None
    logits: torch.Tensor | None = field(default=None, repr=False)


class NeuralModel(SequenceModel):
    """A next-token network as a `SequenceModel` (see the module docstring).

    context: the window length of a windowed network (None: unbounded, e.g. an LSTM).
    stride: how far the window moves (default context // 2). dtype: float64 by default, so
    the batched and step paths agree to 1e-6 whatever the kernels' summation order; float32
    for speed. use_cache: keep the KV cache / recurrent state between steps (False recomputes
    the whole window every step: the baseline of the generation benchmark). step_threads:
    torch threads for a one-token step on CPU (a single token is too little work to share:
    handing it to several threads costs more than it saves, and far more on a busy machine);
    calls that short also run without oneDNN (`short_call`). The network is moved to
    ``device`` and ``dtype`` and put in eval mode.
    """

    def __init__(self, network: nn.Module, *, context: int | None = None, stride: int | None = None,
                 dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
                 use_cache: bool = True, max_batch_tokens: int = 32768, step_threads: int | None = 1) -> None:
        self.network = network.to(device=device, dtype=dtype).eval()
        self.alphabet_size = int(network.config.vocab_size)
        self.context = context
        self.stride = max(1, stride or (context // 2 if context else 1))
        if context is not None and not 1 <= self.stride <= context:
            raise ValueError(f"stride must be in 1..context ({context}); got {self.stride}")
        self.device = torch.device(device)
        self.use_cache = use_cache
        self.max_batch_tokens = max_batch_tokens
        self.step_threads = step_threads if self.device.type == "cpu" else None
        self._allowed = allowed_tokens(self.alphabet_size, self.device)

    def __repr__(self) -> str:
        return f"NeuralModel({type(self.network).__name__}, context={self.context}, stride={self.stride})"

    # ---- step path ------------------------------------------------------------------------------

    def _start_of(self, m: int) -> int:
        return int(window_starts(m, self.context, self.stride)[-1])

    def _run(self, ids: Sequence[int], cache: Any) -> tuple[torch.Tensor, Any]:
        x = torch.tensor([list(ids)], dtype=torch.long, device=self.device)
        short = len(ids) <= SMALL_CALL and self.device.type == "cpu"
        with short_call(self.step_threads if short else None, onednn=not short):
            logits, cache = self.network(x, cache)[:2]  # a network may also return auxiliary losses
        return logits[0, -1], cache

    def _refill(self, history: tuple[int, ...]) -> NeuralState:
        """The state computed from scratch over the current window of ``history``."""
        start = self._start_of(len(history))
        cache = self.network.new_cache(1) if self.use_cache else None
        logits, cache = self._run(history[start:], cache)
        return NeuralState(history=history, start=start, cache=cache, logits=logits)

    @torch.inference_mode()
    def start(self, primer: Sequence[int] = ()) -> NeuralState:
        return self._refill((BOS_ID, *(int(t) for t in primer)))

    def predict(self, state: NeuralState) -> np.ndarray:
        return probabilities(state.logits, self._allowed)

    @torch.inference_mode()
    def observe(self, state: NeuralState, token: int) -> NeuralState:
        """Append ``token``: one step of the network from the cached state, or a refill when
        the window moves (or when caching is off). ``state`` stays as it was."""
        history = (*state.history, int(token))
        if not self.use_cache or self._start_of(len(history)) != state.start:
            return self._refill(history)
        logits, cache = self._run([int(token)], state.cache)
        return NeuralState(history=history, start=state.start, cache=cache, logits=logits)

    # ---- batched path ---------------------------------------------------------------------------

    @torch.inference_mode()
    def distributions(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """The distribution before every event of every piece: (n, v) float64 each.

        Every window of every piece goes through the network once, windows of similar length
        batched together; each prediction is taken from its own window (module docstring)."""
        seqs = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
        out = [np.empty((len(s), self.alphabet_size)) for s in seqs]
        jobs = []  # (piece, window start, window end, first owned input position)
        for i, s in enumerate(seqs):
            starts = window_starts(len(s), self.context, self.stride)
            for a in np.unique(starts):
                owned = np.flatnonzero(starts == a)
                jobs.append((i, int(a), int(owned[-1]) + 1, int(owned[0])))
        for group in length_batches([b - a for _, a, b, _ in jobs], self.max_batch_tokens):
            batch = [jobs[j] for j in group]
            longest = batch[0][2] - batch[0][1]
            x = torch.full((len(batch), longest), PAD_ID, dtype=torch.long)
            for row, (i, a, b, _) in enumerate(batch):
                inputs = np.r_[BOS_ID, seqs[i][:-1]][a:b]
                x[row, : b - a] = torch.from_numpy(inputs)
            logits = self.network(x.to(self.device), None)[0]
            for row, (i, a, b, first) in enumerate(batch):
                out[i][first:b] = probabilities(logits[row, first - a: b - a], self._allowed)
        return out

    def score(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Per-event log2 probabilities, from `distributions`."""
        out = []
        for s, d in zip(sequences, self.distributions(sequences)):
            s = np.asarray(s, dtype=np.int64).reshape(-1)
            out.append(np.log2(d[np.arange(len(s)), s]))
        return out


def neural_model(name: str, network: nn.Module, **options: Any) -> SequenceModel:
    """The model of a trained network of family ``name``: its family's adapter, or a
    `NeuralModel` (windowed families get their context)."""
    record = network_spec(name)
    if record.adapter:
        from notelm.models.registry import resolve

        return resolve(record.adapter)(network, **options)
    context = network.config.context if record.windowed else None
    return NeuralModel(network, context=context, **options)


def build_neural(name: str, *, alphabet_size: int, config: dict | None = None, **options: Any) -> NeuralModel:
    """An untrained network of family ``name`` as a model (for the model registry)."""
    cfg = {**(config or {}), "vocab_size": alphabet_size}
    return neural_model(name, build_network(name, cfg), **options)
