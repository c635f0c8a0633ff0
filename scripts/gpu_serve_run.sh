#!/usr/bin/env bash
# Runs on the GPU host: the real processes with the CUDA backend, from the bundle that
# scripts/bundle.sh made on a machine with gRPC (ITE_BUNDLE_HOST_CUDA=1, so the host's CUDA
# libraries are used), carried as dist/ite.tar.xz. On a model folder made by
# bench/engine/make_models.py (it has a tokenizer):
#   1. start-up: ite-serve --device cuda launched -> first streamed token, graphs captured;
#   2. serving: ite-client bench, 500 requests of 512 -> 256 tokens, all at once and at a
#      Poisson rate (JSON results);
#   3. a worker killed with SIGKILL: the next request fails fast (UNAVAILABLE) or waits for the
#      restarted worker, and the service serves again;
#   4. SIGTERM: ite-serve drains and exits 0;
#   5. (stage prefix) prefix caching: 64 requests sharing a ~1,024-token prefix, TTFT with the
#      radix cache on and with --no-prefix-cache.
#   6. (stage e2e, a bundle made with ITE_BUNDLE_TESTS=1) the end-to-end service tests with
#      --device cuda (ITE_E2E_SERVE_FLAGS): graphs on, --enforce-eager, --batch-invariant. On a
#      random-weight folder the test of 32 concurrent greedy streams equal to each alone holds
#      only with --batch-invariant (default mode rounds differently by batch, and random weights
#      are full of near-ties); the SmolLM2 GGUF (98 MB: carried in parts over consecutive calls
#      to one warm machine) passes it in all three.
#   7. (stage idle) GPU idle between steps through the worker process (ite-client stats before
#      and after 64 requests of 128 -> 512).
# Stages after the model argument: serve prefix e2e idle (default serve prefix). Results under
# $OUT.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-$root/gpu_out}"
model="${1:-/tmp/ite-models/llama-3.2-1b}"
stages="${*:2}"
stages="${stages:-serve prefix}"
has() { [[ " $stages " == *" $1 "* ]]; }
bundle=/tmp/ite-bundle
mkdir -p "$out" "$bundle"
tar xJf "$root/dist/ite.tar.xz" -C "$bundle" || { echo "no bundle at dist/ite.tar.xz"; exit 1; }
export LD_LIBRARY_PATH="/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
bin="$bundle/ite/bin"
report="$out/serve.txt"
now() { date +%s.%N; }
since() { python3 -c "print(round($(now) - $1, 2))"; }

# Starts ite-serve (extra flags as arguments); sets $serve (pid) and $port.
start() {
  rm -f /tmp/ite.port
  "$bin/ite-serve" --model "$model" --device cuda --port 0 --ready-file /tmp/ite.port \
    --gpu-memory-utilization 0.5 --max-batch-tokens 8192 "$@" >>"$out/serve.log" 2>&1 &
  serve=$!
  for _ in $(seq 600); do [ -s /tmp/ite.port ] && break; sleep 0.1; done
  port=$(cat /tmp/ite.port 2>/dev/null)
  [ -n "$port" ] || { echo "ite-serve did not start"; tail -30 "$out/serve.log"; exit 1; }
}

if has prefix; then
  # 64 prompts: one shared ~1,024-token text, then a short text of their own.
  python3 - >/tmp/ite.prefix <<'PY'
import random
rng = random.Random(0)
words = ["alpha", "river", "stone", "cloud", "seven", "market", "violet", "engine", "garden"]
shared = " ".join(rng.choice(words) for _ in range(1000))
for i in range(64):
    print(shared + f" question {i}: " + " ".join(rng.choice(words) for _ in range(8)))
PY
  for flags in "" "--no-prefix-cache"; do
    start $flags
    # One request first, so that with the cache on the shared prefix is cached, as it is for a
    # system prompt in steady state; then the 64 at once.
    head -1 /tmp/ite.prefix >/tmp/ite.prefix1
    "$bin/ite-client" bench --addr "127.0.0.1:$port" --requests 1 --concurrency 1 \
      --prompts-file /tmp/ite.prefix1 --output-len 16 >/dev/null 2>&1
    echo "== prefix cache ${flags:-on}" >>"$report"
    "$bin/ite-client" bench --addr "127.0.0.1:$port" --requests 64 --concurrency 64 \
      --prompts-file /tmp/ite.prefix --output-len 16 --json "$out/prefix_${flags:-on}.json" \
      >>"$report" 2>&1
    kill -TERM "$serve"
    wait "$serve"
  done
  grep -A4 "== prefix" "$report" | grep -E "==|TTFT"
