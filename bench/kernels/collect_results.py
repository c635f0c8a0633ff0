#!/usr/bin/env python3
"""Joins kernel_bench output (ours.jsonl) with sdpa_peer.py output (peer.jsonl) into the
bench/results/kernels.json schema: a list of {name, shape, card, commit, date, value, unit,
peer, peer_value, ratio}, one entry per (measurement, peer). Prints a markdown table too.

usage: collect_results.py ours.jsonl peer.jsonl CARD COMMIT OUT.json [OUT.md]
"""
import datetime
import json
import sys


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                rows.append(json.loads(line))
    return rows


def key(shape, fields):
    return tuple(shape.get(f) for f in fields)


def main():
    ours_path, peer_path, card, commit, out_json = sys.argv[1:6]
    out_md = sys.argv[6] if len(sys.argv) > 6 else None
    ours, peers = load(ours_path), load(peer_path)
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    copy = next((r["value"] for r in ours if r["name"] == "copy_bandwidth"), None)
    torch_copy = next((r["value"] for r in peers if r["name"] == "copy_bandwidth"), None)
    fields = {"prefill_attention": ("batch", "seq", "head_dim"),
              "decode_attention": ("batch", "ctx", "head_dim")}
    results = []

    def add(r, peer, peer_value):
        ratio = (r["value"] / peer_value) if (peer_value and r["value"]) else None
        results.append({"name": r["name"], "shape": r["shape"], "card": card, "commit": commit,
                        "date": date, "value": r["value"], "unit": r["unit"], "peer": peer,
                        "peer_value": peer_value, "ratio": ratio})

    for r in ours:
        name = r["name"]
        if name in fields:
            k = key(r["shape"], fields[name])
            for p in peers:
                if p["name"] == name and key(p["shape"], fields[name]) == k:
                    add(r, p["peer"] + ("" if p.get("value") else " (failed: %s)" %
                                        p.get("error", "?")), p.get("value"))
            if name == "decode_attention" and copy:
                add(r, "copy_bandwidth (cudaMemcpy D2D)", copy)
        elif r["unit"] == "GB/s" and name != "copy_bandwidth":
            add(r, "copy_bandwidth (cudaMemcpy D2D)", copy)
        elif name == "copy_bandwidth":
            add(r, "torch copy_", torch_copy)
        else:
            add(r, None, None)
    with open(out_json, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")
    lines = ["| kernel | shape | ours | unit | peer | peer value | ratio |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for e in results:
        shape = ", ".join(f"{k}={v}" for k, v in e["shape"].items()
                          if k not in ("dtype", "causal", "heads", "kv_heads"))
        fmt = lambda v: "-" if v is None else f"{v:.1f}"
        ratio = "-" if e["ratio"] is None else f"{e['ratio']:.2f}"
        lines.append(f"| {e['name']} | {shape} | {fmt(e['value'])} | {e['unit']} | "
                     f"{e['peer'] or '-'} | {fmt(e['peer_value'])} | {ratio} |")
    table = "\n".join(lines)
    print(table)
    if out_md:
        with open(out_md, "w") as f:
            f.write(table + "\n")


if __name__ == "__main__":
    main()
