#!/usr/bin/env python3
"""Greedy reference continuations from Hugging Face transformers (bf16, CUDA), with the top
logits at every generated position, so that compare_greedy.py can tell a real mismatch from a
bf16 near-tie. Two modes:

  Make prompts (no GPU needed): random token ids, lengths len-min and len-max plus uniform ones
  between, tokens uniform in [0, vocab):
    python3 tests/gpu/hf_greedy.py --make-prompts 16 --seed 0 --len-min 1 --len-max 700 \\
        --vocab 128000 --out prompts.json            # writes [[id, ...], ...]

  Reference run:
    python3 tests/gpu/hf_greedy.py --model DIR --prompts-json prompts.json --max-new 64 \\
        --out hf.json [--quick] [--batch 0] [--attn sdpa|eager] [--top 4] [--device cuda]

--quick caps --max-new at 32 (compare_greedy.py compares only the reference's length, so our run
may stay at 64). Every prompt gets exactly --max-new tokens: the model's EOS is cleared, so
nothing stops early and no EOS logit is masked. Prompts run in batches of --batch (0: all at
once), left-padded with an attention mask; padding changes the kernels' shapes and so bf16
rounding, which the tie rule in compare_greedy.py absorbs (--batch 1 gives unpadded runs at ~N
times the cost).
Output: {"model", "reference", "attn", "batch", "max_new", "seconds",
         "prompts": [{"prompt": [...], "tokens": [...], "top": [[id1, v1, id2, v2, ...], ...]}]}
with the --top largest raw logits (float32, as generate returns them with output_logits) per
generated position, largest first; more than two, because a bf16 near-tie can hold three or more
tokens. Progress on stderr.
"""
import argparse
import json
import random
import sys
import time

QUICK_NEW = 32


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def make_prompts(args):
    rng = random.Random(args.seed)
    lengths = [args.len_min, args.len_max][:args.make_prompts]
    lengths += [rng.randint(args.len_min, args.len_max) for _ in range(args.make_prompts - 2)]
    prompts = [[rng.randrange(args.vocab) for _ in range(n)] for n in lengths]
    with open(args.out, "w") as f:
        json.dump(prompts, f)
    log(f"wrote {len(prompts)} prompts, lengths {sorted(lengths)}, to {args.out}")


def run_batch(model, torch, prompts, max_new, device, k):
    longest = max(len(p) for p in prompts)
    ids = torch.zeros(len(prompts), longest, dtype=torch.long)
    mask = torch.zeros(len(prompts), longest, dtype=torch.long)
    for row, p in enumerate(prompts):
        ids[row, longest - len(p):] = torch.tensor(p)
        mask[row, longest - len(p):] = 1
    out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),
                         max_new_tokens=max_new, do_sample=False, pad_token_id=0,
                         output_logits=True, return_dict_in_generate=True)
    tokens = out.sequences[:, longest:].tolist()
    top = torch.stack([step.float() for step in out.logits], dim=1).topk(k, dim=-1)  # [B, N, k]
    values, indices = top.values.tolist(), top.indices.tolist()
    results = []
    for row, p in enumerate(prompts):
        if len(tokens[row]) != max_new:
            raise RuntimeError(f"prompt {row}: {len(tokens[row])} tokens, wanted {max_new}")
        top = [[x for pair in zip(i, v) for x in pair] for i, v in zip(indices[row], values[row])]
        results.append({"prompt": p, "tokens": tokens[row], "top": top})
    return results


def reference(args):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    start = time.time()
    model = AutoModelForCausalLM.from_pretrained(
        args.model, dtype=torch.bfloat16, attn_implementation=args.attn,
        device_map=args.device).eval()
    # No EOS: every row runs max_new steps and no processor touches the logits.
    model.generation_config.eos_token_id = None
    log(f"loaded {args.model} ({args.attn}) in {time.time() - start:.1f} s")
    with open(args.prompts_json) as f:
        prompts = json.load(f)
    batch = args.batch or len(prompts)
    results = []
    gen_start = time.time()
    with torch.no_grad():
        for first in range(0, len(prompts), batch):
            chunk = prompts[first:first + batch]
            t = time.time()
            results += run_batch(model, torch, chunk, args.max_new, args.device, args.top)
            log(f"prompts {first}..{first + len(chunk) - 1}: {time.time() - t:.1f} s")
    doc = {"model": args.model,
           "reference": f"transformers {transformers.__version__}, torch {torch.__version__}, "
                        f"bf16 {args.device}",
           "attn": args.attn, "batch": batch, "max_new": args.max_new,
           "seconds": round(time.time() - gen_start, 2), "prompts": results}
    with open(args.out, "w") as f:
        json.dump(doc, f)
    log(f"wrote {len(results)} continuations to {args.out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--make-prompts", type=int, metavar="N", help="write N random prompts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--len-min", type=int, default=1)
    ap.add_argument("--len-max", type=int, default=512)
    ap.add_argument("--vocab", type=int, default=128000, help="ids are drawn from [0, vocab)")
    ap.add_argument("--model", help="model folder (save_pretrained layout)")
    ap.add_argument("--prompts-json", help="a JSON list of token-id lists")
    ap.add_argument("--max-new", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help=f"at most {QUICK_NEW} new tokens")
    ap.add_argument("--batch", type=int, default=0, help="prompts per generate call; 0: all")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    ap.add_argument("--top", type=int, default=4, help="logits kept per position")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    if args.make_prompts:
        make_prompts(args)
    elif args.model and args.prompts_json:
        if args.quick:
            args.max_new = min(args.max_new, QUICK_NEW)
        reference(args)
    else:
        ap.error("give --make-prompts N, or --model and --prompts-json")


if __name__ == "__main__":
    main()
