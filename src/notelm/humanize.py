"""``notelm humanize``: a performed velocity for every note of a MIDI file or a score.

What changes and what does not:

- **MIDI**: the file is read once with symusic in ticks and written back from that same score
  with only the notes' velocities replaced, so timing, pedals and other controllers, tempos,
  tracks, programs and names stay as they were (`tests/test_humanize.py` checks it with
  pretty_midi). The model reads the notes as the training data were: in seconds, the sustain
  pedal folded into note ends (pedal down at CC64 >= 64, symusic's reading), in time order;
  drum tracks keep their velocities (the model knows only piano).
- **Scores** (MusicXML, kern, ABC; `notelm.io.read`): ties joined, timed by the score's tempo
  (120 qpm without one) and written as MIDI in beats. Each tune of a multi-tune file becomes
  its own MIDI file.
- **Folders**: every readable file below, the folder structure kept under the output folder
  (never inside the input folder); files that cannot be read, or whose output exists without
  --force, are skipped and listed with the reason.

Every note gets a velocity: the notes are read in windows of the model's context (128), 64
apart, each note taking its velocity from the window where it has the most context
(`notelm.models.seq2seq.window_plan`; the original drops the notes after the last full window).
Velocities are sampled from the model's distribution, note by note with the decoder's cache
(``temperature`` 1, reproducible with ``seed``), or chosen greedily (``temperature`` 0).

Legend: n notes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from notelm.errors import NotelmError, ReadError
from notelm.io import MIDI_SUFFIXES, SUFFIXES
from notelm.io.files import OutputExistsError, atomic_write_bytes
from notelm.pieces import Piece, PieceMeta, Track


@dataclass(frozen=True)
class Humanized:
    """One written file: where, how many notes got a velocity, and the piece as written."""

    source: Path
    midi: Path
    notes: int
    piece: Piece
    extras: tuple[Path, ...] = ()


# ---- predicting ----------------------------------------------------------------------------------


def predict_velocities(model: Any, encoding: Any, piece: Piece, *, temperature: float = 1.0, seed: int | None = 0,
                       progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Velocities 1..127 (n,) for the notes of ``piece`` in the encoding's order (the piece's
    own order when it is in seconds, sorted, drum-free, as `midi_notes` makes it)."""
    source = encoding.encode(piece)
    if len(source) != len(piece):
        raise NotelmError(f"{piece.meta.id or 'piece'}: {len(piece)} notes but {len(source)} source tokens")
    if progress is not None and hasattr(progress, "total"):
        progress.total = len(source)
    chosen = model.sample_velocities([source], temperature=temperature, seed=seed, progress=progress)[0]
    return np.clip(chosen, 1, 127).astype(np.int64)


# ---- MIDI: read once, write back the same score ----------------------------------------------------


def midi_notes(score: Any, *, piece_id: str = "") -> tuple[Piece, np.ndarray]:
    """The non-drum notes of a symusic score (any time unit) as a Piece in seconds, sorted as a
    Piece sorts them, with pedals; and for each note its (track, index in track) (n, 2)."""
    sec = score.to("second")
    cols, where, pedals, tracks, kept = [], [], [], [], []
    for ti, track in enumerate(sec.tracks):
        if len(track.pedals):
            p = track.pedals.numpy()
            pedals.append(np.stack([p["time"], p["duration"]], axis=1))
        if track.is_drum or not len(track.notes):
            continue
        a = track.notes.numpy()
        cols.append((a, len(tracks)))
        where.append(np.stack([np.full(len(a["pitch"]), ti), np.arange(len(a["pitch"]))], axis=1))
        tracks.append(Track(name=track.name, program=int(track.program), is_drum=False))
        kept.append(ti)
    if not cols:
        return Piece.empty(time_unit="second"), np.zeros((0, 2), dtype=np.int64)
    pitch = np.concatenate([a["pitch"] for a, _ in cols]).astype(np.int64)
    onset = np.concatenate([a["time"] for a, _ in cols]).astype(np.float64)
    duration = np.concatenate([a["duration"] for a, _ in cols]).astype(np.float64)
    velocity = np.concatenate([a["velocity"] for a, _ in cols]).astype(np.int64)
    track = np.concatenate([np.full(len(a["pitch"]), i) for a, i in cols])
    order = np.lexsort((track, pitch, onset))  # the order Piece.__post_init__ keeps
    pedal = np.concatenate(pedals) if pedals else np.zeros((0, 2))
    piece = Piece(pitch=pitch[order], onset=onset[order], duration=duration[order], velocity=velocity[order],
                  track=track[order], time_unit="second", tracks=tuple(tracks),
                  pedals=pedal[np.argsort(pedal[:, 0], kind="stable")], meta=PieceMeta(id=piece_id, title=piece_id))
    assert np.array_equal(piece.onset, onset[order]) and np.array_equal(piece.pitch, pitch[order])
    return piece, np.concatenate(where)[order]


