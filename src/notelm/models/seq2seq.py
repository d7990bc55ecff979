"""The velocity model: midi-translation's encoder-decoder Transformer (REFERENCE §4), on
`notelm.models.layers`.

A window of notes (``note-tokens`` source ids, CLS first) goes through a bidirectional encoder;
the decoder reads the velocities so far (CLS first: teacher forcing on the target shifted right)
and predicts the next note's exact velocity. What we follow of the original
(Nospoko/midi-translation ``model.py``, ``modules/*.py``, itself the Annotated Transformer):

- **Pre-norm** residual blocks: ``x + dropout(sublayer(norm(x)))`` (``modules/layer_utils.py``
  ``SublayerConnection``, "the norm is first as opposed to last"), a final LayerNorm after each
  stack (``modules/encoder.py``, ``modules/decoder.py``). We use torch's LayerNorm (variance +
  1e-5 inside the root) where the original divides by the unbiased std + 1e-6: a rounding-level
  difference at these widths.
- **Sinusoidal absolute positions** added to embeddings scaled by sqrt(d)
  (``modules/positional_encoding.py``, ``modules/embeddings.py``; Vaswani et al. 2017 §3.5), so
  attention runs with ``rotary=False``. The encoder counts from CLS = 0, the decoder too.
- FFN ``w2(dropout(relu(w1(x))))``, dropout on attention weights and on every sublayer output,
  a linear output layer with bias over the target vocabulary, Glorot-uniform init of every
  matrix (``model.py``). Our attention projections carry no bias (layers.py's fused ``qkv``).
- ``shared_vocab`` (the ablation of T5's arrangement): one embedding table for source tokens and
  velocities, tied to the output layer, so the softmax runs over all of them; the first
  ``target_vocab_size`` columns of the logits are still the target ids.

Decoding: ``encode`` once per window; `DecoderState` holds each decoder layer's self-attention
`KVCache` and its cross-attention keys over the encoder output (``Attention.keys``, computed once
per source), so a greedy step costs one position. The original recomputes the whole decoder for
every note (``utils.py`` ``greedy_decode``); ``decode(..., state=None)`` is that path.

Windows: a piece longer than ``context`` notes is read in windows of ``context`` notes, ``stride``
apart, the last one ending at the last note (`window_plan`); each note's prediction is taken from
the window where it sits most centrally (the most context on its shorter side), so no note is
dropped and every note sees at least ``(context - stride) // 2`` neighbours on each side where the
piece has them. `VelocityModel` (a `ConditionalModel`) uses the same rule on its batched and its
step path, so the two agree.

Legend: b batch, s source length (CLS + notes), t target positions, d dim, h heads,
v target vocabulary (+ source tokens when shared), n notes, L window (notes), S stride.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from notelm.config import Config, SettingsError, require_positive_ints, require_rates
from notelm.encodings.vocab import BOS_ID, N_SPECIAL, PAD_ID, UNK_ID
from notelm.errors import NotelmError
from notelm.models.base import ConditionalModel
from notelm.models.layers import Attention, KVCache
from notelm.models.neural import short_call

TARGET_VOCAB = N_SPECIAL + 128  # PAD BOS EOS UNK, then velocities 0..127 (note-tokens' target ids)


@dataclass(frozen=True)
class VelocityConfig(Config):
    """vocab_size: source vocabulary (the encoding's, filled in by the builder).
    target_vocab_size: target ids (specials + 128 velocities). dim, n_layers (per stack),
    n_heads, ff (FFN width), dropout: as in midi-translation's ``make_model``. context: notes
    per window (128). shared_vocab: one embedding for source and target tokens, tied to the
    output (T5's arrangement; the ablation), instead of separate tables and a linear output.
    target_dropout: the probability that the decoder is not shown a previous velocity (UNK
    instead) in training; 1.0 never shows it one, in training or after: each velocity is then
    predicted from the notes alone, and free-running decoding equals teacher forcing (the
    humanizer: fed its own guesses, an autoregressive decoder drifts in loudness)."""

    vocab_size: int = 0
    target_vocab_size: int = TARGET_VOCAB
    dim: int = 256
    n_layers: int = 4
    n_heads: int = 4
    ff: int = 1024
    dropout: float = 0.1
    context: int = 128
    shared_vocab: bool = False
    target_dropout: float = 0.0

    def __post_init__(self) -> None:
        if not (isinstance(self.target_dropout, (int, float)) and 0 <= self.target_dropout <= 1):
            raise SettingsError(f"velocity: target_dropout must be in [0, 1]; got {self.target_dropout!r}")
        require_positive_ints(self, "velocity", ("vocab_size", "target_vocab_size", "dim", "n_layers", "n_heads", "ff",
                                                 "context"), zero_ok=("vocab_size",))
        if self.dim % self.n_heads or self.dim % 2:
            raise SettingsError(f"velocity: dim ({self.dim}) must be even and divisible by n_heads ({self.n_heads})")
        require_rates(self, "velocity")
        if not isinstance(self.shared_vocab, bool):
            raise SettingsError(f"velocity: shared_vocab must be true or false; got {self.shared_vocab!r}")
        if self.target_vocab_size <= N_SPECIAL:
            raise SettingsError("velocity: target_vocab_size must exceed the 4 special tokens")


# Training as the original (training_utils.py): Adam (0.9, 0.98, eps 1e-9), Noam factor 1 with
# warmup 4,000, label smoothing 0.1, batch 16, windows of 128 notes every 42. Its train.py also
# sums 10 batches' gradients per update (accum_iter 10) while its schedule counts batches: that
# is batch 160, lr 10^-0.5, warmup 400 here (README); the presets keep batch 16. "small" keeps the
# recipe at an eighth of the compared run's compute per step (d 128, 2 + 2 layers), 3,000 steps
# with a 1,000-step warmup: ~20 minutes on 2 free CPU cores, an hour on a third of one.
_ORIGINAL = {"batch_size": 16, "optimizer": "adam", "betas": (0.9, 0.98), "eps": 1e-9, "lr": 1.0, "schedule": "noam",
             "warmup_steps": 4000, "label_smoothing": 0.1, "grad_clip": None, "window_step": 42}
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "debug": {"model": {"dim": 16, "n_layers": 2, "n_heads": 2, "ff": 32, "dropout": 0.0, "context": 16},
              "train": {**_ORIGINAL, "batch_size": 4, "warmup_steps": 20, "window_step": 6}},
    "small": {"model": {"dim": 128, "n_layers": 2, "n_heads": 4, "ff": 512, "dropout": 0.1},
              "train": {**_ORIGINAL, "warmup_steps": 1000, "max_steps": 3000, "val_every": 500}},
    "compared": {"model": {"dim": 256, "n_layers": 4, "n_heads": 4, "ff": 1024, "dropout": 0.1},
                 "train": {**_ORIGINAL, "max_epochs": 5, "val_every": 500}},
    "paper": {"model": {"dim": 512, "n_layers": 6, "n_heads": 8, "ff": 2048, "dropout": 0.1},
              "train": {**_ORIGINAL, "max_epochs": 5, "val_every": 500}},
}


# ---- blocks --------------------------------------------------------------------------------------


def sinusoid(positions: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """Sinusoidal encodings (t, d) of integer positions (t,): sin at even, cos at odd channels
    (Vaswani et al. 2017 §3.5; midi-translation's modules/positional_encoding.py)."""
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float64, device=positions.device) * (-math.log(10000.0) / dim))
    angle = positions.to(torch.float64)[:, None] * freq  # (t, d/2)
    out = torch.stack([angle.sin(), angle.cos()], dim=-1).flatten(1)  # interleaved sin, cos
    return out.to(dtype)


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, ff: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, ff), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff, dim), nn.Dropout(dropout))


