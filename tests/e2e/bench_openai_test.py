"""`ite-client bench --api openai` against a real ite-serve: the same load as the gRPC bench
through the OpenAI HTTP API (streamed /v1/completions), with the same table and JSON; every
request makes its tokens; the server's /metrics count them; Ctrl-C reports what finished and
the server cancels the rest; a refused request, an unreachable server and a bad --url exit with
the documented codes and a message.
Exit 77 (ctest: skipped) without the model or the binaries.
"""
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from e2e_util import (BIN, MODEL, Checks, finish, need_model_and_binaries, read_available, run,
                      stop_serve, wait_port_file)

need_model_and_binaries("ite-serve", "ite-client")
CLIENT = os.path.join(BIN, "ite-client")
checks = Checks()
check = checks.check


def metric(http_port, name):
    """One unlabelled sample of the scheduler's /metrics (a plain text scan is enough here)."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=30).read()
    m = re.search(rf"^{name} (\S+)$", text.decode(), re.M)
    return float(m.group(1)) if m else None


def bench(tmp, api_args, name, **flags):
    """Runs a small bench (flags override the load: requests=1 is --requests 1)."""
    out_json = os.path.join(tmp, f"{name}.json")
    load = {"requests": 6, "concurrency": 3, "input_len": 24, "output_len": 8, **flags}
    args = [a for k, v in load.items() for a in ("--" + k.replace("_", "-"), str(v))]
    rc, out, err, _ = run([CLIENT, "bench", *api_args, *args, "--json", out_json], timeout=300)
    j = json.load(open(out_json)) if os.path.exists(out_json) else {}
    return rc, out, err, j


def run_checks(tmp, grpc_port, http_port):
    url = f"http://127.0.0.1:{http_port}"
    gen0 = metric(http_port, "ite_generation_tokens_total")
    rc, out, err, j = bench(tmp, ["--api", "openai", "--url", url], "openai")
    gen1 = metric(http_port, "ite_generation_tokens_total")
    check(rc == 0 and "TTFT" in out and "ITL" in out and "E2E" in out,
          "openai bench: exit 0 and the table", out + err)
    check(j.get("api") == "openai" and j.get("addr") == url and j.get("ok") == 6
          and j.get("failed") == 0 and j["ttft_ms"]["count"] == 6 and j["itl_ms"]["count"] == 6 * 7
          and j["output_tok_per_s"] > 0 and j["ttft_ms"]["p50"] > 0,
          "openai bench JSON: 6 ok, 6 TTFTs, 7 gaps each", j)
    check(gen1 - gen0 == 48, f"the server generated 6 x 8 tokens for it ({gen1 - gen0})")

    # The same load through gRPC gives the same table and JSON layout.
    rc, out2, err, g = bench(tmp, ["--addr", f"127.0.0.1:{grpc_port}"], "grpc")
    check(rc == 0 and g.get("api") == "grpc" and g.get("ok") == 6
          and sorted(g) == sorted(j) and g["itl_ms"]["count"] == j["itl_ms"]["count"],
          "gRPC bench: the same JSON fields and counts", g)
    check(out.splitlines()[0] == out2.splitlines()[0], "the same first table line",
          out.splitlines()[0] + " | " + out2.splitlines()[0])

    # A URL ending in /v1 (as OpenAI SDKs take it) works too.
    rc, _, err, _ = bench(tmp, ["--api", "openai", "--url", url + "/v1"], "v1", requests=1)
    check(rc == 0, "--url .../v1 works", err)

    # Errors: refused by the server (4), nobody there (3), not an http URL or no URL (2 / 4).
    rc, _, err, _ = bench(tmp, ["--api", "openai", "--url", url], "big", output_len=99999)
    check(rc == 4 and "context length" in err, f"output past the context: exit {rc}", err)
    rc, _, err, _ = bench(tmp, ["--api", "openai", "--url", "http://127.0.0.1:1"], "nobody")
    check(rc == 3 and "cannot connect" in err, f"no server: exit {rc}", err)
    rc, _, err, _ = bench(tmp, ["--api", "openai"], "nourl")
    check(rc == 2 and "--url" in err, f"no --url: exit {rc}", err)
    rc, _, err, _ = bench(tmp, ["--api", "openai", "--url", "ftp://x"], "ftp")
    check(rc == 4 and "http://" in err, f"--url ftp://x: exit {rc}", err)

    # Ctrl-C: the partial table, and the server cancels the streams the client dropped.
    out_json = os.path.join(tmp, "ctrl_c.json")
    b = subprocess.Popen([CLIENT, "bench", "--api", "openai", "--url", url, "--requests", "100",
                          "--concurrency", "2", "--input-len", "16", "--output-len", "64",
                          "--json", out_json], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    os.set_blocking(b.stderr.fileno(), False)
    progress, deadline = "", time.time() + 120
    while time.time() < deadline and b.poll() is None:
        progress += read_available(b.stderr)
        done = [int(m) for m in re.findall(r"(\d+)/100 requests done", progress)]
        if done and done[-1] >= 1:
            break
        time.sleep(0.2)
    b.send_signal(signal.SIGINT)
    out, err = finish(b, timeout=60)
    j = json.load(open(out_json)) if os.path.exists(out_json) else {}
    check(b.returncode == 130 and "INTERRUPTED" in out and j.get("interrupted") is True
          and j.get("ok", 0) >= 1 and j.get("failed") == 0
          and j["ok"] + j["cancelled"] + j["not_started"] == 100,
          "openai bench on Ctrl-C: exit 130, the finished requests reported", out + err)
    t0 = time.time()
    while metric(http_port, "ite_requests_running") != 0 and time.time() - t0 < 5:
        time.sleep(0.05)
    check(metric(http_port, "ite_requests_running") == 0,
          f"the server cancelled the dropped streams ({time.time() - t0:.2f} s)")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        ready, http_ready = os.path.join(tmp, "port"), os.path.join(tmp, "http_port")
        log = open(os.path.join(tmp, "serve.log"), "w")
        serve = subprocess.Popen([os.path.join(BIN, "ite-serve"), "--model", MODEL, "--port", "0",
                                  "--threads", "1", "--ready-file", ready,
                                  "--http-ready-file", http_ready], stderr=log)
        try:
            grpc_port = wait_port_file(ready, serve)
            http_port = wait_port_file(http_ready, serve)
            run_checks(tmp, grpc_port, http_port)
        finally:
            stop_serve(serve, check)
            log.close()
    return checks.done()


if __name__ == "__main__":
    sys.exit(main())
