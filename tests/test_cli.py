"""The command line as a user meets it: JSON shapes, and one-line errors with no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import FIXTURES, MAESTRO_MINI, needs_maestro


def notelm(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "notelm", *args], capture_output=True, text=True,
                          env=os.environ.copy(), cwd=cwd, timeout=300)


def test_data_info_json_keys():
    r = notelm("data", "info", "essen-kinder", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert {"pieces", "notes", "distinct_pitches", "pitch_min", "pitch_max", "duration", "splits", "skipped"} <= set(info)
    assert set(info["splits"]) == {"train", "valid", "test"}
    assert (info["pieces"], info["notes"]) == (213, 8393)


@needs_maestro
def test_data_info_maestro_splits():
    info = json.loads(notelm("data", "info", "maestro", "--root", str(MAESTRO_MINI), "--json").stdout)
    assert info["pieces"] == 274 and info["splits"] == {"train": 209, "valid": 24, "test": 41}


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "info", "esen"], "unknown corpus 'esen'"),
        (["data", "info", "maestro", "--root", "/no/such/folder"], "no such folder"),
        (["data", "info", "maestro"], "needs --root"),
        (["data", "info", "folder", "--root", str(FIXTURES / "broken"), "--strict"], "corrupt.mid"),
    ],
)
def test_bad_input_is_one_line_on_stderr(args, message):
    r = notelm(*args)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr


def test_broken_files_in_a_folder_are_skipped_and_counted():
    r = notelm("data", "info", "folder", "--root", str(FIXTURES / "broken"), "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["pieces"] == 2
    assert sorted(s["path"].rsplit("/", 1)[-1] for s in info["skipped"]) == ["corrupt.mid", "tunes.abc#2"]


def test_list_and_version():
    r = notelm("data", "list", "--json")
    assert r.returncode == 0 and any(row["name"] == "essen-kinder" for row in json.loads(r.stdout))
    assert notelm("--version").stdout.startswith("notelm ")


def test_quickstart_refuses_to_overwrite(tmp_path):
    (tmp_path / "quickstart").mkdir()
    r = notelm("quickstart", "--out", str(tmp_path / "quickstart"))
    assert r.returncode != 0 and "--force" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args", [("bogus",), ("train", "lstm", "--set", "a=1", "b=2")])
def test_usage_errors_are_one_message_not_a_traceback(args):
    r = notelm(*args)
    assert r.returncode == 2 and "Error:" in r.stderr and "Traceback" not in r.stderr


def test_maestro_sample_is_bundled_and_needs_no_root():
    r = notelm("data", "info", "maestro-sample", "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["pieces"] == 12 and info["splits"] == {"train": 0, "valid": 0, "test": 12} and not info["skipped"]
    assert info["notes"] == 36_688 and info["duration_unit"] == "seconds" and 2900 < info["duration"] < 3000
    from notelm.bundled import MAESTRO_SAMPLE

    license_ = (MAESTRO_SAMPLE / "README.md").read_text()
    assert "CC BY-NC-SA 4.0" in license_ and "Hawthorne" in license_


def test_models_list_describes_every_builtin_within_the_budget():
    from notelm.pretrained import BUDGET_BYTES, HERE, folder_bytes

    r = notelm("models", "list", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert isinstance(rows, list)
    for row in rows:
        assert {"name", "family", "parameters", "bytes", "corpus", "license", "metrics"} <= set(row)
        assert row["bytes"] > 0 and row["parameters"] and row["license"]
    assert folder_bytes(HERE) < BUDGET_BYTES
    r = notelm("evaluate", "builtin:nosuch", "--corpus", "maestro-sample")
    assert r.returncode == 1 and "Traceback" not in r.stderr and "nosuch" in r.stderr
