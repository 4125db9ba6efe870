#!/usr/bin/env bash
# The one-GPU check (docs/gpu.md): <= 8 min on one H200, no internet needed. Runs SFT LoRA bf16,
# ZeRO-3 with one process (full and LoRA), DMPO and hf-backend ranking on CUDA in a temporary tiny
# project, then 1B- and 7B-shaped random Llamas (forward+backward and scoring tokens/s, peak
# memory). Output: benchmarks/results/gpu_check.json. Needs `pip install -e '.[gpu]'` in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
export WANDB_MODE=disabled HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec timeout 600 .venv/bin/python scripts/gpu_check.py "$@"
