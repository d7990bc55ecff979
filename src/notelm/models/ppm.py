"""PPM and PPM* over integer symbols, as IDyOM defines them (Pearce 2005; Bunton 1996).

A model counts every n-gram it has learned in a trie of contexts and predicts the next symbol
by blending the distributions of the contexts that match the end of the piece, from the
selected (longest, or shortest deterministic) context down to order 0 and then a uniform
order -1 model. Escape methods A, B, C, D and AX, exclusion, update exclusion, interpolated
("mixtures") and backoff ("blending") smoothing follow IDyOM's `ppm-star/ppm-star.lisp`
(compute-mixture, weight, type-count, state-count, order-minus1-probability) and reproduce
IDyOM's own outputs (tests/fixtures/ppm/idyom_escape_methods.json).

Three modes, as in IDyOM's `mvs/multiple-viewpoint-system.lisp`:

- ``"stm"``: a fresh, empty model for every piece that learns each event after predicting it;
- ``"ltm"``: trained with `fit`, frozen while predicting;
- ``"ltm+"``: trained, and also learns each test piece while predicting it. IDyOM reinitialises
  only the STMs between test pieces (`model-dataset`: ``reinitialise-ppm :models 'stm``), so
  what an LTM+ learns from one test piece persists into the next; we do the same.

Where IDyOM and the R package ppm 0.3.0 (the other reference) differ, we follow IDyOM: a piece
learned by an LTM ends with IDyOM's sentinel, so a context that also ended a piece is not
deterministic (`_close`); the empty context is never selected as deterministic (`_select`).
One exception: IDyOM's suffix tree is always unbounded, so under a finite order bound it
update-excludes at the longest context seen anywhere and then reads full counts at the
bound-truncated state; we count as ppm 0.3.0 and textbook PPM do, at the bounded context
(`_learn`), and read update-excluded counts there. The fixture (unbounded) pins neither.

Legend: A alphabet size, n trie nodes, o context order (length), c chain length.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from notelm.config import Config
from notelm.models.base import SequenceModel

ESCAPES = ("a", "b", "c", "d", "ax")
MODES = ("stm", "ltm", "ltm+")
_UNBOUNDED = 2**30  # order bound used in the kernels for PPM* (no bound)

# Trie node fields, one int32 row per node (node 0 is the root, the empty context). A node is
# the n-gram spelled by the path to it; its counts are those of that n-gram.
FIRST, NEXT, SYM, C_FULL, C_UPEX, N_KIDS, END = range(7)
N_FIELDS = 7
# Options passed to the kernels as one int64 vector.
O_A, O_ESC, O_BOUND, O_SD, O_MIX, O_EXCL, O_UPEX = range(7)


@dataclass(frozen=True)
class PPMConfig(Config):
    """Smoothing settings of one PPM model; defaults are IDyOM's long-term model (C*I).

    escape: "a", "b", "c", "d" or "ax" (Pearce 2005 §6.2.3.1; AX is IDyOM's ``:x``).
    order_bound: longest context used, or None for unbounded PPM*.
    shortest_deterministic: PPM* state selection (Cleary & Teahan 1997): use the shortest
        context that has only ever been followed by one symbol when it is shorter than the
        longest matching one. IDyOM applies it to unbounded models only; with a bound it
        applies here too, as in ppm 0.3.0.
    interpolated: IDyOM's "mixtures" (blend every order); False is backoff ("blending").
    exclusion: symbols predicted by a longer context are left out of shorter ones' totals.
    update_exclusion: count an n-gram only in the contexts that a prediction would use.
    """

    escape: str = "c"
    order_bound: int | None = None
    shortest_deterministic: bool = True
    interpolated: bool = True
    exclusion: bool = True
    update_exclusion: bool = False

    def __post_init__(self) -> None:
        if self.escape not in ESCAPES:
            raise ValueError(f"escape must be one of {', '.join(ESCAPES)}; got {self.escape!r}")
        bound = self.order_bound
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, int) or bound < 0):
            raise ValueError(f"order_bound must be an int >= 0 or None (unbounded); got {bound!r}")
        for name in ("shortest_deterministic", "interpolated", "exclusion", "update_exclusion"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}")

    @classmethod
    def idyom_ltm(cls) -> PPMConfig:
        """IDyOM's LTM default: escape C, unbounded, interpolated, no update exclusion."""
        return cls(escape="c", update_exclusion=False)

    @classmethod
    def idyom_stm(cls) -> PPMConfig:
        """IDyOM's STM default: escape AX, unbounded, interpolated, update exclusion."""
        return cls(escape="ax", update_exclusion=True)


    def options(self, alphabet_size: int) -> np.ndarray:
        """The settings as the kernels' int64 option vector."""
        bound = _UNBOUNDED if self.order_bound is None else self.order_bound
        return np.array([alphabet_size, ESCAPES.index(self.escape), bound,
                         self.shortest_deterministic, self.interpolated, self.exclusion,
                         self.update_exclusion], dtype=np.int64)


# ----------------------------------------------------------------------------------------------
# Kernels: a trie of n-grams in one growable int32 array, children in sibling lists.
# ----------------------------------------------------------------------------------------------


@njit(cache=True)
def _new_trie(capacity):
    nodes = np.zeros((max(capacity, 16), N_FIELDS), np.int32)
    _clear(nodes)
    return nodes


@njit(cache=True)
def _clear(nodes):
    """Forget everything: only the root (the empty context) is left."""
    nodes[0, :] = 0
    nodes[0, FIRST] = -1
    nodes[0, NEXT] = -1
    nodes[0, SYM] = -1


@njit(cache=True)
def _find_child(nodes, node, sym):
    child = nodes[node, FIRST]
    while child != -1:
        if nodes[child, SYM] == sym:
            return child
        child = nodes[child, NEXT]
    return -1


@njit(cache=True)
def _add_child(nodes, n, node, sym):
    """Append node ``n`` as a child of ``node``; the array doubles when full."""
    if n == nodes.shape[0]:
        bigger = np.empty((2 * n, N_FIELDS), np.int32)
        bigger[:n] = nodes[:n]
        nodes = bigger
    nodes[n, FIRST] = -1
    nodes[n, NEXT] = nodes[node, FIRST]
    nodes[n, SYM] = sym
    nodes[n, C_FULL] = 0
    nodes[n, C_UPEX] = 0
    nodes[n, N_KIDS] = 0
    nodes[n, END] = 0
    nodes[node, FIRST] = n
    nodes[node, N_KIDS] += 1
    return nodes, n + 1


@njit(cache=True)
def _learn(nodes, n, chain, c, sym, bound):
    """Count ``sym`` after every context in ``chain`` (orders 0..c-1); return the new chain.

    Update-excluded counts (IDyOM `increment-counts`, ppm 0.3.0 `model_seq`): the longest
    n-gram and every novel one are counted, and each n-gram just shorter than a novel one,
    i.e. counting stops below the longest n-gram that had been seen before. Under a finite
    bound the longest n-gram is the one of length bound+1 that a prediction uses (textbook
    PPM, as ppm 0.3.0 does); IDyOM's tree is unbounded and counts at the longest seen anywhere.
    """
    novel_above = True
    for o in range(c - 1, -1, -1):
        parent = chain[o]
        child = _find_child(nodes, parent, sym)
        novel = child == -1
        if novel:
            nodes, n = _add_child(nodes, n, parent, sym)
            child = n - 1
        nodes[child, C_FULL] += 1
        if novel_above:
            nodes[child, C_UPEX] += 1
        novel_above = novel
        if o + 1 <= bound:
            chain[o + 1] = child
    return nodes, n, min(c + 1, bound + 1)


@njit(cache=True)
def _advance(nodes, chain, c, sym, bound):
    """Move the chain on by ``sym`` without learning; return its new length."""
    node = chain[0]
    new_c = 1
    for o in range(min(c, bound)):
        longer = chain[o + 1] if o + 1 < c else -1
        child = _find_child(nodes, node, sym)
        if child == -1:
            break  # no longer context can match either
        chain[o + 1] = child
        new_c = o + 2
        node = longer
    return new_c


@njit(cache=True)
def _close(nodes, chain, c):
    """End of a learned piece: IDyOM appends a sentinel "$" (`model-sentinel-event`), so every
    suffix of the piece counts as having one more continuation (state selection sees it)."""
    for o in range(c):
        nodes[chain[o], END] = 1


@njit(cache=True)
def _continuations(nodes, node):
    return nodes[node, N_KIDS] + nodes[node, END]


@njit(cache=True)
def _select(nodes, chain, c, shortest_deterministic):
    """The context to predict from: (order, selected?) as in IDyOM `select-state`.

    The longest context that has been followed by something (IDyOM's location, Ukkonen's
    active point); with PPM* selection, the shortest context in the run of deterministic
    ones below it (the root never counts: IDyOM's root is always a branch).
    """
    top = c - 1
    while top >= 0 and _continuations(nodes, chain[top]) == 0:
        top -= 1
    if shortest_deterministic and top > 0 and _continuations(nodes, chain[top]) == 1:
        o = top
        while o > 1 and _continuations(nodes, chain[o - 1]) == 1:
            o -= 1
        if o < top:
            return o, True
    return top, False


@njit(cache=True)
def _predict(nodes, chain, c, opts, out, excluded, allowed):
    """Write the distribution over the next symbol into ``out`` (A,).

    ``allowed`` (A,) restricts the alphabet for this one prediction (empty: every symbol), as
    IDyOM does for derived viewpoints, whose alphabet is set per event from the context
    (`mvs::set-model-alphabets`): counts of other symbols are ignored at every order
    (`ppm-star::transition-counts`), order -1 is uniform over the allowed ones, and the
    symbols outside get probability 0.
    """
    masked = allowed.shape[0] > 0
    esc = opts[O_ESC]
    mixtures = opts[O_MIX] != 0
    exclusion = opts[O_EXCL] != 0
    # Escape constants (IDyOM make-ppm): k added to every count, d divides the type count.
    k = -1.0 if esc == 1 else (-0.5 if esc == 3 else 0.0)
    d = 2.0 if esc == 3 else 1.0
    top, selected = _select(nodes, chain, c, opts[O_SD] != 0)
    out[:] = 0.0
    excluded[:] = False
    escape = 1.0
    for o in range(top, -1, -1):
        node = chain[o]
        # A selected state uses full counts (IDyOM get-distribution), the rest per setting.
        col = C_UPEX if opts[O_UPEX] != 0 and not (selected and o == top) else C_FULL
        types, singletons, total = 0, 0, 0.0
        child = nodes[node, FIRST]
        while child != -1:
            if masked and not allowed[nodes[child, SYM]]:
                child = nodes[child, NEXT]
                continue
            count = nodes[child, col]
            types += 1
            singletons += count == 1
            if not (exclusion and excluded[nodes[child, SYM]]):
                total += count + k
            child = nodes[child, NEXT]
        # weight = lambda(s) (Pearce 2005 Eq. 6.3-6.7; IDyOM `weight`, `type-count`):
        # A: n/(n+1); B, C: n/(n+t); D: n/(n+t/2); AX: n/(n+t1+1), n the state count.
        if esc == 0:
            denominator = total + 1.0
        elif esc == 4:
            denominator = total + singletons + 1.0
        else:
            denominator = total + types / d
        weight = total / denominator if denominator != 0.0 else 0.0
        child = nodes[node, FIRST]
        while child != -1:
            sym = nodes[child, SYM]
            if masked and not allowed[sym]:
                child = nodes[child, NEXT]
                continue
            p = weight * (nodes[child, col] + k) / total if total != 0.0 else 0.0
            if mixtures:  # every symbol, excluded or not, gains (IDyOM next-probability)
                out[sym] += escape * p
            elif not excluded[sym] and p > 0.0:  # backoff: only symbols new at this order
                out[sym] = escape * p
            child = nodes[child, NEXT]
        child = nodes[node, FIRST]
        while child != -1:  # transitions of this state are excluded from the next one
            if not masked or allowed[nodes[child, SYM]]:
                excluded[nodes[child, SYM]] = True
            child = nodes[child, NEXT]
        escape *= 1.0 - weight
    # Order -1: uniform, 1/(|A| + 1 - symbols seen at order 0) with exclusion, else 1/|A|.
    size = out.shape[0]
    seen = nodes[0, N_KIDS] if exclusion else 1
    if masked:
        size = 0
        for sym in range(out.shape[0]):
            size += allowed[sym]
        if exclusion:
            seen = 0
            child = nodes[0, FIRST]
            while child != -1:
                seen += allowed[nodes[child, SYM]]
                child = nodes[child, NEXT]
    uniform = 1.0 / (size + 1.0 - seen)
    for sym in range(out.shape[0]):
        if masked and not allowed[sym]:
            continue
        if mixtures or not (excluded[sym] and out[sym] > 0.0):
            out[sym] += escape * uniform
    out /= out.sum()


@njit(cache=True)
def _run(nodes, n, flat, offsets, opts, predict, learn, fresh, close, p_out, h_out, dist_out,
         allowed, groups):
    """Walk every piece of ``flat`` (pieces split at ``offsets``): predict, then learn or advance.

    Writes p(event), the entropy (bits) of each prediction when ``h_out`` has a row per event,
    and the distributions when ``dist_out`` has one: summed within ``groups`` (A,) when that is
    not empty (``dist_out`` is then (N, G)). ``allowed`` is empty or has a row per event: the
    alphabet of each prediction (see `_predict`). Returns the (possibly reallocated) trie.
    """
    size = opts[O_A]
    bound = opts[O_BOUND]
    want_dist = dist_out.shape[0] > 0
    want_entropy = h_out.shape[0] > 0
    grouped = groups.shape[0] > 0
    masked = allowed.shape[0] > 0
    everything = np.zeros(0, np.bool_)
    out = np.empty(size)
    excluded = np.empty(size, np.bool_)
    for q in range(offsets.shape[0] - 1):
        start, stop = offsets[q], offsets[q + 1]
        if fresh:
            _clear(nodes)
            n = 1
        chain = np.zeros(min(stop - start, bound) + 2, np.int64)
        c = 1
        for i in range(start, stop):
            sym = flat[i]
            if predict:
                _predict(nodes, chain, c, opts, out, excluded, allowed[i] if masked else everything)
                p_out[i] = out[sym]
                if want_entropy:
                    h = 0.0
                    for p in out:
                        if p > 0.0:
                            h -= p * np.log2(p)
                    h_out[i] = h
                if want_dist and grouped:
                    for s in range(size):
                        dist_out[i, groups[s]] += out[s]
                elif want_dist:
                    dist_out[i] = out
            if learn:
                nodes, n, c = _learn(nodes, n, chain, c, sym, bound)
            else:
                c = _advance(nodes, chain, c, sym, bound)
        if close:
            _close(nodes, chain, c)
    return nodes, n


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------


class _Trie:
    """A growable trie: the node array, how many rows are in use, and how many times it has
    learned an event (``version``), so a state can tell whether the trie moved on without it."""

    def __init__(self, capacity: int = 256) -> None:
        self.nodes = _new_trie(capacity)
        self.n = 1
        self.version = 0


@dataclass(frozen=True)
class PPMState:
    """Where a piece stands: the trie it reads (private for an STM), its context chain, the
    symbols seen since the start (an STM state rebuilds its trie from them when it is
    branched) and the trie's version when this state was made."""

    trie: _Trie
    chain: np.ndarray  # node ids of the contexts of order 0..length-1 ending the piece
    length: int = 1
    learn: bool = False
    history: tuple[int, ...] = ()
    version: int = 0


def _flatten(sequences: Sequence[Sequence[int]], alphabet_size: int) -> tuple[np.ndarray, np.ndarray]:
    arrays = [np.asarray(s, dtype=np.int64).reshape(-1) for s in sequences]
    offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(a) for a in arrays])
    flat = np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= alphabet_size):
        bad = flat[(flat < 0) | (flat >= alphabet_size)][0]
        raise ValueError(f"symbol {bad} is outside the alphabet 0..{alphabet_size - 1}")
    return flat, offsets