class EncoderLayer(nn.Module):
    def __init__(self, c: VelocityConfig) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        self.attn = Attention(dim=c.dim, heads=c.n_heads, dropout=c.dropout, rotary=False)
        self.ff = FeedForward(c.dim, c.ff, c.dropout)

    def forward(self, x: torch.Tensor, padding: torch.Tensor | None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), causal=False, key_padding=padding)[0]
        return x + self.ff(self.norm2(x))


class DecoderLayer(nn.Module):
    def __init__(self, c: VelocityConfig) -> None:
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        self.self_attn = Attention(dim=c.dim, heads=c.n_heads, dropout=c.dropout, rotary=False)
        self.cross_attn = Attention(dim=c.dim, heads=c.n_heads, dropout=c.dropout, rotary=False)
        self.ff = FeedForward(c.dim, c.ff, c.dropout)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, keys: tuple, padding: torch.Tensor | None,
                cache: KVCache | None) -> tuple[torch.Tensor, KVCache | None]:
        y, cache = self.self_attn(self.norm1(x), positions=positions if cache is not None else None, cache=cache)
        x = x + y
        x = x + self.cross_attn(self.norm2(x), keys=keys, causal=False, key_padding=padding)[0]
        return x + self.ff(self.norm3(x)), cache


@dataclass(frozen=True)
class DecoderState:
    """Decoding in progress for a batch of windows: each decoder layer's self-attention cache
    and its cross-attention keys over the encoder output (computed once per source)."""

    layers: tuple[KVCache, ...]
    cross: tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], ...] = field(repr=False)

    @property
    def length(self) -> int:
        """Target positions decoded so far."""
        return self.layers[0].written if self.layers else 0


