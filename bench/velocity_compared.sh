#!/usr/bin/env bash
# The compared configuration (4 layers, d_model 256, d_ff 1024, 4 heads, 5/5/3 bins) trained in
# stretches of EVERY (default 500) steps, each resumed exactly, and evaluated on MAESTRO's
# validation split after each: bench/results/velocity-curve/compared-STEPS.json, read by
# bench_velocity.py --table. About 3.5 s a step on one thread of this 2-core CPU, 1.5 s on two;
# STEPS (default 3000) sets how far it goes, THREADS (default 1) the threads it trains on.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${NOTELM_SHARED:-../shared}/data/maestro-mini
RUN=${RUN:-runs/velocity-compared}
EVERY=${EVERY:-500}
STEPS=${STEPS:-3000}
stops=$(seq "$EVERY" "$EVERY" "$STEPS")
[ $((STEPS % EVERY)) -eq 0 ] || stops="$stops $STEPS"
for steps in $stops; do
  out=bench/results/velocity-curve/compared-$steps.json
  [ -f "$out" ] && continue
  at=$(.venv/bin/python -c "import json; print(json.load(open('$RUN/metrics.json'))['global_step'])" 2>/dev/null || echo 0)
  if [ -d "$RUN" ]; then
    [ "$at" -lt "$steps" ] && .venv/bin/notelm train velocity --out "$RUN" --resume --max-steps "$steps" --threads "${THREADS:-1}" --quiet
  else
    .venv/bin/notelm train velocity --corpus maestro --root "$ROOT" --encoding note-tokens --preset compared \
      --set encoding.bins=5,5,3 --max-steps "$steps" --threads "${THREADS:-1}" --quiet --out "$RUN"
  fi
  .venv/bin/notelm evaluate "$RUN" --corpus maestro --root "$ROOT" --split valid --json > "$out.tmp" && mv "$out.tmp" "$out"
done
