#!/usr/bin/env python3
"""Compares our greedy continuations with the Hugging Face reference written by hf_greedy.py.

    python3 tests/gpu/compare_greedy.py HF.json OURS.json [--json summary.json] [--factor 4]
        [--arbiter MODEL_DIR]

Both files hold {"prompts": [{"prompt": [...], "tokens": [...]}, ...]} in the same prompt order;
HF.json also has, per generated position, HF's largest logits, largest first: "top": [[id1, v1,
id2, v2, ...], ...] (hf_greedy.py keeps 4), or "top2": [[id1, v1, id2, v2], ...]. Per prompt:
  match           our tokens equal HF's (ours may run longer; only HF's length is compared).
  tie-divergence  the first differing position p was a bf16 near-tie in the HF run: our token
                  is among HF's listed tokens there with v1 - v_ours <= tol, where
                  tol = factor * max(0.05, 2^-7 * max(|v1|, 1)) (2^-7 * |v1| is one to two bf16
                  ulps of the top logit; the 0.05 floor covers small logits; factor defaults to
                  4). After p the contexts differ, so nothing later is compared.
  MISMATCH        anything else: ours shorter than HF's, our token not among HF's top logits,
                  or further below HF's top logit than tol (a wrong kernel picks a token far
                  down the list, a tie flip one of the few nearly equal top tokens).
  --arbiter DIR   a MISMATCH at a position where both tokens are known is looked at again in
                  float32 (transformers on DIR, the same weights, TF32 off, one unpadded
                  sequence: the prompt and the agreed prefix): when the exact model's logits
                  of HF's token and ours differ by at most tol (computed from its own top
                  logit), the position is a near-tie that either bf16 run may flip, and the
                  row becomes a tie-divergence marked "fp32"; otherwise it stays a MISMATCH.
Prints a table and a summary line (prompts per status, mean agreed prefix, the largest gap/tol of
the excused divergences: near 1 says the factor is tight); exits 0 when there is no MISMATCH, 1
when there is one, 2 when the files do not describe the same prompts. Two correct bf16 runs part
early on random-weight models (see bench/engine/make_models.py): HF against HF with another
attention or batching (hf_greedy.py --attn eager --batch 1) calibrates the factor.
"""
import argparse
import json
import sys


def tolerance(v1, factor):
    return factor * max(0.05, 2.0 ** -7 * max(abs(v1), 1.0))


def classify(hf, ours, factor):
    """One row of the report for one prompt."""
    ref, got = hf["tokens"], ours["tokens"]
    row = {"prompt_len": len(hf["prompt"]), "position": None, "hf_token": None,
           "our_token": None, "gap": None, "tol": None}
    p = next((i for i, (a, b) in enumerate(zip(ref, got)) if a != b), None)
    if p is None:
        if len(got) < len(ref):
            row.update(status="MISMATCH", reason=f"ours has {len(got)} of {len(ref)} tokens",
                       position=len(got), agreed=len(got))
        else:
            row.update(status="match", agreed=len(ref))
        return row
    top = (hf.get("top") or hf["top2"])[p]
    logits = dict(zip(top[0::2], top[1::2]))
    v1, tol = top[1], tolerance(top[1], factor)
    row.update(position=p, agreed=p, hf_token=ref[p], our_token=got[p], tol=tol)
    if got[p] not in logits:
        row.update(status="MISMATCH", reason=f"our token is not in HF's top {len(logits)}")
        return row
    row["gap"] = v1 - logits[got[p]]
    if row["gap"] > tol:
        row.update(status="MISMATCH", reason="HF logit of our token is below v1 - tol")
    else:
        row.update(status="tie-divergence")
    return row


