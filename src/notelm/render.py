"""Music out the other end: audio (WAV) through a General MIDI SoundFont, and piano-roll
pictures (PNG) with matplotlib.

The SoundFont is found offline, never downloaded. Search order: the ``soundfont`` argument
(``--soundfont``), the ``NOTELM_SOUNDFONT`` variable, the General MIDI SoundFont that the
``pretty_midi`` package ships (TimGM6mb.sf2), then the usual system folders (Debian's
``fluid-soundfont-gm``, ``timgm6mb-soundfont``, ``musescore-general-soundfont`` packages).

The notes are played through it by TinySoundFont (the ``tinysoundfont`` wheel, which bundles
the C library; scripts/setup.sh installs it). symusic's own ``Synthesizer`` is not used:
in symusic 0.6.0 ``Synthesizer.render`` cannot hand its audio back to Python (TypeError
"Unable to convert function return value to a Python type! ... -> Eigen::Array<float, ...>",
for tick, quarter and second scores alike), and its ``BuiltInSF3`` fonts are downloaded.
Where no SoundFont is found (and none was named) or tinysoundfont is missing, `render_wav`
falls back to a plain additive synthesizer (a few harmonics with a decaying envelope) and
says so in its result.

Legend: n notes, c channels, s samples.
"""

from __future__ import annotations

import importlib.util
import io
import os
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from notelm.errors import NotelmError
from notelm.io.files import atomic_write_bytes
from notelm.pieces import Piece

SYSTEM_SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf3/MuseScore_General.sf3",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)


class SoundFontNotFoundError(NotelmError):
    """No General MIDI SoundFont on this machine, and notelm never downloads one."""


