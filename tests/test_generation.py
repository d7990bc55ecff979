"""The sampler: reproducible, filters respected, temperature -> 0 is argmax; melodies as MIDI."""

from __future__ import annotations

import mido
import numpy as np
import pytest

from notelm.errors import NotelmError
from notelm.generation import filter_log_probs, melody_piece, sample
from notelm.models.base import SequenceModel
from notelm.models.ppm import PPM

P = np.array([0.05, 0.4, 0.3, 0.15, 0.1])


class Fixed(SequenceModel):
    """The same distribution at every step; remembers what it observed."""

    alphabet_size = len(P)

    def start(self, primer=()):
        return list(primer)

    def predict(self, state):
        self.seen = list(state)
        return P

    def observe(self, state, token):
        return [*state, token]


def model():
    return PPM(alphabet_size=5, mode="ltm+").fit([[0, 1, 2, 3, 4, 1, 2, 1, 2, 3], [1, 2, 3, 1, 2]])


def test_seed_reproducible_and_seeds_differ():
    a = sample(model(), length=40, seed=7)
    assert a == sample(model(), length=40, seed=7)
    assert a != sample(model(), length=40, seed=8)
    assert len(a) == 40 and all(0 <= t < 5 for t in a)


def test_top_k_and_top_p_are_respected():
    tokens = sample(Fixed(), length=300, top_k=2, seed=0)
    assert set(tokens) == {1, 2}
    tokens = sample(Fixed(), length=300, top_p=0.8, seed=0)  # 0.4 + 0.3 + 0.15 >= 0.8
    assert set(tokens) == {1, 2, 3}
    z = filter_log_probs(np.log(P), top_p=0.7)  # 0.4 + 0.3 reaches 0.7 exactly
    np.testing.assert_allclose(np.exp(z), [0, 4 / 7, 3 / 7, 0, 0], atol=1e-12)
    z = filter_log_probs(np.log(P), top_k=3, temperature=2.0)
    q = np.sqrt(P[[1, 2, 3]])
    np.testing.assert_allclose(np.exp(z)[[1, 2, 3]], q / q.sum())
    assert np.isneginf(z[[0, 4]]).all()


def test_temperature_towards_zero_approaches_argmax():
    peaks = [np.exp(filter_log_probs(np.log(P), temperature=t))[1] for t in (1.0, 0.5, 0.1, 0.01)]
    assert np.all(np.diff(peaks) > 0) and peaks[-1] > 0.999
    np.testing.assert_allclose(np.exp(filter_log_probs(np.log(P), temperature=0)), [0, 1, 0, 0, 0])
    greedy = sample(model(), length=20, temperature=0, seed=1)
    state, m = None, model()
    state = m.start()
    for token in greedy:
        assert token == int(np.argmax(m.predict(state)))
        state = m.observe(state, token)


def test_stop_tokens_end_the_sample():
    tokens = sample(Fixed(), length=500, seed=0, stop=[0])
    assert tokens[-1] == 0 and 0 not in tokens[:-1] and len(tokens) < 500


def test_primer_conditions_and_is_not_returned():
    fixed = Fixed()
    tokens = sample(fixed, length=3, primer=[4, 0], seed=0)
    assert len(tokens) == 3 and fixed.seen == [4, 0, *tokens[:2]]


@pytest.mark.parametrize("bad", [{"temperature": -1}, {"top_k": 0}, {"top_p": 0}, {"top_p": 1.2}, {"length": -1}])
def test_bad_settings_raise_a_domain_error(bad):
    with pytest.raises(NotelmError):
        sample(Fixed(), **{"length": 3, **bad})


def test_written_midi_reads_back(tmp_path):
    from notelm.io import write_midi

    piece = melody_piece([60, 64, 67, 72], [1.0, 0.5, 0.5, 2.0], title="arpeggio")
    path = write_midi(piece, tmp_path / "a.mid")
    midi = mido.MidiFile(path)
    on = [(m.note, m.time) for t in midi.tracks for m in t if m.type == "note_on" and m.velocity > 0]
    assert [n for n, _ in on] == [60, 64, 67, 72]
    assert midi.length == pytest.approx(4 * 0.5, abs=0.01)  # four beats at 120 qpm


def test_idyom_melodies_are_written_and_read_back(tmp_path):
    from notelm.corpora import load_corpus
    from notelm.idyom import generate_melodies

    corpus = load_corpus("essen-kinder")
    paths = generate_melodies(corpus, tmp_path, n=2, length=24, viewpoints="cpitch,cpint*dur", seed=3,
                              temperature=0.8, top_k=8)
    pitches = set(corpus.melodies()[0].pitch.tolist())
    for piece in corpus.melodies():
        pitches |= set(piece.pitch.tolist())
    for path in paths:
        notes = [m.note for t in mido.MidiFile(path).tracks for m in t if m.type == "note_on" and m.velocity > 0]
        assert len(notes) == 24 and set(notes) <= pitches
    with pytest.raises(NotelmError, match="--force"):
        generate_melodies(corpus, tmp_path, n=1, seed=3)
    assert generate_melodies(corpus, tmp_path, n=1, seed=3, force=True) == paths[:1]
