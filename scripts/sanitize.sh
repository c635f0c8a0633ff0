#!/usr/bin/env bash
# Sanitizer builds for CI, with clang (Debian's), each in a build folder of its own:
#   scripts/sanitize.sh asan BUILD_DIR   ASan + UBSan build of every test, plus the libFuzzer
#                                        binaries (the same instrumented libraries serve both);
#                                        runs the tests (scripts/fuzz.sh runs the fuzzers)
#   scripts/sanitize.sh tsan BUILD_DIR   TSan build of the concurrency tests, and runs them
# No CUDA (the GPU code is checked on a GPU host with compute-sanitizer). Extra cmake options
# from ITE_CMAKE_ARGS, the job count from ITE_BUILD_JOBS, as scripts/build.sh.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
mode="${1:?usage: scripts/sanitize.sh asan|tsan BUILD_DIR}"
build="${2:?usage: scripts/sanitize.sh asan|tsan BUILD_DIR}"
jobs="${ITE_BUILD_JOBS:-$(nproc)}"
supp="$root/scripts/sanitizers"

# -O1: the tests run real model steps, so some optimisation pays for itself; -g1: line numbers in
# reports without the link time of full debug info.
common_flags="-O1 -g1 -fno-omit-frame-pointer"
case "$mode" in
  asan)
    flags="$common_flags -fsanitize=address,undefined -fno-sanitize-recover=undefined"
    fuzz=ON
    ;;
  tsan)
    flags="$common_flags -fsanitize=thread"
    fuzz=OFF
    ;;
  *)
    echo "usage: scripts/sanitize.sh asan|tsan BUILD_DIR" >&2
    exit 2
    ;;
esac

# shellcheck disable=SC2086  # ITE_CMAKE_ARGS is a list of words on purpose
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$flags" -DCMAKE_C_FLAGS_RELWITHDEBINFO="$flags" \
  -DCMAKE_EXE_LINKER_FLAGS="$flags" -DCMAKE_SHARED_LINKER_FLAGS="$flags" \
  -DITE_WITH_CUDA=OFF -DITE_FUZZ="$fuzz" -DCMAKE_DISABLE_FIND_PACKAGE_benchmark=ON \
  -DPython3_EXECUTABLE="$root/.venv/bin/python" ${ITE_CMAKE_ARGS:-} >/dev/null

# Reports fail the test that triggers them; third-party false positives are suppressed in
# scripts/sanitizers/, each with its reason.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:suppressions=$supp/ubsan.supp"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$supp/tsan.supp"

if [ "$mode" = asan ]; then
  cmake --build "$build" -j"$jobs"
  # Left out: the checks of deploy/, the README and demo scripts and the terminal test (they add no
  # code of ours beyond what the end-to-end tests run), and the two largest tokenizer corpus
  # comparisons (the other tokenizer comparisons run the same code). Everything else runs: unit
  # tests, end-to-end tests (the real processes, built with the sanitizers), fuzz seed replays.
  ctest --test-dir "$build" --output-on-failure -j"$(nproc)" --timeout 900 \
    -E '^(deploy_|readme_|demo_|chat_tmux_|tokenizer_hf_variants|tokenizer_hf_gguf_variants)' \
    "${@:3}"
else
  # The tests whose code runs on several threads: the scheduler loop and its failure paths, the
  # batcher, the request sessions, the thread pool and the worker engine. Not the gRPC worker
  # client: see scripts/sanitizers/tsan.supp.
  targets=(scheduler_test scheduler_failure_test scheduler_join_test batcher_test
    request_intake_test thread_pool_test worker_engine_test)
  suites="SchedulerTest|SchedulerJoinTest|BatcherTest|RequestIntakeTest|ThreadPoolTest"
  suites+="|WorkerEngineTest"
  args=()
  for t in "${targets[@]}"; do args+=(--target "$t"); done
  cmake --build "$build" -j"$jobs" "${args[@]}"
  ctest --test-dir "$build" --output-on-failure -j"$(nproc)" --timeout 900 -R "^($suites)\\." \
    "${@:3}"
fi
