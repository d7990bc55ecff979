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


def test_render_wav(tmp_path):
    try:
        find_soundfont()
    except SoundFontNotFoundError:
        pytest.skip("no SoundFont on this machine (pip install pretty_midi ships one)")
    out = render_wav(SCALE, tmp_path / "scale.wav")
    with wave.open(str(out.path)) as w:
        frames = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        assert w.getframerate() == 22050 and w.getnframes() / 22050 >= 2.4  # 5 beats at 120 qpm
    assert np.abs(frames).max() > 1000  # sound, not silence
    with pytest.raises(OutputExistsError):
        render_wav(SCALE, out.path)


def test_pianoroll_png(tmp_path):
    path = plot_pianoroll(SCALE, tmp_path / "roll.png", title="scale")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
