#!/usr/bin/env bash
# Trains the neural rows of bench/results/dstm-<corpus>.json (issue 6) into runs/dstm-<corpus>/:
# two queues of one-thread runs side by side, sized for a 2-core CPU (about an hour).
#   bash bench/dstm_runs.sh [corpus]      # default: oneills (all rows)
#   bash bench/dstm_runs.sh essen          # Essen: ccstm-512 and wavenet-512 only
# then bench/bench_dstm.py --corpus C --run NAME=runs/dstm-C/NAME ... (see the README's table).
set -euo pipefail
cd "$(dirname "$0")/.."
corpus="${1:-oneills}"
out="runs/dstm-$corpus"; mkdir -p "$out"
train() {  # name model steps [--set ...]
  local name="$1" model="$2" steps="$3"; shift 3
  [ -f "$out/$name/model.safetensors" ] && return 0
  .venv/bin/notelm train "$model" --preset small --corpus "$corpus" --encoding dstm-frames \
    --max-steps "$steps" --set train.val_every=250 --threads 1 --out "$out/$name" "$@" >"$out/$name.log" 2>&1
}
if [ "$corpus" != oneills ]; then  # Essen: the CCSTM and the WaveNet only
  (train ccstm-512 ccstm 2000) & (train wavenet-512 wavenet 2000) & wait
  exit 0
fi
(train ccstm-512 ccstm 2500; train dcstm-512 dcstm 2000; train wavenet-512 wavenet 2000) &
(train transformer-512 transformer 1500 --set model.dim=96 --set model.n_layers=3 --set model.context=512
 train ccstm-32 ccstm 2000 --set model.layers=5) &
wait
# a wider CCSTM-512 (96 filters, code 256): does capacity move the precision? (README, issue 6)
train ccstm-512-wide ccstm 2500 --set model.filters=96 --set model.code_size=256
