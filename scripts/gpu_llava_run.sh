#!/usr/bin/env bash
# LLaVA-1.5-7B on the GPU host (no network, no gRPC needed): the vision tower + projector per
# image and the TTFT of a one-image request, ours (CUDA backend) against transformers in the
# same run. One command from the repository root:
#   OUT=/tmp/llava_out ITE_COMMIT=$(git rev-parse --short HEAD) scripts/gpu_llava_run.sh
# Stages are the arguments (default: all, in this order):
#   build    configure as scripts/gpu_run.sh does (-DITE_WITH_GRPC=OFF, sm_90a) and build only
#            llava_bench, in $ITE_GPU_BUILD_DIR (default build-gpu, shared with gpu_run.sh)
#   models   bench/llava/make_llava.py: random bf16 LLaVA-1.5-7B built on the GPU, saved to
#            $ITE_MODELS_DIR/llava-1.5-7b (default /tmp/ite-models; kept when already there)
#   bench    llava_bench on it                          -> $OUT/llava_ours.jsonl
#   peers    bench/llava/hf_llava_peer.py (bf16, sdpa)  -> $OUT/llava_peers.jsonl
#   collect  bench/engine/collect_results.py            -> $OUT/llava.json (rows as in
#            bench/results/engine.json) and $OUT/llava.md (the table for docs/perf.md)
# Logs of every stage in $OUT/llava.log. ITE_LLAVA_ARGS adds flags to both llava_bench and the
# peer (e.g. "--text 64 --iters 20").
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-$root/gpu_out}"
mkdir -p "$out"
build="${ITE_GPU_BUILD_DIR:-$root/build-gpu}"
mdir="${ITE_MODELS_DIR:-/tmp/ite-models}"
name=llava-1.5-7b
stages="${*:-build models bench peers collect}"
has() { [[ " $stages " == *" $1 "* ]]; }
log="$out/llava.log"
export PATH="/usr/local/cuda/bin:$PATH" PYTHONUNBUFFERED=1
status=0

if has build; then
  start=$(date +%s)
  {
    cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DITE_WERROR=ON \
      -DITE_WITH_CUDA=ON -DITE_WITH_GRPC=OFF -DCMAKE_CUDA_ARCHITECTURES=90a \
      -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc &&
      cmake --build "$build" -j"$(nproc)" --target llava_bench
  } >>"$log" 2>&1 || { echo "BUILD FAILED (see llava.log)"; tail -30 "$log"; exit 1; }
  echo "build: $(( $(date +%s) - start )) s"
fi

if has models; then
  if [ -s "$mdir/$name/model.safetensors" ] || [ -s "$mdir/$name/model.safetensors.index.json" ]
  then
    echo "models: $mdir/$name already there"
  else
    timeout 300 python3 "$root/bench/llava/make_llava.py" --out "$mdir" --models "$name" \
      >>"$out/models.jsonl" 2>>"$log" || { echo "make_llava failed"; tail -20 "$log"; exit 1; }
    tail -1 "$out/models.jsonl"
  fi
fi

if has bench; then
  # shellcheck disable=SC2086  # ITE_LLAVA_ARGS is a list of flags
  timeout 400 "$build/bin/llava_bench" --model "$mdir/$name" --name "$name" \
    ${ITE_LLAVA_ARGS:-} >"$out/llava_ours.jsonl" 2>>"$log" || status=1
  cat "$out/llava_ours.jsonl"
fi

if has peers; then
  : >"$out/llava_peers.jsonl"
  # shellcheck disable=SC2086
  timeout 500 python3 "$root/bench/llava/hf_llava_peer.py" --model "$mdir/$name" --name "$name" \
    --out "$out/llava_peers.jsonl" ${ITE_LLAVA_ARGS:-} >/dev/null 2>>"$log" || status=1
  cat "$out/llava_peers.jsonl"
fi

if has collect; then
  card="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
  python3 "$root/bench/engine/collect_results.py" "$out/llava_ours.jsonl" \
    "$out/llava_peers.jsonl" --card "$card" --commit "${ITE_COMMIT:-unknown}" \
    --out "$out/llava.json" --md "$out/llava.md" || status=1
fi
exit $status
