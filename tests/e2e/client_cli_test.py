"""ite-client as a user runs it, against a real ite-serve: every rejected flag value (exit 2 and
a message naming the flag), prompts from stdin and files, the sampling flags reaching the
server, logprobs, the info / stats / tokenize / health subcommands, the message for a worker's
port, a refused connection failing at once, and bench's progress line and partial results on
Ctrl-C, --served-model-name, and ite-tokenize's --help."""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from e2e_util import (Checks, Serve, bin_path, finish, need_model_and_binaries,  # noqa: E402
                      read_available, run)

need_model_and_binaries("ite-serve", "ite-worker", "ite-scheduler", "ite-client", "ite-tokenize")
CLIENT = bin_path("ite-client")
c = Checks()

# Refused before anything is sent, so no server is needed: exit 2, the flag named on stderr.
NOWHERE = ["--addr", "127.0.0.1:1"]
REJECTED = [
    (["generate", "--prompt", "hi", "--temperature", "-1"], "--temperature"),
    (["generate", "--prompt", "hi", "--temperature", "nan"], "--temperature"),
    (["generate", "--prompt", "hi", "--temperature", "warm"], "--temperature"),
    (["generate", "--prompt", "hi", "--top-p", "0"], "--top-p"),
    (["generate", "--prompt", "hi", "--top-p", "1.5"], "--top-p"),
    (["generate", "--prompt", "hi", "--top-k", "-1"], "--top-k"),
    (["generate", "--prompt", "hi", "--min-p", "1.5"], "--min-p"),
    (["generate", "--prompt", "hi", "--repetition-penalty", "0"], "--repetition-penalty"),
    (["generate", "--prompt", "hi", "--presence-penalty", "3"], "--presence-penalty"),
    (["generate", "--prompt", "hi", "--frequency-penalty", "-2.5"], "--frequency-penalty"),
    (["generate", "--prompt", "hi", "--max-tokens", "0"], "--max-tokens"),
    (["generate", "--prompt", "hi", "--top-logprobs", "21"], "--top-logprobs"),
    (["generate", "--prompt", "hi", "--seed", "-1"], "--seed"),
    (["generate", "--prompt", "hi", "--connect-timeout-ms", "0"], "--connect-timeout-ms"),
    (["generate", "--prompt", "hi", "--system", "be brief"], "--chat"),
    (["generate"], "--prompt"),
    (["generate", "--prompt", "hi", "--prompt-file", "/etc/hostname"], "--prompt"),
    (["generate", "--prompt-file", "/nonexistent/prompt.txt"], "--prompt-file"),
    (["chat", "--temperature", "-0.5"], "--temperature"),
    (["bench", "--requests", "0"], "--requests"),
    (["bench", "--temperature", "-1"], "--temperature"),
    (["tokenize", "--prompt", "hi", "--system", "x"], "--chat"),
    (["frobnicate"], "frobnicate"),
]
for args, flag in REJECTED:
    rc, out, err, _ = run([CLIENT] + args + NOWHERE, timeout=30)
    c.check(rc == 2 and flag in err, f"{' '.join(args)}: exit 2 naming {flag}",
            f"rc {rc}, stderr: {err.strip()}")

# A refused connection fails at once, not after the 5 s connect timeout.
rc, _, err, secs = run([CLIENT, "generate", "--addr", "127.0.0.1:1", "--prompt", "hi"])
c.check(rc == 3 and secs < 3 and "refused" in err, f"refused connection: exit 3 in {secs:.1f} s",
        err)

