#!/usr/bin/env bash
# Installs what is missing, builds everything (CUDA code too where nvcc exists) with warnings as
# errors, and runs every test through ctest. Idempotent; CI runs exactly this.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh" >/dev/null
build="${ITE_BUILD_DIR:-$root/build}"
export PATH="$PATH:/usr/local/cuda/bin"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DITE_WERROR=ON \
  -DPython3_EXECUTABLE="$root/.venv/bin/python" >/dev/null
cmake --build "$build" -j"$(nproc)"
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" "$@"
