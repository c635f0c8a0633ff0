#!/usr/bin/env python3
"""Random-weight Hugging Face models with the real architectures' configs, for the GPU speed
runs (bench/engine) and the greedy correctness runs (tests/gpu). Speed does not depend on the
values; correctness needs weights whose greedy logits are not flat (--spread).

    python3 bench/engine/make_models.py --out /tmp/models \\
        --models llama-3.2-1b,qwen2.5-0.5b,llama-3.1-8b [--spread] [--seed 0] [--stats]

Each model is built directly on the GPU in bf16 (seconds even for 8B), filled with a fixed seed,
written with save_pretrained (one model.safetensors up to transformers' 50 GB shard size, else
sharded with model.safetensors.index.json) plus config.json and generation_config.json, and
given the tokenizer of its family from --tokenizers (default tests/gpu/tokenizers: llama3/ holds
the Llama 3 tokenizer.json with the Llama 3.1 tokenizer_config.json, qwen3/ the Qwen ones; the
tokenizer.json files are stored gzipped there and written out plain).

Weights without --spread: transformers' own init (std 0.02, near-flat logits; speed runs only).
With --spread (chosen by measuring the real llama-3.2-1b and qwen2.5-0.5b shapes on a CPU):
  matrices N(0, 1/in_features), so each sub-layer adds O(1) to the residual stream (hidden RMS
  ~0.7 after layer 1, ~3 after 16, ~4 after 24), o_proj at 0.7 of that; norm weights U(0.5, 1.5);
  biases 0.2 * N(0, 1); embedding (and an untied lm_head) rows N(0, 0.02^2) times a per-token
  scale exp(N(0, 0.25^2)); the final norm weights scaled up by 4 / (0.02 * sqrt(hidden)), so the
  logits spread by ~4 (max ~40). Why:
  - small embeddings: with tied weights, an embedding that dominates the residual stream makes
    every token predict itself (N(0, 1) rows repeat the last token forever);
  - o_proj 0.7: at 1.0, greedy runs repeat the previous token at ~50% of steps; at 0.7 ~15%.
    Lower gains, or larger q/k gains, make the model chaotic: bf16 and fp32 runs drift apart
    (q/k at 2x: 25% hidden-state error, argmax flips at 44% of positions; here ~2-3%);
  - row scales: a heavier tail than Gaussian logits, which brings the share of positions whose
    top-2 gap is within compare_greedy.py's tolerance (4 x 2^-7 of the top logit) from ~50% to
    ~30-36%.
  Between two correct bf16 runs (HF sdpa batched vs eager unbatched) greedy outputs still part
  after ~2-30 tokens, always at near-ties; compare_greedy.py judges that. --stats runs one forward
  pass over random tokens and prints the RMS after each layer and the tie share.
The tiny-* models (real vocabularies, real depths, small widths) run on a CPU for smoke tests.

Output: one JSON line per model on stdout, {"model", "dir", "weight_bytes", "params", "seconds"}
(weight_bytes counts each tensor once: a tied lm_head is not counted twice). Progress on stderr.
"""
import argparse
import gzip
import json
import math
import os
import shutil
import sys
import time

import torch
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

# --spread (see the docstring): embedding std, spread of the log of its per-token row scales,
# the attention output projection's gain, and the logits' target spread.
EMBED_STD = 0.02
ROW_SIGMA = 0.25
O_GAIN = 0.7
LOGIT_SPREAD = 4.0
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LLAMA3_ROPE = dict(rope_type="llama3", low_freq_factor=1.0, high_freq_factor=4.0,
                   original_max_position_embeddings=8192)
LLAMA = dict(vocab_size=128256, rms_norm_eps=1e-5, bos_token_id=128000, eos_token_id=128001,
             rope_theta=500000.0, hidden_act="silu", attention_bias=False, mlp_bias=False)
QWEN = dict(vocab_size=151936, rms_norm_eps=1e-6, bos_token_id=151643, eos_token_id=151643,
            rope_theta=1000000.0, hidden_act="silu", use_sliding_window=False)

