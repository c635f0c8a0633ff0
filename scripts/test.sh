#!/usr/bin/env bash
# Installs what is missing, builds everything (CUDA code too where nvcc exists) with warnings as
# errors, and runs every test through ctest. Idempotent; CI runs exactly this.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh" >/dev/null
build="${ITE_BUILD_DIR:-$root/build}"
"$root/scripts/build.sh" "$build"
ctest --test-dir "$build" --output-on-failure -j"$(nproc)" "$@"
