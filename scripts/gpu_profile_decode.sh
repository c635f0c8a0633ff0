#!/usr/bin/env bash
# Runs on the GPU host after `scripts/gpu_run.sh build` (ITE_GPU_EXTRA_TARGETS=engine_bench):
# where a steady decode step's GPU time goes. engine_bench's decode_bs1 runs under Nsight Compute
# (clocks left alone, each CUDA-graph node profiled on its own); the launches after the warm-up
# are summed per kernel name. ncu times each kernel alone, so the sum against engine_bench's
# ms/step shows what the gaps between kernels cost.
#   scripts/gpu_profile_decode.sh MODEL_DIR [LAUNCH_SKIP] [LAUNCH_COUNT]   -> $OUT/profile.txt
set -uo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-$root/gpu_out}"
build="${ITE_GPU_BUILD_DIR:-$root/build-gpu}"
model="$1"
skip="${2:-6000}"
count="${3:-720}"
mkdir -p "$out"
ncu --clock-control none --graph-profiling node --launch-skip "$skip" --launch-count "$count" \
  --metrics gpu__time_duration.sum --csv \
  "$build/bin/engine_bench" --model "$model" --name profile --workloads decode_bs1 \
  --decode-new 96 ${ITE_ENGINE_FLAGS:-} >/tmp/ite-ncu.csv 2>/tmp/ite-ncu.err ||
  { echo "ncu failed"; tail -5 /tmp/ite-ncu.err; exit 1; }
python3 - /tmp/ite-ncu.csv "$count" <<'PY' | tee "$out/profile.txt"
import collections, csv, sys

lines = [l for l in open(sys.argv[1]) if l.startswith('"')]
rows = list(csv.DictReader(lines))
per = collections.defaultdict(lambda: [0, 0.0])
total = 0.0
for r in rows:
    if r.get("Metric Name") != "gpu__time_duration.sum":
        continue
    unit = r["Metric Unit"]
    scale = {"ns": 1e-3, "nsecond": 1e-3, "us": 1.0, "usecond": 1.0, "ms": 1e3, "msecond": 1e3}[unit]
    us = float(r["Metric Value"].replace(",", "")) * scale
    name = r["Kernel Name"].split("(")[0][:90]
    per[name][0] += 1
    per[name][1] += us
    total += us
n = sum(c for c, _ in per.values())
print(f"{n} kernels profiled, {total:.1f} us of GPU time in all")
for name, (c, us) in sorted(per.items(), key=lambda kv: -kv[1][1]):
    print(f"{us:9.1f} us {100 * us / total:5.1f}%  x{c:<5d} {us / c:7.2f} us each  {name}")
PY
