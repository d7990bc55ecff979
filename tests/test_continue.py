"""Continuation of a performance: the primer is the stretch asked for, kept note for note at
the start of the output (read back with mido, a second MIDI library); bad primers are one-line
errors; the repetition statistics on hand-computed cases."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mido
import numpy as np
import pytest
import torch

from notelm.continuation import (
    ContinueError,
    continue_primer,
    performance_encoding,
    primer_ids,
    primer_span,
    primer_stretch,
    repetition_stats,
    shift_steps,
)
from notelm.encodings import get_encoding
from notelm.io import write_midi
from notelm.io.midi import read_midi
from notelm.models.perceiver_ar import PRESETS, PerceiverAR, PerceiverARConfig, PerceiverARModel
from notelm.pieces import Piece

ENC = get_encoding("performance")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = {**PRESETS["debug"]["model"], "vocab_size": len(ENC.vocab)}
    return PerceiverARModel(PerceiverAR(PerceiverARConfig(**cfg)), dtype=torch.float32)


def performance(seconds: float = 15.0, seed: int = 0) -> Piece:
    """Random piano notes over ``seconds``, unquantised times, varied velocities, one note
    sounding across 10 s; notes of one pitch never overlap (so mido pairs them plainly)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * 4)
    onset = np.sort(rng.uniform(0, seconds - 1, n))
    duration = rng.uniform(0.05, 0.9, n)
    pitch, velocity = 30 + (np.arange(n) * 7) % 70, rng.integers(20, 120, n)  # a pitch comes back after 70 notes
    onset, duration, pitch = np.r_[onset, 9.6], np.r_[duration, 1.5], np.r_[pitch, 101]  # 9.6 - 11.1 s
    return Piece(pitch=pitch, onset=onset, duration=duration, velocity=np.r_[velocity, 77], time_unit="second")


def mido_notes(path) -> list[tuple[int, int, float, float]]:
    """(pitch, velocity, start, end) in seconds, by mido, sorted by start then pitch."""
    midi = mido.MidiFile(str(path))
    notes, on, t = [], {}, 0.0
    for msg in midi:  # iterating a MidiFile yields messages with delta times in seconds
        t += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            on[msg.note] = (msg.velocity, t)
        elif msg.type in ("note_off", "note_on") and msg.note in on:
            velocity, start = on.pop(msg.note)
            notes.append((msg.note, velocity, start, t))
    return sorted(notes, key=lambda n: (round(n[2], 3), n[0]))


def test_the_primer_is_kept_note_for_note_then_the_continuation_follows(model, tmp_path):
    src = write_midi(performance(), tmp_path / "in.mid")
    primer = primer_stretch(read_midi(src, "second"), 0.0, 10.0)
    result = continue_primer(model, ENC, primer, 10.0, seconds=3.0, seed=1)
    out = write_midi(result.piece, tmp_path / "out.mid")
    want = [(p, v, s, min(e, 10.0)) for p, v, s, e in mido_notes(src) if s < 10.0]
    got = mido_notes(out)
    head = [n for n in got if n[2] < 10.0 - 1e-3]
    assert len(head) == len(want) == len(primer)
    for (p, v, s, e), (p2, v2, s2, e2) in zip(want, head):
        assert (p, v) == (p2, v2)
        assert s2 == pytest.approx(s, abs=2e-3) and e2 == pytest.approx(e, abs=2e-3)
    assert (101, 77) in [(p, v) for p, v, _, _ in head]  # the note across 10 s, cut there
    tail = got[len(head):]
    assert len(tail) == len(result.continuation) and all(10.0 - 1e-3 <= s < 13.0 + 1e-3 for _, _, s, _ in tail)


def test_the_model_reads_the_primer_up_to_its_end_and_continuation_only_drops_it(model):
    primer = primer_stretch(performance(), 2.0, 7.5)
    assert primer.onset.min() >= 0 and primer.end <= 5.5 + 1e-9
    ids = primer_ids(ENC, primer, 5.5)
    assert shift_steps(ENC)[ids].sum() == 550  # time shifts up to the primer's end
    result = continue_primer(model, ENC, primer, 5.5, tokens=40, seed=2, continuation_only=True)
    assert result.tokens == 40 and result.primer_tokens == len(ids)
    assert len(result.piece) == len(result.continuation) and (result.piece.onset >= 0).all()


def test_a_continuation_in_seconds_stops_when_its_time_is_up(model):
    primer = primer_stretch(performance(), 0.0, 10.0)
    result = continue_primer(model, ENC, primer, 10.0, seconds=0.5, seed=3)
    steps = shift_steps(ENC)
    assert (result.continuation.onset < 0.5).all()
    assert result.tokens <= math.ceil(0.5 * 400)
    again = continue_primer(model, ENC, primer, 10.0, seconds=0.5, seed=3)
    assert again.piece == result.piece  # a seed makes it reproducible
    assert steps.sum() == sum(range(1, 101))


