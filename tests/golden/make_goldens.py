#!/usr/bin/env python3
"""Makes the golden data the CPU (and CUDA) backends are checked against, with Hugging Face
transformers as the reference. Run on the developer machine only (needs torch + transformers):

    /opt/refpy/bin/python tests/golden/make_goldens.py [--gguf models/SmolLM2-135M-Instruct.Q4_1.gguf]

transformers needs `accelerate` (and its psutil, pyyaml) to load a GGUF file; where the reference
environment lacks them: pip install --target /tmp/pydeps --no-deps accelerate psutil pyyaml and
run with PYTHONPATH=/tmp/pydeps.

Writes, under tests/data/:
  tiny-llama/, tiny-llama-tied-llama3/, tiny-qwen2/   random-weight models (save_pretrained)
  tiny-*-hd64/                                         the same at head_dim 64 (CUDA kernels)
  golden/<model>.json + golden/<model>.logits.f32      logits at every position of fixed token
                                                        sequences (float32, [sum(len), vocab])
  golden/smollm2_greedy.json                            greedy continuations of SmolLM2 prompts
The outputs are committed; this script is how they were made.
"""
import argparse
import json
import os

import numpy as np
import torch
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data")
GOLDEN = os.path.join(DATA, "golden")

VOCAB = 512
SEQUENCE_LENGTHS = [7, 16, 33]


