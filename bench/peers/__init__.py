"""Peer implementations the benchmarks measure notelm against, wrapped as published.

One module per peer library (the ``[bench]`` extra: ``bash scripts/setup.sh --bench``):

- `peers.compressive` — lucidrains' ``compressive-transformer-pytorch`` 0.4.0
- `peers.perceiver_ar` — ``perceiver-ar-pytorch`` 0.0.10
- `peers.t5` — Hugging Face ``transformers`` T5, built from a config (nothing downloaded)
- `peers.data` — real pieces from the shared datasets, as notelm encodes them

Import them as ``from peers import compressive``. A benchmark script run as
``python bench/xyz.py`` from the repository root has ``bench/`` first on ``sys.path``, so that
works as it is; anything else (the tests, `peers/smoke.py`) puts ``bench/`` on the path first.
Importing this package imports no peer library; each module imports its own, so a missing
extra fails at that module's import with ModuleNotFoundError (the tests importorskip it).
Nothing under ``src/notelm`` may import these libraries: they are benchmark-only.
"""

import os

# `peers.t5` builds T5 from a config; nothing may be downloaded, so the hub is off before any
# module of this package imports transformers.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
