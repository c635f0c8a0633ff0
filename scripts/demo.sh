#!/usr/bin/env bash
# The demo: installs what is missing, builds, fetches SmolLM2-135M-Instruct and streams an answer
# generated on the CPU. Usage: scripts/demo.sh ["your question"]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh" >/dev/null
build="${ITE_BUILD_DIR:-$root/build}"
export PATH="$PATH:/usr/local/cuda/bin"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
model="$("$root/scripts/fetch_model.sh")"
question="${1:-What is the capital of France? Answer in two sentences.}"
exec "$build/bin/ite-generate" --model "$model" --chat --prompt "$question" --max-tokens 128
