#!/usr/bin/env python3
"""Peer numbers for bench/engine: Hugging Face transformers on the workloads of our engine
benchmark, on the same GPU in the same run, plus the floors (copy bandwidth, bf16 GEMM rate).

    python3 bench/engine/hf_peer.py --model DIR --name llama-3.2-1b --out peers.jsonl \\
        [--quick] [--workloads decode_bs1,throughput_64,throughput_256] \\
        [--peers hf_eager,hf_cb,hf_static] [--budget-s 150] [--deadline-s 540]

Workloads (random prompt tokens, outputs forced to their full length: the model's EOS is
cleared, so nothing stops early):
  decode_bs1      batch 1, prompt 128 -> 256 new (--quick: 128). value = ms per decode step =
                  (time of the full generate - TTFT) / (new - 1); TTFT (a generate of one token,
                  median of 3) is reported as ttft_ms. Peers hf_eager and hf_static.
  throughput_64   64 requests, prompt 128 -> 512 new (--quick: 128); value = output tok/s =
  throughput_256  batch * new / wall time of the whole run (prefill included). All three peers.
Peers:
  hf_eager   attn_implementation="sdpa", dynamic cache, one batched generate (after the TTFT
             runs and a probe generate of 8 tokens, which warm it up; the probe is warmup_s).
  hf_static  the same with cache_implementation="static"; transformers compiles the decode step
             itself (torch.compile, mode reduce-overhead). A first generate of the measured shape
             is the warm-up: its time, compile included, is warmup_s and is not in value.
  hf_cb      continuous batching (continuous_batching_context_manager, the machinery behind
             generate_batch in transformers 5.17; it switches the model to a paged attention,
             "paged|sdpa" without flash-attn, recorded as "attn"). Its warm-up (CUDA graph
             capture) is warmup_s; value counts from add_requests to the last result.
A timed run under 5 s is done twice and the faster kept ("runs"). The model is loaded once per
workload and freed after it, compiled graphs too (torch._dynamo.reset); peers run in the order
of --peers, hf_static last by default since its compiled state stays with the model.

Time caps: a peer is skipped (an "error": "skipped: time cap ..." line) when its estimate does
not fit in min(--budget-s, what is left of --deadline-s): for hf_eager TTFT plus the probe's time
per decode step times (new - 1) times 1.5 (steps slow down as the context grows); for hf_static
and hf_cb a fixed 90 s compile / warm-up allowance. A hf_cb run past the cap is stopped and
recorded as an error.
Any failure of a peer is recorded as an "error" line; the script carries on. The deadline is
checked before each peer, so a run can pass it by one peer's cap: under a 600 s wall-clock limit
keep --deadline-s + --budget-s well below it, or accept the last peer being cut.

Output: one JSON object per line, on stdout and appended to --out:
  {"name": "copy_bandwidth", "value": GB/s (bytes read + written), "unit": "GB/s", "bytes": n}
  {"name": "bf16_gemm", "value": TFLOP/s, "unit": "TFLOP/s", "n": 8192}
  {"name": workload, "model": NAME, "peer": ..., "value": ..., "unit": "ms/step" | "tok/s",
   "prompt_len", "new_tokens", "batch", "warmup_s", "ttft_ms", "seconds", "runs"} or "error".
Progress on stderr.
"""
import argparse
import gc
import json
import statistics
import sys
import time

import torch

WORKLOADS = {
    "decode_bs1": dict(batch=1, prompt=128, new=256, unit="ms/step",
                       peers=("hf_eager", "hf_static")),
    "throughput_64": dict(batch=64, prompt=128, new=512, unit="tok/s",
                          peers=("hf_eager", "hf_cb", "hf_static")),
    "throughput_256": dict(batch=256, prompt=128, new=512, unit="tok/s",
                           peers=("hf_eager", "hf_cb", "hf_static")),
}
QUICK_NEW = 128
PROBE_NEW = 8           # tokens of the probe generate that sizes hf_eager's run
GROWTH = 1.5            # per-step cost rises with context; the probe sees the short end
COMPILE_ALLOWANCE_S = 90  # what hf_static's compile or hf_cb's warm-up may take, for the caps
SECOND_RUN_S = 5        # a timed run shorter than this is repeated and the faster one kept
VOCAB_DRAW = 128000     # prompt ids are drawn below this (ordinary tokens in both vocabularies)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Run:
    """Shared state: arguments, output file, the deadline, and the device sync."""

    def __init__(self, args):
        self.args = args
        self.out = open(args.out, "a")
        self.end = time.perf_counter() + args.deadline_s
        self.cuda = args.device.startswith("cuda")

    def emit(self, obj):
        line = json.dumps(obj)
        print(line, flush=True)
        self.out.write(line + "\n")
        self.out.flush()

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def timed(self, fn):
        self.sync()
        start = time.perf_counter()
        result = fn()
        self.sync()
        return result, time.perf_counter() - start

    def cap(self):
        return min(self.args.budget_s, self.end - time.perf_counter())