# name -> (config class, kwargs, tokenizer family)
MODELS = {
    "llama-3.2-1b": (LlamaConfig, dict(
        LLAMA, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64, tie_word_embeddings=True,
        max_position_embeddings=131072, rope_scaling=dict(LLAMA3_ROPE, factor=32.0)), "llama3"),
    "qwen2.5-0.5b": (Qwen2Config, dict(
        QWEN, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, tie_word_embeddings=True,
        max_position_embeddings=32768, max_window_layers=24), "qwen3"),
    "llama-3.1-8b": (LlamaConfig, dict(
        LLAMA, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, head_dim=128, tie_word_embeddings=False,
        max_position_embeddings=131072, rope_scaling=dict(LLAMA3_ROPE, factor=8.0)), "llama3"),
    "tiny-llama": (LlamaConfig, dict(
        LLAMA, hidden_size=128, intermediate_size=512, num_hidden_layers=16,
        num_attention_heads=4, num_key_value_heads=2, head_dim=32, tie_word_embeddings=True,
        max_position_embeddings=131072, rope_scaling=dict(LLAMA3_ROPE, factor=32.0)), "llama3"),
    "tiny-qwen": (Qwen2Config, dict(
        QWEN, hidden_size=128, intermediate_size=512, num_hidden_layers=24,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
        max_position_embeddings=32768, max_window_layers=24), "qwen3"),
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


@torch.no_grad()
def spread(model, seed):
    """Refills every parameter (see the module docstring) from one seeded generator, in
    parameter-name order so the result does not depend on module registration order."""
    g = torch.Generator(device=model.device).manual_seed(seed)
    logit_gain = LOGIT_SPREAD / (EMBED_STD * math.sqrt(model.config.hidden_size))
    for name, p in sorted(model.named_parameters()):  # a tied lm_head appears once
        if "norm" in name:
            p.uniform_(0.5, 1.5, generator=g)
            if name == "model.norm.weight":
                p.mul_(logit_gain)
        elif name.endswith(".bias"):
            p.normal_(0.0, 0.2, generator=g)
        elif "embed_tokens" in name or "lm_head" in name:
            p.normal_(0.0, EMBED_STD, generator=g)
            row = torch.empty(p.shape[0], 1, device=p.device, dtype=torch.float32)
            p.mul_(row.normal_(0.0, ROW_SIGMA, generator=g).exp().to(p.dtype))
        else:
            gain = O_GAIN if "o_proj" in name else 1.0
            p.normal_(0.0, gain / math.sqrt(p.shape[1]), generator=g)


def copy_tokenizer(src, dst):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        path = os.path.join(src, name)
        if os.path.exists(path):
            shutil.copyfile(path, os.path.join(dst, name))
        elif os.path.exists(path + ".gz"):
            with gzip.open(path + ".gz", "rb") as f, open(os.path.join(dst, name), "wb") as o:
                shutil.copyfileobj(f, o)
        else:
            raise SystemExit(f"missing {path}(.gz)")


@torch.no_grad()
def stats(model, seed, tokens=256):
    """Hidden-state RMS after each layer, and how often the top-2 logit gap is within the
    tolerance of compare_greedy.py (same rule, vectorized): the share of positions where a
    divergence could be excused as a tie."""
    g = torch.Generator().manual_seed(seed + 1)
    vocab = model.config.vocab_size
    ids = torch.randint(0, min(vocab, 128000), (1, tokens), generator=g).to(model.device)
    out = model(ids, output_hidden_states=True, use_cache=False)
    rms = [round(h.float().pow(2).mean().sqrt().item(), 2) for h in out.hidden_states]
    top = out.logits[0].float().topk(2, dim=-1).values
    v1, gap = top[:, 0], top[:, 0] - top[:, 1]
    tol = 4.0 * torch.clamp(v1.abs().clamp(min=1.0) * 2.0 ** -7, min=0.05)
    return {"hidden_rms": rms, "max_abs_logit": round(top[:, 0].abs().max().item(), 2),
            "median_gap": round(gap.median().item(), 3),
            "median_tol": round(tol.median().item(), 3),
            "within_tol": round((gap <= tol).float().mean().item(), 3),
            "finite": bool(torch.isfinite(out.logits).all())}


def make(name, out_root, args):
    cls, kwargs, family = MODELS[name]
    start = time.time()
    config = cls(**kwargs)
    with torch.device(args.device):
        torch.manual_seed(args.seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).eval()
    if args.spread:
        spread(model, args.seed)
    params = {id(p): p for p in model.parameters()}.values()
    weight_bytes = sum(p.numel() * p.element_size() for p in params)
    log(f"{name}: built on {args.device} in {time.time() - start:.1f} s, "
        f"{weight_bytes / 1e9:.2f} GB")
    if args.stats:
        log(f"{name}: stats {json.dumps(stats(model, args.seed))}")
    out_dir = os.path.join(out_root, name)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    copy_tokenizer(os.path.join(args.tokenizers, family), out_dir)
    seconds = time.time() - start
    log(f"{name}: saved to {out_dir} in {seconds:.1f} s")
    print(json.dumps({"model": name, "dir": out_dir, "weight_bytes": weight_bytes,
                      "params": sum(p.numel() for p in params), "spread": args.spread,
                      "seconds": round(seconds, 1)}), flush=True)
    del model
    if args.device == "cuda":
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder; each model goes to OUT/NAME")
    ap.add_argument("--models", default="llama-3.2-1b,qwen2.5-0.5b,llama-3.1-8b",
                    help="comma-separated, from: " + ", ".join(MODELS))
    ap.add_argument("--spread", action="store_true", help="wide weights (correctness runs)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stats", action="store_true", help="print activation/logit statistics")
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for the tiny-* models")
    ap.add_argument("--tokenizers", default=os.path.join(ROOT, "tests", "gpu", "tokenizers"))
    args = ap.parse_args()
    names = [m for m in args.models.split(",") if m]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        raise SystemExit(f"unknown models {unknown}; known: {list(MODELS)}")
    for name in names:
        make(name, args.out, args)


if __name__ == "__main__":
    main()
