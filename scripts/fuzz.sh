#!/usr/bin/env bash
# Runs every libFuzzer target of a build made by `scripts/sanitize.sh asan BUILD_DIR` for a
# bounded time on its seed corpus in the repo (copied first: what libFuzzer adds stays out of the
# tree), and prints one line per target with its executions.
#   scripts/fuzz.sh BUILD_DIR [SECONDS_PER_TARGET]     (default 30)
# A crash, leak, timeout or sanitizer report fails the run; the input is kept under
# BUILD_DIR/fuzz-artifacts/ and the message says how to replay it. Such an input belongs in the
# target's seed folder once fixed, so that every later run (and ctest's *_seed_corpus) replays it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:?usage: scripts/fuzz.sh BUILD_DIR [SECONDS_PER_TARGET]}"
secs="${2:-30}"
bin="$build/bin"
t="$root/tests"
# target:seed folders (comma-separated)
targets=(
  "gguf_fuzz:$t/data/fuzz/gguf"
  "safetensors_fuzz:$t/data/fuzz/safetensors"
  "hf_config_fuzz:$t/data/fuzz/hf_config"
  "image_fuzz:$t/data/fuzz/image"
  "tokenizer_json_fuzz:$t/tokenizer/fuzz_seeds"
  "jinja_parser_fuzz:$t/chat/fuzz_corpus,$t/chat/templates"
  "request_parser_fuzz:$t/proto/fuzz_corpus"
  "openai_request_fuzz:$t/http/fuzz_corpus"
)
artifacts="$build/fuzz-artifacts"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$artifacts"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$root/scripts/sanitizers/ubsan.supp"
failed=()
printf '%-22s %12s %9s %8s  %s\n' target executions exec/s corpus result
for entry in "${targets[@]}"; do
  name="${entry%%:*}"
  IFS=',' read -r -a seeds <<<"${entry#*:}"
  if [ ! -x "$bin/$name" ]; then
    echo "fuzz: $bin/$name is not built (scripts/sanitize.sh asan $build builds it)" >&2
    failed+=("$name")
    continue
  fi
  corpus="$work/$name"
  mkdir -p "$corpus"
  for s in "${seeds[@]}"; do cp -r "$s"/. "$corpus"/; done
  log="$work/$name.log"
  # -timeout: one input taking 10 s is a hang to report; -rss_limit_mb: so is one taking 2 GiB.
  rc=0
  "$bin/$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$artifacts/$name-" "$corpus" >"$log" 2>&1 || rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  size=$(find "$corpus" -type f | wc -l)
  if [ "$rc" -eq 0 ]; then
    result=ok
  else
    result="FAILED (exit $rc)"
    failed+=("$name")
    cp "$log" "$artifacts/$name.log"
  fi
  printf '%-22s %12s %9s %8s  %s\n' "$name" "${execs:-0}" "${rate:-0}" "$size" "$result"
done
if ((${#failed[@]})); then
  for name in "${failed[@]}"; do
    echo "fuzz: $name failed; its log is $artifacts/$name.log, the input $artifacts/$name-*;" \
      "replay: $bin/$name <input>" >&2
    [ -f "$artifacts/$name.log" ] && grep -m5 -E 'ERROR|SUMMARY|runtime error' \
      "$artifacts/$name.log" >&2 || true
  done
  exit 1
fi
