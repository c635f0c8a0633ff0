#!/usr/bin/env python3
"""ite-generate end to end against the SmolLM2 goldens: the CLI's own tokenizer and chat
template must produce the prompt ids transformers produced, and greedy decoding the same ids.
Also checks the exit codes of bad invocations. Needs ITE_BIN_DIR, ITE_SOURCE_DIR, ITE_MODEL_GGUF;
exits 77 (ctest: skipped) when the model file is missing."""
import json
import os
import subprocess
import sys

bin_dir = os.environ["ITE_BIN_DIR"]
src = os.environ["ITE_SOURCE_DIR"]
model = os.environ.get("ITE_MODEL_GGUF", "")
if not os.path.exists(model):
    print("skipped: ITE_MODEL_GGUF missing (scripts/fetch_model.sh)")
    sys.exit(77)
exe = os.path.join(bin_dir, "ite-generate")
golden = json.load(open(os.path.join(src, "tests/data/golden/smollm2_greedy.json")))

failures = 0
# One raw and one chat case keep the run short on a 2-core machine.
for case in [golden["cases"][0], golden["cases"][3]]:
    cmd = [exe, "--model", model, "--prompt", case["prompt"], "--max-tokens", "32",
           "--temperature", "0", "--output", "ids", "--threads", "2",
           # the goldens are transformers' output on the dequantized weights
           "--dtype", "f32"]
    if case["kind"] == "chat":
        cmd.append("--chat")
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        print("FAIL", case["kind"], "exit", p.returncode, p.stderr)
        failures += 1
        continue
    got = json.loads(p.stdout.strip().splitlines()[-1])
    ok = got == case["generated"]
    print("ok  " if ok else "FAIL", case["kind"], repr(case["prompt"]), p.stderr.strip())
    if not ok:
        print("  want", case["generated"], "\n  got ", got)
        failures += 1

# Bad invocations: usage errors exit 2, runtime errors (missing model) exit 1.
for args, want in [([], 2), (["--model", model, "--prompt", "x", "--top-p", "0"], 2),
                   (["--model", model, "--prompt", "x", "--output", "xml"], 2),
                   (["--model", "/nonexistent.gguf", "--prompt", "x"], 1)]:
    p = subprocess.run([exe] + args, capture_output=True, text=True)
    ok = p.returncode == want and p.stderr.strip() != ""
    print("ok  " if ok else "FAIL", "exit", p.returncode, "for", args[-2:] if args else "no args")
    failures += 0 if ok else 1
sys.exit(1 if failures else 0)
