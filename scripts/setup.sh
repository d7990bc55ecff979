#!/usr/bin/env bash
# Sets up notelm in ./.venv on a machine with nothing but Python >= 3.10.
#   bash scripts/setup.sh         # the package and its command, `notelm`
#   bash scripts/setup.sh --dev   # also the test tools (pytest, hypothesis, ruff)
#   bash scripts/setup.sh --bench # also the peer libraries the benchmarks compare against
#                                 # (transformers' T5, compressive-transformer-pytorch, perceiver-ar-pytorch)
#   bash scripts/setup.sh --dev --bench
# Safe to run again: an existing .venv is reused and only what is missing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."

wanted=()
for arg in "$@"; do
  case "$arg" in
    --dev) wanted+=(dev) ;;
    --bench) wanted+=(bench) ;;
    *) echo "setup: unknown option $arg (use --dev and/or --bench)" >&2; exit 2 ;;
  esac
done
extras=""
[ ${#wanted[@]} -gt 0 ] && extras="[$(IFS=,; echo "${wanted[*]}")]"

py=""
for cand in python3.13 python3.12 python3.11 python3.10 python3; do
  if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    py="$cand"; break
  fi
done
[ -n "$py" ] || { echo "setup: notelm needs Python >= 3.10 (python3 not found or too old)" >&2; exit 1; }

[ -x .venv/bin/python ] || "$py" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)

# PyTorch first, so that the package's `torch` requirement is already met: a bare `torch`
# requirement would pull a multi-GB CUDA build onto a machine without a GPU. A torch that is
# already installed (say, your CUDA build) is kept. NOTELM_TORCH_INDEX names another wheel
# index (e.g. PyTorch's CPU-only one) where plain PyPI is not what you want.
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  index=()
  [ -n "${NOTELM_TORCH_INDEX:-}" ] && index=(--index-url "$NOTELM_TORCH_INDEX")
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "${pip[@]}" install "${index[@]}" "torch>=2.4"
  else
    "${pip[@]}" install "${index[@]}" "torch==2.13.0"
  fi
fi

# Skip the network round trip when the installed copy already matches this checkout.
stamp=".venv/.notelm-setup-$(cat pyproject.toml scripts/setup.sh | cksum | cut -d' ' -f1)${extras}"
if [ ! -f "$stamp" ]; then
  "${pip[@]}" install -e ".${extras}"
  rm -f .venv/.notelm-setup-* && touch "$stamp"
fi

# The SoundFont synthesizer behind `--wav`. Its wheel bundles TinySoundFont; it declares
# pyaudio (built from source against PortAudio's headers) only for live playback, which
# notelm never uses, so it is installed without its dependencies. Without it, WAV files fall
# back to a plain additive synthesizer, so a failure here is a warning, not an error.
if ! .venv/bin/python -c "import tinysoundfont" >/dev/null 2>&1; then
  "${pip[@]}" install --no-deps "tinysoundfont==0.3.7" \
    || echo "setup: tinysoundfont not installed; --wav will use the plain additive synthesizer" >&2
fi
