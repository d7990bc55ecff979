"""Music out the other end: WAV through a SoundFont found offline, piano-roll PNGs."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from notelm.io.files import OutputExistsError
from notelm.pieces import Piece
from notelm.render import SoundFontNotFoundError, find_soundfont, plot_pianoroll, render_wav

SCALE = Piece(pitch=np.array([60, 62, 64, 65, 67]), onset=np.arange(5.0), duration=np.full(5, 0.9))


def test_missing_soundfont_is_a_clear_error(tmp_path):
    with pytest.raises(SoundFontNotFoundError, match="no such SoundFont"):
        find_soundfont(tmp_path / "none.sf2")


def test_no_soundfont_anywhere_says_what_to_do(monkeypatch):
    import notelm.render as render

    monkeypatch.delenv("NOTELM_SOUNDFONT", raising=False)
    monkeypatch.setattr(render.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(render, "SYSTEM_SOUNDFONTS", ())
    with pytest.raises(SoundFontNotFoundError, match="never downloads"):
        find_soundfont()


def _read_wav(path):
    """(sample rate, channels, mono float audio) through the stdlib reader, not notelm's writer."""
    with wave.open(str(path)) as w:
        assert w.getsampwidth() == 2
        rate, channels = w.getframerate(), w.getnchannels()
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, channels)
    return rate, channels, frames.mean(axis=1) / 32768


def _soundfont_or_skip():
    try:
        sf = find_soundfont()
    except SoundFontNotFoundError:
        pytest.skip("no SoundFont on this machine (pip install pretty_midi ships one)")
    pytest.importorskip("tinysoundfont", reason="tinysoundfont not installed (scripts/setup.sh installs it)")
    return sf


def test_render_wav_through_the_soundfont(tmp_path):
    sf = _soundfont_or_skip()
    out = render_wav(SCALE, tmp_path / "scale.wav")
    assert out.synthesizer == f"SoundFont {sf.name} (tinysoundfont)"
    rate, channels, x = _read_wav(out.path)
    assert (rate, channels) == (22050, 2)
    # 5 beats at 120 qpm = 2.45 s of notes, then the release dies away (well under a second)
    assert len(x) / rate == pytest.approx(out.seconds)
    assert 2.45 <= out.seconds <= 2.45 + 1.0
    assert np.abs(x).max() > 0.5 and np.sqrt(np.mean(x**2)) > 0.05  # sound, not silence
    # each note's pitch class is in its half second: the spectrum's strongest peak below
    # 1.5 kHz is the fundamental or one of its octaves (a piano's 2nd harmonic can be louder)
    for k, pitch in enumerate(SCALE.pitch):
        seg = x[int((0.5 * k + 0.05) * rate): int((0.5 * k + 0.4) * rate)]
        spectrum = np.abs(np.fft.rfft(seg * np.hanning(len(seg)), 1 << 15))
        freq = np.fft.rfftfreq(1 << 15, 1 / rate)
        band = (freq > 60) & (freq < 1500)
        peak = freq[band][spectrum[band].argmax()]
        assert round(69 + 12 * np.log2(peak / 440)) % 12 == pitch % 12
    with pytest.raises(OutputExistsError):
        render_wav(SCALE, out.path)
    assert render_wav(SCALE, out.path, force=True, sample_rate=44100).seconds == pytest.approx(out.seconds, abs=0.01)


def test_a_named_soundfont_that_is_missing_is_an_error(tmp_path):
    with pytest.raises(SoundFontNotFoundError):
        render_wav(SCALE, tmp_path / "x.wav", soundfont=tmp_path / "none.sf2")
    assert not (tmp_path / "x.wav").exists()


def test_without_a_soundfont_the_additive_synth_says_so(tmp_path, monkeypatch):
    import notelm.render as render

    def nowhere(explicit=None):
        raise SoundFontNotFoundError("none")

    monkeypatch.setattr(render, "find_soundfont", nowhere)
    out = render_wav(SCALE, tmp_path / "scale.wav")
    assert out.synthesizer.startswith("additive synthesizer (no SoundFont found")
    rate, channels, x = _read_wav(out.path)
    assert (rate, channels) == (22050, 1) and np.abs(x).max() > 0.05


def test_without_tinysoundfont_the_additive_synth_says_so(tmp_path, monkeypatch):
    import notelm.render as render

    _soundfont_or_skip()
    find_spec = render.importlib.util.find_spec
    monkeypatch.setattr(render.importlib.util, "find_spec",
                        lambda name, *a: None if name == "tinysoundfont" else find_spec(name, *a))
    out = render_wav(SCALE, tmp_path / "scale.wav")
    assert out.synthesizer.startswith("additive synthesizer (tinysoundfont is not installed")


def test_pianoroll_png(tmp_path):
    path = plot_pianoroll(SCALE, tmp_path / "roll.png", title="scale")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
