#!/usr/bin/env bash
# One-shot GPU check (see bench/gpu_check.py): build the CUDA extension, run every GPU test,
# time the GPU kernels; results in bench/results/gpu-<device>.{json,md}. Exits 0, saying so,
# where no NVIDIA GPU is usable. PYTHON names the interpreter whose torch sees the GPU; by
# default the first of python3 and the project's venv whose torch has CUDA.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
candidates=("${PYTHON:-}" python3 .venv/bin/python)
py=""
for c in "${candidates[@]}"; do
  [[ -n "$c" ]] && command -v "$c" >/dev/null 2>&1 || continue
  # exit 0: torch sees a GPU; 3: torch without a GPU; anything else: no torch
  "$c" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 3)' 2>/dev/null
  rc=$?
  if ((rc == 0)); then py="$c"; break; fi
  if ((rc == 3)) && [[ -z "$py" ]]; then py="$c"; fi   # the check will report: no GPU
done
if [[ -z "$py" ]]; then
  echo "gpu_check: no Python with torch found (tried: ${candidates[*]}): nothing to check"
  exit 0
fi
exec "$py" -m bench.gpu_check --python "$py" "$@"
