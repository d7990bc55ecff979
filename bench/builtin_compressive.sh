#!/usr/bin/env bash
# The built-in models behind the quickstart's long-memory row (issue 12; notelm.quickstart.long_memory):
# a small Compressive Transformer and a Transformer of the same width and depth (96 x 4 layers),
# trained the same number of steps on the same tokens per step (1,024: 8 segments of 128 / 4
# windows of 256) on maestro-mini's training split (209 performances of MAESTRO v2's train split,
# 3.8M performance events), one thread each, one after the other (about an hour and a half).
#   bash bench/builtin_compressive.sh                 # MAESTRO=path/to/maestro-mini STEPS=3000
# Writes runs/builtin-compressive/NAME (full run directories) and copies what a built-in ships
# (config, encoding, weights, metrics, model card) to src/notelm/pretrained/NAME/.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${MAESTRO:-../shared/data/maestro-mini}"
steps="${STEPS:-3000}"
out=runs/builtin-compressive
mkdir -p "$out"
common=(--corpus maestro --root "$root" --encoding performance --preset small --max-steps "$steps"
        --set train.val_every=1000 --threads 1)
train() {  # name model [--set ...]
  local name="$1" model="$2"; shift 2
  [ -f "$out/$name/metrics.json" ] && [ -f "$out/$name/checkpoints/last.safetensors" ] || \
    .venv/bin/notelm train "$model" "${common[@]}" --out "$out/$name" --quiet "$@"
  local dest="src/notelm/pretrained/$name" command
  command="notelm train $model ${common[*]} --out $out/$name $*"
  mkdir -p "$dest"
  cp "$out/$name"/{config.json,encoding.json,model.safetensors,metrics.json,README.md} "$dest/"
  cat >> "$dest/README.md" <<EOF

## How it was made

\`bash bench/builtin_compressive.sh\` (notelm issue 12), which ran

    $command

on maestro-mini (MAESTRO v2, CC BY-NC-SA 4.0: these weights are a derived work under the same
license), then copied config.json, encoding.json, model.safetensors, metrics.json and this card
here. \`notelm.quickstart.long_memory\` scores it beside its companion on maestro-sample
(MAESTRO's test split, never trained on).
EOF
}
train compressive-maestro compressive
train transformer-maestro transformer --set model.dim=96 --set train.batch_size=4
du -sh src/notelm/pretrained/compressive-maestro src/notelm/pretrained/transformer-maestro