class PPM(SequenceModel):
    """A PPM model over symbols ``0..alphabet_size-1`` in one of the modes "stm", "ltm", "ltm+".

    In "ltm" and "ltm+" modes the model owns one trie that `fit`/`learn` train; "ltm+" pieces
    (through `score`, `distributions` or start/observe) keep adding to it, and each one is
    closed with IDyOM's end-of-piece sentinel when the next one starts (so an "ltm+" model
    follows one piece at a time).

    ``observe`` returns a new state and leaves the old one valid. A state that learns (an STM's
    private trie) shares the trie with the states it came from; when an older one is used again
    (a branch), its trie is rebuilt from the symbols it has seen. An "ltm+" state learns into
    the model itself, so it cannot be branched.
    """

    def __init__(self, *, alphabet_size: int, config: PPMConfig | None = None,
                 mode: str = "ltm") -> None:
        if isinstance(alphabet_size, bool) or not isinstance(alphabet_size, int | np.integer) or alphabet_size < 1:
            raise ValueError(f"alphabet_size must be a positive int; got {alphabet_size!r}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
        if config is None:
            config = PPMConfig.idyom_stm() if mode == "stm" else PPMConfig.idyom_ltm()
        self.alphabet_size = int(alphabet_size)
        self.config = config
        self.mode = mode
        self._opts = config.options(self.alphabet_size)
        self._trie = None if mode == "stm" else _Trie()
        self._open: PPMState | None = None  # an "ltm+" piece not yet closed

    # -- training ----------------------------------------------------------------------------

    @property
    def trainable(self) -> bool:
        """Whether `fit` applies (an STM always starts empty)."""
        return self.mode != "stm"

    @property
    def n_nodes(self) -> int:
        """Number of n-grams stored (0 for an STM, whose tries live in its states)."""
        return 0 if self._trie is None else self._trie.n - 1

    @property
    def nbytes(self) -> int:
        """Memory held by the model's trie, in bytes (it grows by doubling)."""
        return 0 if self._trie is None else self._trie.nodes.nbytes

    def fit(self, sequences: Sequence[Sequence[int]]) -> PPM:
        """Learn every piece (each closed with the sentinel, as IDyOM's `model-dataset`)."""
        if self._trie is None:
            raise ValueError("an STM starts empty for every piece and cannot be trained; "
                             "use mode='ltm' or 'ltm+'")
        self._close_open()
        self._run(sequences, predict=False, learn=True, close=True)
        return self

    def learn(self, sequence: Sequence[int]) -> PPM:
        """Learn one more piece."""
        return self.fit([sequence])

    # -- the SequenceModel interface ---------------------------------------------------------

    def start(self, primer: Sequence[int] = ()) -> PPMState:
        if self.mode == "stm":
            trie = _Trie()
            state = PPMState(trie=trie, chain=np.zeros(16, np.int64), learn=True)
        else:
            self._close_open()
            state = PPMState(trie=self._trie, chain=np.zeros(16, np.int64), learn=self.mode == "ltm+",
                             version=self._trie.version)
            if state.learn:
                self._open = state
        for token in primer:
            state = self.observe(state, token)
        return state

    def predict(self, state: PPMState, allowed: np.ndarray | None = None) -> np.ndarray:
        """The next symbol's distribution; ``allowed`` (A,) bool restricts it to a sub-alphabet
        (the others get probability 0), as IDyOM does for derived viewpoints."""
        state = self._current(state)
        out = np.empty(self.alphabet_size)
        _predict(state.trie.nodes, state.chain, state.length, self._opts, out,
                 np.empty(self.alphabet_size, np.bool_), self._mask(allowed, 1)[0])
        return out

    def observe(self, state: PPMState, token: int) -> PPMState:
        token = int(token)
        if not 0 <= token < self.alphabet_size:
            raise ValueError(f"symbol {token} is outside the alphabet 0..{self.alphabet_size - 1}")
        state = self._current(state)
        chain = state.chain.copy() if state.length + 1 < state.chain.shape[0] else \
            np.concatenate([state.chain, np.zeros_like(state.chain)])
        bound = self._opts[O_BOUND]
        trie = state.trie
        if state.learn:
            trie.nodes, trie.n, length = _learn(trie.nodes, trie.n, chain, state.length, token, bound)
            trie.version += 1
        else:
            length = _advance(trie.nodes, chain, state.length, token, bound)
        new = PPMState(trie=trie, chain=chain, length=length, learn=state.learn,
                       history=(*state.history, token), version=trie.version)
        if state.learn and trie is self._trie:
            self._open = new
        return new

    def _current(self, state: PPMState) -> PPMState:
        """``state`` itself, or, when its trie has learned on without it (it was branched), the
        same state with a trie rebuilt from its history."""
        if not state.learn or state.trie.version == state.version:
            return state
        if state.trie is self._trie:
            raise ValueError("an ltm+ PPM learns every symbol it observes into the model itself; "
                             "its states cannot be branched")
        fresh = PPMState(trie=_Trie(), chain=np.zeros(16, np.int64), learn=True)
        for token in state.history:
            fresh = self.observe(fresh, token)
        return fresh

    def score(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Per-event log2 probabilities (the fast path; equal to start/predict/observe)."""
        p, _, _ = self.predict_pieces(sequences)
        return [np.log2(x) for x in p]

    def distributions(self, sequences: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """The predicted distribution before every event, one (length, A) array per piece."""
        return self.predict_pieces(sequences, distributions=True, entropies=False)[2]

    def predict_pieces(self, sequences: Sequence[Sequence[int]], *, distributions: bool = False,
                       allowed: Sequence[np.ndarray] | None = None, entropies: bool = True,
                       groups: np.ndarray | None = None
                       ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """p(event), entropy (bits; an empty list when not ``entropies``) and, if asked,
        distributions for every event of every piece.

        ``allowed``: per piece, a (length, A) bool array restricting each prediction to a
        sub-alphabet (see `predict`); None for the whole alphabet everywhere.
        ``groups``: (A,) ints in 0..G-1; the distributions come back summed within each group,
        (length, G) per piece (a marginal, without ever holding the (length, A) arrays).
        """
        self._close_open()
        return self._run(sequences, predict=True, learn=self.mode != "ltm", close=self.mode == "ltm+",
                         distributions=distributions, allowed=allowed, entropies=entropies, groups=groups)

    # -- what it learned, as arrays ----------------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Its trie as ``{"trie": (n, 7) int32}``, cut to the rows in use; nothing for an STM,
        whose tries live in each piece's state."""
        if self._trie is None:
            return {}
        self._close_open()
        return {"trie": np.ascontiguousarray(self._trie.nodes[: self._trie.n])}

    def load_arrays(self, arrays: dict[str, np.ndarray]) -> PPM:
        """Take a stored trie, checked (`check_trie`): the kernels do not check bounds."""
        if self._trie is not None:
            nodes = check_trie(arrays["trie"], self.alphabet_size)
            self._trie.nodes, self._trie.n = nodes, len(nodes)
            self._trie.version += 1
        return self

    # -- internals ---------------------------------------------------------------------------

    def _close_open(self) -> None:
        if self._open is not None:
            _close(self._trie.nodes, self._open.chain, self._open.length)
            self._open = None

    def _mask(self, allowed, rows: int) -> np.ndarray:
        """``allowed`` as the kernels' (rows, A) bool array, or (rows or 1, 0) for no mask."""
        if allowed is None:
            return np.zeros((max(rows, 1), 0), np.bool_)
        mask = np.ascontiguousarray(allowed, dtype=np.bool_).reshape(-1, self.alphabet_size)
        if mask.shape[0] != rows:
            raise ValueError(f"allowed has {mask.shape[0]} rows for {rows} events")
        if not mask.any(axis=1).all():
            raise ValueError("allowed must leave at least one symbol for every event")
        return mask

    def _run(self, sequences, *, predict, learn, close, distributions=False, allowed=None, entropies=True,
             groups=None):
        if len(sequences) == 0:
            return [], [], []
        flat, offsets = _flatten(sequences, self.alphabet_size)
        if allowed is not None:
            if len(allowed) != len(sequences):
                raise ValueError(f"allowed has {len(allowed)} pieces for {len(sequences)} sequences")
            allowed = np.concatenate([np.reshape(a, (-1, self.alphabet_size)) for a in allowed])
            mask = self._mask(allowed, flat.shape[0])
        else:
            mask = np.zeros((0, self.alphabet_size), np.bool_)
        size = flat.shape[0] if predict else 0
        p_out, h_out = np.empty(size), np.empty(size if entropies else 0)
        if groups is None:
            groups = np.zeros(0, np.int64)
            dist_out = np.empty((size if distributions else 0, self.alphabet_size))
        else:
            groups = np.asarray(groups, dtype=np.int64)
            if groups.shape != (self.alphabet_size,) or (self.alphabet_size and groups.min() < 0):
                raise ValueError(f"groups must be {self.alphabet_size} ints >= 0, one per symbol")
            dist_out = np.zeros((size if distributions else 0, int(groups.max(initial=-1)) + 1))
        trie = self._trie if self._trie is not None else _Trie(4 * int(np.diff(offsets).max(initial=1)))
        trie.nodes, trie.n = _run(trie.nodes, trie.n, flat, offsets, self._opts, predict, learn,
                                  self.mode == "stm", close, p_out, h_out, dist_out, mask, groups)
        cuts = offsets[1:-1]
        return (np.split(p_out, cuts) if predict else [], np.split(h_out, cuts) if predict and entropies else [],
                np.split(dist_out, cuts) if distributions else [])


class TrieError(ValueError):
    """A stored trie that is not one the kernels can walk safely."""


def check_trie(nodes: np.ndarray, alphabet_size: int) -> np.ndarray:
    """A stored PPM trie (n, 7) int32, checked to be one the kernels can walk safely: rows form
    a trie as `_add_child` builds one — every child pointer points forward (FIRST > row), every
    sibling pointer backward (NEXT < row), and each node but the root is pointed at exactly
    once, so no walk can loop or leave the array."""
    if nodes.dtype != np.int32 or nodes.ndim != 2 or nodes.shape[1] != N_FIELDS or len(nodes) < 1:
        raise TrieError(f"a PPM trie is an (n, {N_FIELDS}) int32 array; got {nodes.shape} {nodes.dtype}")
    n, row = len(nodes), np.arange(len(nodes))
    first, after, sym = nodes[:, FIRST], nodes[:, NEXT], nodes[:, SYM]
    checks = (  # in order: a later check may rely on an earlier one (bincount on valid indices)
        ("child pointers", lambda: ((first == -1) | ((first > row) & (first < n))).all()),
        ("sibling pointers", lambda: ((after == -1) | ((after >= 1) & (after < row))).all() and after[0] == -1),
        ("one parent per node", lambda: np.array_equal(
            np.bincount(np.r_[first[first != -1], after[after != -1]], minlength=n), np.r_[0, np.ones(n - 1, np.int64)])),
        ("symbols", lambda: sym[0] == -1 and ((sym[1:] >= 0) & (sym[1:] < alphabet_size)).all()),
        ("counts", lambda: (nodes[:, [C_FULL, C_UPEX]] >= 0).all()),
        ("child counts", lambda: ((nodes[:, N_KIDS] >= 0) & (nodes[:, N_KIDS] <= alphabet_size)).all()),
        ("end marks", lambda: np.isin(nodes[:, END], (0, 1)).all()),
    )
    for name, ok in checks:
        if not ok():
            raise TrieError(f"the PPM trie is damaged ({name})")
    return np.ascontiguousarray(nodes)