def find_soundfont(explicit: str | Path | None = None) -> Path:
    """The SoundFont to synthesise with (see the module docstring for the search order)."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise SoundFontNotFoundError(f"{path}: no such SoundFont file")
        return path
    candidates = []
    if os.environ.get("NOTELM_SOUNDFONT"):
        candidates.append(Path(os.environ["NOTELM_SOUNDFONT"]))
    spec = importlib.util.find_spec("pretty_midi")
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "TimGM6mb.sf2" for p in spec.submodule_search_locations]
    candidates += [Path(p) for p in SYSTEM_SOUNDFONTS]
    for path in candidates:
        if path.is_file():
            return path
    raise SoundFontNotFoundError(
        "no General MIDI SoundFont found; pass --soundfont PATH (an .sf2/.sf3 file), set NOTELM_SOUNDFONT, "
        "or install one offline: `pip install pretty_midi` ships TimGM6mb.sf2 (notelm never downloads one)")


@dataclass(frozen=True)
class Rendered:
    """What `render_wav` wrote: the file, its length, and how it was synthesised."""

    path: Path
    seconds: float
    synthesizer: str  # "SoundFont <name> (tinysoundfont)" or "additive synthesizer (<why>)"


def _wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """16-bit PCM WAV of float audio (c, s) in [-1, 1] (peak-normalised if louder)."""
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak > 1.0:
        audio = audio / peak
    pcm = np.round(np.clip(audio, -1, 1) * 32767).astype("<i2").T.copy()  # (s, c) interleaved
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(audio.shape[0])
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def _playable(piece: Piece) -> Piece:
    """The piece as it sounds: ties joined, in seconds, the sustain pedal folded into note ends."""
    from notelm.encodings.base import to_seconds

    return to_seconds(piece.merge_ties()).apply_sustain()


def additive_synth(piece: Piece, sample_rate: int) -> np.ndarray:
    """A plain synthesizer for when no SoundFont synthesizer works: each note a few
    harmonics with a percussive envelope, mono (1, s)."""
    p = _playable(piece)
    total = int((p.end + 0.5) * sample_rate) + 1
    out = np.zeros(total)
    for pitch, onset, dur, vel in zip(p.pitch, p.onset, p.duration, p.velocity):
        n = int(max(dur, 0.05) * sample_rate) + int(0.1 * sample_rate)
        t = np.arange(n) / sample_rate
        f = 440.0 * 2 ** ((int(pitch) - 69) / 12)
        tone = sum(np.sin(2 * np.pi * f * k * t) / k**1.5 for k in (1, 2, 3, 4))
        env = np.exp(-3.0 * t) * np.minimum(1.0, t / 0.005) * np.clip((dur + 0.1 - t) / 0.1, 0, 1)
        start = int(onset * sample_rate)
        seg = out[start: start + n]
        seg += 0.2 * (vel / 127) * (tone * env)[: len(seg)]
    return out[None, :]


MELODIC_CHANNELS = tuple(c for c in range(16) if c != 9)  # MIDI channel 10 (index 9) is drums


def soundfont_synth(piece: Piece, soundfont: str | Path, sample_rate: int, *,
                    max_tail: float = 2.0, peak: float = 0.9) -> np.ndarray:
    """The piece played through ``soundfont`` by TinySoundFont: stereo float audio (2, s),
    peak-normalised to ``peak``, ending when the last note's release has died away (at most
    ``max_tail`` seconds after the last note ends).

    Each track gets a MIDI channel and its General MIDI program (drum tracks: channel 10, the
    drum kit); a program the SoundFont lacks falls back to preset 0 (piano or standard kit).
    Notes are started and stopped at their exact sample; at one instant note-offs go first,
    so a repeated pitch is struck again."""
    import tinysoundfont

    p = _playable(piece)
    synth = tinysoundfont.Synth(samplerate=sample_rate)
    try:
        sfid = synth.sfload(str(soundfont))
    except RuntimeError as e:
        raise NotelmError(f"{soundfont}: not a SoundFont that can be played ({e})") from None
    channel = np.zeros(max(len(p.tracks), 1), dtype=np.int64)
    for i, tr in enumerate(p.tracks):
        channel[i] = 9 if tr.is_drum else MELODIC_CHANNELS[i % len(MELODIC_CHANNELS)]
        for program in (tr.program, 0):
            try:
                synth.program_select(int(channel[i]), sfid, 0, int(program), is_drums=tr.is_drum)
                break
            except RuntimeError:
                continue

    start = np.round(p.onset * sample_rate).astype(np.int64)
    stop = np.maximum(np.round((p.onset + p.duration) * sample_rate).astype(np.int64), start + 1)
    last = int(stop.max()) if len(p) else 0
    total = last + int(max_tail * sample_rate) + 1
    # events (sample, is_on, channel, key, velocity), offs before ons at the same sample
    n = len(p)
    at = np.r_[stop, start]
    on = np.r_[np.zeros(n, np.int64), np.ones(n, np.int64)]
    chan = np.r_[channel[p.track], channel[p.track]]
    key = np.r_[p.pitch, p.pitch].astype(np.int64)
    vel = np.r_[p.velocity, p.velocity].clip(1, 127).astype(np.int64)
    order = np.lexsort((on, at))

    audio = np.zeros((total, 2), dtype=np.float32)  # (s, c): the layout TinySoundFont writes

    def play(a: int, b: int) -> None:
        if b > a:
            synth.generate_simple(b - a, buffer=memoryview(audio[a:b]).cast("B"))

    pos = 0
    for t, is_on, c, k, v in zip(at[order].tolist(), on[order].tolist(), chan[order].tolist(),
                                 key[order].tolist(), vel[order].tolist()):
        play(pos, t)
        pos = max(pos, t)
        if is_on:
            synth.noteon(c, k, v)
        else:
            synth.noteoff(c, k)
    play(pos, total)

    loudest = float(np.abs(audio).max())
    audible = np.flatnonzero(np.abs(audio).max(axis=1) > loudest * 1e-3)  # down to -60 dB
    end = max(last, int(audible[-1]) + 1 if loudest > 0 else 0) + int(0.05 * sample_rate)
    audio = audio[: min(end, total)] * (peak / loudest if loudest > 0 else 1.0)
    return np.ascontiguousarray(audio.T)


def render_wav(piece: Piece, path: str | Path, *, soundfont: str | Path | None = None,
               sample_rate: int = 22050, force: bool = False) -> Rendered:
    """Synthesise ``piece`` to a 16-bit WAV file (atomically; no overwrite unless ``force``):
    through a SoundFont (stereo) when one is found and tinysoundfont is installed, else with
    `additive_synth` (mono), and `Rendered.synthesizer` says which and why.
    A ``soundfont`` that was named but is not there is an error, never a fallback."""
    from notelm.io.files import OutputExistsError

    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(path)
    audio, why = None, ""
    try:
        sf = find_soundfont(soundfont)
    except SoundFontNotFoundError:
        if soundfont is not None:
            raise
        sf, why = None, "no SoundFont found: pass --soundfont PATH or set NOTELM_SOUNDFONT"
    if sf is not None:
        if importlib.util.find_spec("tinysoundfont") is None:
            why = "tinysoundfont is not installed; `bash scripts/setup.sh` installs it"
        else:
            audio = soundfont_synth(piece, sf, sample_rate)
            how = f"SoundFont {sf.name} (tinysoundfont)"
    if audio is None:
        audio = additive_synth(piece, sample_rate)
        how = f"additive synthesizer ({why})"
    atomic_write_bytes(path, _wav_bytes(audio, sample_rate), force=True)
    return Rendered(path=path, seconds=audio.shape[1] / sample_rate, synthesizer=how)


def plot_pianoroll(piece: Piece, path: str | Path, *, title: str = "", force: bool = False,
                   mark_from: float | None = None, velocity_bar: bool = False) -> Path:
    """A piano roll of ``piece`` as a PNG: one bar per note (time across, MIDI pitch up), with
    a grid line at every C and one at every bar (4 beats) for pieces in beats; a note's colour
    is its velocity. ``mark_from``: shade the time before it (e.g. the primer).
    ``velocity_bar``: draw the colour scale of velocities beside the roll."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.exists() and not force:
        from notelm.io.files import OutputExistsError

        raise OutputExistsError(path)
    end = max(piece.end, 1.0)
    fig, ax = plt.subplots(figsize=(min(24, max(7, 3 + end / 4)), 4), dpi=100)
    lo, hi = (int(piece.pitch.min()) - 2, int(piece.pitch.max()) + 2) if len(piece) else (58, 74)
    for c in range(lo - lo % 12, hi + 1, 12):
        ax.axhline(c, color="0.85", lw=0.8, zorder=0)
    if piece.time_unit == "beat":
        for b in np.arange(0, end + 4, 4):
            ax.axvline(b, color="0.9", lw=0.6, zorder=0)
        ax.set_xticks(np.arange(0, end + 1, 4 if end <= 160 else 16))
    if mark_from:
        ax.axvspan(0, mark_from, color="0.93", zorder=0)
    for o, d, p, v in zip(piece.onset, piece.duration, piece.pitch, piece.velocity):
        ax.add_patch(plt.Rectangle((o, p - 0.4), d, 0.8, color=plt.cm.viridis(0.25 + 0.6 * v / 127), zorder=2))
    if velocity_bar:
        from matplotlib.colors import LinearSegmentedColormap, Normalize

        shown = LinearSegmentedColormap.from_list("velocity", plt.cm.viridis(np.linspace(0.25, 0.85, 64)))
        bar = fig.colorbar(plt.cm.ScalarMappable(norm=Normalize(0, 127), cmap=shown), ax=ax, pad=0.01)
        bar.set_label("velocity")
    ax.set_xlim(0, end)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("time (quarter notes)" if piece.time_unit == "beat" else "time (s)")
    ax.set_ylabel("MIDI pitch")
    cs = [c for c in range(lo, hi + 1) if c % 12 == 0]
    ax.set_yticks(cs, [f"C{c // 12 - 1} ({c})" for c in cs])
    ax.set_title(title or piece.meta.title or piece.meta.id or "piano roll")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue(), force=True)
