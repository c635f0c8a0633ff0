#!/usr/bin/env bash
# Runs on the GPU host after a build with engine_bench (scripts/gpu_run.sh build with
# ITE_GPU_EXTRA_TARGETS=engine_bench): engine_bench's decode_bs1 on one model folder under
# several environments, in rounds (each round runs every variant once, in order), so that a
# difference between variants can be set against the spread of one variant across rounds.
#   scripts/gpu_decode_sweep.sh MODEL_DIR NAME ROUNDS 'label:VAR=1,VAR2=x' 'base:' ...
# One line per run in $OUT/sweep_NAME.txt; the last lines are a table of each label's median.
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-$root/gpu_out}"
build="${ITE_GPU_BUILD_DIR:-$root/build-gpu}"
model="$1" name="$2" rounds="$3"
shift 3
mkdir -p "$out"
log="$out/sweep_$name.txt"
for ((r = 1; r <= rounds; ++r)); do
  for v in "$@"; do
    label="${v%%:*}" envs="${v#*:}"
    IFS=, read -ra kv <<<"$envs"
    ms=$(env "${kv[@]}" timeout 120 "$build/bin/engine_bench" --model "$model" --name "$name" \
      --workloads decode_bs1 ${ITE_ENGINE_FLAGS:-} 2>>"$out/sweep_$name.err" |
      python3 -c 'import json,sys
for l in sys.stdin:
    j = json.loads(l)
    if j.get("name") == "decode_bs1": print(j["value"])')
    echo "$name round $r $label ${ms:-failed}" | tee -a "$log"
  done
done
python3 - "$log" <<'PY' | tee -a "$log"
import collections, statistics, sys
runs = collections.OrderedDict()
for line in open(sys.argv[1]):
    f = line.split()
    if len(f) == 5 and f[1] == "round" and f[4] != "failed":
        runs.setdefault(f[3], []).append(float(f[4]))
base = next(iter(runs.values()), None)
for label, v in runs.items():
    med = statistics.median(v)
    rel = med / statistics.median(base) if base else 0
    print(f"{label:24s} median {med:.4f} ms/step  min {min(v):.4f}  max {max(v):.4f}  "
          f"x{rel:.3f} of {next(iter(runs))}")
PY
