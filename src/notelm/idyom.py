"""``notelm idyom``: IDyOM's models of melodic pitch on a corpus, cross-validated, as one call.

`run_idyom` predicts the pitch of every note of a corpus's melodies with an STM, LTM, LTM+,
BOTH or BOTH+ multiple-viewpoint system (models/mvs.py) and returns the per-event results;
the LTM is evaluated by k-fold cross-validation (piece i in fold i mod k), an STM alone needs
no training. `smoothing` resolves the command line's smoothing options the way IDyOM does:
an option not given takes IDyOM's default for that kind of model. `generate_melodies`
samples new melodies from a model trained on the whole corpus and writes them as MIDI.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from notelm.corpora import Corpus
from notelm.errors import NotelmError
from notelm.evaluation import Evaluation, cross_validate, evaluate, fold_of
from notelm.models.combine import CombineConfig
from notelm.models.mvs import KINDS, MultipleViewpointModel
from notelm.models.ppm import ESCAPES, PPMConfig
from notelm.pieces import Piece
from notelm.viewpoints import TICKS_PER_BEAT, Alphabets, Melody, ViewpointCoder, parse_viewpoints


class IdyomSettingsError(NotelmError, ValueError):
    """A setting of an IDyOM run that cannot be used."""


MAX_ORDER_BOUND = 2**31 - 1  # the PPM kernels count in machine integers; a bound past every piece is 'none'


def parse_order_bound(text: str | int | None) -> int | None:
    """``"none"`` (or None) -> unbounded PPM*; else an int from 0 to MAX_ORDER_BOUND."""
    if text is None or (isinstance(text, str) and text.strip().lower() in ("none", "unbounded")):
        return None
    try:
        bound = int(text)
    except (TypeError, ValueError):
        bound = -1
    if bound < 0 or isinstance(text, bool):
        raise IdyomSettingsError(f"order bound must be an integer >= 0 or 'none'; got {text!r}")
    if bound > MAX_ORDER_BOUND:
        raise IdyomSettingsError(f"order bound must be an integer >= 0 or 'none', at most {MAX_ORDER_BOUND:,} "
                                 f"(a bound longer than every piece is 'none'); got {text!r}")
    return bound


def smoothing(*, escape: str | None = None, order_bound: str | int | None = None,
              interpolated: bool | None = None, update_exclusion: bool | None = None,
              stm_escape: str | None = None, stm_order_bound: str | int | None = None,
              stm_interpolated: bool | None = None, stm_update_exclusion: bool | None = None
              ) -> tuple[PPMConfig, PPMConfig]:
    """(LTM, STM) configs from the command line's options; None means "not given".

    Plain options set both models, ``stm_*`` options override them for the STM, and what is
    not given takes IDyOM's default for that model (`mvs/params.lisp`; LTM: C, unbounded,
    interpolated, no update exclusion; STM: AX, unbounded, interpolated, update exclusion).
    An order bound is an int >= 0 or "none" (unbounded, PPM*).
    """
    def resolve(default: PPMConfig, esc, bound, interp, upex) -> PPMConfig:
        esc = default.escape if esc is None else str(esc).lower()
        if esc not in ESCAPES:
            raise IdyomSettingsError(f"escape must be one of {', '.join(ESCAPES)}; got {esc!r}")
        return PPMConfig(escape=esc,
                         order_bound=default.order_bound if bound is None else parse_order_bound(bound),
                         interpolated=default.interpolated if interp is None else bool(interp),
                         update_exclusion=default.update_exclusion if upex is None else bool(upex))

    def stm_first(stm_value, value):
        return value if stm_value is None else stm_value

    ltm = resolve(PPMConfig.idyom_ltm(), escape, order_bound, interpolated, update_exclusion)
    stm = resolve(PPMConfig.idyom_stm(), stm_first(stm_escape, escape), stm_first(stm_order_bound, order_bound),
                  stm_first(stm_interpolated, interpolated), stm_first(stm_update_exclusion, update_exclusion))
    return ltm, stm


def check_kind(models: str) -> str:
    if models not in KINDS:
        raise IdyomSettingsError(f"models must be one of {', '.join(KINDS)}; got {models!r}")
    return models


def combine_config(method: str, bias: float, what: str = "") -> CombineConfig:
    """The combination of a run; a bias that is not a finite number >= 0 is refused (an
    infinite one would make every weight equal without a word)."""
    try:
        bias = float(bias)
    except (TypeError, ValueError):
        raise IdyomSettingsError(f"{what}bias must be a number >= 0; got {bias!r}") from None
    if not math.isfinite(bias):
        raise IdyomSettingsError(f"{what}bias must be a finite number >= 0; got {bias!r}")
    try:
        return CombineConfig(method=str(method).lower(), bias=bias)
    except (TypeError, ValueError) as e:
        raise IdyomSettingsError(f"{what}{e}") from None


def check_counts(*, models: str, folds: int, generate: int = 0) -> None:
    """The counts of a run, checked before the corpus is read: folds for LTM kinds (whether
    there are that many pieces is known only then) and the number of melodies to generate."""
    if models != "stm" and (isinstance(folds, bool) or not isinstance(folds, int) or folds < 2):
        raise IdyomSettingsError(f"--folds: k must be an int between 2 and the number of pieces; got {folds!r}")
    if isinstance(generate, bool) or not isinstance(generate, int) or generate < 0:
        raise IdyomSettingsError(f"--generate must be an int >= 0; got {generate!r}")


@dataclass
class IdyomResult:
    """Per-event results of a run, its settings, and the modelling time (training + prediction)."""

    evaluation: Evaluation
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        ev = self.evaluation
        events = int(sum(len(s) for s in ev.symbols))
        return {"mean_ic_per_piece": ev.mean_ic(), "mean_ic_per_event": ev.mean_ic_per_event(),
                "mean_entropy": ev.mean_entropy(), "events": events, "pieces": len(ev.piece),
                "seconds": self.seconds, "events_per_second": events / self.seconds if self.seconds else None,
                **self.settings}


def _melodies(corpus: Corpus | Sequence[Piece]) -> tuple[str, list[Piece], int]:
    """The corpus's name, its melodic lines, and how many pieces were left out: a piece whose
    line is empty (a file of drums only) has no pitch to predict. A corpus left with no
    melody is an error."""
    name, pieces = (corpus.name, corpus.pieces) if isinstance(corpus, Corpus) else ("pieces", list(corpus))
    melodies = [m for m in (p.melody() for p in pieces) if len(m)]
    if not melodies:
        raise IdyomSettingsError(f"{name}: no piece has a melody to model "
                                 f"({len(pieces)} pieces, none with a note outside the drum tracks)")
    return name, melodies, len(pieces) - len(melodies)


def build_system(melodies: Sequence[Piece], viewpoints: str | Sequence[str]) -> tuple[list[Melody], list[ViewpointCoder]]:
    """The corpus as `Melody`s over its alphabets, and a coder per viewpoint."""
    parsed = parse_viewpoints(viewpoints)
    alphabets = Alphabets.from_melodies(melodies)
    return [alphabets.melody(m) for m in melodies], [ViewpointCoder(p, alphabets) for p in parsed]


def _warm_up() -> None:
    """Load numba's compiled PPM kernels (a few tenths of a second on a process's first call),
    so that the timed modelling is modelling, as in bench/bench_ppm.py."""
    from notelm.models.ppm import PPM

    PPM(alphabet_size=2, mode="stm").predict_pieces([[0, 1]], distributions=True, allowed=[[[True, True]] * 2],
                                                    groups=np.zeros(2, np.int64))


def run_idyom(corpus: Corpus | Sequence[Piece], *, models: str = "both+", ltm_config: PPMConfig | None = None,
              stm_config: PPMConfig | None = None, combine: str = "geometric", bias: float = 7.0,
              viewpoints: str | Sequence[str] = ("cpitch",), viewpoint_combine: str | None = None,
              viewpoint_bias: float = 2.0, folds: int = 10, output: str | Path | None = None,
              force: bool = False) -> IdyomResult:
    """Predict every note's pitch in ``corpus`` with IDyOM's ``models`` (stm, ltm, ltm+, both,
    both+); LTM kinds by ``folds``-fold cross-validation. ``combine``/``bias``: LTM with STM;
    ``viewpoint_combine`` (default: ``combine``)/``viewpoint_bias``: across viewpoints.
    ``output``: write the per-event table as CSV there (refusing to overwrite unless ``force``).
    """
    check_kind(models)
    ltm_config = ltm_config or PPMConfig.idyom_ltm()
    stm_config = stm_config or PPMConfig.idyom_stm()
    both = combine_config(combine, bias)
    across = combine_config(viewpoint_combine or combine, viewpoint_bias, "viewpoint combination: ")
    if output is not None:
        from notelm.io.files import check_output

        check_output(output, force=force)  # before the work, not after it
    name, pieces, left_out = _melodies(corpus)
    if models != "stm":
        try:
            fold_of(len(pieces), folds)
        except ValueError as e:
            raise IdyomSettingsError(f"--folds: {e}") from None
    _warm_up()
    started = time.perf_counter()
    melodies, coders = build_system(pieces, viewpoints)

    def build(train: list[Melody]) -> MultipleViewpointModel:
        model = MultipleViewpointModel(coders=coders, kind=models, ltm=ltm_config, stm=stm_config,
                                       combine=both, viewpoint_combine=across)
        return model.fit(train) if model.trainable else model

    if models == "stm":
        evaluation = evaluate(build([]), melodies)
    else:
        evaluation = cross_validate(build, melodies, k=folds)
    seconds = time.perf_counter() - started
    evaluation = replace(evaluation, columns={
        "piece_id": [np.full(len(m), p.meta.id or f"#{i}", dtype=object) for i, (m, p) in enumerate(zip(melodies, pieces))],
        "pitch": [m.pitch for m in melodies], "onset": [m.onset / TICKS_PER_BEAT for m in melodies]})
    settings = {"corpus": name, "models": models, "viewpoints": [c.name for c in coders],
                "folds": None if models == "stm" else folds,
                "ltm": ltm_config.to_dict() if models != "stm" else None,
                "stm": stm_config.to_dict() if models in ("stm", "both", "both+") else None,
                "combine": both.to_dict() if models in ("both", "both+") else None,
                "viewpoint_combine": across.to_dict() if len(coders) > 1 else None,
                "skipped": {"no melody (drum tracks only)": left_out} if left_out else {}}
    if output is not None:
        evaluation.write_csv(output, force=force)
    return IdyomResult(evaluation=evaluation, seconds=seconds, settings=settings)


def melody_paths(out_dir: str | Path, *, name: str, models: str, n: int, force: bool) -> list[Path]:
    """The files `generate_melodies` writes, checked (`notelm.io.files.check_output`): the
    folder can take them, and none exists unless ``force``."""
    from notelm.io.files import check_output

    out_dir = check_output(out_dir, folder=True)
    return [check_output(out_dir / f"{name}-{models}-{i:03d}.mid", force=force, probe=False) for i in range(n)]


def generate_melodies(corpus: Corpus | Sequence[Piece], out_dir: str | Path, *, n: int,
                      length: int | None = None, models: str = "both+",
                      ltm_config: PPMConfig | None = None, stm_config: PPMConfig | None = None,
                      combine: str = "geometric", bias: float = 7.0,
                      viewpoints: str | Sequence[str] = ("cpitch",), viewpoint_combine: str | None = None,
                      viewpoint_bias: float = 2.0, temperature: float = 1.0, top_k: int | None = None,
                      top_p: float | None = None, seed: int | None = None, force: bool = False) -> list[Path]:
    """Sample ``n`` melodies from IDyOM ``models`` trained on the whole corpus; write them as MIDI.

    Durations come from a ``dur`` model of the same kind (a PPM over the corpus's durations,
    LTM and/or STM combined alike), sampled first; pitches are then sampled note by note
    from the multiple-viewpoint model, which reads those durations where a viewpoint is
    linked with dur or ioi. Notes follow each other without rests. ``length``: notes per
    melody (default: the corpus's median). Files: ``<corpus>-<models>-<i>.mid``.
    """
    from notelm.generation import check_settings
    from notelm.io.files import removed_on_failure
    from notelm.models.combine import Combined
    from notelm.models.ppm import PPM

    check_kind(models)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise IdyomSettingsError(f"the number of melodies to generate must be an int >= 1; got {n!r}")
    check_settings(length=length, temperature=temperature, top_k=top_k, top_p=top_p, seed=seed)
    name, pieces, _ = _melodies(corpus)
    melodies, coders = build_system(pieces, viewpoints)
    length = int(np.median([len(m) for m in melodies])) if length is None else length
    paths = melody_paths(out_dir, name=name, models=models, n=n, force=force)
    ltm_config, stm_config = ltm_config or PPMConfig.idyom_ltm(), stm_config or PPMConfig.idyom_stm()
    both = combine_config(combine, bias)
    pitch_model = MultipleViewpointModel(
        coders=coders, kind=models, ltm=ltm_config, stm=stm_config, combine=both,
        viewpoint_combine=combine_config(viewpoint_combine or combine, viewpoint_bias, "viewpoint combination: "))
    alphabets = coders[0].alphabets
    durations = [np.searchsorted(alphabets.dur, m.dur) for m in melodies]
    parts = {}
    if models != "stm":
        mode = "ltm+" if models in ("ltm+", "both+") else "ltm"
        parts["ltm"] = PPM(alphabet_size=len(alphabets.dur), config=ltm_config, mode=mode).fit(durations)
        pitch_model.fit(melodies)
    if models in ("stm", "both", "both+"):
        parts["stm"] = PPM(alphabet_size=len(alphabets.dur), config=stm_config, mode="stm")
    dur_model = Combined(parts, config=both)
    rng = np.random.default_rng(seed)
    filters = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
    with removed_on_failure(paths):
        for path in paths:
            _write_melody(path, dur_model, pitch_model, alphabets, coders, length=length, rng=rng,
                          filters=filters, title=f"notelm idyom {models} on {name}", force=force)
    return paths


def _write_melody(path: Path, dur_model, pitch_model, alphabets, coders, *, length: int, rng, filters: dict,
                  title: str, force: bool) -> None:
    """One sampled melody: durations first, then pitches note by note, as MIDI."""
    from notelm.generation import melody_piece, sample
    from notelm.io import write_midi

    dur = alphabets.dur[sample(dur_model, length=length, seed=rng, **filters)]
    onset = np.r_[0, np.cumsum(dur)[:-1]]
    timing = Melody(ids=np.zeros(length, np.int64), pitch=np.zeros(length, np.int64), onset=onset, dur=dur)
    ids = sample(pitch_model, length=length, seed=rng, state=pitch_model.start(timing=timing), **filters)
    piece = melody_piece(alphabets.pitch[ids], dur / TICKS_PER_BEAT, piece_id=path.stem,
                         title=f"{title}, {', '.join(c.name for c in coders)}")
    write_midi(piece, path, force=force)


def check_generate_outputs(corpus_name: str, out_dir: str | Path, *, models: str, n: int, force: bool) -> None:
    """`melody_paths` for a corpus known by name only (before it is read)."""
    if n:
        melody_paths(out_dir, name=corpus_name, models=models, n=n, force=force)
