#!/usr/bin/env bash
# Installs what is missing, builds everything (CUDA code too where nvcc exists) with warnings as
# errors, and runs every test through ctest. Idempotent; CI runs exactly this.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh" >/dev/null
build="${ITE_BUILD_DIR:-$root/build}"
export PATH="$PATH:/usr/local/cuda/bin"
# Said explicitly: a build folder that scripts/demo.sh configured without CUDA (no GPU there)
# must still compile the CUDA code here when nvcc exists.
cuda=OFF
command -v nvcc >/dev/null 2>&1 && cuda=ON
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DITE_WERROR=ON \
  -DITE_WITH_CUDA="$cuda" -DPython3_EXECUTABLE="$root/.venv/bin/python" >/dev/null
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" "$@"
