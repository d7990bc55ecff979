"""One record per model name: every part resolves, every preset builds, names reach the CLI."""

from __future__ import annotations

import pytest
import torch

from notelm.errors import NotelmError
from notelm.models.registry import KINDS, REGISTRY, SPECS, names, resolve, spec

NEURAL = [s for s in SPECS if s.neural]


def test_every_record_has_a_known_kind_and_a_unique_name():
    assert len({s.name for s in SPECS}) == len(SPECS)
    assert {s.kind for s in SPECS} <= set(KINDS)
    assert names("counting") == ["ppm", "markov", "repetition"]
    assert set(names("neural")) == {s.name for s in NEURAL}


def test_unknown_names_list_the_known_ones():
    with pytest.raises(NotelmError, match="known: .*lstm.*transformer"):
        spec("gru")


@pytest.mark.parametrize("record", NEURAL, ids=lambda r: r.name)
def test_every_preset_of_every_network_builds(record):
    """Every preset, GPU-sized ones included, gives a valid config and a network (built on the
    meta device: no memory is allocated for the big ones)."""
    presets = record.preset_table
    assert "debug" in presets and "small" in presets
    for name, preset in presets.items():
        config = record.config_class.from_dict({**preset["model"], "vocab_size": 40,
                                                **({"target_vocab_size": 132} if record.kind == "seq2seq" else {})})
        with torch.device("meta"):
            net = record.network_class(config)
        assert sum(p.numel() for p in net.parameters()) > 0, name
        assert record.model_width(config) > 0


@pytest.mark.parametrize("record", [s for s in SPECS if not s.neural], ids=lambda r: r.name)
def test_counting_records_resolve(record):
    assert callable(resolve(record.settings)) and callable(resolve(record.build))


def test_train_help_lists_every_model():
    from typer.testing import CliRunner

    from notelm.cli import app

    result = CliRunner().invoke(app, ["train", "--help"], terminal_width=400)
    text = " ".join(result.output.split())
    for name in REGISTRY:
        assert name in text
