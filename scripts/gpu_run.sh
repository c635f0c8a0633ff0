#!/usr/bin/env bash
# Runs on the GPU host (the device tool): builds the CUDA kernels and the CUDA backend for
# sm_90a, runs every kernel test binary and the CUDA backend's tests, compute-sanitizer memcheck
# on the reference-size tests, then kernel_bench and the torch SDPA peer script, and joins the
# numbers into kernels.json. Everything lands in $OUT (at most 8 files).
# Stages: build test memcheck bench profile (default: all but profile), e.g.
#   OUT=/tmp/out ITE_COMMIT=$(git rev-parse --short HEAD) scripts/gpu_run.sh build test
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-$root/gpu_out}"
mkdir -p "$out"
build="${ITE_GPU_BUILD_DIR:-$root/build-gpu}"
stages="${*:-build test memcheck bench}"
export PATH="/usr/local/cuda/bin:$PATH"
has() { [[ " $stages " == *" $1 "* ]]; }
tests=(norm rope elementwise sampling gemm gemv_fused prefill_attention decode_attention
  decode_attention_out vision)
# Test binaries run as they are named (the kernel ones get their kernels_ prefix below).
bins=($(for t in "${tests[@]}"; do echo "kernels_${t}_test"; done) cuda_backend_test
  cuda_decoder_stack_test golden_test
  cuda_llava_test tensor_parallel_cuda_test)
# The NCCL communicator's test exists where CMake found NCCL (the toolkit's or the system's).
if [ -f /usr/local/cuda/include/nccl.h ] || [ -f /usr/include/nccl.h ]; then
  bins+=(nccl_communicator_test)
fi
status=0

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv
  nvcc --version | tail -1
  cmake --version | head -1
  python3 -c 'import torch; print("torch", torch.__version__)' 2>&1
} >"$out/env.txt" 2>&1

# The GPU image has no stb headers (the image decoder needs stb_image.h): a run that carries
# .carry/inc (a copy of /usr/include/stb from a Debian machine) installs them first.
[ -d "$root/.carry/inc" ] && cp -r "$root/.carry/inc/." /usr/local/include/
if has build; then
  start=$(date +%s)
  {
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DITE_WERROR=ON \
      -DITE_WITH_CUDA=ON -DITE_WITH_GRPC=OFF -DCMAKE_CUDA_ARCHITECTURES=90a \
      -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc &&
      cmake --build "$build" -j"$(nproc)" --target kernel_bench "${bins[@]}" \
        ${ITE_GPU_EXTRA_TARGETS:-}
  } >"$out/build.log" 2>&1 || { echo "BUILD FAILED (see build.log)"; tail -30 "$out/build.log"; exit 1; }
  echo "build: $(( $(date +%s) - start )) s"
  # The GEMV kernels' first weight loads before their dependency wait, in this build's SASS.
  python3 "$root/scripts/check_prewait_loads.py" "$build/kernels/libite_kernels.a" || status=1
fi

if has test; then
  for t in "${bins[@]}"; do
    ITE_SOURCE_DIR="$root" timeout 300 "$build/bin/$t" --gtest_color=no >>"$out/tests.log" 2>&1
    rc=$?
    echo "test $t: rc=$rc" | tee -a "$out/tests.log"
    [[ $rc -ne 0 ]] && status=1
  done
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |Failure|error:" "$out/tests.log" | head -60
fi

if has memcheck; then
  # The long-context cases are left out: memcheck slows kernels 10-100x.
  for t in "${bins[@]}"; do
    ITE_SOURCE_DIR="$root" timeout 240 compute-sanitizer --tool memcheck --leak-check full \
      --error-exitcode 17 "$build/bin/$t" --gtest_color=no \
      --gtest_filter='-*LongPrompt*:*LongContext32k*:*EmpiricalDistribution*' \
      >>"$out/memcheck.log" 2>&1
    rc=$?
    echo "memcheck $t: rc=$rc" | tee -a "$out/memcheck.log"
    [[ $rc -ne 0 ]] && status=1
  done
  grep -E "ERROR SUMMARY|LEAK SUMMARY" "$out/memcheck.log" | sort | uniq -c
fi

if has bench; then
  quick=""
  [[ -n "${ITE_BENCH_QUICK:-}" ]] && quick="--quick"
  timeout 300 "$build/bin/kernel_bench" $quick >"$out/ours.jsonl" 2>>"$out/env.txt" || status=1
  PYTHONUNBUFFERED=1 timeout 240 python3 "$root/bench/kernels/sdpa_peer.py" $quick \
    >"$out/peer.jsonl" 2>>"$out/env.txt" || status=1
  card="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
  python3 "$root/bench/kernels/collect_results.py" "$out/ours.jsonl" "$out/peer.jsonl" \
    "$card" "${ITE_COMMIT:-unknown}" "$out/kernels.json" || status=1
fi

if has profile; then
  # One launch of each attention kernel under Nsight Compute (clocks left alone): with --quick,
  # launch 130 of the prefill kernel is in the head_dim 128, seq 2k case and launch 1335 of the
  # decode kernel in the batch 64, context 4k case (263 launches per decode case).
  for k in PrefillAttention:130 DecodeAttention:1335; do
    what=prefill
    [[ $k == Decode* ]] && what=decode
    timeout 180 ncu --clock-control none -k "regex:${k%%:*}Kernel" -s "${k##*:}" -c 1 \
      --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy \
      --section LaunchStats --section WarpStateStats \
      "$build/bin/kernel_bench" --only=$what --quick >>"$out/profile.txt" 2>&1 || status=1
  done
  grep -E "Duration|Throughput|Achieved Occupancy|Registers|Stall|Memory \[%\]" \
    "$out/profile.txt" | head -60
fi
exit $status