# ---- the network ---------------------------------------------------------------------------------


class Seq2Seq(nn.Module):
    """Source ids (b, s) and target ids (b, t) -> logits (b, t, v) over the target vocabulary
    (and the source tokens after it when ``shared_vocab``)."""

    def __init__(self, config: VelocityConfig) -> None:
        super().__init__()
        if config.vocab_size < 1:
            raise NotelmError("velocity: vocab_size must be set (the encoding's source vocabulary size)")
        self.config = c = config
        if c.shared_vocab:  # rows: target ids, then source content ids (source specials = target specials)
            self.embed = nn.Embedding(c.target_vocab_size + c.vocab_size - N_SPECIAL, c.dim)
        else:
            self.source_embed = nn.Embedding(c.vocab_size, c.dim)
            self.target_embed = nn.Embedding(c.target_vocab_size, c.dim)
            self.head = nn.Linear(c.dim, c.target_vocab_size)
        self.drop = nn.Dropout(c.dropout)
        self.encoder = nn.ModuleList(EncoderLayer(c) for _ in range(c.n_layers))
        self.decoder = nn.ModuleList(DecoderLayer(c) for _ in range(c.n_layers))
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(c.dim), nn.LayerNorm(c.dim)
        for p in self.parameters():  # "Initialize parameters with Glorot / fan_avg" (model.py)
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    # ---- embeddings -------------------------------------------------------------------------

    def _embed(self, ids: torch.Tensor, start: int, source: bool) -> torch.Tensor:
        c = self.config
        if c.shared_vocab:
            if source:
                ids = torch.where(ids < N_SPECIAL, ids, ids + (c.target_vocab_size - N_SPECIAL))
            table = self.embed
        else:
            table = self.source_embed if source else self.target_embed
        if not source and c.target_dropout > 0:  # hide previous velocities (never the CLS at 0)
            later = torch.arange(start, start + ids.shape[1], device=ids.device) > 0
            hide = later if c.target_dropout >= 1 else (
                later & (torch.rand(ids.shape, device=ids.device) < c.target_dropout) if self.training else None)
            if hide is not None:
                ids = torch.where(hide, UNK_ID, ids)
        x = table(ids) * math.sqrt(c.dim)
        pos = torch.arange(start, start + ids.shape[1], device=ids.device)
        return self.drop(x + sinusoid(pos, c.dim, x.dtype))

    def allowed_targets(self) -> torch.Tensor:
        """(v,) bool over the logits' columns: what the loss is over (`notelm.training.tasks`).
        The velocities; with a shared vocabulary also every source token, as in T5, where the
        softmax runs over the whole vocabulary."""
        c = self.config
        mask = torch.ones(c.target_vocab_size + (c.vocab_size - N_SPECIAL if c.shared_vocab else 0), dtype=torch.bool)
        mask[:N_SPECIAL] = False  # PAD BOS EOS UNK: a target is always a velocity
        return mask

    def _logits(self, h: torch.Tensor) -> torch.Tensor:
        h = self.decoder_norm(h)
        return h @ self.embed.weight.T if self.config.shared_vocab else self.head(h)

    # ---- encoder and decoder ----------------------------------------------------------------

    def encode(self, source: torch.Tensor, source_padding: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder output (b, s, d); ``source_padding`` (b, s) True where padding (never attended)."""
        x = self._embed(source, 0, source=True)
        for layer in self.encoder:
            x = layer(x, source_padding)
        return self.encoder_norm(x)

    def new_state(self, memory: torch.Tensor, capacity: int | None = None) -> DecoderState:
        """An empty decoder state over encoder output ``memory`` (b, s, d): empty caches, the
        cross-attention keys of every layer computed now."""
        cross = tuple(layer.cross_attn.keys(memory) for layer in self.decoder)
        cap = capacity or self.config.context + 1
        return DecoderState(tuple(KVCache(capacity=cap) for _ in self.decoder), cross)

    def decode(self, target_in: torch.Tensor, memory: torch.Tensor, source_padding: torch.Tensor | None = None,
               state: DecoderState | None = None) -> tuple[torch.Tensor, DecoderState | None]:
        """Logits (b, t, v) for target inputs (b, t) after the ``state.length`` already decoded.
        ``state`` None: a full causal pass without a cache (the original's greedy decode
        recomputes this for every note); returns None then. Else the extended state (the given
        one stays valid)."""
        past = state.length if state is not None else 0
        positions = torch.arange(past, past + target_in.shape[1], device=target_in.device)
        cross = state.cross if state is not None else tuple(layer.cross_attn.keys(memory) for layer in self.decoder)
        x = self._embed(target_in, past, source=False)
        caches = []
        for i, layer in enumerate(self.decoder):
            x, cache = layer(x, positions, cross[i], source_padding, state.layers[i] if state is not None else None)
            caches.append(cache)
        new = DecoderState(tuple(caches), cross) if state is not None else None
        return self._logits(x), new

    def forward(self, source: torch.Tensor, target_in: torch.Tensor, *,
                source_padding: torch.Tensor | None = None) -> torch.Tensor:
        """Teacher-forced logits (b, t, v)."""
        return self.decode(target_in, self.encode(source, source_padding), source_padding)[0]


# ---- windows -------------------------------------------------------------------------------------


def window_plan(n: int, context: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows over n notes and which window each note is predicted from.

    Returns the window starts (w,) — 0, stride, 2 stride, ... and a last one ending at note n —
    and, for each note, the index of its window (n,): the window where the note's shorter side
    holds the most notes, min(i - a, a + L - 1 - i); on a tie the earlier window."""
    if not 1 <= stride <= context:
        raise ValueError(f"stride must be in 1..context ({context}); got {stride}")
    last = max(0, n - context)
    starts = np.r_[np.arange(0, last, stride), last].astype(np.int64)
    i = np.arange(n)
    best, owner = np.full(n, -1), np.zeros(n, dtype=np.int64)
    for w, a in enumerate(starts):
        lo, hi = a, min(n, a + context)
        margin = np.minimum(i[lo:hi] - a, a + context - 1 - i[lo:hi])
        better = margin > best[lo:hi]
        best[lo:hi][better], owner[lo:hi][better] = margin[better], w
    return starts, owner


# ---- the model interface -------------------------------------------------------------------------


@dataclass(frozen=True)
class VelocityState:
    """A target in progress: the source, the targets observed, the start of each note's window
    (`window_plan`), the start of the window the next note is predicted from, that window's
    encoder output, decoder state and the logits for the next note."""

    source: tuple[int, ...]
    history: tuple[int, ...]
    plan: np.ndarray = field(repr=False)
    start: int = 0
    memory: torch.Tensor | None = field(default=None, repr=False)
    decoder: DecoderState | None = field(default=None, repr=False)
    logits: torch.Tensor | None = field(default=None, repr=False)


class VelocityModel(ConditionalModel):
    """A `Seq2Seq` network as a `ConditionalModel` over note sources and velocity targets.

    Sources and targets are content ids of one piece (one per note, no CLS: it is added here).
    Probabilities cover the velocities only (every other target id gets the floor).
    stride: of the windows (module docstring; default context // 2). use_cache: keep decoder
    caches between steps (False recomputes the window's decoder for every note, as the original).
    threads: torch threads while predicting on CPU (None: torch's setting). One by default: a
    decoding step is too little work to share, and on a busy machine OpenMP's spin-waiting makes
    two threads several times slower than one."""

    FLOOR = 1e-10

    def __init__(self, network: Seq2Seq, *, stride: int | None = None, dtype: torch.dtype = torch.float64,
                 device: torch.device | str = "cpu", use_cache: bool = True, threads: int | None = 1) -> None:
        self.network = network.to(device=device, dtype=dtype).eval()
        self.config = network.config
        self.context = self.config.context
        self.stride = stride or max(1, self.context // 2)
        self.device, self.use_cache = torch.device(device), use_cache
        self.threads = threads if self.device.type == "cpu" else None
        self.alphabet_size = self.config.target_vocab_size
        if self.alphabet_size != TARGET_VOCAB:
            raise NotelmError(f"velocity: targets must be note-tokens' {TARGET_VOCAB} ids (4 specials + 128 "
                              f"velocities); this network has {self.alphabet_size}")
        self._velocity = torch.zeros(self.config.target_vocab_size, dtype=torch.bool, device=self.device)
        self._velocity[N_SPECIAL:N_SPECIAL + 128] = True

    def probabilities(self, logits: torch.Tensor) -> np.ndarray:
        """Float64 (..., alphabet) from logits: softmax over the velocities, floor elsewhere."""
        z = logits[..., : self.alphabet_size].to(torch.float64).masked_fill(~self._velocity, float("-inf"))
        return ((1 - self.FLOOR) * torch.softmax(z, -1) + self.FLOOR / self.alphabet_size).cpu().numpy()

    # ---- step path ----------------------------------------------------------------------------

    def _ids(self, ids: Sequence[int], cls: bool = True) -> torch.Tensor:
        return torch.tensor([[BOS_ID, *ids] if cls else list(ids)], dtype=torch.long, device=self.device)

    def _fill(self, state: VelocityState, history: tuple[int, ...]) -> VelocityState:
        """The state for predicting note len(history), computed afresh in its window."""
        a = int(state.plan[len(history)])
        with short_call(self.threads):
            return self._fill_window(state, history, a)

    def _fill_window(self, state: VelocityState, history: tuple[int, ...], a: int) -> VelocityState:
        memory = self.network.encode(self._ids(state.source[a: a + self.context]))
        decoder = self.network.new_state(memory) if self.use_cache else None
        logits, decoder = self.network.decode(self._ids(history[a:]), memory, None, decoder)
        return VelocityState(state.source, history, state.plan, a, memory, decoder, logits[0, -1])

    @torch.inference_mode()
    def start(self, source: Sequence[int], primer: Sequence[int] = ()) -> VelocityState:
        source = tuple(int(s) for s in source)
        if not source:
            raise NotelmError("velocity: the source has no notes")
        starts, owner = window_plan(len(source), self.context, self.stride)
        state, primer = VelocityState(source, (), starts[owner]), tuple(int(t) for t in primer)
        return self._fill(state, primer) if len(primer) < len(source) else replace(state, history=primer)

    def predict(self, state: VelocityState) -> np.ndarray:
        if state.logits is None:
            raise NotelmError("velocity: every note of the source has its velocity already")
        return self.probabilities(state.logits)

    @torch.inference_mode()
    def observe(self, state: VelocityState, token: int) -> VelocityState:
        history = (*state.history, int(token))
        if len(history) >= len(state.source):  # complete: nothing left to predict
            return VelocityState(state.source, history, state.plan, state.start)
        if not self.use_cache or state.plan[len(history)] != state.start:
            return self._fill(state, history)
        with short_call(self.threads):
            logits, decoder = self.network.decode(self._ids([int(token)], cls=False), state.memory, None, state.decoder)
        return VelocityState(state.source, history, state.plan, state.start, state.memory, decoder, logits[0, -1])

    # ---- batched paths ------------------------------------------------------------------------

    def _windows(self, sources: Sequence[np.ndarray]) -> list[tuple[int, int, int, np.ndarray]]:
        """(piece, window start, window length, owned note indices) of every window."""
        jobs = []
        for p, src in enumerate(sources):
            starts, owner = window_plan(len(src), self.context, self.stride)
            for w, a in enumerate(starts):
                jobs.append((p, int(a), min(self.context, len(src) - int(a)), np.flatnonzero(owner == w)))
        return jobs

    def _batch(self, rows: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """CLS-prefixed, right-padded ids (b, 1 + longest) and their padding mask."""
        x = torch.full((len(rows), 1 + max(len(r) for r in rows)), PAD_ID, dtype=torch.long)
        for r, ids in enumerate(rows):
            x[r, 0] = BOS_ID
            x[r, 1: 1 + len(ids)] = torch.from_numpy(np.asarray(ids, dtype=np.int64))
        return x.to(self.device), (x == PAD_ID).to(self.device)

    @torch.inference_mode()
    def logits(self, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]] | None = None, *,
               batch_size: int = 64, progress: Any = None) -> list[torch.Tensor]:
        """Per piece, the logits (n, alphabet) before each note: teacher-forced on ``targets``,
        or (targets None) greedy decoding, each window on its own from CLS. Windows batched."""
        return self._run(sources, targets, batch_size=batch_size, progress=progress)[0]

    @torch.inference_mode()
    def sample_velocities(self, sources: Sequence[Sequence[int]], *, temperature: float = 1.0,
                          seed: int | None = 0, batch_size: int = 64, progress: Any = None) -> list[np.ndarray]:
        """Velocities 0..127 (n,) per piece, decoded note by note in each window: sampled at
        ``temperature`` (reproducible with ``seed``), or the most probable (temperature 0)."""
        if temperature < 0:
            raise NotelmError(f"temperature must be >= 0; got {temperature}")
        generator = torch.Generator(device=self.device)
        generator.manual_seed(seed if seed is not None else int(torch.seed() % 2**63))
        chosen = self._run(sources, None, batch_size=batch_size, progress=progress,
                           temperature=temperature, generator=generator)[1]
        return [c - N_SPECIAL for c in chosen]

    def _run(self, sources, targets, **options: Any) -> tuple[list[torch.Tensor], list[np.ndarray]]:
        with short_call(self.threads):
            return self._windows_run(sources, targets, **options)

    def _windows_run(self, sources, targets, *, batch_size: int, progress: Any, temperature: float = 0.0,
                     generator: torch.Generator | None = None) -> tuple[list[torch.Tensor], list[np.ndarray]]:
        """Every window of every piece through the network, batched; each note's logits (and
        chosen velocity when decoding freely) taken from its own window."""
        srcs = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sources]
        tgts = None if targets is None else [np.asarray(t, dtype=np.int64).reshape(-1) for t in targets]
        out = [torch.empty(len(s), self.alphabet_size, dtype=torch.float64) for s in srcs]
        chosen = [np.zeros(len(s), dtype=np.int64) for s in srcs]
        jobs = self._windows(srcs)
        for k in range(0, len(jobs), batch_size):
            batch = jobs[k: k + batch_size]
            source, padding = self._batch([srcs[p][a: a + m] for p, a, m, _ in batch])
            memory = self.network.encode(source, padding)
            if tgts is not None:
                target_in = self._batch([tgts[p][a: a + m - 1] for p, a, m, _ in batch])[0]
                z, picks = self.network.decode(target_in, memory, padding)[0], None
            else:
                z, picks = self.free_run(memory, padding, max(m for _, _, m, _ in batch),
                                         temperature=temperature, generator=generator)
            for r, (p, a, _, owned) in enumerate(batch):
                out[p][owned] = z[r, owned - a, : self.alphabet_size].to(torch.float64).cpu()
                if picks is not None:
                    chosen[p][owned] = picks[r, owned - a].cpu().numpy()
            if progress is not None:
                progress(sum(len(o) for *_, o in batch))
        return out, chosen

    def free_run(self, memory: torch.Tensor, padding: torch.Tensor, steps: int, *, temperature: float = 0.0,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode ``steps`` velocities for a batch of encoded windows, each step fed the previous
        choice: the logits (b, steps, v) at every step and the chosen target ids (b, steps):
        the most probable velocity (temperature 0: greedy) or one sampled at ``temperature``."""
        b = memory.shape[0]
        token = torch.full((b, 1), BOS_ID, dtype=torch.long, device=self.device)
        state = self.network.new_state(memory) if self.use_cache else None
        history, rows, picks = token, [], []
        for _ in range(steps):
            if self.use_cache:
                z, state = self.network.decode(token, memory, padding, state)
            else:  # the original's greedy_decode: the whole decoder again for every note
                z, _ = self.network.decode(history, memory, padding)
            z = z[:, -1]
            rows.append(z)
            v = z[:, : self.alphabet_size].masked_fill(~self._velocity, float("-inf"))
            if temperature == 0:
                token = v.argmax(-1, keepdim=True)
            else:
                token = torch.multinomial(torch.softmax(v.double() / temperature, -1), 1, generator=generator)
            picks.append(token[:, 0])
            history = torch.cat([history, token], dim=1)
        return torch.stack(rows, dim=1), torch.stack(picks, dim=1)

    def distributions(self, sources: Sequence[Sequence[int]], targets: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Teacher-forced distributions before every note, from each note's window."""
        return [self.probabilities(z) for z in self.logits(sources, targets)]
