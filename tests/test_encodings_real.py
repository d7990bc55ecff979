"""Round trips on real music: the Essen tunes bundled with music21 (grid, dstm-frames, melody)
and MAESTRO-mini performances (performance, note-tokens, MidiTok's MIDI-Like).
bench/bench_encodings.py covers all ~8,500 tunes and all 274 performances."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from conftest import MAESTRO_MINI, needs_maestro
from notelm.encodings import get_encoding, roundtrip_report
from notelm.io import read_abc_items, read_midi
from notelm.pieces import Piece

ESSEN = Path(importlib.util.find_spec("music21").submodule_search_locations[0]) / "corpus" / "essenFolksong"
GRID_REASONS = {"note shorter than the grid step", "time off the grid"}


@pytest.fixture(scope="module")
def kinder() -> list[Piece]:
    return [p for p in read_abc_items(ESSEN / "kinder0.abc") if isinstance(p, Piece)]


@pytest.mark.parametrize("name,kw", [("grid", {}), ("grid", {"transpose": True}), ("dstm-frames", {}),
                                     ("melody", {}), ("melody", {"viewpoint": "cpitch"})])
def test_every_kinder_tune_round_trips_exactly(kinder, name, kw):
    report = roundtrip_report(kinder, get_encoding(name, **kw))
    assert report["pieces"] == 213 and report["exact"] == 213, report


def test_melody_round_trip_is_lossless_on_kinder(kinder):
    enc = get_encoding("melody").fit(kinder)
    for piece in kinder[:40]:
        line = piece.melody()
        got = enc.decode(enc.encode(piece))
        assert np.array_equal(got.pitch, line.pitch) and np.array_equal(got.onset, line.onset)
        assert np.array_equal(got.duration, line.duration)


def test_tunes_with_32nd_notes_are_skipped_and_counted():
    items = read_abc_items(ESSEN / "folkHaydn.abc")
    report = roundtrip_report(items, get_encoding("grid"))
    assert report["mismatches"] == [] and report["exact"] + report["skipped"] == report["pieces"] == 50
    assert report["skipped"] >= 1 and set(report["skip_reasons"]) <= GRID_REASONS
    assert roundtrip_report(items, get_encoding("grid", step=0.125))["exact"] == 50  # a 32nd grid holds them


@pytest.fixture(scope="module")
def performances() -> list[Piece]:
    rows = list(csv.DictReader((MAESTRO_MINI / "maestro-mini.csv").open(encoding="utf-8")))
    return [read_midi(MAESTRO_MINI / r["midi_filename"], "second") for r in rows[:3]]


@needs_maestro
def test_maestro_performances_round_trip(performances):
    enc = get_encoding("performance")
    report = roundtrip_report(performances, enc)
    assert report["exact"] == 3, report
    piece = performances[0]
    ids = enc.encode(piece)
    q = enc.quantized(piece)
    n_on = int(np.isin(ids, np.arange(4, 132)).sum())
    assert n_on == len(q) == int(np.isin(ids, np.arange(132, 260)).sum())  # one on and one off per note
    assert np.abs(q.onset - np.round(piece.apply_sustain().onset, 2)).max() < 1e-9  # the 10 ms grid
    for piece in performances:  # the rules of sampling forbid nothing a pianist played
        rules = enc.rules()
        for token in enc.encode(piece).tolist():
            assert rules.allowed()[token], enc.vocab.tokens([token])
            rules.observe(token)


@needs_maestro
def test_maestro_note_tokens_fitted_on_others_round_trip(performances):
    enc = get_encoding("note-tokens").fit(performances[:2])
    assert roundtrip_report(performances, enc)["exact"] == 3
    src, tgt = enc.encode_pair(performances[2])
    exact = enc.decode_pair(src, tgt)
    assert np.array_equal(np.sort(exact.velocity), np.sort(performances[2].velocity))


@needs_maestro
def test_maestro_through_miditok_midilike(performances):
    enc = get_encoding("midilike", time_unit="second")
    report = roundtrip_report(performances[:1], enc)
    assert report["exact"] == 1, report
