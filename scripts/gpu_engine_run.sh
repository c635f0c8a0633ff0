#!/usr/bin/env bash
# Runs on the GPU host after `scripts/gpu_run.sh build` (ITE_GPU_EXTRA_TARGETS=engine_bench):
# the CUDA engine against Hugging Face transformers on random-weight real architectures.
#   models   bench/engine/make_models.py (--spread) into $ITE_MODELS_DIR
#   greedy   64 greedy tokens of 16 mixed-length prompts, ours against transformers bf16
#            (tests/gpu/compare_greedy.py: equal, or diverging only at a bf16 near-tie; a
#            mismatch is looked at again by a float32 forward pass, and a planted wrong token
#            must stay a mismatch)
#   bench    engine_bench's workloads (ITE_ENGINE_WORKLOADS) -> $OUT/ours.jsonl
#   peers    bench/engine/hf_peer.py on the same workloads -> $OUT/peers.jsonl
#   collect  bench/engine/collect_results.py -> $OUT/engine.json and engine.md
# Stages are the arguments (default: all); models with ITE_ENGINE_MODELS (comma-separated);
# extra engine_bench flags with ITE_ENGINE_FLAGS (e.g. --batch-invariant).
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-$root/gpu_out}"
mkdir -p "$out"
build="${ITE_GPU_BUILD_DIR:-$root/build-gpu}"
mdir="${ITE_MODELS_DIR:-/tmp/ite-models}"
models="${ITE_ENGINE_MODELS:-llama-3.2-1b,qwen2.5-0.5b}"
workloads="${ITE_ENGINE_WORKLOADS:-decode_bs1,throughput_64,throughput_256}"
stages="${*:-models greedy bench peers collect}"
has() { [[ " $stages " == *" $1 "* ]]; }
log="$out/engine.log"
export PYTHONUNBUFFERED=1
status=0
IFS=, read -ra names <<<"$models"

if has models; then
  python3 "$root/bench/engine/make_models.py" --out "$mdir" --models "$models" --spread \
    >>"$out/models.jsonl" 2>>"$log" || { echo "make_models failed"; tail -20 "$log"; exit 1; }
fi

if has greedy; then
  for m in "${names[@]}"; do
    vocab=$(python3 -c "import json; print(json.load(open('$mdir/$m/config.json'))['vocab_size'])")
    python3 "$root/tests/gpu/hf_greedy.py" --make-prompts 16 --seed 1 --len-min 1 --len-max 600 \
      --vocab "$vocab" --out "$mdir/prompts_$m.json" 2>>"$log"
    # The reference once per model folder (a second pass with other ITE_ENGINE_FLAGS reuses it).
    [ -s "$mdir/hf_$m.json" ] || timeout 300 python3 "$root/tests/gpu/hf_greedy.py" --model "$mdir/$m" \
      --prompts-json "$mdir/prompts_$m.json" --max-new 64 --out "$mdir/hf_$m.json" 2>>"$log" ||
      status=1
    timeout 240 "$build/bin/engine_bench" --model "$mdir/$m" --name "$m" --workloads "" \
      --greedy-prompts "$mdir/prompts_$m.json" --greedy-out "$mdir/ours_$m.json" \
      ${ITE_ENGINE_FLAGS:-} 2>>"$log" \
      | tee -a "$out/greedy.txt" || status=1
    for run in "" .single.json; do
      echo "== greedy $m ${run:-batched}" | tee -a "$out/greedy.txt"
      python3 "$root/tests/gpu/compare_greedy.py" "$mdir/hf_$m.json" "$mdir/ours_$m.json$run" \
        --arbiter "$mdir/$m" --json "$mdir/greedy_$m$run.summary" 2>&1 |
        tee -a "$out/greedy.txt" | tail -2 || status=1
    done
    # The arbiter must not excuse a wrong token: prompt 0's first token replaced by a neighbour
    # id (not a near-tie of a random-weight model but for chance) must stay a MISMATCH.
    python3 - "$mdir/ours_$m.json" "$mdir/planted_$m.json" <<'PY'
import json, sys
doc = json.load(open(sys.argv[1]))
doc["prompts"][0]["tokens"][0] = (doc["prompts"][0]["tokens"][0] + 1) % 1000
json.dump(doc, open(sys.argv[2], "w"))
PY
    python3 "$root/tests/gpu/compare_greedy.py" "$mdir/hf_$m.json" "$mdir/planted_$m.json" \
      --arbiter "$mdir/$m" >"$mdir/planted_$m.txt" 2>&1
    planted=$(grep '^| 0 ' "$mdir/planted_$m.txt")
    if [[ "$planted" == *"| MISMATCH |"* ]]; then
      echo "== greedy $m: the planted wrong token stays a mismatch: $planted" | tee -a "$out/greedy.txt"
    else
      echo "== greedy $m: the planted wrong token was excused: $planted" | tee -a "$out/greedy.txt"
      tail -5 "$mdir/planted_$m.txt" >>"$out/greedy.txt"
      status=1
    fi
  done
fi

if has bench; then
  for m in "${names[@]}"; do
    timeout 400 "$build/bin/engine_bench" --model "$mdir/$m" --name "$m" \
      --workloads "$workloads" ${ITE_ENGINE_FLAGS:-} >>"$out/ours.jsonl" 2>>"$log" || status=1
  done
  cat "$out/ours.jsonl"
fi

if has peers; then
  for m in "${names[@]}"; do
    timeout 580 python3 "$root/bench/engine/hf_peer.py" --model "$mdir/$m" --name "$m" \
      --out "$out/peers.jsonl" --workloads "$workloads" ${ITE_PEER_ARGS:-} >/dev/null \
      2>>"$log" || status=1
  done
  cat "$out/peers.jsonl"
fi

if has collect; then
  card="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
  python3 "$root/bench/engine/collect_results.py" "$out/ours.jsonl" "$out/peers.jsonl" \
    --card "$card" --commit "${ITE_COMMIT:-unknown}" --out "$out/engine.json" \
    --md "$out/engine.md" || status=1
fi
exit $status
