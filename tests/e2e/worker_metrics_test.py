"""Each worker's own /metrics (ite-serve --worker-metrics-port 0) parsed by prometheus-client
after known traffic through a real ite-serve (CPU worker, SmolLM2, a KV pool small enough that
two long requests preempt each other): steps, step time and batch size histograms, token rows
computed (prefill = prompt tokens not served from the prefix cache, plus recomputes; decode),
tokens sampled, n = 3 choices computing the prompt once (and each greedy choice the text of the
prompt alone), sequences joining, rejoining after a preemption (as many as the scheduler counts)
and released, and the KV blocks that running sequences hold, free again at the end.
Exit 77 (ctest: skipped) without prometheus-client or the model.
"""
import http.client
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

from e2e_util import (BIN, MODEL, Checks, need_model_and_binaries, skip, stop_serve,
                      wait_port_file)

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as e:
    skip(e)
need_model_and_binaries("ite-serve", "ite-worker")
checks = Checks()
check = checks.check
BLOCKS = 24  # of 16 tokens: 384 tokens, so two requests of ~320 cannot both stay


def scrape(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    text = r.read().decode()
    conn.close()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return r.status, r.getheader("Content-Type", ""), out


def get(m, name, **labels):
    return m.get((name, tuple(sorted(labels.items()))), 0)


def complete(http_port, body):
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=300)
    conn.request("POST", "/v1/completions", json.dumps(body), {"Content-Type": "application/json"})
    r = conn.getresponse()
    j = json.loads(r.read())
    conn.close()
    return j


def wait_idle(port, timeout=10):
    """Until the worker holds no sequence (releases ride on the next step or come alone)."""
    deadline = time.time() + timeout
    while True:
        _, _, m = scrape(port)
        if get(m, "ite_worker_sequences") == 0 or time.time() > deadline:
            return m
        time.sleep(0.05)


