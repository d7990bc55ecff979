"""``notelm idyom`` as a user meets it: Pearce (2005)'s figures on the Essen kinder songs
through the command line, its JSON and CSV, and one-line errors for bad settings."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from notelm.cli import app, main
from notelm.idyom import run_idyom, smoothing
from notelm.models.ppm import PPMConfig

runner = CliRunner()
C_STAR = ["--escape", "c", "--order-bound", "none", "--interpolated", "--no-update-exclusion"]


def idyom_json(*args):
    result = runner.invoke(app, ["idyom", "essen-kinder", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("args, published", [
    (["--models", "ltm", *C_STAR], 2.428),  # Pearce 2005, Dataset 7: LTM C*I
    (["--models", "stm", *C_STAR], 2.693),  # STM C*I
    (["--models", "both+", *C_STAR, "--combine", "arithmetic", "--bias", "2"], 2.106),  # LTM+ with STM
    (["--models", "ltm", "--escape", "c", "--order-bound", "2"], 2.613),  # LTM C2I
])
def test_pearce_2005_figures_on_kinder(args, published):
    summary = idyom_json(*args, "--folds", "10")
    assert summary["pieces"] == 213 and summary["events"] == 8393
    # within 0.015 bits of the thesis's figures (the largest difference is 0.015, BOTH+)
    assert abs(summary["mean_ic_per_piece"] - published) < 0.0155, summary


def test_json_keys_and_the_csv_table(tmp_path):
    out = tmp_path / "events.csv"
    summary = idyom_json("--models", "both", "--viewpoints", "cpitch,cpint:dur", "--output", str(out))
    assert {"mean_ic_per_piece", "mean_ic_per_event", "events", "pieces", "seconds", "events_per_second"} <= set(summary)
    assert summary["seconds"] > 0 and summary["events_per_second"] > 0
    assert summary["viewpoints"] == ["cpitch", "cpint*dur"]
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == summary["events"]
    assert list(rows[0])[:9] == ["piece", "position", "symbol", "piece_id", "pitch", "onset", "ic", "entropy", "probability"]
    assert {"fold", "p_ltm", "p_stm", "p_ltm:cpitch", "p_stm:cpint*dur"} <= set(rows[0])
    assert rows[0]["p_ltm:cpint*dur"] == "nan"  # no interval before the first note
    mean_per_piece = {}
    for r in rows:
        mean_per_piece.setdefault(r["piece"], []).append(float(r["ic"]))
    assert sum(sum(v) / len(v) for v in mean_per_piece.values()) / len(mean_per_piece) == pytest.approx(summary["mean_ic_per_piece"])
    again = runner.invoke(app, ["idyom", "essen-kinder", "--models", "stm", "--output", str(out)])
    assert again.exit_code != 0 and "--force" in str(again.exception)
    forced = runner.invoke(app, ["idyom", "essen-kinder", "--models", "stm", "--output", str(out), "--force", "--json"])
    assert forced.exit_code == 0, forced.output


def test_options_not_given_take_idyoms_defaults_and_stm_options_override():
    ltm, stm = smoothing()
    assert (ltm, stm) == (PPMConfig.idyom_ltm(), PPMConfig.idyom_stm())
    ltm, stm = smoothing(escape="d", order_bound="3", stm_order_bound="none", stm_update_exclusion=False)
    assert (ltm.escape, ltm.order_bound, ltm.update_exclusion) == ("d", 3, False)
    assert (stm.escape, stm.order_bound, stm.update_exclusion) == ("d", None, False)


def test_run_idyom_stm_needs_no_folds():
    from notelm.corpora import load_corpus

    result = run_idyom(load_corpus("essen-kinder").pieces[:20], models="stm", viewpoints=["cpint", "contour"])
    assert result.summary()["folds"] is None and result.evaluation.fold is None
    assert set(result.evaluation.components) == {"stm", "stm:cpint", "stm:contour"}


def run_main(args, capsys, monkeypatch):
    """The real entry point (`notelm.cli.main`) in this process: exit status and stderr lines."""
    monkeypatch.setattr(sys, "argv", ["notelm", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    return exit_.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize("args, message", [
    (["--escape", "z"], "escape must be one of"),
    (["--order-bound", "-3"], "order bound must be an integer >= 0 or 'none'"),
    (["--stm-order-bound", "two"], "order bound must be an integer >= 0 or 'none'"),
    (["--viewpoints", "cpitch,pitchy"], "unknown viewpoint 'pitchy'"),
    (["--viewpoints", "dur"], "cannot predict"),
    (["--models", "all"], "models must be one of"),
    (["--combine", "median"], "method must be one of"),
    (["--folds", "1", "--models", "ltm"], "k must be an int between 2"),
    (["--top-p", "1.5", "--generate", "1"], "top-p must be"),
])
def test_bad_settings_are_one_line_on_stderr(args, message, capsys, monkeypatch):
    code, lines = run_main(["idyom", "essen-kinder", *args], capsys, monkeypatch)
    assert code != 0
    assert len(lines) == 1 and message in lines[0], lines


def test_no_traceback_from_the_installed_command():
    r = subprocess.run([sys.executable, "-m", "notelm", "idyom", "essen-kinder", "--escape", "z"],
                       capture_output=True, text=True, env=os.environ.copy(), timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "notelm: error: escape must be one of a, b, c, d, ax; got 'z'"
