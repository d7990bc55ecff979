"""Package a trained velocity run as a built-in model: ``src/notelm/pretrained/NAME/``.

What goes in (and nothing else: no data, logs or checkpoints): ``config.json``,
``encoding.json``, ``model.safetensors`` (the run's best weights stored as float16, half the
bytes; they load into the float32 network unchanged to 3 significant digits — the script checks
that the validation figures do not move), ``metrics.json`` (the run's, plus
``velocity_baselines``: the baselines fitted on the run's training split, so `notelm evaluate`
can show them beside the model on any corpus), ``evaluation.json`` (the figures on MAESTRO's
validation split of maestro-mini) and the model card ``README.md`` (data, exact command,
license, figures).

    python bench/velocity_builtins.py RUN NAME --command "notelm train velocity ..."
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

HERE = Path(__file__).parent
PRETRAINED = HERE.parent / "src" / "notelm" / "pretrained"
ROOT = Path(os.environ.get("NOTELM_SHARED", HERE.parent.parent / "shared")) / "data" / "maestro-mini"


def card(name: str, run, command: str, figures: dict, size: int) -> str:
    cfg, m = run.config, run.metrics
    enc = cfg["encoding"]["settings"]
    rows = "\n".join(f"| {r['model']} | {r['mae_teacher_forced']:.3f} | {r['mae_greedy']:.3f} | {r['mae_expected']:.3f} | "
                     f"{r['pearson']:.3f} | {r['std_ratio']:.3f} |" for r in figures["rows"])
    variant = ("no velocity in the source: it humanizes flat MIDI files and scores" if figures["variant"] == "no-velocity"
               else "the source carries each note's velocity bin (midi-translation's task: it refines velocities)")
    return f"""# builtin:{name} — velocity model ({variant})

midi-translation's encoder-decoder Transformer (`notelm.models.seq2seq`, preset
`{cfg['model']['preset']}`: {json.dumps(cfg['model']['config'])}), {m.get('parameters', 0):,} parameters,
{size / 2**20:.1f} MB as stored (float16 weights). `notelm humanize FILE --model builtin:{name}`.

## Data

MAESTRO v2's train split of `maestro-mini` ({cfg['data']['pieces']['train']} performances,
{cfg['data']['tokens']['train']:,} notes; validation {cfg['data']['pieces']['valid']} performances),
note-tokens {json.dumps(enc)} with bins fitted on the training split, sustain pedal folded into
note ends (pedal down at CC64 >= 64). MAESTRO is CC BY-NC-SA 4.0 (Google LLC; Hawthorne et al.,
ICLR 2019): this model is trained on it, so use it non-commercially.

## Made with

```
{command}
python bench/velocity_builtins.py RUN {name} --command "..."
```

{m.get('global_step')} steps in {m.get('train_seconds', 0):.0f} s on a shared 2-core CPU (one thread);
best validation loss {m.get('best_val_loss', float('nan')):.4f} nats per velocity at step {m.get('best_step')}.

## Figures on MAESTRO's validation split ({figures['pieces']} performances, {figures['notes']:,} notes)

| model | MAE teacher-forced | MAE greedy | MAE expected | Pearson | std ratio |
|---|---:|---:|---:|---:|---:|
{rows}

Teacher-forced MAE is midi-translation's "val_dist"; greedy decoding is what `humanize
--temperature 0` writes; Pearson and the std ratio are within-piece, of the greedy velocities.
Baselines fitted on the training split.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("name")
    parser.add_argument("--command", required=True, help="the notelm train command that made the run")
    args = parser.parse_args()

    import torch
    from safetensors.torch import load_file, save_file

    from notelm.runs import open_run
    from notelm.velocity import baselines_dict, evaluate_velocity_run, run_baselines

    torch.set_num_threads(1)
    run = open_run(args.run)
    if run.model_name != "velocity":
        raise SystemExit(f"{args.run}: not a velocity run")
    before = evaluate_velocity_run(run, corpus="maestro", root=ROOT, split="valid")
    dest = PRETRAINED / args.name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for name in ("config.json", "encoding.json"):
        shutil.copyfile(run.path / name, dest / name)
    weights = load_file(str(run.path / "model.safetensors"))
    save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()}, str(dest / "model.safetensors"),
              metadata={"dtype": "float16", "from": "float32 training weights"})
    (dest / "model.safetensors").chmod(0o644)
    metrics = {**run.metrics, "velocity_baselines": baselines_dict(run_baselines(run))}
    (dest / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    packaged = open_run(dest)
    after = evaluate_velocity_run(packaged, corpus="maestro", root=ROOT, split="valid")
    drift = max(abs(a[k] - b[k]) for a, b in zip(before["rows"], after["rows"]) for k in ("mae_teacher_forced", "mae_expected"))
    if drift > 0.02:
        raise SystemExit(f"float16 weights moved the figures by {drift:.3f}")
    evaluation = {"corpus": "maestro (maestro-mini)", "split": "valid", "figures": after["rows"], "variant": after["variant"],
                  "pieces": after["pieces"], "notes": after["notes"], "float16_drift": drift}
    (dest / "evaluation.json").write_text(json.dumps(evaluation, indent=2) + "\n")
    size = sum(p.stat().st_size for p in dest.iterdir())
    (dest / "README.md").write_text(card(args.name, run, args.command, after, size))
    print(json.dumps({"built_in": str(dest), "bytes": size, **evaluation}, indent=2))


if __name__ == "__main__":
    main()
