"""Shared test set-up: a private cache, and where the shared real data lives (if it does)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
FIXTURES = HERE / "fixtures"
SHARED = Path(os.environ.get("NOTELM_SHARED", HERE.parent.parent / "shared"))
MAESTRO_MINI = SHARED / "data" / "maestro-mini"
POP909 = SHARED / "data" / "pop909"


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Every test session parses into its own cache, leaving the user's alone."""
    path = tmp_path_factory.mktemp("notelm-cache")
    old = os.environ.get("NOTELM_CACHE_DIR")
    os.environ["NOTELM_CACHE_DIR"] = str(path)
    yield path
    if old is None:
        os.environ.pop("NOTELM_CACHE_DIR", None)
    else:
        os.environ["NOTELM_CACHE_DIR"] = old


@pytest.fixture
def one_thread():
    """Tiny networks run fastest on one torch thread (and far faster on a busy machine); use
    with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


needs_maestro = pytest.mark.skipif(not MAESTRO_MINI.is_dir(), reason=f"real data absent: {MAESTRO_MINI}")
needs_pop909 = pytest.mark.skipif(not POP909.is_dir(), reason=f"real data absent: {POP909}")


def step_path(model, sequences):
    """Distributions by walking start/predict/observe: the slow path the fast ones must equal."""
    out = []
    for seq in sequences:
        state, rows = model.start(), []
        for x in seq:
            rows.append(model.predict(state))
            state = model.observe(state, x)
        out.append(np.array(rows).reshape(len(seq), model.alphabet_size))
    return out
