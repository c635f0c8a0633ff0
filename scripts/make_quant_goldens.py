#!/usr/bin/env python3
"""Generates the small goldens the model-loader tests compare against.

Run with the heavy reference environment (never needed in CI; the outputs are committed):
  /opt/refpy/bin/python scripts/make_quant_goldens.py quant
  /opt/refpy/bin/python scripts/make_quant_goldens.py smollm2 models/SmolLM2-135M-Instruct.Q4_1.gguf

quant: for each ggml type, tests/data/quant/<TYPE>.q (the encoded blocks, 2 rows of 512 values)
  and <TYPE>.f32 (gguf.quants.dequantize of them, little-endian float32). Types that gguf-py can
  quantize are quantized from fixed random floats; for the K-quants (no Python quantizer) the
  blocks are random bytes with sane f16 scales, which exercises every bit of the format.
smollm2: tests/data/quant/smollm2_samples.json, sampled rows of the weights transformers builds
  from the GGUF (it dequantizes and reverses the llama.cpp Q/K permutation), keyed by HF name.
"""
import json
import pathlib
import sys

import numpy as np

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "data" / "quant"
ROWS, COLS = 2, 512


def f16_bytes(values):
    return np.asarray(values, dtype=np.float16).view(np.uint8)


def random_k_blocks(qtype, rng, nblocks):
    """Random Q4_K / Q5_K / Q6_K blocks whose f16 fields are finite and modest."""
    from gguf import GGMLQuantizationType as T
    blocks = []
    for _ in range(nblocks):
        if qtype == T.Q4_K or qtype == T.Q5_K:
            d = f16_bytes([rng.uniform(0.001, 0.05), rng.uniform(0.001, 0.05)])
            rest = 12 + 128 + (32 if qtype == T.Q5_K else 0)
            blocks.append(np.concatenate([d, rng.integers(0, 256, rest, dtype=np.uint8)]))
        elif qtype == T.Q6_K:
            body = rng.integers(0, 256, 128 + 64 + 16, dtype=np.uint8)
            blocks.append(np.concatenate([body, f16_bytes([rng.uniform(0.001, 0.05)])]))
    return np.concatenate(blocks)


def make_quant():
    import gguf
    from gguf import GGMLQuantizationType as T
    from gguf import quants
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1234)
    x = (rng.standard_normal((ROWS, COLS)) * 0.5).astype(np.float32)
    x[0, :32] = 0.0  # an all-zero block (d = 0) is a corner case worth covering
    for name in ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1",
                 "Q4_K", "Q5_K", "Q6_K"]:
        qtype = T[name]
        if name in ("Q4_K", "Q5_K", "Q6_K"):
            block, size = gguf.GGML_QUANT_SIZES[qtype]
            q = random_k_blocks(qtype, rng, ROWS * COLS // block).reshape(ROWS, -1)
        elif name == "F32":
            q = x.view(np.uint8)
        elif name == "F16":
            q = x.astype(np.float16).view(np.uint8)
        else:
            q = quants.quantize(x, qtype)
        y = quants.dequantize(np.ascontiguousarray(q).view(np.uint8), qtype).astype(np.float32)
        assert y.shape == (ROWS, COLS), (name, y.shape)
        (OUT / f"{name}.q").write_bytes(np.ascontiguousarray(q).tobytes())
        (OUT / f"{name}.f32").write_bytes(y.astype("<f4").tobytes())
        print(name, q.nbytes, "bytes")


def make_smollm2(gguf_path):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint
    path = pathlib.Path(gguf_path).resolve()
    # The same steps from_pretrained(gguf_file=...) takes (it only adds `accelerate` for device
    # placement): config from the GGUF metadata, then dequantized tensors mapped to HF names,
    # with transformers' reverse of the llama.cpp Q/K permutation applied.
    config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    parsed = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)
    sd = parsed["tensors"]
    picks = {}
    for layer in (0, 29):
        p = f"model.layers.{layer}."
        picks[p + "self_attn.q_proj.weight"] = [0, 1, 2, 31, 32, 33, 63, 64, 65, 575]
        picks[p + "self_attn.k_proj.weight"] = [0, 1, 31, 32, 63, 64, 191]
        picks[p + "self_attn.v_proj.weight"] = [0, 1, 191]
        picks[p + "self_attn.o_proj.weight"] = [0, 575]
        picks[p + "mlp.gate_proj.weight"] = [0, 1535]
        picks[p + "mlp.up_proj.weight"] = [0, 1535]
        picks[p + "mlp.down_proj.weight"] = [0, 575]
        picks[p + "input_layernorm.weight"] = None
        picks[p + "post_attention_layernorm.weight"] = None
    picks["model.embed_tokens.weight"] = [0, 1, 2, 12345, 49151]
    picks["model.norm.weight"] = None
    samples = []
    cols = list(range(0, 16)) + list(range(16, 576, 37))
    for name, rows in picks.items():
        t = sd[name].float().numpy()
        if rows is None:
            samples.append({"name": name, "row": -1, "cols": cols,
                            "values": [float(t[c]) for c in cols]})
            continue
        for r in rows:
            samples.append({"name": name, "row": r, "cols": cols,
                            "values": [float(t[r, c]) for c in cols]})
    cfg = model.config
    out = {"config": {"vocab_size": cfg.vocab_size, "hidden_size": cfg.hidden_size,
                      "intermediate_size": cfg.intermediate_size,
                      "num_hidden_layers": cfg.num_hidden_layers,
                      "num_attention_heads": cfg.num_attention_heads,
                      "num_key_value_heads": cfg.num_key_value_heads,
                      "rms_norm_eps": cfg.rms_norm_eps,
                      "max_position_embeddings": cfg.max_position_embeddings},
           "samples": samples}
    (OUT / "smollm2_samples.json").write_text(json.dumps(out, indent=0))
    print(len(samples), "samples")


if __name__ == "__main__":
    if sys.argv[1] == "quant":
        make_quant()
    elif sys.argv[1] == "smollm2":
        make_smollm2(sys.argv[2])
    else:
        sys.exit("usage: make_quant_goldens.py quant | smollm2 <gguf>")
