"""HTTP (OpenAI API) vs gRPC through one running ite-serve: the same `ite-client bench` load,
rounds interleaved (gRPC, HTTP, gRPC, HTTP, ...) so that the machine's noise falls on both,
medians over the rounds, and the gateway's own cost per streamed token as the scheduler
process's extra CPU time in the HTTP rounds (from /proc). Prints a table; --json writes it all.
  python3 bench/http_vs_grpc.py --model models/SmolLM2-135M-Instruct.Q4_1.gguf [--rounds 3]
Standard library only; the binaries come from --bin (default build/bin).
"""
import argparse
import datetime
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def command_name(pid):
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()


def wait_file(path, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(path) and open(path).read().strip():
            return int(open(path).read().strip())
        if proc.poll() is not None:
            sys.exit(f"ite-serve exited with {proc.returncode}")
        time.sleep(0.1)
    sys.exit(f"{path} not written in {timeout} s")


def bench(args, tmp, api_args, name):
    out = os.path.join(tmp, name + ".json")
    cmd = [os.path.join(args.bin, "ite-client"), "bench", *api_args,
           "--requests", str(args.requests), "--concurrency", str(args.concurrency),
           "--input-len", str(args.input_len), "--output-len", str(args.output_len),
           "--json", out]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")
    with open(out) as f:
        return json.load(f)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--bin", default="build/bin")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=32)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="worker threads (0: ite-serve's)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        ready, http_ready = os.path.join(tmp, "port"), os.path.join(tmp, "http_port")
        cmd = [os.path.join(args.bin, "ite-serve"), "--model", args.model, "--port", "0",
               "--ready-file", ready, "--http-ready-file", http_ready, "--log-level", "warn"]
        if args.threads:
            cmd += ["--threads", str(args.threads)]
        serve = subprocess.Popen(cmd, stderr=open(os.path.join(tmp, "serve.log"), "w"))
        try:
            grpc_port, http_port = wait_file(ready, serve), wait_file(http_ready, serve)
            scheduler = [p for p in children(serve.pid) if command_name(p) == "ite-scheduler"][0]
            fronts = {"grpc": ["--addr", f"127.0.0.1:{grpc_port}"],
                      "openai": ["--api", "openai", "--url", f"http://127.0.0.1:{http_port}"]}
            for api, a in fronts.items():  # warm-up: first allocations, page cache, JIT-free
                bench(args, tmp, a, "warmup-" + api)
            rounds = []
            for r in range(args.rounds):
                for api in (("grpc", "openai") if r % 2 == 0 else ("openai", "grpc")):
                    load = os.getloadavg()[0]
                    cpu0 = cpu_seconds(scheduler)
                    j = bench(args, tmp, fronts[api], f"{api}-{r}")
                    j["scheduler_cpu_s"] = cpu_seconds(scheduler) - cpu0
                    j["loadavg_1m"] = load
                    j["round"] = r
                    rounds.append(j)
                    print(f"round {r} {api:6}: TTFT p50 {j['ttft_ms']['p50']:.1f} ms, ITL p50 "
                          f"{j['itl_ms']['p50']:.2f} ms, {j['output_tok_per_s']:.1f} tok/s, "
                          f"scheduler CPU {j['scheduler_cpu_s']:.2f} s, load {load:.1f}",
                          file=sys.stderr)
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=60)

    def med(api, f):
        return statistics.median(f(j) for j in rounds if j["api"] == api)

    tokens = args.requests * args.output_len
    summary = {}
    for api in ("grpc", "openai"):
        summary[api] = {
            "ttft_p50_ms": med(api, lambda j: j["ttft_ms"]["p50"]),
            "ttft_p99_ms": med(api, lambda j: j["ttft_ms"]["p99"]),
            "itl_p50_ms": med(api, lambda j: j["itl_ms"]["p50"]),
            "itl_p99_ms": med(api, lambda j: j["itl_ms"]["p99"]),
            "e2e_p50_ms": med(api, lambda j: j["e2e_ms"]["p50"]),
            "output_tok_per_s": med(api, lambda j: j["output_tok_per_s"]),
            "scheduler_cpu_us_per_token": med(api, lambda j: j["scheduler_cpu_s"]) / tokens * 1e6,
        }
    g, h = summary["grpc"], summary["openai"]
    ratio = {k: h[k] / g[k] for k in g if g[k]}
    overhead_us = h["scheduler_cpu_us_per_token"] - g["scheduler_cpu_us_per_token"]
    print(f"{'median of ' + str(args.rounds):<26} {'gRPC':>10} {'HTTP':>10} {'HTTP/gRPC':>10}")
    for k in g:
        print(f"{k:<26} {g[k]:>10.2f} {h[k]:>10.2f} {ratio.get(k, 0):>10.3f}")
    print(f"gateway CPU per streamed token (scheduler, HTTP - gRPC): {overhead_us:.1f} us")
    loads = ", ".join(f"{j['loadavg_1m']:.1f}" for j in rounds)
    print(f"load average (1 min) at the rounds' starts: {loads}")
    if args.json:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
        out = {"date": datetime.date.today().isoformat(), "commit": commit,
               "machine": f"{os.cpu_count()} CPUs (shared), CPU backend", "model":
               os.path.basename(args.model),
               "load": {"requests": args.requests, "concurrency": args.concurrency,
                        "input_len": args.input_len, "output_len": args.output_len},
               "peer": "the same load through gRPC (ite-client bench), interleaved rounds",
               "median": summary, "ratio_http_over_grpc": ratio,
               "gateway_cpu_us_per_streamed_token": overhead_us, "rounds": rounds}
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