def run_checks(http_port, metrics_port):
    status, ctype, m0 = scrape(metrics_port)
    check(status == 200 and ctype.startswith("text/plain"), f"worker /metrics: {status} {ctype}")
    total = get(m0, "ite_worker_kv_blocks_total")
    check(total == BLOCKS and get(m0, "ite_worker_kv_blocks_free") == BLOCKS,
          f"KV pool: {total} blocks, all free")

    # Three short requests one after another: 5 tokens each.
    prefill = 0
    for i in range(3):
        j = complete(http_port, {"prompt": f"Request number {i} says hello to the worker.",
                                 "max_tokens": 5, "temperature": 0, "ignore_eos": True})
        u = j["usage"]
        prefill += u["prompt_tokens"] - u.get("prompt_tokens_details", {}).get("cached_tokens", 0)
    m1 = wait_idle(metrics_port)
    d = lambda name, **kw: get(m1, name, **kw) - get(m0, name, **kw)  # noqa: E731
    check(d("ite_worker_sampled_tokens_total") == 15, f"15 tokens sampled "
          f"({d('ite_worker_sampled_tokens_total')})")
    check(d("ite_worker_tokens_total", phase="decode") == 12,
          f"12 decode rows ({d('ite_worker_tokens_total', phase='decode')})")
    check(d("ite_worker_tokens_total", phase="prefill") == prefill,
          f"{prefill} prefill rows, the uncached prompt tokens "
          f"({d('ite_worker_tokens_total', phase='prefill')})")
    check(d("ite_worker_sequence_joins_total") == 3
          and d("ite_worker_sequence_releases_total") == 3,
          f"3 joins, 3 releases ({d('ite_worker_sequence_joins_total')}, "
          f"{d('ite_worker_sequence_releases_total')})")
    steps = d("ite_worker_steps_total")
    check(steps == 15 and d("ite_worker_step_seconds_count") == 15
          and d("ite_worker_batch_size_count") == 15 and d("ite_worker_batch_size_sum") == 15
          and d("ite_worker_step_seconds_sum") > 0,
          f"15 steps of one sequence each, timed ({steps})")
    check(get(m1, "ite_worker_kv_blocks_used") == 0 and get(m1, "ite_worker_sequences") == 0,
          "afterwards no sequence holds a block")

    # n = 3: one prefill; the other two choices share its blocks and compute only the last
    # prompt token (its logits give their first tokens). Greedy, each continues as one request.
    fork_body = {"prompt": "Three choices, all from one prefill of this prompt.",
                 "max_tokens": 8, "temperature": 0, "ignore_eos": True}
    j = complete(http_port, dict(fork_body, n=3))
    m1b = wait_idle(metrics_port)
    prompt_tokens = j["usage"]["prompt_tokens"]
    fork_prefill = get(m1b, "ite_worker_tokens_total", phase="prefill") - get(
        m1, "ite_worker_tokens_total", phase="prefill")
    check(len(j["choices"]) == 3 and fork_prefill == prompt_tokens + 2,
          f"n=3 over a {prompt_tokens}-token prompt: {fork_prefill} prefill rows "
          f"(one prefill + 2, not 3 prefills)")
    alone = complete(http_port, fork_body)["choices"][0]["text"]
    texts = [c["text"] for c in j["choices"]]
    check(texts == [alone] * 3, f"each greedy choice is the text of the prompt alone: {texts!r}")
    m1 = wait_idle(metrics_port)

    # Two long requests at once in a pool too small for both: preempted and recomputed.
    _, _, sched0 = scrape(http_port)
    seen_used = []

    def watch():
        while len(seen_used) < 1000 and not done.is_set():
            seen_used.append(get(scrape(metrics_port)[2], "ite_worker_kv_blocks_used"))
            time.sleep(0.05)

    done = threading.Event()
    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=complete, args=(http_port, {
        "prompt": f"Story {i}: once upon a time", "max_tokens": 300, "temperature": 0,
        "ignore_eos": True})) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    watcher.join()
    m2 = wait_idle(metrics_port)
    _, _, sched1 = scrape(http_port)
    preempted = get(sched1, "ite_preemptions_total") - get(sched0, "ite_preemptions_total")
    rejoins = get(m2, "ite_worker_preemption_rejoins_total") - get(
        m1, "ite_worker_preemption_rejoins_total")
    check(preempted >= 1 and rejoins == preempted,
          f"preemptions: the scheduler counts {preempted}, the worker saw {rejoins} rejoins")
    check(max(seen_used, default=0) > BLOCKS // 2 and max(seen_used) <= BLOCKS,
          f"KV blocks used while they ran: up to {max(seen_used, default=0)} of {BLOCKS}")
    check(get(m2, "ite_worker_kv_blocks_free") == BLOCKS and get(m2, "ite_worker_sequences") == 0,
          "all blocks free again")
    check(get(m2, "ite_worker_batch_size_bucket", le="2") - get(
          m2, "ite_worker_batch_size_bucket", le="1") > 0, "some steps ran both sequences")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        ready, http_ready = os.path.join(tmp, "port"), os.path.join(tmp, "http_port")
        log_path = os.path.join(tmp, "serve.log")
        log = open(log_path, "w")
        serve = subprocess.Popen([os.path.join(BIN, "ite-serve"), "--model", MODEL, "--port", "0",
                                  "--threads", "1", "--kv-blocks", str(BLOCKS),
                                  "--worker-metrics-port", "0", "--ready-file", ready,
                                  "--http-ready-file", http_ready], stderr=log)
        try:
            wait_port_file(ready, serve)
            http_port = wait_port_file(http_ready, serve)
            found = re.search(r"worker 0 metrics on http://127\.0\.0\.1:(\d+)/metrics",
                              open(log_path).read())
            check(found is not None, "ite-serve logs worker 0's metrics URL")
            if found:
                run_checks(http_port, int(found.group(1)))
        finally:
            stop_serve(serve, check)
            log.close()
    return checks.done()


if __name__ == "__main__":
    sys.exit(main())
