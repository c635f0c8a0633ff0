#!/usr/bin/env python3
"""LLaVA-1.5 folders with random bf16 weights for bench/llava (the GPU host has no network, so no
real checkpoint; speed does not depend on the values):

    python3 bench/llava/make_llava.py --out /tmp/ite-models [--models llava-1.5-7b] [--seed 0]

  llava-1.5-7b  llava-hf/llava-1.5-7b-hf's architecture: CLIP ViT-L/14 at 336 px (24 layers,
                1024 wide, 16 heads, quick-GELU, 577 positions; features from layer -2 without
                the class token: 576 image positions), the two-layer GELU projector (1024 ->
                4096 -> 4096), Vicuna-7B v1.5 (Llama-2 7B: 32 layers, 4096 wide, 32 heads, no
                GQA, MLP 11008, RMSNorm 1e-5, RoPE theta 1e4, 4096 positions), vocabulary 32064
                with <image> = 32000 and <pad> = 32001. About 7.06 B parameters, 14.1 GB.
  tiny-llava    the shapes of tests/data/tiny-llava (a smoke run of the scripts on a CPU host
                with torch: --device cpu).

The model is built directly on --device in bf16 (`from_config` under a torch.device context:
transformers' own init runs on the GPU, in seconds for 7B; nothing is made in fp32 on the CPU),
then written with save_pretrained (one model.safetensors below transformers' 50 GB shard size),
with generation_config.json and the image processor's settings in processor_config.json as
transformers 5 writes them for LLaVA-1.5 (pad to square, 336 px, CLIP mean and std). No
tokenizer is written (there is none on the host; the benchmarks feed token ids).

Output: one JSON line per model on stdout, {"model", "dir", "params", "weight_bytes",
"seconds"}; progress on stderr.
"""
import argparse
import json
import os
import sys
import time

import torch
from transformers import AutoModelForImageTextToText, CLIPVisionConfig, LlamaConfig, LlavaConfig

VICUNA_7B = dict(vocab_size=32064, hidden_size=4096, intermediate_size=11008,
                 num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                 max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
                 hidden_act="silu", bos_token_id=1, eos_token_id=2, pad_token_id=32001,
                 tie_word_embeddings=False)
CLIP_L14_336 = dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                    num_attention_heads=16, image_size=336, patch_size=14, projection_dim=768,
                    layer_norm_eps=1e-5, hidden_act="quick_gelu")
TINY_TEXT = dict(vocab_size=402, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                 num_attention_heads=2, num_key_value_heads=1, head_dim=64,
                 max_position_embeddings=2048, rms_norm_eps=1e-5, bos_token_id=1,
                 eos_token_id=2, pad_token_id=400, tie_word_embeddings=False)
TINY_VISION = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3,
                   num_attention_heads=2, image_size=336, patch_size=14, projection_dim=64,
                   layer_norm_eps=1e-5, hidden_act="quick_gelu")
# name -> (vision config, text config, image token id)
MODELS = {
    "llava-1.5-7b": (CLIP_L14_336, VICUNA_7B, 32000),
    "tiny-llava": (TINY_VISION, TINY_TEXT, 401),
}
# LLaVA-1.5's image processor (CLIPImageProcessor settings with pad-to-square).
PROCESSOR = {
    "image_processor": {
        "crop_size": {"height": 336, "width": 336}, "do_center_crop": True,
        "do_convert_rgb": True, "do_normalize": True, "do_pad": True, "do_rescale": True,
        "do_resize": True, "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_processor_type": "LlavaImageProcessor",
        "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3,
        "rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 336}},
    "image_token": "<image>", "num_additional_image_tokens": 1, "patch_size": 14,
    "processor_class": "LlavaProcessor", "vision_feature_select_strategy": "default",
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def llava_config(name):
    vision, text, image_token = MODELS[name]
    return LlavaConfig(vision_config=CLIPVisionConfig(**vision), text_config=LlamaConfig(**text),
                       image_token_index=image_token, image_seq_length=576,
                       projector_hidden_act="gelu", vision_feature_select_strategy="default",
                       vision_feature_layer=-2, multimodal_projector_bias=True,
                       tie_word_embeddings=False)


def make(name, out_root, device, seed):
    start = time.time()
    config = llava_config(name)
    with torch.device(device):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16).eval()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    params = {id(p): p for p in model.parameters()}.values()
    weight_bytes = sum(p.numel() * p.element_size() for p in params)
    n_params = sum(p.numel() for p in params)
    log(f"{name}: {n_params / 1e9:.2f} B parameters built on {device} in "
        f"{time.time() - start:.1f} s")
    out_dir = os.path.join(out_root, name)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    model.generation_config.save_pretrained(out_dir)
    with open(os.path.join(out_dir, "processor_config.json"), "w") as f:
        json.dump(PROCESSOR, f, indent=2)
    seconds = time.time() - start
    log(f"{name}: saved to {out_dir} in {seconds:.1f} s")
    print(json.dumps({"model": name, "dir": out_dir, "params": n_params,
                      "weight_bytes": weight_bytes, "seconds": round(seconds, 1)}), flush=True)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="folder; each model goes to OUT/NAME")
    ap.add_argument("--models", default="llava-1.5-7b",
                    help="comma-separated: " + ", ".join(MODELS))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    names = [m for m in args.models.split(",") if m]
    unknown = [m for m in names if m not in MODELS]
    if unknown:
        raise SystemExit(f"unknown models {unknown}; known: {list(MODELS)}")
    for name in names:
        make(name, args.out, args.device, args.seed)


if __name__ == "__main__":
    main()
