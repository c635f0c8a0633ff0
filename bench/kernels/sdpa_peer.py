#!/usr/bin/env python3
"""Peer numbers for bench/kernels: torch scaled_dot_product_attention with the FLASH_ATTENTION
and CUDNN_ATTENTION backends, at the shapes kernel_bench uses, on the same GPU in the same run.

Prefill: q [B, 32, S, D], k/v [B, 8, S, D] bf16, causal, enable_gqa (TFLOP/s, FA's causal count).
Decode: the 4 query heads of each kv head ride as 4 query rows against contiguous K/V
[B, 8, ctx, 128] (no K/V expansion), bytes of K and V over time (GB/s). Several copies of the
decode inputs rotate so small cases are not served from L2, as in kernel_bench.
Prints one JSON object per line; failures are recorded with an "error" field, never skipped.
"""
import json
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

ROTATE_BYTES = 256 << 20
BACKENDS = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION}


def time_ms(fn, iters):
    for _ in range(max(3, iters // 4)):
        fn(0)
    torch.cuda.synchronize()
    trials = []
    call = 0
    for _ in range(5):
        start = torch.cuda.Event(enable_timing=True)
        stop = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn(call)
            call += 1
        stop.record()
        stop.synchronize()
        trials.append(start.elapsed_time(stop) / iters)
    trials.sort()
    return trials[len(trials) // 2]


def emit(obj):
    print(json.dumps(obj), flush=True)


def copy_bandwidth():
    n = 1 << 30
    a = torch.empty(n, dtype=torch.uint8, device="cuda").random_(0, 255)
    b = torch.empty_like(a)
    ms = time_ms(lambda i: b.copy_(a), 10)
    emit({"name": "copy_bandwidth", "peer": "torch_copy", "shape": {"bytes": n},
          "value": 2 * n / (ms * 1e-3) / 1e9, "unit": "GB/s", "ms": ms})


def prefill(quick):
    heads, kv_heads = 32, 8
    for hd in (64, 128):
        for seq in (512, 2048, 8192):
            if quick and seq != 2048:
                continue
            batch = max(1, 16384 // seq)
            q = torch.randn(batch, heads, seq, hd, device="cuda", dtype=torch.bfloat16)
            k = torch.randn(batch, kv_heads, seq, hd, device="cuda", dtype=torch.bfloat16)
            v = torch.randn_like(k)
            flops = 4.0 * batch * seq * seq * hd * heads / 2.0
            shape = {"batch": batch, "seq": seq, "head_dim": hd, "heads": heads,
                     "kv_heads": kv_heads, "dtype": "bf16", "causal": True}
            for name, backend in BACKENDS.items():
                rec = {"name": "prefill_attention", "peer": f"sdpa_{name}", "shape": shape,
                       "unit": "TFLOP/s"}
                try:
                    with sdpa_kernel(backend):
                        fn = lambda i: F.scaled_dot_product_attention(
                            q, k, v, is_causal=True, enable_gqa=True)
                        ms = time_ms(fn, 5 if seq >= 8192 else 20)
                    rec.update(value=flops / (ms * 1e-3) / 1e12, ms=ms)
                except Exception as e:  # noqa: BLE001 - record why the peer could not run
                    rec.update(value=None, error=f"{type(e).__name__}: {e}"[:300])
                emit(rec)
            del q, k, v
            torch.cuda.empty_cache()


def decode(quick):
    heads, kv_heads, hd = 32, 8, 128
    group = heads // kv_heads
    for batch in (1, 16, 64, 256):
        for ctx in (512, 4096, 16384, 32768):
            if quick and batch not in (1, 64):
                continue
            if batch * ctx > 256 * 16384:
                continue
            set_bytes = 2 * batch * ctx * kv_heads * hd * 2
            copies = max(1, min(32, ROTATE_BYTES // set_bytes))
            qs = [torch.randn(batch, kv_heads, group, hd, device="cuda", dtype=torch.bfloat16)
                  for _ in range(copies)]
            ks = [torch.randn(batch, kv_heads, ctx, hd, device="cuda", dtype=torch.bfloat16)
                  for _ in range(copies)]
            vs = [torch.randn_like(ks[0]) for _ in range(copies)]
            shape = {"batch": batch, "ctx": ctx, "head_dim": hd, "heads": heads,
                     "kv_heads": kv_heads, "dtype": "bf16"}
            for name, backend in BACKENDS.items():
                rec = {"name": "decode_attention", "peer": f"sdpa_{name}", "shape": shape,
                       "unit": "GB/s"}
                try:
                    with sdpa_kernel(backend):
                        fn = lambda i: F.scaled_dot_product_attention(
                            qs[i % copies], ks[i % copies], vs[i % copies])
                        ms = time_ms(fn, 50)
                    rec.update(value=set_bytes / (ms * 1e-3) / 1e9, ms=ms)
                except Exception as e:  # noqa: BLE001
                    rec.update(value=None, error=f"{type(e).__name__}: {e}"[:300])
                emit(rec)
            del qs, ks, vs
            torch.cuda.empty_cache()


def main():
    quick = "--quick" in sys.argv
    print(f"# torch {torch.__version__} on {torch.cuda.get_device_name(0)}", file=sys.stderr)
    copy_bandwidth()
    prefill(quick)
    decode(quick)


if __name__ == "__main__":
    main()