@pytest.mark.parametrize(("span", "message"), [((0.0, 20.0), "shorter than the primer asked for"),
                                                ((2.0, 4.0), "no notes start between"),
                                                ((5.0, 5.0), "must start at 0 s or later and end after")])
def test_bad_primers_are_one_line_errors(span, message):
    gap = Piece(pitch=[60, 62], onset=[0.0, 5.0], duration=[1.0, 10.0], time_unit="second")  # nothing in 1-5 s
    with pytest.raises(ContinueError, match=message):
        primer_stretch(gap, *span)
    with pytest.raises(ContinueError, match="no notes to continue"):
        primer_stretch(Piece.empty(time_unit="second"), 0.0, 10.0)


def test_primer_span_and_the_encoding_check():
    assert primer_span(None, None, None) == (0.0, 10.0)
    assert primer_span(4, 2, None) == (2.0, 6.0)
    assert primer_span(None, 3, 8) == (3.0, 8.0)
    with pytest.raises(ContinueError, match="not both"):
        primer_span(4, None, 8)
    with pytest.raises(ContinueError, match="--encoding performance"):
        performance_encoding(get_encoding("grid"), "runs/lstm")


def test_sampling_keeps_to_the_encodings_rules_unless_told_not_to(model):
    """An untrained model puts probability on events the encoder never writes (a re-strike of a
    key that is down, a release of one that is up); with the rules none is sampled."""
    from notelm.generation import sample

    primer = primer_stretch(performance(), 0.0, 10.0)
    ids = primer_ids(ENC, primer, 10.0)
    breaks = {}
    for rules in (True, False):
        out = sample(model, length=300, seed=4, state=model.start(ids), rules=ENC.rules(ids) if rules else None)
        check, breaks[rules] = ENC.rules(ids), 0
        for token in out:
            breaks[rules] += not check.allowed()[token]
            check.observe(token)
    assert breaks[True] == 0 and breaks[False] > 10
    on, off = (continue_primer(model, ENC, primer, 10.0, tokens=300, seed=4, rules=r) for r in (True, False))
    assert on.piece != off.piece  # continue_primer passes them on


def test_the_repeat_penalty_makes_repeated_pitches_rarer(model):
    """A model that likes two keys equally strikes the same one twice in a row often (when the
    other is down, the rules leave only that one); the penalty makes it rarer."""
    from notelm.generation import sample

    ids = ENC.vocab.ids
    liked = ids(["on-60", "on-62", "off-60", "off-62", "shift-1"])

    class TwoKeys:
        def start(self, primer):
            return None

        def predict(self, state):
            p = np.full(len(ENC.vocab), 1e-9)
            p[liked] = 1.0
            return p / p.sum()

        def observe(self, state, token):
            return None

    share = {}
    for penalty in (1.0, 9.0):
        out = ENC.vocab.tokens(sample(TwoKeys(), length=4000, seed=0, rules=ENC.rules(repeat_penalty=penalty)))
        struck = [t for t in out if t.startswith("on-")]
        share[penalty] = np.mean([a == b for a, b in zip(struck, struck[1:])])
    assert share[1.0] > 0.2 and share[9.0] < 0.4 * share[1.0], share
    primer = primer_stretch(performance(), 0.0, 10.0)
    with pytest.raises(ContinueError, match="drop --no-rules"):
        continue_primer(model, ENC, primer, 10.0, tokens=5, rules=False, repeat_penalty=2.0)


def test_repetition_statistics_by_hand():
    piece = Piece(pitch=[60, 60, 60, 62, 64, 64, 72], onset=[0, 1, 2, 3, 4, 5, 5], duration=[0.5] * 7,
                  velocity=[40, 60, 80, 40, 60, 80, 60], time_unit="second")
    s = repetition_stats(piece, seconds=7.0)
    # onset order, a chord by pitch: 60 60 60 62 64 64 72 -> repeats 1, 2, 4 of 6 steps
    assert s["repeat_share"] == pytest.approx(3 / 6) and s["longest_run"] == 3
    pc = np.array([4, 1, 2]) / 7  # pitch classes C (60, 72), D, E
    assert s["pitch_class_entropy"] == pytest.approx(float(-(pc * np.log2(pc)).sum()))
    assert s["notes_per_s"] == pytest.approx(1.0) and s["mean_velocity"] == pytest.approx(60.0)
    assert s["velocity_sd"] == pytest.approx(np.std([40, 60, 80, 40, 60, 80, 60]))


