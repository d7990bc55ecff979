"""Package a trained run directory as a built-in model (`src/notelm/pretrained/NAME/`).

    python bench/make_builtin.py RUN NAME --corpus CORPUS [--root PATH] [--split test]
        [--half] --command "the exact notelm train command that made RUN"

Copies what a built-in needs (config.json, encoding.json, the weights or counts, metrics.json),
nothing of the training data, logs or checkpoints; ``--half`` stores float weights as float16
(half the bytes; a float16 weight is read back into the float32 network). Then it evaluates
the packaged copy — not the original — on ``CORPUS``'s ``SPLIT`` with `notelm evaluate`'s
figures, writes them to ``evaluation.json``, and writes the model card: what it is, the exact
command and data it was trained with, the license of that data, its size and its figures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from notelm.corpora import get_spec  # noqa: E402
from notelm.leaderboard import evaluate_run  # noqa: E402
from notelm.pretrained import HERE as PRETRAINED  # noqa: E402
from notelm.pretrained import folder_bytes  # noqa: E402
from notelm.runs import CONFIG, COUNTS, ENCODING, METRICS, WEIGHTS, open_run  # noqa: E402

KEYS = ("bits_per_event", "accuracy", "mean_ic_per_piece", "nll_nats", "precision", "evt_nll_nats",
        "evt_precision", "events", "pieces")


def copy_weights(run: Path, out: Path, *, half: bool) -> None:
    if (run / COUNTS).is_file():
        shutil.copyfile(run / COUNTS, out / COUNTS)
        return
    from safetensors.torch import load_file, save_file

    state = load_file(str(run / WEIGHTS))
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    save_file(state, str(out / WEIGHTS), metadata={"notelm_builtin": "float16" if half else "float32"})
    (out / WEIGHTS).chmod(0o644)


def card(name: str, run, figures: dict, *, corpus: str, split: str, command: str, half: bool) -> str:
    config, metrics = run.config, run.metrics
    data = config["data"]
    license_ = get_spec(data["corpus"]).license
    lines = [
        f"# builtin:{name} — {config['model']['name']} on {data['corpus']} ({config['encoding']['name']} encoding)",
        "",
        f"{run.spec.description}. Use it as `builtin:{name}` wherever a run directory is taken, e.g.",
        f"`notelm evaluate builtin:{name} --corpus {corpus} --split {split}`.",
        "",
        "## Training",
        "",
        f"- command: `{command}`",
        f"- data: corpus `{data['corpus']}` (license: {license_}), pieces train/valid "
        f"{data['pieces']['train']}/{data['pieces']['valid']}, tokens {data['tokens']['train']:,}/{data['tokens']['valid']:,}",
        f"- encoding `{config['encoding']['name']}` with settings `{json.dumps(config['encoding']['settings'])}`",
        f"- model settings: `{json.dumps(config['model']['config'])}`",
        *([f"- training settings: `{json.dumps(config['train'])}`",
           f"- steps: {metrics.get('global_step')}, {metrics.get('train_seconds', 0):.0f} s on "
           f"{config.get('trainer', {}).get('devices', '?')} x {config.get('trainer', {}).get('accelerator', '?')}, "
           f"{config.get('trainer', {}).get('threads', '?')} torch threads"] if "train" in config else []),
        f"- parameters: {metrics.get('parameters') or metrics.get('counts') or 0:,}"
        + ("; weights stored as float16" if half else ""),
        "",
        "## Figures",
        "",
        *( [f"- validation (during training): {metrics['best_val_loss']:.4f} nats = {metrics['best_val_bits']:.4f} "
            f"bits per token at step {metrics.get('best_step')}"] if metrics.get("best_val_loss") is not None else []),
        f"- `{corpus}` {split} split, this packaged copy: "
        + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v:,}" for k, v in figures.items() if v is not None),
        "",
        "The weights are safetensors and the settings JSON: loading runs no code.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("name")
    p.add_argument("--corpus", required=True)
    p.add_argument("--root", default=None)
    p.add_argument("--split", default="test")
    p.add_argument("--half", action="store_true")
    p.add_argument("--command", required=True)
    p.add_argument("--force", action="store_true")
    a = p.parse_args()
    out = PRETRAINED / a.name
    if out.exists():
        if not a.force:
            sys.exit(f"{out} exists; pass --force to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for name in (CONFIG, ENCODING, METRICS):
        shutil.copyfile(a.run / name, out / name)
    copy_weights(a.run, out, half=a.half)
    result = evaluate_run(out, corpus=a.corpus, root=a.root, split=a.split)
    figures = {k: result.get(k) for k in KEYS}
    (out / "evaluation.json").write_text(json.dumps({"corpus": a.corpus, "split": a.split, "figures": figures},
                                                    indent=2) + "\n")
    run = open_run(out)
    (out / "README.md").write_text(card(a.name, run, figures, corpus=a.corpus, split=a.split, command=a.command,
                                        half=a.half))
    print(json.dumps({"name": a.name, "bytes": folder_bytes(out), **figures}, indent=2))


if __name__ == "__main__":
    main()