def arbitrate(rows, hf, model_dir, factor):
    """Re-judges the MISMATCH rows that name both tokens with a float32 forward pass."""
    todo = [r for r in rows if r["status"] == "MISMATCH" and r["hf_token"] is not None]
    if not todo:
        return
    import torch
    from transformers import AutoModelForCausalLM

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 attn_implementation="eager",
                                                 device_map=device).eval()
    for r in todo:
        ref = hf[r["index"]]
        context = ref["prompt"] + ref["tokens"][:r["position"]]
        with torch.no_grad():
            z = model(input_ids=torch.tensor([context], device=device)).logits[0, -1].float()
        top = float(z.max())
        gap = float(z[r["hf_token"]] - z[r["our_token"]])
        tol = tolerance(top, factor)
        r.update(fp32_gap=gap, fp32_tol=tol, fp32_top_token=int(z.argmax()))
        if gap <= tol:
            r.update(status="tie-divergence", fp32=True,
                     reason=f"fp32: HF's token {gap:+.3f} above ours (tol {tol:.3f}), "
                            f"fp32 top {int(z.argmax())}; was: {r.get('reason', '')}")
        else:
            r["reason"] = f"{r.get('reason', '')}; fp32 confirms: gap {gap:.3f} > tol {tol:.3f}"
    del model
    if device == "cuda":
        torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("hf_json")
    ap.add_argument("ours_json")
    ap.add_argument("--json", help="write the summary here")
    ap.add_argument("--factor", type=float, default=4.0, help="tolerance multiplier")
    ap.add_argument("--arbiter", metavar="MODEL_DIR",
                    help="re-judge mismatches with a float32 forward pass of this model")
    args = ap.parse_args()
    with open(args.hf_json) as f:
        hf = json.load(f)["prompts"]
    with open(args.ours_json) as f:
        ours = json.load(f)["prompts"]
    if len(hf) != len(ours):
        print(f"error: {len(hf)} HF prompts, {len(ours)} of ours", file=sys.stderr)
        return 2
    for i, (a, b) in enumerate(zip(hf, ours)):
        if a["prompt"] != b["prompt"]:
            print(f"error: prompt {i} differs between the files", file=sys.stderr)
            return 2
    rows = [dict(index=i, **classify(a, b, args.factor)) for i, (a, b) in enumerate(zip(hf, ours))]
    if args.arbiter:
        arbitrate(rows, hf, args.arbiter, args.factor)

    fmt = lambda v: "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))
    print("| # | prompt len | status | first diff | HF token | our token | gap in HF | tol | note "
          "|")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['index']} | {r['prompt_len']} | {r['status']} | {fmt(r['position'])} | "
              f"{fmt(r['hf_token'])} | {fmt(r['our_token'])} | {fmt(r['gap'])} | "
              f"{fmt(r['tol'])} | {r.get('reason', '')} |")
    counts = {s: sum(r["status"] == s for r in rows)
              for s in ("match", "tie-divergence", "MISMATCH")}
    agreed = sum(r["agreed"] for r in rows) / max(1, len(rows))
    # How close the excused divergences came to the tolerance: near 1 means factor is tight.
    margin = max((r["gap"] / r["tol"] for r in rows
                  if r["status"] == "tie-divergence" and not r.get("fp32")), default=None)
    by_fp32 = sum(bool(r.get("fp32")) for r in rows)
    print(f"{len(rows)} prompts: {counts['match']} match, {counts['tie-divergence']} "
          f"tie-divergence, {counts['MISMATCH']} MISMATCH; mean agreed prefix {agreed:.1f} of "
          f"{sum(len(a['tokens']) for a in hf) / max(1, len(hf)):.1f} tokens; largest "
          f"tie gap/tol {fmt(margin)}" +
          (f"; {by_fp32} tie-divergence judged by the fp32 arbiter" if by_fp32 else ""))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"hf": args.hf_json, "ours": args.ours_json, "factor": args.factor,
                       "counts": counts, "mean_agreed": agreed, "max_tie_gap_over_tol": margin,
                       "fp32_arbitrated": by_fp32,
                       "ok": counts["MISMATCH"] == 0,
                       "prompts": rows}, f, indent=1)
            f.write("\n")
    return 0 if counts["MISMATCH"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
