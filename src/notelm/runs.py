"""Run directories: the artifacts `notelm train` writes and every other command reads.

A run of a neural model (lstm, transformer, ccstm, dcstm, wavenet) holds::

    config.json          model family and settings, encoding, data, training, run format, version
    encoding.json        the encoding (settings, vocabulary, what it learned): encoding_from_dict
    model.safetensors    the weights with the best validation loss (safetensors: no pickles)
    metrics.json         global_step, best_val_loss, best_step, the validation history, timings
    README.md            the model card
    data/                the encoded corpus as memory-mapped token arrays (notelm.training.data)
    logs/                TensorBoard events (logs/tensorboard) and CSV (logs/csv/metrics.csv)
    checkpoints/last.safetensors  the training state of the last step, for --resume
    checkpoints/best.safetensors  the same at the step with the best validation loss

A run of a counting model (ppm, markov, repetition; `notelm.training.symbolic`) holds the same
config.json (without the ``train`` and ``trainer`` sections: nothing is optimised),
encoding.json, metrics.json (the validation figures), README.md and data/, and instead of
weights ``counts.safetensors``: what the model counted, as flat integer arrays
(`notelm.models.serialize`), checked on loading.

Loading reads JSON and safetensors only, so a run downloaded from anyone is safe to load — and
to resume: the checkpoints hold tensors and JSON too (`notelm.training.checkpoints`), never a
pickle. Every command that takes a run directory also takes ``builtin:NAME``, a run shipped
inside the package (`notelm.pretrained`).

A run records ``RUN_FORMAT``; a run of another format is refused with a one-line reason.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from notelm import __version__
from notelm.errors import NotelmError
from notelm.io.files import atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:  # torch loads only when a neural run is used
    import torch

    from notelm.models.base import SequenceModel

RUN_FORMAT = 1  # bump when what a run directory holds changes incompatibly (resume checkpoints
# changed from Lightning's pickles to safetensors within format 1: old runs still load; only their
# pickled checkpoints are refused)
CONFIG, ENCODING, WEIGHTS, METRICS, CARD = "config.json", "encoding.json", "model.safetensors", "metrics.json", "README.md"
COUNTS = "counts.safetensors"  # what a counting model learned (counts as integer arrays)
LAST_CHECKPOINT = Path("checkpoints") / "last.safetensors"  # resume state: tensors and JSON, never a pickle
BEST_CHECKPOINT = Path("checkpoints") / "best.safetensors"


class RunError(NotelmError):
    """A run directory that is missing, incomplete or from an incompatible notelm."""


# ---- writing --------------------------------------------------------------------------------


RUN_ENTRIES = {CONFIG, ENCODING, WEIGHTS, METRICS, CARD, COUNTS, "data", "logs", "checkpoints"}


def clear_run_directory(out: Path) -> None:
    """Remove what notelm wrote in run directory ``out`` (``train --force``); refuse, touching
    nothing, when it holds anything else."""
    import shutil

    if foreign := sorted(p.name for p in out.iterdir() if p.name not in RUN_ENTRIES):
        raise RunError(f"{out} holds files notelm did not write ({', '.join(foreign[:3])}); "
                       "--force replaces only a run directory: choose another --out")
    for path in out.iterdir():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2) + "\n", force=True)


def save_weights(network: torch.nn.Module, path: Path) -> None:
    """The network's weights as safetensors (tied weights stored once), atomically."""
    from safetensors.torch import save

    state, seen = {}, {}
    for name, tensor in network.state_dict().items():
        key = (tensor.data_ptr(), tensor.shape, tensor.dtype)
        if key in seen:  # tied parameter (e.g. output head = embedding): keep one copy
            continue
        seen[key] = name
        state[name] = tensor.detach().to("cpu").contiguous()
    atomic_write_bytes(path, save(state, metadata={"notelm_version": __version__, "run_format": str(RUN_FORMAT)}),
                       force=True)


def save_counts(model: SequenceModel, path: Path) -> None:
    """What a counting model learned, as safetensors (numpy arrays, no pickles), atomically."""
    from notelm.models.serialize import counts_bytes

    atomic_write_bytes(path, counts_bytes(model, {"notelm_version": __version__, "run_format": str(RUN_FORMAT)}),
                       force=True)


def load_counts(model: SequenceModel, path: Path) -> SequenceModel:
    """Fill an untrained counting model (built from the run's config) with the stored counts."""
    from safetensors import SafetensorError

    from notelm.models.serialize import CountsError, load_model_arrays, read_counts

    if not path.is_file():
        raise RunError(f"{path.parent}: not a complete run directory ({path.name} is missing)")
    try:
        return load_model_arrays(model, read_counts(path))
    except (SafetensorError, OSError) as e:
        raise RunError(f"{path}: cannot read the counts ({e})") from None
    except CountsError as e:
        raise RunError(f"{path}: {e}") from None