fi
if has idle; then
  # GPU idle between steps through the real worker process: the workers' summed idle time
  # (CUDA events, Stats RPC) across 64 requests of 128 -> 512 tokens, against the run's length.
  start
  "$bin/ite-client" stats --addr "127.0.0.1:$port" --json >/tmp/ite.stats0
  s=$(now)
  "$bin/ite-client" bench --addr "127.0.0.1:$port" --requests 64 --concurrency 64 \
    --input-len 128 --output-len 512 >>"$report" 2>&1
  wall=$(since "$s")
  "$bin/ite-client" stats --addr "127.0.0.1:$port" --json >/tmp/ite.stats1
  python3 - /tmp/ite.stats0 /tmp/ite.stats1 "$wall" <<'PY' | tee -a "$report"
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
wall = float(sys.argv[3])
for wa, wb in zip(a["workers"], b["workers"]):
    idle = (int(wb["worker_idle_us"]) - int(wa["worker_idle_us"])) / 1e6
    steps = int(wb["steps"]) - int(wa["steps"])
    print(f"worker {wb['index']}: GPU idle between steps {idle * 1e3:.1f} ms over {steps} steps "
          f"in a {wall:.2f} s run ({100 * idle / wall:.2f}%)")
PY
  kill -TERM "$serve"
  wait "$serve"
fi
if has e2e; then
  for flags in "--device cuda" "--device cuda --enforce-eager" "--device cuda --batch-invariant"; do
    echo "== service_e2e_test with $flags" | tee -a "$report"
    ITE_BIN_DIR="$bin" ITE_MODEL_GGUF="$model" ITE_E2E_SERVE_FLAGS="$flags" timeout 300 \
      "$bin/service_e2e_test" --gtest_color=no 2>&1 | grep -E "^\[  (PASSED|FAILED)|Failure" |
      tee -a "$report"
  done
fi
has serve || exit 0

t0=$(now)
start ${ITE_SERVE_ARGS:-}
"$bin/ite-client" generate --addr "127.0.0.1:$port" --prompt "The capital of France is" \
  --max-tokens 16 --temperature 0 --ignore-eos --usage >"$out/first.txt" 2>&1
echo "start-up: launch -> ready port -> 16 streamed tokens done: $(since "$t0") s" |
  tee -a "$report"

for mode in "--concurrency 500" "--rate 40"; do
  name=$(echo "$mode" | tr -d ' -')
  timeout 300 "$bin/ite-client" bench --addr "127.0.0.1:$port" --requests 500 $mode \
    --input-len 512 --output-len 256 --json "$out/bench_$name.json" >>"$report" 2>&1 ||
    echo "bench $mode failed" | tee -a "$report"
done

worker=$(pgrep -f "ite-worker.*--port" | head -1)
if [ -n "$worker" ]; then
  kill -9 "$worker"
  s=$(now)
  "$bin/ite-client" generate --addr "127.0.0.1:$port" --prompt "hi" --max-tokens 4 \
    --ignore-eos >>"$report" 2>&1
  echo "request right after SIGKILL of the worker: rc=$? in $(since "$s") s" |
    tee -a "$report"
  sleep 8
  "$bin/ite-client" generate --addr "127.0.0.1:$port" --prompt "hi again" --max-tokens 4 \
    --ignore-eos >>"$report" 2>&1
  echo "request after the restart: rc=$?" | tee -a "$report"
fi
kill -TERM "$serve"
wait "$serve"
echo "ite-serve exit after SIGTERM: $?" | tee -a "$report"
pgrep -f ite-worker >/dev/null && echo "orphan ite-worker left" | tee -a "$report"
grep -E "graphs|KV cache|weights on|ready|CUDA backend" "$out/serve.log" | head -12
exit 0
