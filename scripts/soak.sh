#!/usr/bin/env bash
# The long soak: the soak E2E test (tests/e2e/soak_e2e_test.cc: 1,000 concurrent streaming
# clients against a real ite-scheduler + CPU ite-worker on loopback) for several minutes instead
# of ctest's 20 s, printing its figures (streams and errors, req/s, TTFT / E2E percentiles,
# scheduler threads and RSS, KV blocks). Exit code: the test's.
#   scripts/soak.sh [BUILD_DIR] [SECONDS] [CLIENTS]     (defaults: build, 300, 1000)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
build="${1:-$root/build}"
seconds="${2:-300}"
clients="${3:-1000}"
test_bin="$build/bin/soak_e2e_test"
if [[ ! -x "$test_bin" ]]; then
  echo "soak.sh: $test_bin missing; build it: scripts/build.sh $build soak_e2e_test" >&2
  exit 2
fi
ITE_SOAK_SECONDS="$seconds" ITE_SOAK_CLIENTS="$clients" ITE_BIN_DIR="$build/bin" \
  "$test_bin" --gtest_brief=1 2>&1 | grep -E '^soak:|FAILED|Failure|PASSED|error'
exit "${PIPESTATUS[0]}"