def randomize(model, seed):
    """Weights with a larger spread than HF's init (std 0.02 gives near-flat logits), and norm
    weights away from 1 so that a missing norm weight would show."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif "bias" in name:
                p.copy_(0.2 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.15 * torch.randn(p.shape, generator=g))


def tiny_models():
    common = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  max_position_embeddings=256, rms_norm_eps=1e-5, bos_token_id=1,
                  eos_token_id=2)
    yield "tiny-llama", torch.float32, LlamaForCausalLM(LlamaConfig(
        **common, num_attention_heads=4, num_key_value_heads=2, head_dim=16,
        tie_word_embeddings=False, rope_theta=10000.0))
    # head_dim 32 with theta 10000 spans wavelengths 6..35000, so an original context of 64
    # puts frequencies in all three llama3 bands (kept, interpolated, divided).
    yield "tiny-llama-tied-llama3", torch.float32, LlamaForCausalLM(LlamaConfig(
        **common, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
        tie_word_embeddings=True, rope_theta=10000.0,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                          high_freq_factor=4.0, original_max_position_embeddings=64)))
    # Saved in BF16: the golden logits come from the same bf16-rounded weights in fp32.
    yield "tiny-qwen2", torch.bfloat16, Qwen2ForCausalLM(Qwen2Config(
        **common, num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
        rope_theta=1000000.0, use_sliding_window=False))


def tiny_models_hd64():
    """The same three architectures at head_dim 64, the smallest the CUDA attention kernels
    take: the CPU and the CUDA backends are both checked against these. Llama's Q width (4 x 64)
    differs from its hidden size (128) on purpose."""
    common = dict(vocab_size=VOCAB, hidden_size=128, intermediate_size=128, num_hidden_layers=2,
                  max_position_embeddings=256, rms_norm_eps=1e-5, bos_token_id=1,
                  eos_token_id=2)
    yield "tiny-llama-hd64", torch.float32, LlamaForCausalLM(LlamaConfig(
        **common, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
        tie_word_embeddings=False, rope_theta=10000.0))
    yield "tiny-llama-tied-llama3-hd64", torch.float32, LlamaForCausalLM(LlamaConfig(
        **common, num_attention_heads=2, num_key_value_heads=1, head_dim=64,
        tie_word_embeddings=True, rope_theta=10000.0,
        rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                          high_freq_factor=4.0, original_max_position_embeddings=64)))
    yield "tiny-qwen2-hd64", torch.bfloat16, Qwen2ForCausalLM(Qwen2Config(
        **common, num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True,
        rope_theta=1000000.0, use_sliding_window=False))


def make_tiny(models, seed_base, lengths=SEQUENCE_LENGTHS):
    os.makedirs(GOLDEN, exist_ok=True)
    for i, (name, dtype, model) in enumerate(models):
        torch.manual_seed(seed_base + i)
        randomize(model, seed_base + i)
        model = model.to(dtype)
        out_dir = os.path.join(DATA, name)
        model.save_pretrained(out_dir)
        # The reference runs on the saved files reloaded in fp32: casting the in-memory model
        # back from bf16 would also leave its RoPE inv_freq buffer rounded to bf16.
        model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32).eval()
        g = torch.Generator().manual_seed(seed_base + 1000 + i)
        sequences = [torch.randint(0, VOCAB, (n,), generator=g).tolist() for n in lengths]
        all_logits = []
        with torch.no_grad():
            for seq in sequences:
                out = model(torch.tensor([seq]), use_cache=False)
                all_logits.append(out.logits[0].to(torch.float32).numpy())
        logits = np.concatenate(all_logits, axis=0).astype("<f4")
        logits.tofile(os.path.join(GOLDEN, f"{name}.logits.f32"))
        meta = {
            "model": f"tests/data/{name}",
            "reference": "transformers " + __import__("transformers").__version__ + ", fp32 CPU",
            "vocab_size": VOCAB,
            "sequences": sequences,
            "logits_file": f"{name}.logits.f32",
            "logits_shape": list(logits.shape),
            "max_abs_logit": float(np.abs(logits).max()),
        }
        with open(os.path.join(GOLDEN, f"{name}.json"), "w") as f:
            json.dump(meta, f, indent=1)
        size = sum(os.path.getsize(os.path.join(out_dir, p)) for p in os.listdir(out_dir))
        print(f"{name}: {size} bytes, max |logit| {meta['max_abs_logit']:.3f}")


RAW_PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village,",
]
CHAT_PROMPTS = [
    "What is the boiling point of water?",
    "Write a haiku about the sea.",
]


def make_smollm2(gguf_path):
    folder, file = os.path.split(os.path.abspath(gguf_path))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32).eval()
    eos = model.generation_config.eos_token_id
    eos_ids = eos if isinstance(eos, list) else [eos]
    cases = []
    for text in RAW_PROMPTS:
        cases.append({"kind": "raw", "prompt": text, "ids": tok(text)["input_ids"]})
    for text in CHAT_PROMPTS:
        messages = [{"role": "user", "content": text}]
        ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        rendered = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        cases.append({"kind": "chat", "prompt": text, "rendered": rendered, "ids": list(ids)})
    with torch.no_grad():
        for case in cases:
            out = model.generate(torch.tensor([case["ids"]]), max_new_tokens=32, do_sample=False,
                                 eos_token_id=eos_ids, pad_token_id=eos_ids[0])
            case["generated"] = out[0, len(case["ids"]):].tolist()
            case["text"] = tok.decode(case["generated"], skip_special_tokens=False)
            print(case["kind"], repr(case["prompt"]), "->", repr(case["text"]))
    result = {
        "model": os.path.basename(gguf_path),
        "reference": "transformers " + __import__("transformers").__version__ +
                     " (GGUF dequantized to fp32), greedy, max_new_tokens 32",
        "eos_token_ids": eos_ids,
        "cases": cases,
    }
    with open(os.path.join(GOLDEN, "smollm2_greedy.json"), "w") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gguf", default=os.path.join(ROOT, "models",
                                                   "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--skip-tiny", action="store_true")
    ap.add_argument("--skip-hd64", action="store_true")
    ap.add_argument("--skip-smollm2", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not args.skip_tiny:
        make_tiny(tiny_models(), 1000)
    if not args.skip_hd64:
        # A 250-token sequence too: attention over many KV tiles and far RoPE positions.
        make_tiny(tiny_models_hd64(), 3000, SEQUENCE_LENGTHS + [250])
    if not args.skip_smollm2:
        make_smollm2(args.gguf)


if __name__ == "__main__":
    main()
