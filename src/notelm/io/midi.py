"""MIDI in and out through symusic (format 0 and 1, .mid/.midi)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import symusic

from notelm.errors import ReadError
from notelm.io.files import atomic_write_bytes, file_problem
from notelm.pieces import Piece, PieceMeta, TimeUnit, Track

_TTYPE = {"beat": "quarter", "second": "second"}
DEFAULT_TPQ = 480


def check_header(path: Path, data: bytes) -> None:
    """Refuse what symusic would misread without a word: a format-2 file (independent
    sequences, which it plays at once as if format 1) and a header with 0 ticks per quarter
    note (every time would divide by it). A file without an MThd header is left to symusic."""
    if len(data) < 14 or data[:4] != b"MThd":
        return
    fmt, division = int.from_bytes(data[8:10], "big"), int.from_bytes(data[12:14], "big")
    if fmt == 2:
        raise ReadError(path, "a format-2 MIDI file (independent sequences, not one piece); notelm reads "
                              "formats 0 and 1")
    if division == 0:
        raise ReadError(path, "not a valid MIDI file (0 ticks per quarter note in its header)")


def load_symusic(path: str | Path, ttype: str) -> symusic.Score:
    path = Path(path)
    if (problem := file_problem(path)) is not None:
        raise ReadError(path, problem)
    try:
        data = path.read_bytes()  # bytes, not the name: a name that is not UTF-8 is fine too
    except OSError as e:
        raise ReadError(path, f"cannot read it ({e.strerror})") from None
    check_header(path, data)
    try:
        return symusic.Score.from_midi(data, ttype=ttype)
    except Exception as e:  # symusic raises RuntimeError/ValueError/IndexError on corrupt files
        raise ReadError(path, f"not a readable MIDI file ({e})") from None


def from_symusic(score: symusic.Score, time_unit: TimeUnit, *, meta: PieceMeta) -> Piece:
    """Convert a symusic score in quarter or second time into a `Piece`."""
    tracks, columns, pedals = [], [], []
    for tr in score.tracks:
        if not len(tr.notes):
            continue
        cols = tr.notes.numpy()
        columns.append((cols, len(tracks)))
        tracks.append(Track(name=tr.name, program=int(tr.program), is_drum=bool(tr.is_drum)))
        if len(tr.pedals):
            p = tr.pedals.numpy()
            pedals.append(np.stack([p["time"], p["duration"]], axis=1))
    if not columns:
        return Piece.empty(time_unit=time_unit, meta=meta)
    cat = lambda key: np.concatenate([c[key] for c, _ in columns])  # noqa: E731
    track = np.concatenate([np.full(len(c["pitch"]), i) for c, i in columns])
    pedal = np.concatenate(pedals) if pedals else np.zeros((0, 2))
    pedal = pedal[np.argsort(pedal[:, 0], kind="stable")]
    return Piece(
        pitch=cat("pitch"),
        onset=cat("time").astype(np.float64),
        duration=cat("duration").astype(np.float64),
        velocity=cat("velocity"),
        track=track,
        time_unit=time_unit,
        tracks=tuple(tracks),
        pedals=pedal,
        meta=meta,
    )


def read_midi(path: str | Path, time_unit: TimeUnit = "beat", *, piece_id: str | None = None) -> Piece:
    """Read a MIDI file: times in beats (quarter notes) or seconds (for performances).

    Sustain pedal (CC64) intervals are kept in ``piece.pedals``; apply them with
    ``piece.apply_sustain()``.
    """
    score = load_symusic(path, _TTYPE[time_unit])
    tempos = tuple((float(t.time), float(t.qpm)) for t in score.tempos)
    meter = None
    if len(score.time_signatures):
        ts = score.time_signatures[0]
        meter = f"{ts.numerator}/{ts.denominator}"
    meta = PieceMeta(
        id=piece_id or Path(path).stem,
        title=Path(path).stem,
        source=str(path),
        meter=meter,
        tempos=tempos,
        ticks_per_quarter=int(score.ticks_per_quarter),
    )
    return from_symusic(score, time_unit, meta=meta)


def _ticks(piece: Piece, tpq: int) -> tuple[callable, list[tuple[int, float]]]:
    """A function mapping the piece's times to integer ticks, and the tempo map in ticks."""
    tempos = list(piece.meta.tempos) or [(0.0, 120.0)]
    if tempos[0][0] > 0:
        tempos.insert(0, (0.0, tempos[0][1]))
    if piece.time_unit == "beat":
        return (lambda t: np.round(np.asarray(t) * tpq).astype(np.int64)), [
            (round(t * tpq), q) for t, q in tempos
        ]
    # seconds: integrate ticks per second (qpm / 60 * tpq) piecewise over the tempo map
    starts = np.array([t for t, _ in tempos])
    rates = np.array([q / 60.0 * tpq for _, q in tempos])
    at = np.r_[0.0, np.cumsum(np.diff(starts) * rates[:-1])]

    def to_tick(t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        k = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, None)
        return np.round(at[k] + (t - starts[k]) * rates[k]).astype(np.int64)

    return to_tick, [(int(round(a)), q) for a, (_, q) in zip(at, tempos)]


def to_symusic(piece: Piece, *, tpq: int | None = None) -> symusic.Score:
    """The piece as a tick-time symusic score: beats map to quarter notes, seconds go through
    the piece's tempo map (120 qpm when it has none)."""
    tpq = tpq or piece.meta.ticks_per_quarter or DEFAULT_TPQ
    to_tick, tempos = _ticks(piece, tpq)
    score = symusic.Score(tpq)
    for tick, qpm in tempos:
        score.tempos.append(symusic.Tempo(tick, qpm=qpm))
    if piece.meta.meter and "/" in piece.meta.meter:
        num, den = piece.meta.meter.split("/")
        score.time_signatures.append(symusic.TimeSignature(0, int(num), int(den)))
    for i, tr in enumerate(piece.tracks):
        sel = piece.track == i
        start = to_tick(piece.onset[sel])
        end = to_tick(piece.onset[sel] + piece.duration[sel])
        track = symusic.Track(tr.name, tr.program, tr.is_drum)
        track.notes = symusic.Note.from_numpy(
            start.astype(np.int32),
            (end - start).astype(np.int32),
            piece.pitch[sel].astype(np.int8),
            piece.velocity[sel].astype(np.int8),
        )
        if i == 0 and len(piece.pedals):
            down = to_tick(piece.pedals[:, 0])
            up = to_tick(piece.pedals[:, 0] + piece.pedals[:, 1])
            # MIDI stores the pedal as control change 64: down (127) and up (0)
            for d, u in zip(down.tolist(), up.tolist()):
                track.controls.append(symusic.ControlChange(d, 64, 127))
                track.controls.append(symusic.ControlChange(u, 64, 0))
        score.tracks.append(track)
    return score


def write_midi(piece: Piece, path: str | Path, *, force: bool = False, tpq: int | None = None) -> Path:
    """Write the piece as a format-1 MIDI file, atomically; never overwrites unless ``force``."""
    path = Path(path)
    data = to_symusic(piece, tpq=tpq).dumps_midi()
    return atomic_write_bytes(path, bytes(data), force=force)
