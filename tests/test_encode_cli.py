"""`notelm encode`: readable tokens, and round-trip reports over real corpora."""

from __future__ import annotations

import json

from conftest import MAESTRO_MINI, needs_maestro
from test_cli import notelm


def test_encode_shows_grid_tokens():
    r = notelm("encode", "essen-kinder", "--encoding", "grid", "--show", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("kinder0#1 (77 tokens): 69 _ _ _ 67 _ 67 _ 65")


def test_roundtrip_json_on_kinder():
    r = notelm("encode", "essen-kinder", "--encoding", "melody", "--roundtrip", "--json")
    report = json.loads(r.stdout)
    assert {"pieces", "exact", "skipped", "mismatches"} <= set(report)
    assert report["pieces"] == report["exact"] == 213


@needs_maestro
def test_roundtrip_note_tokens_fitted_on_the_training_split():
    r = notelm("encode", "maestro", "--root", str(MAESTRO_MINI), "-e", "note-tokens", "--roundtrip", "--json",
               "--limit", "10")
    report = json.loads(r.stdout)
    assert report["exact"] == 10 and report["mismatched"] == 0


def test_bad_encoding_name_and_setting():
    for args, message in [(["-e", "foo"], "unknown encoding 'foo'"), (["-e", "grid", "--set", "step=0"], "step"),
                          (["-e", "grid", "--set", "step"], "key=value")]:
        r = notelm("encode", "essen-kinder", *args)
        assert r.returncode != 0 and "Traceback" not in r.stderr
        assert message in r.stderr.strip().splitlines()[0]
