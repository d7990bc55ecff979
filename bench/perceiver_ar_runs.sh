#!/usr/bin/env bash
# Trains the three rows of bench/results/perceiver-ar.json (issue 13) on the maestro train split,
# one after another, one torch thread each (about an hour each on a shared 2-core CPU):
# the built-in Perceiver AR (copied to src/notelm/pretrained/perceiver-ar/ without data, logs or
# checkpoints), and a Transformer and an LSTM of about its size (~1 M parameters) for about as long.
#   bash bench/perceiver_ar_runs.sh /path/to/maestro-mini
# then:
#   python bench/bench_perceiver_ar.py nll --root ROOT --run perceiver-ar=runs/pa/perceiver-ar \
#       --run transformer=runs/pa/transformer --run lstm=runs/pa/lstm
set -euo pipefail
cd "$(dirname "$0")/.."
root="${1:?the MAESTRO folder}"
out=runs/pa; mkdir -p "$out"
train() {  # name model steps [--set ...]
  local name="$1" model="$2" steps="$3"; shift 3
  [ -f "$out/$name/model.safetensors" ] && return 0
  .venv/bin/notelm train "$model" --preset small --corpus maestro --root "$root" --encoding performance \
    --max-steps "$steps" --threads 1 --out "$out/$name" "$@" >"$out/$name.log" 2>&1
}
train perceiver-ar perceiver-ar 3000 --set train.val_every=500
# the equal-time row (1,200 steps, the small preset as it was: dropout 0.1)
train perceiver-ar-1200 perceiver-ar 1200 --set train.val_every=300 --set model.dropout=0.1
train transformer transformer 1000 --set train.windows=in-piece --set train.val_every=250
train lstm lstm 3500 --set model.embed_dim=128 --set model.hidden=256 --set model.layers=2 --set model.context=256 \
  --set model.dropout=0.1 --set train.batch_size=8 --set train.lr=2e-3 --set train.windows=in-piece --set train.val_every=500
