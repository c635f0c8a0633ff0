#!/usr/bin/env python3
"""Joins our engine benchmark's lines (ours.jsonl) with hf_peer.py's (peers.jsonl) into
bench/results/engine.json and prints the markdown table that docs/perf.md takes.

    python3 bench/engine/collect_results.py ours.jsonl peers.jsonl --card "NVIDIA H200" \\
        --commit abc1234 --out bench/results/engine.json [--md table.md]

Our lines: {"name": "decode_bs1", "model": "llama-3.2-1b", "value": 0.8, "unit": "ms/step",
"weight_bytes": ..., "kv_bytes": ..., "prompt_len": ..., "new_tokens": ..., "batch": ...}; the
value units match the peer's. A line joins every peer line of the same (name, model) whose
prompt_len / new_tokens / batch, where both give them, are equal (a --quick peer run never
joins a full run of ours). One entry per (our line, peer), as in bench/kernels/collect_results.py:
  {name, model, card, commit, date (UTC, ISO), value, unit, peer, peer_value, ratio, floor,
   prompt_len, new_tokens, batch}
ratio > 1 always means ours is better: peer_value / value for times (ms/step), value /
peer_value for rates (tok/s, GB/s). A failed or skipped peer keeps its entry, named
"PEER (failed: why)", with peer_value and ratio null. Our lines with no peer get peer null.
floor, for decode (ms/step) lines: (weight_bytes + kv_bytes) / copy bandwidth, in ms, with the
copy bandwidth hf_peer.py measured in the same run; null otherwise. The peer run's
copy_bandwidth and bf16_gemm lines are kept as entries (peer null) so the floors' basis is there.
"""
import argparse
import datetime
import json
import sys

LOWER_IS_BETTER = {"ms/step", "ms"}
SHAPE = ("prompt_len", "new_tokens", "batch")
FLOOR_LINES = ("copy_bandwidth", "bf16_gemm")


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    return rows


def same_shape(a, b):
    return all(a[k] == b[k] for k in SHAPE if k in a and k in b)


def ratio(value, peer_value, unit):
    if not value or not peer_value:
        return None
    return peer_value / value if unit in LOWER_IS_BETTER else value / peer_value


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}" if abs(v) >= 1 else f"{v:.3f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("ours")
    ap.add_argument("peers")
    ap.add_argument("--card", required=True)
    ap.add_argument("--commit", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--md", help="also write the table here")
    args = ap.parse_args()
    ours, peers = load(args.ours), load(args.peers)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    copy = next((p["value"] for p in peers if p["name"] == "copy_bandwidth"), None)
    results = []

    def add(r, peer, peer_value, floor=None):
        results.append({"name": r["name"], "model": r.get("model"), "card": args.card,
                        "commit": args.commit, "date": date, "value": r.get("value"),
                        "unit": r["unit"], "peer": peer, "peer_value": peer_value,
                        "ratio": ratio(r.get("value"), peer_value, r["unit"]), "floor": floor,
                        **{k: r[k] for k in SHAPE if k in r}})

    for r in ours:
        floor = None
        if r["unit"] == "ms/step" and copy and "weight_bytes" in r:
            floor = (r["weight_bytes"] + r.get("kv_bytes", 0)) / (copy * 1e9) * 1e3
        matched = [p for p in peers if p["name"] == r["name"] and p.get("model") == r.get("model")
                   and p.get("peer") and same_shape(r, p)]
        skipped = [p for p in peers if p["name"] == r["name"] and p.get("model") == r.get("model")
                   and p.get("peer") and not same_shape(r, p)]
        for p in skipped:
            print(f"not joined (lengths differ): {r['name']} {r.get('model')} {p['peer']}",
                  file=sys.stderr)
        for p in matched:
            name = p["peer"] if p.get("value") else f"{p['peer']} (failed: {p.get('error', '?')})"
            add(r, name, p.get("value"), floor)
        if not matched:
            add(r, None, None, floor)
    for p in peers:
        if p["name"] in FLOOR_LINES:
            add(p, None, None)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")

    lines = ["| workload | model | shape | ours | unit | peer | peer value | ratio (>1: ours "
             "better) | floor (ms) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for e in results:
        shape = (f"{e['batch']}x({e['prompt_len']}->{e['new_tokens']})"
                 if all(k in e for k in SHAPE) else "-")
        ratio_s = "-" if e["ratio"] is None else f"{e['ratio']:.2f}"
        lines.append(f"| {e['name']} | {e['model'] or '-'} | {shape} | {fmt(e['value'])} | "
                     f"{e['unit']} | {e['peer'] or '-'} | {fmt(e['peer_value'])} | {ratio_s} | "
                     f"{fmt(e['floor'])} |")
    table = "\n".join(lines)
    print(table)
    if args.md:
        with open(args.md, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
