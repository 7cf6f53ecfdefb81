#!/usr/bin/env bash
# GPU acceptance check: on a machine with one CUDA GPU, no network and its own preinstalled torch, install
# alignkit (a wheel built from this checkout, not editable) with the wheels handed in, then run the CUDA
# tests, a tiny bf16 SFT -> DPO, a QLoRA SFT, a one-GPU ZeRO-3 step and the tokens/s benchmark on a
# ~100M-parameter model; write bench/results/gpu.json and gpu.md. <= 8 minutes on an H100-class GPU.
#
#   scripts/gpu-check.sh --wheels DIR        # DIR from scripts/gpu-wheels.sh (on a machine with network)
#   scripts/gpu-check.sh --cpu-dry           # every step's plumbing on this CPU at toy size (CI runs this)
#   scripts/gpu-check.sh --help              # all options (--out, --work, --python)
#
# PYTHON picks the interpreter (default: python3, the one that holds the machine's torch). docs/gpu.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
exec "$PYTHON" scripts/gpu_check.py --python "$PYTHON" "$@"