def with_velocities(score: Any, where: np.ndarray, velocities: np.ndarray) -> Any:
    """A copy of the symusic score with note ``where[k]`` given ``velocities[k]``."""
    import symusic

    out = score.copy()
    for ti in np.unique(where[:, 0]):
        track = out.tracks[int(ti)]
        a = track.notes.numpy()
        sel = where[:, 0] == ti
        vel = a["velocity"].astype(np.int64)
        vel[where[sel, 1]] = velocities[sel]
        track.notes = symusic.Note.from_numpy(a["time"], a["duration"], a["pitch"], vel.astype(np.int8))
    return out


def humanize_midi(path: Path, out: Path, model: Any, encoding: Any, *, force: bool = False, **options: Any
                  ) -> list[Humanized]:
    import symusic

    from notelm.io.midi import from_symusic, load_symusic

    score = load_symusic(path, "tick")
    piece, where = midi_notes(score, piece_id=path.stem)
    if not len(piece):
        raise ReadError(path, "no notes to humanize (empty, or drums only)")
    if out.exists() and not force:
        raise OutputExistsError(out)
    velocities = predict_velocities(model, encoding, piece, **options)
    new = with_velocities(score, where, velocities)
    atomic_write_bytes(out, bytes(new.dumps_midi()), force=force)
    played = from_symusic(symusic.Score.from_midi(bytes(new.dumps_midi()), ttype="second"), "second",
                          meta=PieceMeta(id=path.stem, title=path.stem))
    return [Humanized(path, out, len(piece), played)]


# ---- scores ----------------------------------------------------------------------------------------


def humanize_score(path: Path, out: Path, model: Any, encoding: Any, *, force: bool = False, **options: Any
                   ) -> list[Humanized]:
    from notelm.encodings.base import without_drums
    from notelm.io import read, write_midi

    pieces = [without_drums(p.merge_ties()) for p in read(path)]
    pieces = [p for p in pieces if len(p)]
    if not pieces:
        raise ReadError(path, "no notes to humanize")
    outs = [out] if len(pieces) == 1 else [out.with_name(f"{out.stem}-{k + 1}{out.suffix}") for k in range(len(pieces))]
    for o in outs:
        if o.exists() and not force:
            raise OutputExistsError(o)
    done = []
    for piece, o in zip(pieces, outs):
        from notelm.encodings.base import to_seconds

        velocities = predict_velocities(model, encoding, to_seconds(piece), **options)
        written = piece.with_notes(velocity=velocities)
        write_midi(written, o, force=force)
        done.append(Humanized(path, o, len(piece), written))
    return done


# ---- files and folders -----------------------------------------------------------------------------


def humanize_file(path: Path, out: Path, model: Any, encoding: Any, *, wav: bool = False, png: bool = False,
                  force: bool = False, soundfont: Path | None = None, **options: Any) -> list[Humanized]:
    """Humanize one file into MIDI file ``out`` (and ``out`` with .wav / .png beside it)."""
    path = Path(path)
    if not path.is_file():
        raise ReadError(path, "no such file")
    if path.suffix.lower() not in SUFFIXES:
        raise ReadError(path, f"unsupported file type {path.suffix or '(none)'!r}; notelm reads {', '.join(SUFFIXES)}")
    for extra, on in ((".wav", wav), (".png", png)):
        if on and out.with_suffix(extra).exists() and not force:
            raise OutputExistsError(out.with_suffix(extra))
    run = humanize_midi if path.suffix.lower() in MIDI_SUFFIXES else humanize_score
    done = run(path, out, model, encoding, force=force, **options)
    result = []
    for h in done:
        extras = []
        if png:
            from notelm.render import plot_pianoroll

            title = f"{path.name}: humanized velocities (colour: 1 dark .. 127 light)"
            extras.append(plot_pianoroll(h.piece, h.midi.with_suffix(".png"), title=title, force=force,
                                         velocity_bar=True))
        if wav:
            from notelm.render import render_wav

            extras.append(render_wav(h.piece, h.midi.with_suffix(".wav"), soundfont=soundfont, force=force).path)
        result.append(replace(h, extras=tuple(extras)))
    return result


def inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or folder in path.parents


def plan_folder(folder: Path, out: Path) -> list[tuple[Path, Path]]:
    """(input file, output MIDI file) of every supported file below ``folder``, mirrored
    under ``out``; ``out`` may not lie inside ``folder`` (notelm never writes into its input)."""
    if inside(out, folder):
        raise NotelmError(f"{out} is inside the input folder {folder}; choose --out elsewhere "
                          "(notelm never writes into a folder it reads)")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                   and not p.name.startswith("."))
    return [(p, (out / p.relative_to(folder)).with_suffix(".mid")) for p in files]


def humanize_folder(folder: Path, out: Path, model: Any, encoding: Any, *,
                    on_file: Callable[[Path, list[Humanized] | None, str | None], None] | None = None,
                    **options: Any) -> tuple[list[Humanized], list[tuple[Path, str]]]:
    """Humanize every file below ``folder``; returns what was written and the skipped files
    with their reasons (unreadable, no notes, output exists without --force)."""
    done, skipped = [], []
    for path, target in plan_folder(Path(folder), Path(out)):
        try:
            written = humanize_file(path, target, model, encoding, **options)
        except NotelmError as e:
            skipped.append((path, str(e)))
            if on_file:
                on_file(path, None, str(e))
            continue
        done += written
        if on_file:
            on_file(path, written, None)
    return done, skipped


# ---- the entry point behind `notelm humanize` --------------------------------------------------------

DEFAULT_OUT = Path("notelm-runs") / "humanize"


def load_humanizer(spec: str | Path) -> tuple[Any, Any]:
    """The `VelocityModel` and encoding of a velocity run (a directory or ``builtin:NAME``)."""
    import torch

    from notelm.runs import open_run

    run = open_run(spec)
    if run.model_name != "velocity":
        raise NotelmError(f"{spec}: a {run.model_name} run, not a velocity model "
                          "(humanize needs one made by `notelm train velocity`, or builtin:velocity)")
    return run.model(dtype=torch.float32), run.encoding()


def default_out(source: Path) -> Path:
    """notelm-runs/humanize/NAME.mid for a file, notelm-runs/humanize/NAME/ for a folder."""
    return DEFAULT_OUT / (source.name if source.is_dir() else f"{source.stem}.mid")


def humanize(source: str | Path, out: str | Path | None = None, *, model: str | Path = "builtin:velocity",
             wav: bool = False, png: bool = False, seed: int | None = 0, temperature: float = 1.0,
             force: bool = False, soundfont: Path | None = None, progress: Callable[[int, int], None] | None = None,
             on_file: Callable | None = None) -> tuple[list[Humanized], list[tuple[Path, str]]]:
    """Humanize a file or a folder (see the module docstring); returns what was written and,
    for a folder, the files skipped with their reasons. ``progress(done, total)``: notes."""
    source = Path(source)
    if not source.exists():
        raise ReadError(source, "no such file or folder")
    out = Path(out) if out is not None else default_out(source)
    if temperature < 0:
        raise NotelmError(f"--temperature must be >= 0; got {temperature}")
    from notelm.io.files import check_not_inputs, check_output

    if source.is_dir():  # outputs checked before any work
        check_output(out, folder=True)
        plan_folder(source, out)
    else:
        if out.suffix.lower() not in MIDI_SUFFIXES:
            raise NotelmError(f"--out {out}: a MIDI file (.mid) is written for a file")
        check_not_inputs([out, out.with_suffix(".wav"), out.with_suffix(".png")], [source])
        for path, wanted in ((out, True), (out.with_suffix(".wav"), wav), (out.with_suffix(".png"), png)):
            if wanted:
                check_output(path, force=force)
    net, encoding = load_humanizer(model)
    options = {"seed": seed, "temperature": temperature, "force": force, "wav": wav, "png": png, "soundfont": soundfont}
    if source.is_dir():
        return humanize_folder(source, out, net, encoding, on_file=on_file, **options)
    counter = _Counter(progress)
    return humanize_file(source, out, net, encoding, progress=counter, **options), []


class _Counter:
    """Turns the model's ``progress(notes_done_now)`` into ``progress(done, total)``."""

    def __init__(self, progress: Callable[[int, int], None] | None) -> None:
        self.progress, self.done, self.total = progress, 0, None

    def __call__(self, k: int) -> None:
        self.done += k
        if self.progress:
            self.progress(self.done, self.total)