# ---- the command line ---------------------------------------------------------------------------

SAMPLE = Path(__file__).parent.parent / "src" / "notelm" / "bundled" / "maestro-sample"


def notelm(*args, cwd=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "notelm", *map(str, args)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A debug perceiver-ar run on the bundled performances (split 9 / 2 / 1 by a csv of our
    own) and a grid-encoded LSTM run: (performance run, grid run, a bundled primer)."""
    from notelm.training import train

    tmp = tmp_path_factory.mktemp("continue")
    files = sorted(SAMPLE.glob("*/*.midi"))
    for f in files:  # notelm reads only files under a corpus's folder
        (tmp / "corpus" / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, tmp / "corpus" / f.parent.name / f.name)
    rows = ["split,midi_filename"] + [f"{s},{f.parent.name}/{f.name}"
                                      for s, f in zip(["train"] * 9 + ["validation"] * 2 + ["test"], files)]
    (tmp / "corpus" / "maestro.csv").write_text("\n".join(rows) + "\n")
    common = dict(preset="debug", progress=False, accelerator="cpu", devices=1, threads=1)
    train("perceiver-ar", out=tmp / "par", corpus="maestro", root=tmp / "corpus", encoding="performance",
          max_steps=4, overrides=["train.val_every=4"], **common)
    train("lstm", out=tmp / "grid", corpus="essen-kinder", encoding="grid", max_steps=2, **common)
    return tmp / "par", tmp / "grid", files[-1]


def test_continue_writes_the_primer_then_the_continuation(runs, tmp_path):
    par, _, primer = runs
    done = notelm("continue", primer, "--model", par, "--seconds", 2, "--seed", 0, "--out", "c.mid", "--png", "c.png",
                  "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["primer_seconds"] == 10.0 and report["primer_notes"] > 0 and report["tokens"] > 0
    assert (report["rules"], report["temperature"], report["repeat_penalty"]) == (True, 1.0, 32.0)  # from the repetition table
    assert (tmp_path / "c.mid").is_file() and (tmp_path / "c.png").is_file()
    notes = mido_notes(tmp_path / "c.mid")
    assert len(notes) == report["primer_notes"] + report["notes"]
    want = [(p, v, s) for p, v, s, _ in mido_notes(primer) if s < 10.0 - 5e-3]
    assert [(p, v) for p, v, _, _ in notes[: len(want)]] == [(p, v) for p, v, _ in want]
    again = notelm("continue", primer, "--model", par, "--seconds", 2, "--out", "c.mid", cwd=tmp_path)
    assert again.returncode == 1 and "exists" in again.stderr and "Traceback" not in again.stderr
    free = notelm("continue", primer, "--model", par, "--seconds", 2, "--seed", 0, "--no-rules", "--out", "free.mid",
                  "--json", cwd=tmp_path)
    assert free.returncode == 0 and json.loads(free.stdout)["rules"] is False, free.stderr


@pytest.mark.parametrize(("case", "message"), [("corrupt", "not a readable MIDI file"), ("empty", "no notes to continue"),
                                               ("short", "shorter than the primer asked for"),
                                               ("grid", "--encoding performance"), ("both", "not both")])
def test_bad_input_is_one_line(runs, tmp_path, case, message):
    par, grid, primer = runs
    empty = tmp_path / "empty.mid"
    mido.MidiFile(tracks=[mido.MidiTrack([mido.MetaMessage("end_of_track", time=0)])]).save(empty)
    short = write_midi(Piece(pitch=[60, 64], onset=[0.0, 1.0], duration=[1.0, 2.0], time_unit="second"), tmp_path / "s.mid")
    args = {"corrupt": [Path(__file__).parent / "fixtures" / "broken" / "corrupt.mid", "--model", par],
            "empty": [empty, "--model", par], "short": [short, "--model", par], "grid": [primer, "--model", grid],
            "both": [primer, "--model", par, "--seconds", 1, "--tokens", 5]}[case]
    done = notelm("continue", *args, "--out", "x.mid", cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not (tmp_path / "x.mid").exists()


def test_the_output_never_replaces_the_primer_even_with_force(runs, tmp_path):
    par, _, primer = runs
    mine = tmp_path / "mine.mid"
    shutil.copyfile(primer, mine)
    before = mine.read_bytes()
    done = notelm("continue", mine, "--model", par, "--seconds", 1, "--out", mine, "--force", cwd=tmp_path)
    assert done.returncode == 1 and "is an input of this command" in done.stderr and "Traceback" not in done.stderr
    assert mine.read_bytes() == before