with Serve("--threads", "1") as s, tempfile.TemporaryDirectory() as tmp:
    addr = ["--addr", s.addr]
    greedy = ["generate"] + addr + ["--max-tokens", "12", "--temperature", "0"]

    # The same prompt from the command line, from stdin and from a file gives the same text.
    rc, by_flag, err, _ = run([CLIENT] + greedy + ["--prompt", "The capital of France is"])
    c.check(rc == 0 and len(by_flag.strip()) > 0, "generate --prompt TEXT", err)
    rc, by_stdin, err, _ = run([CLIENT] + greedy + ["--prompt", "-"],
                               input_text="The capital of France is\n")
    c.check(rc == 0 and by_stdin == by_flag, "--prompt - reads stdin (final newline dropped)",
            f"{by_stdin!r} vs {by_flag!r}")
    prompt_file = os.path.join(tmp, "prompt.txt")
    with open(prompt_file, "w") as f:
        f.write("The capital of France is\n")
    rc, by_file, err, _ = run([CLIENT] + greedy + ["--prompt-file", prompt_file])
    c.check(rc == 0 and by_file == by_flag, "--prompt-file FILE", f"{by_file!r} vs {by_flag!r}")
    rc, by_file_stdin, err, _ = run([CLIENT] + greedy + ["--prompt-file", "-"],
                                    input_text="The capital of France is")
    c.check(rc == 0 and by_file_stdin == by_flag, "--prompt-file - reads stdin")

    rc, out, err, _ = run([CLIENT] + greedy + ["--chat", "--system", "Answer in one word.",
                                               "--prompt", "What is the capital of France?"])
    c.check(rc == 0 and out.strip(), "--chat --system", err)

    # The server's own rejection: exit 4 with its message.
    rc, out, err, _ = run([CLIENT] + greedy + ["--prompt", ""])
    c.check(rc == 4 and "INVALID_ARGUMENT" in err and "prompt" in err,
            "empty prompt: INVALID_ARGUMENT, exit 4", err)

    # min_p = 1 keeps only the most likely token: sampling at temperature 1 becomes greedy.
    rc, min_p_out, err, _ = run([CLIENT, "generate"] + addr + [
        "--max-tokens", "12", "--temperature", "1", "--seed", "3", "--min-p", "1",
        "--prompt", "The capital of France is"])
    c.check(rc == 0 and min_p_out == by_flag, "--min-p 1 at temperature 1 equals greedy",
            f"{min_p_out!r} vs {by_flag!r}")
    # A frequency penalty reaches the server: a repetitive greedy continuation changes.
    rep = [CLIENT, "generate"] + addr + ["--max-tokens", "16", "--temperature", "0",
                                         "--ignore-eos", "--prompt", "a a a a a a a a a a"]
    rc1, plain, _, _ = run(rep)
    rc2, penalised, err, _ = run(rep + ["--frequency-penalty", "2", "--presence-penalty", "1"])
    c.check(rc1 == 0 and rc2 == 0 and plain != penalised,
            "--frequency-penalty / --presence-penalty change a repetitive continuation",
            f"{plain!r} vs {penalised!r}; {err}")
    rc, rep_out, err, _ = run(rep + ["--repetition-penalty", "1.8"])
    c.check(rc == 0 and rep_out != plain, "--repetition-penalty changes it too",
            f"{rep_out!r}; {err}")

    # Logprobs: one line per generated token on stderr, with the asked-for alternatives.
    rc, out, err, _ = run([CLIENT, "generate"] + addr + [
        "--max-tokens", "4", "--ignore-eos", "--temperature", "0", "--top-logprobs", "2",
        "--prompt", "The capital of France is"])
    lines = [l for l in err.splitlines() if "| top:" in l]
    c.check(rc == 0 and len(lines) == 4 and all(l.count(",") >= 1 for l in lines),
            "--top-logprobs 2: 4 lines of logprobs with 2 alternatives each", err)
    if lines:
        first = float(lines[0].split()[0])
        c.check(first <= 0.0, "a logprob is <= 0", lines[0])

    # info / stats / tokenize / health.
    rc, out, err, _ = run([CLIENT, "info"] + addr)
    c.check(rc == 0 and re.search(r"model_name\s+SmolLM2-135M-Instruct\.Q4_1\b", out) and
            re.search(r"architecture\s+llama", out),
            "info: the model is named after its file, architecture llama", out + err)
    rc, out, err, _ = run([CLIENT, "info", "--json"] + addr)
    info = json.loads(out) if rc == 0 else {}
    c.check(info.get("vocab_size") == 49152 and info.get("num_workers") == 1, "info --json", out)
    rc, out, err, _ = run([CLIENT, "stats"] + addr)
    c.check(rc == 0 and "healthy" in out and re.search(r"^0\s+127\.0\.0\.1:\d+\s+yes", out, re.M),
            "stats: one healthy worker", out + err)
    rc, out, err, _ = run([CLIENT, "stats", "--json"] + addr)
    w = json.loads(out)["workers"][0] if rc == 0 else {}
    c.check(w and w["free_blocks"] + w["used_blocks"] + w["cached_blocks"] == w["total_blocks"],
            "stats --json: free + used + cached = total blocks", out)
    fingerprint = json.loads(out).get("model_fingerprint", "") if rc == 0 else ""
    c.check(re.fullmatch(r"[0-9a-f]{64}", fingerprint) and w.get("model_fingerprint") == fingerprint,
            "stats --json: the worker serves the scheduler's model fingerprint", out)
    rc, out, err, _ = run([CLIENT, "tokenize"] + addr + ["--prompt", "Hello world",
                                                          "--no-special-tokens", "--tokens"])
    rows = [l.split("\t") for l in out.splitlines()]
    c.check(rc == 0 and len(rows) == 2 and rows[0][1] == "Hello" and rows[1][1] == "\u0120world",
            "tokenize --tokens: Hello, Ġworld", out + err)
    rc, out, err, _ = run([CLIENT, "tokenize", "--json", "--chat"] + addr + ["--prompt", "Hi"])
    t = json.loads(out) if rc == 0 else {}
    c.check("<|im_start|>user\nHi<|im_end|>" in t.get("rendered_prompt", ""),
            "tokenize --chat --json shows the rendered prompt", out + err)
    rc, out, err, _ = run([CLIENT, "health"] + addr)
    c.check(rc == 0 and out.strip() == "SERVING", "health: SERVING, exit 0", out + err)

    # Chat from a pipe: /reset says so; answers go to stdout.
    rc, out, err, _ = run([CLIENT, "chat"] + addr + ["--max-tokens", "4", "--temperature", "0"],
                          input_text="Hi\n/reset\n/bogus\n")
    c.check(rc == 0 and "history cleared: 2 message(s) dropped" in err and
            "unknown command /bogus" in err and out.strip(),
            "chat (piped): answers, /reset confirms, unknown commands are named", out + err)

    # A worker's port: the message says what went wrong.
    ready = os.path.join(tmp, "worker.port")
    worker = subprocess.Popen([bin_path("ite-worker"), "--model", os.environ["ITE_MODEL_GGUF"],
                               "--port", "0", "--ready-file", ready, "--threads", "1",
                               "--kv-blocks", "8"], stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (os.path.exists(ready) and open(ready).read().strip()) and time.time() < deadline:
            time.sleep(0.1)
        waddr = "127.0.0.1:" + open(ready).read().strip()
        rc, out, err, _ = run([CLIENT, "generate", "--addr", waddr, "--prompt", "hi"])
        c.check(rc == 1 and "UNIMPLEMENTED" in err and "ite-worker" in err,
                "a worker's port: UNIMPLEMENTED with a hint naming ite-worker", err)
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    # bench: a progress line while it runs; Ctrl-C keeps the table and the JSON of what finished.
    bench_json = os.path.join(tmp, "bench.json")
    bench = subprocess.Popen([CLIENT, "bench"] + addr + [
        "--requests", "200", "--concurrency", "2", "--input-len", "16", "--output-len", "32",
        "--json", bench_json], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.set_blocking(bench.stderr.fileno(), False)
    progress, deadline = "", time.time() + 120
    while time.time() < deadline and bench.poll() is None:
        progress += read_available(bench.stderr)
        done = [int(m) for m in re.findall(r"\[bench\] \d+ s: (\d+)/200 requests done", progress)]
        if done and done[-1] >= 1:
            break
        time.sleep(0.2)
    c.check(bool(re.search(r"\[bench\] \d+ s: \d+/200 requests done", progress)),
            "bench prints a progress line", progress)
    bench.send_signal(signal.SIGINT)
    out, err = finish(bench, timeout=60)
    c.check(bench.returncode == 130 and "INTERRUPTED" in out and "TTFT" in out,
            "bench on Ctrl-C: exit 130, the table marked INTERRUPTED", out + err)
    j = json.load(open(bench_json)) if os.path.exists(bench_json) else {}
    c.check(j.get("interrupted") is True and j.get("ok", 0) >= 1 and j.get("failed") == 0 and
            j["ok"] + j["cancelled"] + j["not_started"] == 200 and
            j["ttft_ms"]["count"] == j["ok"],
            "bench on Ctrl-C: the JSON has the finished requests", j)

# --served-model-name: clients see that name and may send it; another name is refused.
with Serve("--threads", "1", "--served-model-name", "my-assistant") as s:
    rc, out, err, _ = run([CLIENT, "info", "--addr", s.addr])
    c.check(rc == 0 and re.search(r"model_name\s+my-assistant\n", out),
            "--served-model-name names the model", out + err)
    ask = [CLIENT, "generate", "--addr", s.addr, "--prompt", "hi", "--max-tokens", "2"]
    rc, _, err, _ = run(ask + ["--model", "my-assistant"])
    c.check(rc == 0, "a request naming the served model is served", err)
    rc, _, err, _ = run(ask + ["--model", "SmolLM2-135M-Instruct.Q4_1"])
    c.check(rc == 4 and "my-assistant" in err, "another model name is refused, naming the served one",
            err)

# ite-tokenize documents its line formats in --help, and a bad flag is a usage error.
rc, out, _, _ = run([bin_path("ite-tokenize"), "--help"])
c.check(rc == 0 and "one JSON string per line" in out and "--decode" in out,
        "ite-tokenize --help describes its input and output", out)
rc, _, err, _ = run([bin_path("ite-tokenize"), "--frobnicate"])
c.check(rc == 2 and "--frobnicate" in err, "ite-tokenize: an unknown flag exits 2", err)

sys.exit(c.done())
