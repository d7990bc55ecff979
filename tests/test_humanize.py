"""notelm humanize: only velocities change (checked with a second MIDI library, pretty_midi),
every note gets one, a flat input comes out varied, scores and folders work, bad input is one
line."""

from __future__ import annotations

import numpy as np
import pytest
import symusic
import torch

from conftest import FIXTURES
from notelm.encodings import get_encoding
from notelm.errors import NotelmError, ReadError
from notelm.humanize import humanize_file, humanize_folder, midi_notes
from notelm.io.files import OutputExistsError
from notelm.models.seq2seq import PRESETS, Seq2Seq, VelocityConfig, VelocityModel

pretty_midi = pytest.importorskip("pretty_midi")


def make_midi(path, n: int = 300, flat: int | None = 64):
    """Two piano tracks (one with sustain pedal, volume and a program), a drum track, two
    tempos: ``n`` notes a track, velocities ``flat`` (or varied)."""
    rng = np.random.default_rng(0)
    score = symusic.Score(480)
    score.tempos.append(symusic.Tempo(0, qpm=100))
    score.tempos.append(symusic.Tempo(4800, qpm=140))
    for name, program, drum in (("right", 0, False), ("left", 1, False), ("drums", 0, True)):
        track = symusic.Track(name, program, drum)
        start = np.sort(rng.integers(0, 40 * n, n)).astype(np.int32)
        vel = np.full(n, flat) if flat else rng.integers(20, 110, n)
        track.notes = symusic.Note.from_numpy(start, rng.integers(30, 900, n).astype(np.int32),
                                              rng.integers(36 if drum else 40, 50 if drum else 90, n).astype(np.int8),
                                              vel.astype(np.int8))
        if name == "right":
            for t in range(0, 40 * n, 1900):
                track.controls.append(symusic.ControlChange(t, 64, 100))
                track.controls.append(symusic.ControlChange(t + 1200, 64, 0))
            track.controls.append(symusic.ControlChange(10, 7, 90))
        score.tracks.append(track)
    path.write_bytes(bytes(score.dumps_midi()))
    return path


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def velocity_model():
    torch.manual_seed(0)
    enc = get_encoding("note-tokens", velocity_bins=0)
    config = {**PRESETS["debug"]["model"], "vocab_size": len(enc.vocab)}
    return VelocityModel(Seq2Seq(VelocityConfig.from_dict(config)), stride=8, dtype=torch.float32), enc


@pytest.fixture()
def fitted(velocity_model, tmp_path):
    model, enc = velocity_model
    path = make_midi(tmp_path / "in.mid")
    piece, _ = midi_notes(symusic.Score(str(path)))
    enc.fit([piece])
    return model, enc, path


def notes_of(path):
    pm = pretty_midi.PrettyMIDI(str(path))
    # notes sorted: pretty_midi lists notes ending together in the file's event order
    return pm, [(i.program, i.is_drum, i.name, sorted((n.start, n.end, n.pitch) for n in i.notes),
                 [(c.time, c.number, c.value) for c in i.control_changes]) for i in pm.instruments]


def test_only_velocities_change(fitted, tmp_path):
    model, enc, path = fitted
    out = tmp_path / "out" / "in.mid"
    [done] = humanize_file(path, out, model, enc, seed=3)
    before, a = notes_of(path)
    after, b = notes_of(out)
    assert a == b  # programs, drums, names, every note's timing and pitch, every controller
    assert before.get_tempo_changes()[0].tolist() == after.get_tempo_changes()[0].tolist()
    assert np.allclose(before.get_tempo_changes()[1], after.get_tempo_changes()[1])
    v0 = [sorted((n.start, n.end, n.pitch, n.velocity) for n in i.notes) for i in before.instruments]
    v1 = [[n.velocity for n in i.notes] for i in after.instruments]
    drums = [k for k, i in enumerate(after.instruments) if i.is_drum]
    assert all(v0[k] == sorted((n.start, n.end, n.pitch, n.velocity) for n in after.instruments[k].notes)
               for k in drums)  # drums keep theirs
    piano = np.concatenate([v1[k] for k in range(len(v1)) if k not in drums])
    assert done.notes == len(piano) == 600  # every note got one
    assert len(set(piano.tolist())) > 10 and piano.min() >= 1 and piano.max() <= 127  # a flat input comes out varied


def test_reproducible_with_a_seed_and_no_overwrite(fitted, tmp_path):
    model, enc, path = fitted
    a, b = tmp_path / "a.mid", tmp_path / "b.mid"
    humanize_file(path, a, model, enc, seed=5)
    humanize_file(path, b, model, enc, seed=5)
    assert a.read_bytes() == b.read_bytes()
    with pytest.raises(OutputExistsError):
        humanize_file(path, a, model, enc, seed=5)
    humanize_file(path, a, model, enc, seed=6, force=True)
    assert a.read_bytes() != b.read_bytes()


