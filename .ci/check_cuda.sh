#!/usr/bin/env bash
# Compile every csrc/cuda/*.cu to object files with nvcc (no GPU and no torch needed).
# Usage: .ci/check_cuda.sh            (NVCC, NVCC_ARCHS and NVCC_FLAGS may override the defaults)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
nvcc="${NVCC:-nvcc}"
command -v "$nvcc" >/dev/null || { echo "check_cuda: $nvcc not found on PATH" >&2; exit 1; }

# Ampere (A100) and Hopper (H100/H200) machine code, plus compute_90 PTX for newer GPUs.
default_archs="-gencode=arch=compute_80,code=sm_80"
default_archs+=" -gencode=arch=compute_90,code=[sm_90,compute_90]"
read -r -a arch_flags <<<"${NVCC_ARCHS:-$default_archs}"
read -r -a extra_flags <<<"${NVCC_FLAGS:-}"

shopt -s nullglob
files=("$root"/csrc/cuda/*.cu)
if ((${#files[@]} == 0)); then
  echo "check_cuda: no .cu files under $root/csrc/cuda" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

echo "check_cuda: $("$nvcc" --version | tail -n 1)"
failed=0
for f in "${files[@]}"; do
  name="$(basename "$f" .cu)"
  start=$SECONDS
  # --threads 0: one compiler thread per target arch.
  if "$nvcc" -std=c++17 -O3 --threads 0 -Werror all-warnings "${arch_flags[@]}" \
    ${extra_flags[@]+"${extra_flags[@]}"} -I"$root/csrc" -c "$f" -o "$tmp/$name.o"; then
    echo "ok   csrc/cuda/$name.cu ($((SECONDS - start)) s)"
  else
    echo "FAIL csrc/cuda/$name.cu" >&2
    failed=$((failed + 1))
  fi
done
if ((failed > 0)); then
  echo "check_cuda: $failed of ${#files[@]} file(s) failed to compile" >&2
  exit 1
fi
echo "check_cuda: ${#files[@]} file(s) compiled"