def bench_ms(run, fn, iters):
    fn()
    fn()
    trials = []
    for _ in range(5):
        _, seconds = run.timed(lambda: [fn() for _ in range(iters)])
        trials.append(seconds * 1e3 / iters)
    return statistics.median(trials)


def measure_copy_bandwidth(run):
    n = int(run.args.copy_gib * (1 << 30))
    a = torch.empty(n, dtype=torch.uint8, device=run.args.device).random_(0, 255)
    b = torch.empty_like(a)
    ms = bench_ms(run, lambda: b.copy_(a), 10)
    run.emit({"name": "copy_bandwidth", "value": 2 * n / (ms * 1e-3) / 1e9, "unit": "GB/s",
              "bytes": n, "ms": ms})


def measure_gemm(run):
    n = run.args.gemm_n
    a = torch.randn(n, n, dtype=torch.bfloat16, device=run.args.device)
    b = torch.randn_like(a)
    ms = bench_ms(run, lambda: a @ b, 10)
    run.emit({"name": "bf16_gemm", "value": 2.0 * n ** 3 / (ms * 1e-3) / 1e12,
              "unit": "TFLOP/s", "n": n, "ms": ms})


def load(run):
    from transformers import AutoModelForCausalLM
    model, seconds = run.timed(lambda: AutoModelForCausalLM.from_pretrained(
        run.args.model, dtype=torch.bfloat16, attn_implementation="sdpa",
        device_map=run.args.device).eval())
    model.generation_config.eos_token_id = None  # forced lengths
    log(f"loaded {run.args.model} in {seconds:.1f} s")
    return model


def generate(model, ids, new, static):
    extra = {"cache_implementation": "static"} if static else {}
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new,
                         do_sample=False, pad_token_id=0, **extra)
    if out.shape[1] != ids.shape[1] + new:
        raise RuntimeError(f"generated {out.shape[1] - ids.shape[1]} tokens, wanted {new}")


def generate_peer(run, model, ids, wl, new, static):
    """hf_eager / hf_static: warm-up (static) or probe (eager), TTFT, then the timed generate."""
    rec = {}
    if static:
        if run.cap() < COMPILE_ALLOWANCE_S:
            return {"error": f"skipped: time cap ({run.cap():.0f} s left, compile allowance "
                             f"{COMPILE_ALLOWANCE_S} s)"}
        _, warmup = run.timed(lambda: generate(model, ids, new, True))
        rec["warmup_s"] = round(warmup, 2)  # compile included: a run takes less than this
    ttft = statistics.median(run.timed(lambda: generate(model, ids, 1, static))[1]
                             for _ in range(3))
    if not static:
        _, probe = run.timed(lambda: generate(model, ids, PROBE_NEW, False))
        estimate = ttft + (probe - ttft) / (PROBE_NEW - 1) * (new - 1) * GROWTH
        rec["warmup_s"] = round(probe, 2)
        log(f"  ttft {ttft:.2f} s, probe {probe:.2f} s, estimated {estimate:.1f} s per run")
        if estimate > run.cap():
            return {"error": f"skipped: time cap (estimated {estimate:.0f} s > "
                             f"{run.cap():.0f} s)", **rec}
    full, runs = run.timed(lambda: generate(model, ids, new, static))[1], 1
    if full < SECOND_RUN_S and 2 * full < run.cap():  # cheap enough to take the better of two
        full, runs = min(full, run.timed(lambda: generate(model, ids, new, static))[1]), 2
    if wl["unit"] == "ms/step":
        value = (full - ttft) / (new - 1) * 1e3
    else:
        value = ids.shape[0] * new / full
    return dict(rec, value=value, ttft_ms=round(ttft * 1e3, 2), seconds=round(full, 3),
                runs=runs)


