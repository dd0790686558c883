#!/usr/bin/env bash
# Compile every csrc/cuda/*.cu to object files with nvcc (no GPU and no torch needed), then,
# where a Python with torch is found, syntax-check the torch-facing wrappers csrc/cuda/*_op.cpp
# with the host compiler against torch's and CUDA's headers (no GPU and no CUDA torch needed).
# Usage: .ci/check_cuda.sh   (NVCC, NVCC_ARCHS, NVCC_FLAGS, PYTHON and CXX override the defaults)
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

# The wrappers include c10/cuda headers; a CPU-only torch lacks one generated header of them,
# so a stand-in is put last on the include path.
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then python="$root/.venv/bin/python"; else python=python3; fi
fi
wrappers=("$root"/csrc/cuda/*_op.cpp)
if torch_includes="$("$python" -c 'from torch.utils.cpp_extension import include_paths
print(" ".join("-I" + p for p in include_paths()))' 2>/dev/null)"; then
  cuda_includes="$("$nvcc" --dryrun -c -x cu /dev/null -o /dev/null 2>&1 |
    sed -n 's/^#\$ INCLUDES="\(.*\)".*/\1/p' | head -n 1)"
  mkdir -p "$tmp/stub/c10/cuda/impl"
  printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' >"$tmp/stub/c10/cuda/impl/cuda_cmake_macros.h"
  read -r -a torch_flags <<<"$torch_includes"
  read -r -a cuda_flags <<<"$cuda_includes"
  for f in "${wrappers[@]}"; do
    name="$(basename "$f")"
    if "${CXX:-c++}" -std=c++17 -fsyntax-only -Werror -Wall -Wno-c++20-extensions \
      "${torch_flags[@]}" ${cuda_flags[@]+"${cuda_flags[@]}"} -I"$tmp/stub" "$f"; then
      echo "ok   csrc/cuda/$name (syntax)"
    else
      echo "FAIL csrc/cuda/$name" >&2
      failed=$((failed + 1))
    fi
  done
  files+=("${wrappers[@]}")
else
  echo "check_cuda: $python cannot import torch: csrc/cuda/*_op.cpp not checked (set PYTHON)"
fi

if ((failed > 0)); then
  echo "check_cuda: $failed of ${#files[@]} file(s) failed to compile" >&2
  exit 1
fi
echo "check_cuda: ${#files[@]} file(s) compiled"