def load_weights(network: torch.nn.Module, path: Path) -> None:
    """Load safetensors weights into ``network`` (tied parameters filled from their twin)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise RunError(f"{path}: cannot read the weights ({e})") from None
    missing, unexpected = network.load_state_dict(state, strict=False)
    tied = {n for n, p in network.named_parameters(remove_duplicate=False)} - dict(network.named_parameters()).keys()
    missing = [m for m in missing if m not in tied]
    if missing or unexpected:
        raise RunError(f"{path}: weights do not fit the configured network "
                       f"(missing {missing[:3]}, unexpected {unexpected[:3]})")


# ---- reading --------------------------------------------------------------------------------


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path.parent}: not a complete run directory ({path.name} is missing)") from None
    except (OSError, ValueError) as e:
        raise RunError(f"{path}: unreadable ({e})") from None


def check_format(config: dict, where: Path) -> None:
    fmt = config.get("format")
    if fmt != RUN_FORMAT:
        raise RunError(f"{where} was written by notelm {config.get('notelm_version', '?')} (run format {fmt}); "
                       f"this notelm {__version__} reads run format {RUN_FORMAT}: retrain it, or use that version")


@dataclass
class Run:
    """A run directory opened for use: its config, metrics and (lazily) encoding and model."""

    path: Path
    config: dict
    metrics: dict

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def model_name(self) -> str:
        return self.config["model"]["name"]

    @property
    def spec(self):
        """The registry record of the run's model (`notelm.models.registry`)."""
        from notelm.models.registry import spec

        return spec(self.model_name)

    @property
    def kind(self) -> str:
        """counting, lm, seq2seq or segments (`notelm.models.registry.KINDS`)."""
        return self.spec.kind

    @property
    def counting(self) -> bool:
        """Whether this is a run of a counting model (ppm, markov, repetition), not a network."""
        return self.kind == "counting"

    def encoding(self):
        from notelm.encodings import encoding_from_dict

        data = read_json(self.path / ENCODING)
        if not isinstance(data, dict):
            raise RunError(f"{self.path / ENCODING}: not an encoding (expected a JSON object)")
        try:
            return encoding_from_dict(data)
        except NotelmError as e:
            raise RunError(f"{self.path / ENCODING}: {e}") from None
        except (KeyError, TypeError, ValueError) as e:
            raise RunError(f"{self.path / ENCODING}: damaged ({type(e).__name__}: {e})") from None

    def network(self) -> torch.nn.Module:
        from notelm.models.neural import build_network

        if self.counting:
            raise RunError(f"{self.path}: a {self.model_name} run has counts, not a network")
        try:
            net = build_network(self.model_name, self.config["model"]["config"])
        except NotelmError as e:
            raise RunError(f"{self.path / CONFIG}: {e}") from None
        except (KeyError, TypeError, ValueError) as e:
            raise RunError(f"{self.path / CONFIG}: the model settings are damaged ({type(e).__name__}: {e})") from None
        weights = self.path / WEIGHTS
        if not weights.is_file():
            raise RunError(f"{self.path}: no {WEIGHTS} (did training reach its first validation?)")
        load_weights(net, weights)
        return net.eval()

    def model(self, **options: Any) -> SequenceModel:
        """The trained model as a `SequenceModel` over the encoding's vocabulary (a
        `ConditionalModel` for a sequence-to-sequence run). Options of a neural run: dtype,
        device, use_cache, stride; a counting run takes none."""
        if self.counting:
            from notelm.models.symbolic import build_counting

            if options:
                raise TypeError(f"a {self.model_name} run takes no options; got {sorted(options)}")
            try:
                model = build_counting(self.model_name, self.config["model"]["config"])
            except NotelmError as e:
                raise RunError(f"{self.path}: {e}") from None
            return load_counts(model, self.path / COUNTS)
        from notelm.models.neural import neural_model

        return neural_model(self.model_name, self.network(), **options)


BUILTIN = "builtin:"


def run_path(path: str | Path) -> Path:
    """The folder a run argument names: a path, or ``builtin:NAME`` (`notelm.pretrained`)."""
    text = str(path)
    if text.startswith(BUILTIN):
        from notelm.pretrained import builtin_path

        return builtin_path(text[len(BUILTIN):])
    return Path(path)


