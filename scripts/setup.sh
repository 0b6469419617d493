#!/usr/bin/env bash
# Install spinelesion and its dependencies into the current Python environment.
# Without a GPU, torch's CPU build is installed first so pip does not pull a multi-GB CUDA build.
# Usage: bash scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "$PY" -m pip install "torch>=2.2,<2.15"
  else
    # CPU build: on this project's machines torch 2.13.0 comes from local disk; elsewhere from the CPU index.
    "$PY" -m pip install torch==2.13.0 || "$PY" -m pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
  fi
fi
extra=""
[ "${1:-}" = "--dev" ] && extra="[dev]"
"$PY" -m pip install -e ".${extra}"
