"""IDyOM's multiple-viewpoint system: STM, LTM, LTM+, BOTH and BOTH+ over several viewpoints.

One PPM per viewpoint (and per memory: a long-term model trained on a corpus, a short-term
model learning each piece as it goes), each mapped back to a distribution over pitch
(`ViewpointCoder.to_pitch`). As in IDyOM (`mvs/multiple-viewpoint-system.lisp`,
`combine-predictions`), the viewpoints are combined within the LTM and within the STM
(entropy-weighted, the viewpoint bias), then the LTM with the STM (the LTM-STM bias).
A viewpoint undefined at a note (``cpint`` on the first) is left out of that note's
combination (IDyOM `combine-distributions` drops empty prediction sets); where every
viewpoint is undefined the prediction is uniform (IDyOM's flat distribution).

Kinds, as IDyOM's ``:models``: "stm"; "ltm" (trained, frozen); "ltm+" (trained, and learning
every test piece too); "both" (ltm with stm); "both+" (ltm+ with stm).

Legend: V viewpoints, n notes of a piece, A pitch alphabet size, U a viewpoint's symbols.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from notelm.models.base import SequenceModel
from notelm.models.combine import CombineConfig, combine
from notelm.models.ppm import PPM, PPMConfig
from notelm.viewpoints import Melody, ViewpointCoder

KINDS = ("stm", "ltm", "ltm+", "both", "both+")


def combine_viewpoints(distributions: Sequence[np.ndarray], config: CombineConfig) -> np.ndarray:
    """Combine V distributions (n, A) whose undefined rows are NaN; uniform where all are."""
    n, size = distributions[0].shape
    defined = np.stack([~np.isnan(d[:, 0]) for d in distributions])  # (V, n)
    out = np.full((n, size), 1.0 / size)
    patterns, which = np.unique(defined.T, axis=0, return_inverse=True)
    for g, pattern in enumerate(patterns):
        at = np.flatnonzero(which.reshape(-1) == g)
        chosen = [d[at] for d, ok in zip(distributions, pattern) if ok]
        if chosen:
            out[at] = combine(chosen, config)
    return out


class MultipleViewpointModel(SequenceModel):
    """Predicts the pitch ids of `Melody`s through viewpoints (`ViewpointCoder`s).

    ``ltm``/``stm``: the smoothing of the long- and short-term PPMs (IDyOM's defaults when
    None); ``combine``: LTM with STM; ``viewpoint_combine``: across viewpoints.
    Tokens are pitch ids; viewpoints linked with ``dur`` or ``ioi`` also read the notes'
    timing, which `start(timing=melody)` supplies for step-by-step use.
    """

    def __init__(self, *, coders: Sequence[ViewpointCoder], kind: str = "both+",
                 ltm: PPMConfig | None = None, stm: PPMConfig | None = None,
                 combine: CombineConfig | None = None,
                 viewpoint_combine: CombineConfig | None = None) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
        if not coders:
            raise ValueError("a multiple-viewpoint model needs at least one viewpoint")
        sizes = {len(c.alphabets.pitch) for c in coders}
        if len(sizes) != 1:
            raise ValueError("every viewpoint must share one pitch alphabet")
        self.coders = list(coders)
        self.kind = kind
        self.alphabet_size = sizes.pop()
        self.combine_config = combine or CombineConfig()
        self.viewpoint_config = viewpoint_combine or CombineConfig(method="geometric", bias=2.0)
        self.timed = any(c.time_links for c in self.coders)
        self.memories: dict[str, list[PPM]] = {}
        if kind != "stm":
            mode = "ltm+" if kind in ("ltm+", "both+") else "ltm"
            self.memories["ltm"] = [PPM(alphabet_size=c.size, config=ltm or PPMConfig.idyom_ltm(), mode=mode)
                                    for c in self.coders]
        if kind in ("stm", "both", "both+"):
            self.memories["stm"] = [PPM(alphabet_size=c.size, config=stm or PPMConfig.idyom_stm(), mode="stm")
                                    for c in self.coders]

    @property
    def trainable(self) -> bool:
        return "ltm" in self.memories

    def fit(self, melodies: Sequence[Melody]) -> MultipleViewpointModel:
        """Train every viewpoint's long-term model on the notes where it is defined."""
        if not self.trainable:
            raise ValueError("an STM starts empty for every piece and cannot be trained")
        cuts = np.cumsum([len(m) for m in melodies])[:-1]
        for coder, ppm in zip(self.coders, self.memories["ltm"]):
            ppm.fit([s[s >= 0] for s in np.split(coder.encode(melodies)[1], cuts)])
        return self

    # -- the fast path ---------------------------------------------------------------------------

    def component_distributions(self, melodies: Sequence[Melody]) -> dict[str, list[np.ndarray]]:
        """Per memory ("ltm", "stm"), combined across viewpoints, and with several viewpoints
        per memory and viewpoint ("ltm:cpint", NaN rows where undefined): (n, A) per piece."""
        if not melodies:
            return {memory: [] for memory in self.memories}
        cuts = np.cumsum([len(m) for m in melodies])[:-1]
        encoded = [c.encode(melodies) for c in self.coders]
        out: dict[str, list[np.ndarray]] = {}
        for memory, ppms in self.memories.items():
            per_vp = [self._viewpoint_pitch(c, ppm, rows, symbols, cuts)
                      for c, ppm, (rows, symbols) in zip(self.coders, ppms, encoded)]
            out[memory] = np.split(combine_viewpoints(per_vp, self.viewpoint_config), cuts)
            if len(self.coders) > 1:
                out.update({f"{memory}:{c.name}": np.split(d, cuts) for c, d in zip(self.coders, per_vp)})
        return out

    def combine_pieces(self, components: dict[str, list[np.ndarray]]) -> list[np.ndarray]:
        parts = [components[m] for m in self.memories]
        if len(parts) == 1 or not parts[0]:
            return parts[0]
        cuts = np.cumsum([len(d) for d in parts[0]])[:-1]
        return np.split(combine([np.concatenate(p) for p in parts], self.combine_config), cuts)

    def distributions(self, melodies: Sequence[Melody]) -> list[np.ndarray]:
        """The distribution over pitch ids before every note, one (n, A) array per melody."""
        return self.combine_pieces(self.component_distributions(melodies))

    def score(self, melodies: Sequence[Melody]) -> list[np.ndarray]:
        return [np.log2(d[np.arange(len(m)), np.asarray(m.ids)])
                for d, m in zip(self.distributions(melodies), melodies)]

    def _viewpoint_pitch(self, coder: ViewpointCoder, ppm: PPM, rows: np.ndarray, symbols: np.ndarray,
                         cuts: np.ndarray) -> np.ndarray:
        """One viewpoint's predictions mapped to pitch (N, A), NaN rows where it is undefined."""
        defined = symbols >= 0
        kept = np.r_[0, np.cumsum(defined)][cuts]  # defined notes before each cut (an empty melody: a cut at 0)
        pieces = np.split(symbols[defined], kept)
        allowed = np.split(coder.allowed(rows[defined]), kept) if coder.masked else None
        by_key = ppm.predict_pieces(pieces, distributions=True, allowed=allowed, entropies=False,
                                    groups=coder.key_of_symbol)[2]
        out = np.full((len(symbols), self.alphabet_size), np.nan)
        if defined.any():
            out[defined] = coder.keys_to_pitch(np.concatenate(by_key), rows[defined])
        return out

    # -- step by step ------------------------------------------------------------------------

    def start(self, primer: Sequence[int] = (), *, timing: Melody | None = None) -> dict[str, Any]:
        """Begin a melody. ``timing``: a melody whose onsets and durations the coming notes
        take (needed by viewpoints linked with dur or ioi); a `Melody` primer brings its own."""
        if timing is None and isinstance(primer, Melody):
            timing = primer
        state = {"ids": (), "onset": (), "dur": (), "timing": timing,
                 **{memory: tuple(ppm.start() for ppm in ppms) for memory, ppms in self.memories.items()}}
        for token in primer:
            state = self.observe(state, token)
        return state

    def predict(self, state: dict[str, Any]) -> np.ndarray:
        row = 0 if not state["ids"] else 1 + state["ids"][-1]
        parts = []
        for memory, ppms in self.memories.items():
            per_vp = []
            for coder, ppm, st in zip(self.coders, ppms, state[memory]):
                if not coder.row_defined[row]:
                    per_vp.append(np.full((1, self.alphabet_size), np.nan))
                    continue
                mask = coder.allowed(np.array([row]))
                d = ppm.predict(st, None if mask is None else mask[0])
                per_vp.append(coder.to_pitch(d[None], np.array([row])))
            parts.append(combine_viewpoints(per_vp, self.viewpoint_config)[0])
        return combine(parts, self.combine_config) if len(parts) > 1 else parts[0]

    def observe(self, state: dict[str, Any], token: int) -> dict[str, Any]:
        token = int(token)
        if not 0 <= token < self.alphabet_size:
            raise ValueError(f"pitch id {token} is outside the alphabet 0..{self.alphabet_size - 1}")
        i = len(state["ids"])
        timing = state["timing"]
        if self.timed and (timing is None or i >= len(timing)):
            raise ValueError("viewpoints linked with dur or ioi need the notes' timing: start(timing=melody)")
        state = {**state, "ids": (*state["ids"], token),
                 "onset": (*state["onset"], int(timing.onset[i]) if timing is not None and i < len(timing) else 0),
                 "dur": (*state["dur"], int(timing.dur[i]) if timing is not None and i < len(timing) else 0)}
        last = slice(-2, None)
        for k, coder in enumerate(self.coders):
            symbol = coder.symbols(list(state["ids"][last]), list(state["onset"][last]), list(state["dur"][last]))[-1]
            if symbol >= 0:
                for memory, ppms in self.memories.items():
                    parts = list(state[memory])
                    parts[k] = ppms[k].observe(parts[k], int(symbol))
                    state[memory] = tuple(parts)
        return state