def open_run(path: str | Path) -> Run:
    """Open a run directory (or ``builtin:NAME``), refusing one that is missing, damaged or of
    another run format."""
    path = run_path(path)
    if not path.is_dir():
        raise RunError(f"{path}: no such run directory")
    config = read_json(path / CONFIG)
    if not isinstance(config, dict):
        raise RunError(f"{path / CONFIG}: not a run's config (expected a JSON object)")
    check_format(config, path)
    from notelm.models.registry import REGISTRY

    model = config.get("model")
    name = model.get("name") if isinstance(model, dict) else None
    if name not in REGISTRY or not isinstance(model.get("config"), dict):
        raise RunError(f"{path}: holds a model this notelm does not know ({name!r}; known: {', '.join(REGISTRY)})")
    for section in ("encoding", "data"):
        if not isinstance(config.get(section), dict):
            raise RunError(f"{path / CONFIG}: the {section} section is missing or not an object")
    metrics = read_json(path / METRICS) if (path / METRICS).is_file() else {}
    return Run(path=path, config=config, metrics=metrics if isinstance(metrics, dict) else {})


# ---- the model card ---------------------------------------------------------------------------


def _header(config: dict) -> list[str]:
    m, d = config["model"], config["data"]
    return [
        f"# {m['name']} on {d['corpus']} ({config['encoding']['name']} encoding)",
        "",
        f"Trained with notelm {config['notelm_version']} (run format {config['format']}).",
        "",
    ]


def _data(config: dict) -> list[str]:
    d = config["data"]
    return [
        "## Data",
        "",
        f"- corpus `{d['corpus']}`, encoding `{config['encoding']['name']}` with settings `{json.dumps(config['encoding']['settings'])}`",
        f"- pieces train/valid: {d['pieces']['train']}/{d['pieces']['valid']}, tokens train/valid: "
        f"{d['tokens']['train']:,}/{d['tokens']['valid']:,}; skipped: {json.dumps(d['skipped'])}",
        "",
    ]


USE = [
    "## Use",
    "",
    "```",
    "notelm evaluate RUN --corpus CORPUS --split test",
    "notelm generate RUN --out song.mid --wav song.wav --png roll.png",
    "```",
    "",
]


def model_card(config: dict, metrics: dict) -> str:
    """README.md of a run: what was trained on what, how, and how well."""
    if "train" not in config:
        return counting_card(config, metrics)
    m, t = config["model"], config["train"]
    trainer = config.get("trainer", {})
    best = metrics.get("best_val_loss")
    lines = [
        *_header(config),
        "## Model",
        "",
        f"- family: `{m['name']}` — {m.get('description', '')}; preset `{m.get('preset')}`; "
        f"{metrics.get('parameters', 0):,} parameters",
        f"- settings: `{json.dumps(m['config'])}`",
        "",
        *_data(config),
        "## Training",
        "",
        f"- settings: `{json.dumps(t)}`",
        f"- steps: {metrics.get('global_step', 0)}, time: {metrics.get('train_seconds', 0):.0f} s "
        f"on {trainer.get('devices', '?')} x {trainer.get('accelerator', '?')} ({trainer.get('strategy', '?')}, "
        f"precision {trainer.get('precision', '?')}, {trainer.get('threads', '?')} threads per process)",
        "",
        "## Results",
        "",
        (f"- best validation loss {best:.4f} nats/token = {metrics.get('best_val_bits') or best / math.log(2):.4f} bits/token "
         f"at step {metrics.get('best_step')}") if best is not None else "- no validation yet",
        "",
        *USE,
        "Load it in Python with `notelm.runs.open_run(path).model()`. Loading reads only JSON and",
        "safetensors files (`model.safetensors` holds the weights of the best validation loss).",
        "`checkpoints/last.safetensors` (the whole training state of the last step: weights,",
        "optimiser, schedule, counters) is for `notelm train --resume`; `checkpoints/best.safetensors`",
        "is the same at the best step. Both hold tensors and JSON only, never a pickle.",
        "",
    ]
    return "\n".join(lines)


def counting_card(config: dict, metrics: dict) -> str:
    """README.md of a counting model's run (ppm, markov, repetition)."""
    m = config["model"]
    bits = metrics.get("valid_bits_per_event")
    lines = [
        *_header(config),
        "## Model",
        "",
        f"- family: `{m['name']}` — {m.get('description', '')}; {metrics.get('counts', 0):,} n-grams counted",
        f"- settings: `{json.dumps(m['config'])}`",
        "",
        *_data(config),
        "## Training",
        "",
        f"- one pass over the training split: {metrics.get('train_seconds', 0):.2f} s, "
        f"{metrics.get('train_tokens', 0):,} tokens",
        "",
        "## Results",
        "",
        (f"- validation: {bits:.4f} bits/token, accuracy {metrics.get('valid_accuracy', float('nan')):.4f}, "
         f"{metrics.get('valid_tokens', 0):,} tokens") if bits is not None else "- no validation",
        "",
        *USE,
        "Load it in Python with `notelm.runs.open_run(path).model()`. Loading reads only JSON and",
        "`counts.safetensors` (what the model counted, as integer arrays, checked on loading).",
        "",
    ]
    return "\n".join(lines)


def write_card(path: Path, config: dict, metrics: dict) -> None:
    atomic_write_text(path / CARD, model_card(config, metrics), force=True)
