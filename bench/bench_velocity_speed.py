"""Speed of velocity decoding: cached against the original's uncached greedy decode, and a
10-minute MAESTRO performance through ``notelm humanize`` end to end (issue 11's goals: >= 10x,
and under 10 s on 2 cores with the built-in model).

1. Notes per second of greedy decoding by the same model (the built-in ``velocity``): with the
   decoder's KV cache and cross-attention keys computed once per window (`VelocityModel`,
   ``use_cache=True``); recomputing the whole decoder for every note as midi-translation's
   ``utils.py`` ``greedy_decode`` does (``use_cache=False``), with the same windows and batches,
   so the ratio isolates the cache (the two must choose the same velocities); and the original's
   whole loop (no cache, non-overlapping windows, one at a time), each after a warm-up on the
   first 256 notes (the first calls' one-time costs fell on whichever way ran first). Wall and CPU seconds: the CPU
   is shared, and CPU time moves less with the load.
2. Wall time of ``notelm humanize FILE --out OUT.mid`` as a fresh process (Python start, imports,
   reading, predicting, writing) on this 2-core machine, for a 607-second test-split
   performance (the model predicts on one thread: `VelocityModel`'s default).

    python bench/bench_velocity_speed.py            # writes bench/results/velocity-speed.json
    python bench/bench_velocity_speed.py --smoke    # a tiny random model, writes nothing
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).parent
ROOT = Path(os.environ.get("NOTELM_SHARED", HERE.parent.parent / "shared")) / "data" / "maestro-mini"
TEN_MINUTES = "2008/MIDI-Unprocessed_04_R3_2008_01-07_ORIG_MID--AUDIO_04_R3_2008_wav--7.midi"  # test split, 607 s


def decode_speed(model_spec: str, notes: int, smoke: bool = False) -> dict:
    import symusic

    from notelm.humanize import load_humanizer, midi_notes
    from notelm.models.seq2seq import VelocityModel

    if smoke:
        from notelm.encodings import get_encoding
        from notelm.models.seq2seq import PRESETS, Seq2Seq, VelocityConfig

        enc = get_encoding("note-tokens", velocity_bins=0)
        net = Seq2Seq(VelocityConfig.from_dict({**PRESETS["debug"]["model"], "vocab_size": len(enc.vocab)}))
        piece, _ = midi_notes(symusic.Score(str(ROOT / TEN_MINUTES)))
        enc.fit([piece])
    else:
        model, enc = load_humanizer(model_spec)
        net = model.network
        piece, _ = midi_notes(symusic.Score(str(ROOT / TEN_MINUTES)))
    source = enc.encode(piece)[:notes]
    out = {"model": model_spec if not smoke else "debug (random)", "notes": int(len(source)), "threads": 1}
    chosen = {}
    # (name, cache, stride, windows per batch): ours; ours without the cache (the same windows,
    # the same batches: isolates the cache); the original's loop (no cache, non-overlapping
    # windows decoded one at a time, utils.py greedy_decode)
    L = net.config.context
    ways = (("cached", True, L // 2, 64), ("uncached", False, L // 2, 64), ("original", False, L, 1))
    for name, cached, stride, batch in ways:
        m = VelocityModel(net, dtype=torch.float32, use_cache=cached, stride=stride)
        m.sample_velocities([source[:2 * L]], temperature=0, batch_size=batch)  # warm-up: first calls' one-time costs
        t0, c0 = time.perf_counter(), time.process_time()
        chosen[name] = m.sample_velocities([source], temperature=0, batch_size=batch)[0]
        secs, cpu = time.perf_counter() - t0, time.process_time() - c0
        out[name] = {"cache": cached, "stride": stride, "windows_per_batch": batch, "seconds": secs,
                     "cpu_seconds": cpu, "notes_per_s": len(source) / secs, "notes_per_cpu_s": len(source) / cpu}
    out["speedup"] = out["cached"]["notes_per_s"] / out["uncached"]["notes_per_s"]
    out["speedup_cpu"] = out["cached"]["notes_per_cpu_s"] / out["uncached"]["notes_per_cpu_s"]
    out["speedup_vs_original"] = out["cached"]["notes_per_s"] / out["original"]["notes_per_s"]
    out["same_velocities"] = bool(np.array_equal(chosen["cached"], chosen["uncached"]))
    return out


def humanize_wall(model_spec: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "notelm", "humanize", str(ROOT / TEN_MINUTES), "--out", f"{tmp}/out.mid",
               "--model", model_spec, "--json"]
        t0, before = time.perf_counter(), os.times()
        r = subprocess.run(cmd, capture_output=True, text=True)
        secs, after = time.perf_counter() - t0, os.times()
        cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        if r.returncode:
            raise SystemExit(r.stderr)
        notes = json.loads(r.stdout)["written"][0]["notes"]
    return {"seconds": secs, "cpu_seconds": cpu, "notes": notes, "performance_seconds": 607.5,
            "load_average": os.getloadavg(), "command": " ".join(cmd[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="builtin:velocity")
    parser.add_argument("--notes", type=int, default=2000, help="notes decoded each way (the uncached way is slow)")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from notelm.benchmarks import machine

    result = {"load_average_before": os.getloadavg(),
              "decode": decode_speed(args.model, 200 if args.smoke else args.notes, smoke=args.smoke)}
    if not args.smoke:
        result["humanize_ten_minutes"] = humanize_wall(args.model)
    result["machine"] = machine()
    print(json.dumps(result, indent=2))
    if not args.smoke:
        path = HERE / "results" / "velocity-speed.json"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(result, indent=2) + "\n")
        os.replace(tmp, path)


if __name__ == "__main__":
    main()
