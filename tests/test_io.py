from __future__ import annotations

import glob

import mido
import numpy as np
import pytest

from conftest import FIXTURES, MAESTRO_MINI, needs_maestro
from notelm.corpora import music21_corpus
from notelm.errors import ReadError
from notelm.io import read, read_items, read_midi, write_midi
from notelm.io.abc import _via_abc2midi, _via_music21, read_abc_items
from notelm.io.files import OutputExistsError
from notelm.pieces import Piece, PieceMeta, Track


def two_track_piece(unit="beat"):
    return Piece(
        pitch=np.array([60, 64, 67, 36, 38]),
        onset=np.array([0.0, 0.5, 1.25, 0.0, 1.0]),
        duration=np.array([0.5, 0.75, 1.0, 2.0, 0.25]),
        velocity=np.array([80, 90, 100, 70, 60]),
        track=np.array([0, 0, 0, 1, 1]),
        tracks=(Track("melody", 73), Track("bass", 32)),
        time_unit=unit,
        pedals=np.array([[0.25, 1.0]]),
        meta=PieceMeta(tempos=((0.0, 100.0),)),
    )


def mido_notes(path):
    """Notes of a MIDI file as read by a second library: (track, pitch, start tick, end tick, velocity)."""
    mf = mido.MidiFile(path)
    notes = []
    for t, track in enumerate(x for x in mf.tracks if any(m.type == "note_on" for m in x)):
        now, open_ = 0, {}
        for msg in track:
            now += msg.time
            if msg.type == "note_on" and msg.velocity > 0:
                open_[msg.note] = (now, msg.velocity)
            elif msg.type in ("note_off", "note_on"):
                start, vel = open_.pop(msg.note)
                notes.append((t, msg.note, start, now, vel))
    return sorted(notes), mf.ticks_per_beat


@pytest.mark.parametrize("unit", ["beat", "second"])
def test_midi_written_reads_back_identically_here_and_in_mido(tmp_path, unit):
    p = two_track_piece(unit)
    path = write_midi(p, tmp_path / "x.mid")
    assert read_midi(path, unit) == p
    notes, tpq = mido_notes(path)
    per_unit = tpq if unit == "beat" else 100 / 60 * tpq  # seconds at the piece's 100 qpm

    def ticks(t):
        return round(t * per_unit)

    expected = sorted(
        (int(tr), int(pi), ticks(on), ticks(on + du), int(v))
        for tr, pi, on, du, v in zip(p.track, p.pitch, p.onset, p.duration, p.velocity)
    )
    assert notes == expected


def test_write_refuses_to_overwrite_without_force(tmp_path):
    p = two_track_piece()
    path = write_midi(p, tmp_path / "x.mid")
    with pytest.raises(OutputExistsError):
        write_midi(p, path)
    write_midi(p.transpose(1), path, force=True)
    assert read_midi(path) == p.transpose(1)
    assert [f.name for f in tmp_path.iterdir()] == ["x.mid"]  # no temporary left behind


@needs_maestro
def test_maestro_performance_round_trip(tmp_path):
    f = sorted(glob.glob(str(MAESTRO_MINI / "2004" / "*.midi")))[0]
    p = read_midi(f, "second")
    assert len(p) > 1000 and len(p.pedals) > 10
    q = read_midi(write_midi(p, tmp_path / "p.mid"), "second")
    assert q == p


def test_bad_files_give_one_clear_error(tmp_path):
    with pytest.raises(ReadError, match="not a readable MIDI"):
        read(FIXTURES / "broken" / "corrupt.mid")
    with pytest.raises(ReadError, match="no such file"):
        read(tmp_path / "absent.mid")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ReadError, match="unsupported file type"):
        read(tmp_path / "x.txt")
    (tmp_path / "empty.abc").write_text("no tunes here\n")
    with pytest.raises(ReadError, match="no ABC tunes"):
        read(tmp_path / "empty.abc")


def test_a_broken_tune_is_skipped_not_fatal():
    items = read_items(FIXTURES / "broken" / "tunes.abc")
    assert [type(i).__name__ for i in items] == ["Piece", "ReadError", "Piece"]
    assert items[1].path.endswith("tunes.abc#2")
    assert items[0].pitch.tolist() == [67, 69, 71, 72, 74, 71, 72, 69, 67]
    assert items[2].meta.meter == "3/4" and items[2].meta.key == "D"


def test_kern_and_musicxml():
    p = read(FIXTURES / "tiny.krn")[0]
    assert p.pitch.tolist() == [62, 66, 69, 74, 69, 62]
    assert p.duration.tolist() == [1, 1, 1, 2, 1, 3] and p.meta.meter == "3/4"
    chorale = read(music21_corpus() / "bach" / "bwv66.6.mxl")[0]
    assert len(chorale.tracks) == 4 and chorale.time_unit == "beat"
    soprano = chorale.with_notes(chorale.track == 0).melody()
    assert soprano.pitch[:4].tolist() == [73, 71, 69, 71]


def essen(name):
    return music21_corpus() / "essenFolksong" / name


def same_notes(a, b):
    return a == b.merge_ties()


def test_abc_engines_agree_on_every_kinder_tune():
    fast = read_abc_items(essen("kinder0.abc"))
    slow = read_abc_items(essen("kinder0.abc"), engine="music21")
    assert len(fast) == len(slow) == 213
    assert all(same_notes(a, b) for a, b in zip(fast, slow))
    assert sum(len(a) for a in fast) == 8393


def test_abc_engines_agree_across_essen():
    """A sample of every Essen collection: the engines agree on at least 99% of tunes.

    Known differences are music21's: a tie into the next bar loses its accidental there.
    """
    agree = total = 0
    for path in sorted((music21_corpus() / "essenFolksong").glob("*.abc")):
        if path.name == "kinder0.abc":
            continue
        text = path.read_text(encoding="latin-1")
        tunes = ["X:" + t for t in text.split("\nX:")[1:]][::40]  # every 40th tune
        for a, b in zip(_via_abc2midi(path, "", tunes), _via_music21(path, "", tunes)):
            total += 1
            agree += isinstance(a, Piece) and isinstance(b, Piece) and same_notes(a, b)
    assert total > 150
    assert agree / total >= 0.99, f"{agree}/{total}"


def test_an_output_is_never_an_input_or_inside_an_input_folder(tmp_path):
    from notelm.io.files import OutputError, check_not_inputs

    mine, folder = tmp_path / "mine.mid", tmp_path / "corpus"
    mine.write_bytes(b"MThd")
    (folder / "sub").mkdir(parents=True)
    with pytest.raises(OutputError, match="is an input of this command"):
        check_not_inputs([tmp_path / "x.png", mine], [mine])
    with pytest.raises(OutputError, match="inside the input folder"):
        check_not_inputs([folder / "sub" / "out.csv"], [folder])
    check_not_inputs([tmp_path / "out.mid", None], [mine, folder, None, tmp_path / "not-there"])  # fine
