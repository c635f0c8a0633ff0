#!/usr/bin/env python3
"""How far transformers itself lands from the fp32 goldens when it runs the tiny head_dim-64
models in bf16 on the GPU: the scale against which the CUDA backend's error on the same goldens
(cuda_backend_test) is read.

    python3 tests/gpu/bf16_reference_error.py [tiny-llama-hd64 ...]
"""
import json
import os
import sys

import numpy as np
import torch
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    names = sys.argv[1:] or ["tiny-llama-hd64", "tiny-llama-tied-llama3-hd64", "tiny-qwen2-hd64"]
    for name in names:
        meta = json.load(open(os.path.join(ROOT, "tests/data/golden", name + ".json")))
        golden = np.fromfile(os.path.join(ROOT, "tests/data/golden", meta["logits_file"]),
                             dtype="<f4").reshape(meta["logits_shape"])
        model = AutoModelForCausalLM.from_pretrained(os.path.join(ROOT, "tests/data", name),
                                                     dtype=torch.bfloat16).cuda().eval()
        rows = []
        with torch.no_grad():
            for seq in meta["sequences"]:
                out = model(torch.tensor([seq]).cuda(), use_cache=False)
                rows.append(out.logits[0].float().cpu().numpy())
        diff = np.abs(np.concatenate(rows) - golden).max()
        print(f"{name}: transformers bf16 on the GPU, max |diff| from the fp32 golden {diff:.4f}"
              f" (max |logit| {meta['max_abs_logit']:.3f})")


if __name__ == "__main__":
    main()
