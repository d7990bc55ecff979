"""Piano continuation (``notelm continue``): a stretch of a MIDI file, continued by any model
trained on the ``performance`` encoding, and the statistics that tell a continuation that
loops on one note from one that plays like a pianist.

- The primer is the stretch of the file you name — by default its first 10 s — never a random
  window (the seed took 1,024 tokens from a random place, REFERENCE §5). Notes that start in
  ``[start, end)`` are kept; the sustain pedal is folded into note ends first when the
  encoding does so; a note still sounding at ``end`` is cut there (note-seq's
  ``extract_subsequence`` does the same). Times count from ``start``.
- The model reads the primer's events, then time shifts up to the primer's end (so a primer
  that ends in silence ends in silence), and samples until the continuation reaches the
  seconds asked for (or for a number of tokens), only events the encoding can write
  (`PerformanceRules`: no re-strike of a key that is down, no release of one that is up;
  ``rules=False`` samples whatever the model gives). The output holds the primer's notes exactly
  as read (times and velocities unquantised), then the sampled notes from the primer's end.
- `repetition_stats` (notes in onset order, chords by pitch): the share of notes that repeat
  the previous note's pitch, the longest run of one pitch, the pitch-class entropy in bits,
  notes per second, mean velocity and its standard deviation.

Legend: v vocabulary, n notes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from notelm.encodings.vocab import EOS_ID
from notelm.errors import NotelmError
from notelm.models.base import SequenceModel
from notelm.pieces import Piece, PieceMeta, Track

PRIMER_SECONDS = 10.0
# Sampling defaults, chosen on the validation primers of the repetition table of
# bench/bench_perceiver_ar.py (README) and checked on the test primers: the setting whose
# statistics come closest to the real continuations'. Every truncation tried made one-note runs
# longer (top-p 0.95 doubled them, the seed's 0.7 / 0.9 gave runs of 92 notes); the encoding's
# rules (no re-strike of a key that is down) cut repeats by a third; the compounding repeat
# penalty 32 brings repeated notes down to the pianist's rate (test: 1.3% against 1.5%) with
# every other statistic within 15%.
TEMPERATURE, TOP_P, TOP_K = 1.0, None, None
RULES = True
REPEAT_PENALTY = 32.0


class ContinueError(NotelmError, ValueError):
    """A primer or a run that cannot be continued (empty, too short, another encoding)."""


def sampling_penalty(rules: bool, repeat_penalty: float | None) -> float:
    """The repeat penalty a continuation samples with: ``REPEAT_PENALTY`` with the rules when none
    is given, 1 without them (the penalty works through the rules)."""
    if repeat_penalty is None:
        return REPEAT_PENALTY if rules else 1.0
    if repeat_penalty != 1 and not rules:
        raise ContinueError("--repeat-penalty works through the encoding's rules; drop --no-rules")
    return repeat_penalty


@dataclass(frozen=True)
class Continuation:
    """``piece``: the primer then the continuation (seconds from the primer's start);
    ``primer`` and ``continuation`` apart, each from its own start; the token counts, and
    how fast sampling went."""

    piece: Piece
    primer: Piece
    continuation: Piece
    primer_seconds: float
    primer_tokens: int
    tokens: int
    sampling_seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.sampling_seconds, 1e-9)


# ---- the primer ---------------------------------------------------------------------------------


def primer_stretch(piece: Piece, start: float, end: float, *, sustain: bool = True, steps_per_second: int = 100,
                   name: str = "primer") -> Piece:
    """The notes of ``piece`` (seconds) that start in [start, end), cut at ``end``, times from
    ``start``; the pedal folded into note ends first when ``sustain``. A note is in if its
    onset on the encoding's grid (``steps_per_second``) is, so that none of the primer's
    notes lands on the continuation's first step. Raises `ContinueError` for a stretch
    outside the piece or without notes."""
    if not 0 <= start < end:
        raise ContinueError(f"the primer must start at 0 s or later and end after it starts; got {start:g}-{end:g} s")
    piece = piece.apply_sustain() if sustain else piece
    drums = np.array([t.is_drum for t in piece.tracks], dtype=bool)[piece.track] if len(piece) else np.zeros(0, bool)
    piece = piece.with_notes(~drums)
    if not len(piece):
        raise ContinueError(f"{name}: no notes to continue")
    if piece.end < end:
        raise ContinueError(f"{name}: {piece.end:.1f} s of music, shorter than the primer asked for "
                            f"({start:g}-{end:g} s); ask for less with --primer-seconds or --to")
    step = np.round((piece.onset - start) * steps_per_second)
    keep = (piece.onset >= start) & (step < round((end - start) * steps_per_second))
    if not keep.any():
        raise ContinueError(f"{name}: no notes start between {start:g} s and {end:g} s")
    notes = piece.with_notes(keep)
    onset = notes.onset - start
    duration = np.minimum(notes.onset + notes.duration, end) - notes.onset
    return Piece(pitch=notes.pitch, onset=onset, duration=duration, velocity=notes.velocity, time_unit="second",
                 meta=PieceMeta(id=f"{piece.meta.id}-primer", title=piece.meta.title, source=piece.meta.source))


def performance_encoding(encoding: Any, where: str) -> Any:
    """``encoding`` if it is the performance encoding; else a `ContinueError` naming ``where``."""
    from notelm.encodings.performance import PerformanceEncoding

    if not isinstance(encoding, PerformanceEncoding):
        name = getattr(encoding, "name", type(encoding).__name__)
        raise ContinueError(f"{where}: a {name}-encoded run; notelm continue needs a run trained with "
                            f"--encoding performance (e.g. builtin:perceiver-ar)")
    return encoding


def shift_steps(encoding: Any) -> np.ndarray:
    """(v,) time steps each token advances (its shift for a time-shift event, else 0)."""
    vocab = encoding.vocab
    steps = np.zeros(len(vocab), dtype=np.int64)
    for k in range(1, encoding.config.max_shift_steps + 1):
        steps[vocab.id(f"shift-{k}")] = k
    return steps


def primer_ids(encoding: Any, primer: Piece, seconds: float) -> list[int]:
    """The primer's events, then time shifts up to ``seconds`` (its length) on the grid."""
    ids = [int(t) for t in encoding.encode(primer)]
    steps = shift_steps(encoding)
    rest = round(seconds * encoding.config.steps_per_second) - int(steps[ids].sum())
    m = encoding.config.max_shift_steps
    while rest > 0:
        k = min(rest, m)
        ids.append(encoding.vocab.id(f"shift-{k}"))
        rest -= k
    return ids


# ---- continuing ---------------------------------------------------------------------------------


def continue_primer(model: SequenceModel, encoding: Any, primer: Piece, primer_seconds: float, *,
                    seconds: float | None = None, tokens: int | None = None, temperature: float = TEMPERATURE,
                    top_k: int | None = TOP_K, top_p: float | None = TOP_P, seed: int | None = None,
                    continuation_only: bool = False, progress: Callable[[int, float], None] | None = None,
                    max_tokens_per_second: int = 400, rules: bool = RULES,
                    repeat_penalty: float | None = None) -> Continuation:
    """Continue ``primer`` (a `primer_stretch`, ``primer_seconds`` long) with ``model`` for
    ``seconds`` of music (default 20) or ``tokens`` tokens. ``progress(tokens, seconds)`` after
    each token. ``rules``: sample only events the encoding can write (`PerformanceRules`);
    ``repeat_penalty``: with the rules, how much less likely a repeated note is
    (`PerformanceRules`; default `REPEAT_PENALTY` with the rules, 1: as the model says).
    A continuation in seconds stops at ``max_tokens_per_second`` times as many tokens (a model
    that never moves time on)."""
    from notelm.generation import check_settings, sample

    if seconds is not None and tokens is not None:
        raise ContinueError("give the continuation's length in seconds or in tokens, not both")
    seconds = 20.0 if seconds is None and tokens is None else seconds
    if seconds is not None and not (isinstance(seconds, int | float) and seconds > 0):
        raise ContinueError(f"--seconds must be > 0; got {seconds!r}")
    check_settings(length=tokens, temperature=temperature, top_k=top_k, top_p=top_p)
    repeat_penalty = sampling_penalty(rules, repeat_penalty)
    sps = encoding.config.steps_per_second
    prime = primer_ids(encoding, primer, primer_seconds)
    sampling_rules = encoding.rules(prime, repeat_penalty=repeat_penalty) if rules else None
    steps = shift_steps(encoding)
    goal = math.inf if seconds is None else round(seconds * sps)
    elapsed = [0]

    def until(token: int) -> bool:
        elapsed[0] += int(steps[token])
        return elapsed[0] >= goal

    def step(n: int) -> None:
        if progress is not None:
            progress(n, elapsed[0] / sps)

    length = tokens if tokens is not None else math.ceil(seconds * max_tokens_per_second)
    state = model.start(prime)
    t0 = time.perf_counter()
    sampled = sample(model, length=length, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed,
                     state=state, stop=(EOS_ID,), until=until, progress=step,
                     rules=sampling_rules)
    took = time.perf_counter() - t0
    ids = np.asarray(prime + [t for t in sampled if t != EOS_ID], dtype=np.int64)
    decoded = encoding.decode(ids)
    offset = int(steps[prime].sum()) / sps  # the primer's length on the grid
    keep = decoded.onset >= offset - 0.5 / sps  # the primer's notes all start before (primer_stretch)
    if seconds is not None:
        keep &= decoded.onset < offset + seconds
    cont = decoded.with_notes(keep)
    cont = Piece(pitch=cont.pitch, onset=cont.onset - offset, duration=cont.duration, velocity=cont.velocity,
                 time_unit="second", meta=PieceMeta(id=f"{primer.meta.id}-continuation"))
    parts = [(cont, 0.0)] if continuation_only else [(primer, 0.0), (cont, primer_seconds)]
    piece = Piece(pitch=np.concatenate([p.pitch for p, _ in parts]),
                  onset=np.concatenate([p.onset + at for p, at in parts]),
                  duration=np.concatenate([p.duration for p, _ in parts]),
                  velocity=np.concatenate([p.velocity for p, _ in parts]), time_unit="second",
                  tracks=(Track(name="piano"),),
                  meta=PieceMeta(id=primer.meta.id.removesuffix("-primer") + "-continued", title=primer.meta.title))
    return Continuation(piece=piece, primer=primer, continuation=cont, primer_seconds=primer_seconds,
                        primer_tokens=len(prime), tokens=len(sampled), sampling_seconds=took)


def primer_span(primer_seconds: float | None, start: float | None, end: float | None) -> tuple[float, float]:
    """(start, end) of the primer from --primer-seconds / --from / --to."""
    if primer_seconds is not None and end is not None:
        raise ContinueError("give --primer-seconds or --to, not both")
    start = 0.0 if start is None else float(start)
    if end is None:
        length = PRIMER_SECONDS if primer_seconds is None else float(primer_seconds)
        if not length > 0:
            raise ContinueError(f"--primer-seconds must be > 0; got {primer_seconds!r}")
        end = start + length
    return start, float(end)


def continue_file(path: str | Path, run: str | Path = "builtin:perceiver-ar", *, primer_seconds: float | None = None,
                  start: float | None = None, end: float | None = None, model_options: dict | None = None,
                  **options: Any) -> Continuation:
    """Continue the stretch [start, end) of MIDI file ``path`` (default its first 10 s) with the
    model of ``run`` (a run directory or ``builtin:NAME``); ``options`` as `continue_primer`'s."""
    from notelm.io.midi import read_midi
    from notelm.runs import open_run

    lo, hi = primer_span(primer_seconds, start, end)
    r = open_run(run)
    encoding = performance_encoding(r.encoding(), str(run))
    piece = read_midi(path, "second")
    primer = primer_stretch(piece, lo, hi, sustain=encoding.config.sustain,
                            steps_per_second=encoding.config.steps_per_second, name=str(path))
    if r.counting:
        model = r.model(**(model_options or {}))
    else:
        import torch  # only now: a bad primer is refused without loading it

        model = r.model(**{"dtype": torch.float32, **(model_options or {})})
    return continue_primer(model, encoding, primer, hi - lo, **options)


# ---- how repetitive -----------------------------------------------------------------------------


def repetition_stats(piece: Piece, seconds: float) -> dict[str, float]:
    """Statistics of the notes of ``piece`` over ``seconds`` of music (module docstring)."""
    order = np.lexsort((piece.pitch, piece.onset))
    pitch = piece.pitch[order].astype(np.int64)
    velocity = piece.velocity[order].astype(np.float64)
    n = len(pitch)
    same = pitch[1:] == pitch[:-1]
    run, longest = 1, int(n > 0)
    for s in same:
        run = run + 1 if s else 1
        longest = max(longest, run)
    pc = np.bincount(pitch % 12, minlength=12) / max(n, 1)
    entropy = float(-(pc[pc > 0] * np.log2(pc[pc > 0])).sum())
    return {"notes": n, "repeat_share": float(same.mean()) if n > 1 else 0.0, "longest_run": longest,
            "pitch_class_entropy": entropy, "notes_per_s": n / seconds,
            "mean_velocity": float(velocity.mean()) if n else 0.0, "velocity_sd": float(velocity.std()) if n else 0.0}
