#!/usr/bin/env bash
# The demo: installs what is missing, builds, fetches SmolLM2-135M-Instruct, serves it with
# ite-serve (the scheduler and one CPU worker, on a free loopback port) and streams the answer
# to a chat question through ite-client over gRPC; then stops the server (SIGTERM: it drains and
# exits). Usage: scripts/demo.sh ["your question"]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
"$root/scripts/setup.sh" >/dev/null
build="${ITE_BUILD_DIR:-$root/build}"
export PATH="$PATH:/usr/local/cuda/bin"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc)" >/dev/null
model="$("$root/scripts/fetch_model.sh")"
question="${1:-What is the capital of France? Answer in two sentences.}"

run_dir="$(mktemp -d)"
"$build/bin/ite-serve" --model "$model" --port 0 --ready-file "$run_dir/port" \
  2>"$run_dir/serve.log" &
serve=$!
stop() {
  kill -TERM "$serve" 2>/dev/null || true
  wait "$serve" 2>/dev/null || true
  rm -rf "$run_dir"
}
trap stop EXIT
for _ in $(seq 600); do  # up to 60 s for the model to load
  [[ -s "$run_dir/port" ]] && break
  if ! kill -0 "$serve" 2>/dev/null; then
    echo "demo: ite-serve exited; its log:" >&2
    cat "$run_dir/serve.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ ! -s "$run_dir/port" ]]; then
  echo "demo: ite-serve did not start within 60 s; its log:" >&2
  cat "$run_dir/serve.log" >&2
  exit 1
fi
echo "demo: ite-serve is serving on 127.0.0.1:$(cat "$run_dir/port"); asking: $question" >&2
"$build/bin/ite-client" generate --addr "127.0.0.1:$(cat "$run_dir/port")" --chat \
  --prompt "$question" --max-tokens 128