def test_png_and_wav_beside_the_midi(fitted, tmp_path):
    model, enc, _ = fitted
    path = make_midi(tmp_path / "short.mid", n=20)
    [done] = humanize_file(path, tmp_path / "x.mid", model, enc, png=True, wav=True)
    assert [p.suffix for p in done.extras] == [".png", ".wav"] and all(p.stat().st_size > 1000 for p in done.extras)


def test_a_score_is_humanized_as_midi(fitted, tmp_path):
    model, enc, _ = fitted
    [done] = humanize_file(FIXTURES / "tiny.krn", tmp_path / "tiny.mid", model, enc, temperature=0)
    pm = pretty_midi.PrettyMIDI(str(done.midi))
    assert [n.pitch for n in pm.instruments[0].notes] == [62, 66, 69, 74, 69, 62]
    assert done.notes == 6


def test_bad_input_is_one_line(fitted, tmp_path):
    model, enc, _ = fitted
    empty = tmp_path / "empty.mid"
    empty.write_bytes(b"")
    cases = [FIXTURES / "broken" / "corrupt.mid", empty, tmp_path / "missing.mid", FIXTURES / "broken" / "README.md"]
    for bad in cases:
        with pytest.raises(ReadError) as e:
            humanize_file(bad, tmp_path / "o.mid", model, enc)
        assert "\n" not in str(e.value)


def test_folder_batch_skips_and_never_writes_inside(fitted, tmp_path):
    model, enc, path = fitted
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    make_midi(folder / "sub" / "one.mid")
    (folder / "bad.mid").write_bytes(b"MThd nonsense")
    done, skipped = humanize_folder(folder, tmp_path / "humanized", model, enc)
    assert [d.midi.relative_to(tmp_path / "humanized").as_posix() for d in done] == ["sub/one.mid"]
    assert [p.name for p, _ in skipped] == ["bad.mid"]
    with pytest.raises(NotelmError, match="inside the input folder"):
        humanize_folder(folder, folder / "out", model, enc)
    done, skipped = humanize_folder(folder, tmp_path / "humanized", model, enc)  # again: outputs exist
    assert not done and len(skipped) == 2 and any("--force" in why for _, why in skipped)


# ---- the command line, with the built-in humanizer ---------------------------------------------------


def one_error(r, message: str) -> bool:
    """Exit 1 and the reason on stderr's last line, no traceback (progress lines may come first
    when the machine is slow: a line every 10 s off a terminal)."""
    lines = r.stderr.strip().splitlines()
    return (r.returncode == 1 and bool(lines) and message in lines[-1] and lines[-1].startswith("notelm: error:")
            and "Traceback" not in r.stderr and len(lines) <= 3)


def cli(*args):
    import os
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "notelm", "humanize", *map(str, args)], capture_output=True,
                          text=True, env=os.environ.copy(), timeout=300)


def test_cli_bad_input_is_one_line(tmp_path):
    """A corrupt file (the library tests cover empty and missing files too)."""
    r = cli(FIXTURES / "broken" / "corrupt.mid", "--out", tmp_path / "o.mid")
    assert one_error(r, "not a readable MIDI file"), r.stderr
    assert not (tmp_path / "o.mid").exists()


def test_cli_refuses_a_run_of_another_family(tmp_path):
    from pathlib import Path

    run = Path(__file__).parent.parent / "bench" / "runs" / "dstm-oneills" / "ccstm-32"
    r = cli(FIXTURES / "tiny.krn", "--model", run, "--out", tmp_path / "o.mid")
    assert one_error(r, "not a velocity model"), r.stderr


def test_cli_builtin_humanizes_a_flat_file(tmp_path):
    import json

    path = make_midi(tmp_path / "flat.mid", n=200)
    r = cli(path, "--out", tmp_path / "out.mid", "--json")
    assert r.returncode == 0, r.stderr
    [written] = json.loads(r.stdout)["written"]
    assert written["notes"] == 400
    after = pretty_midi.PrettyMIDI(str(tmp_path / "out.mid"))
    piano = [n.velocity for i in after.instruments if not i.is_drum for n in i.notes]
    assert len(piano) == 400 and np.std(piano) > 3  # flat in, varied out
    r = cli(path, "--out", tmp_path / "out.mid")
    assert one_error(r, "--force"), r.stderr


def test_the_output_never_replaces_the_input_even_with_force(tmp_path):
    from notelm.humanize import humanize

    path = make_midi(tmp_path / "mine.mid", n=10)
    before = path.read_bytes()
    with pytest.raises(NotelmError, match="is an input of this command"):
        humanize(path, path, force=True)
    assert path.read_bytes() == before