def cb_peer(run, model, ids, new):
    """hf_cb: transformers' continuous batching manager, with a wall-clock cap."""
    from transformers import GenerationConfig
    from transformers.generation.continuous_batching.utils import WorkloadHints
    if run.cap() < COMPILE_ALLOWANCE_S:
        return {"error": f"skipped: time cap ({run.cap():.0f} s left)"}
    inputs = ids.tolist()
    config = GenerationConfig(max_new_tokens=new, do_sample=False, eos_token_id=None,
                              pad_token_id=0)
    hints = WorkloadHints(max_prompt_length=ids.shape[1], max_generated_length=new,
                          num_requests=len(inputs))
    start = time.perf_counter()
    with model.continuous_batching_context_manager(
            generation_config=config, block=True, timeout=30, workload_hints=hints) as manager:
        warmup = time.perf_counter() - start
        attn = model.config._attn_implementation
        log(f"  cb warm-up {warmup:.1f} s, attention {attn}")
        stop_at = time.perf_counter() + run.cap()
        run.sync()
        begin = time.perf_counter()
        manager.add_requests(inputs=inputs, max_new_tokens=new)
        done = {}
        while len(done) < len(inputs):
            result = manager.get_result(timeout=1)
            if result is not None and result.is_finished():
                done[result.request_id] = result
            elif result is None and not manager.is_running():
                raise RuntimeError(f"CB thread stopped after {len(done)} results")
            if time.perf_counter() > stop_at:
                manager.stop(block=True, timeout=30, hard_stop=True)
                return {"error": f"time cap: {len(done)} of {len(inputs)} requests done "
                                 f"after {stop_at - begin:.0f} s", "warmup_s": round(warmup, 2)}
        run.sync()
        seconds = time.perf_counter() - begin
    failed = [r.error for r in done.values() if r.error]
    short = [len(r.generated_tokens) for r in done.values() if len(r.generated_tokens) != new]
    if failed or short:
        return {"error": f"{len(failed)} failed ({failed[:1]}), lengths {short[:4]} != {new}"}
    return {"value": len(inputs) * new / seconds, "warmup_s": round(warmup, 2),
            "seconds": round(seconds, 3), "runs": 1, "attn": attn}


def run_workload(run, name):
    wl = WORKLOADS[name]
    new = QUICK_NEW if run.args.quick else wl["new"]
    peers = [p for p in run.args.peers.split(",") if p in wl["peers"]]
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB_DRAW, (wl["batch"], wl["prompt"]), generator=g)
    base = {"name": name, "model": run.args.name, "unit": wl["unit"], "prompt_len": wl["prompt"],
            "new_tokens": new, "batch": wl["batch"]}
    model = None
    for peer in peers:
        log(f"{name} {peer}: batch {wl['batch']}, {wl['prompt']} -> {new}, "
            f"{run.end - time.perf_counter():.0f} s left")
        try:
            if model is None:
                model = load(run)
            if peer == "hf_cb":
                rec = cb_peer(run, model, ids, new)
            else:
                rec = generate_peer(run, model, ids.to(run.args.device), wl, new,
                                    peer == "hf_static")
        except Exception as e:  # noqa: BLE001 - a failing peer is a result, not a crash
            rec = {"error": f"{type(e).__name__}: {e}"[:400]}
        run.emit(dict(base, peer=peer, **rec))
        free(run)
    del model
    if run.cuda:
        torch._dynamo.reset()  # drop the compiled graphs of the static cache with the model
    free(run)


def free(run):
    gc.collect()
    if run.cuda:
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, help="model folder (save_pretrained layout)")
    ap.add_argument("--name", required=True, help="model name for the join, e.g. llama-3.2-1b")
    ap.add_argument("--out", required=True, help="JSON lines, appended")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_NEW} new tokens everywhere")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--peers", default="hf_eager,hf_cb,hf_static")
    ap.add_argument("--budget-s", type=float, default=150, help="cap for one peer of a workload")
    ap.add_argument("--deadline-s", type=float, default=540, help="cap for the whole script")
    ap.add_argument("--copy-gib", type=float, default=4.0, help="copy bandwidth buffer size")
    ap.add_argument("--gemm-n", type=int, default=8192)
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    unknown = [w for w in args.workloads.split(",") if w not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workloads {unknown}")
    run = Run(args)
    import transformers
    run.emit({"name": "environment", "device": torch.cuda.get_device_name() if run.cuda else
              args.device, "torch": torch.__version__, "transformers": transformers.__version__})
    measure_copy_bandwidth(run)
    measure_gemm(run)
    for name in args.workloads.split(","):
        run_workload(run, name)
    log(f"done, {run.end - time.perf_counter():.0f} s of the deadline left")


if __name__ == "__main__":
    main()
