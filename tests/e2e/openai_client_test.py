"""The real `openai` Python SDK against a real ite-serve (CPU worker, SmolLM2) through the
OpenAI-compatible HTTP API: completions and chat, streamed and not, n=2, stop strings (never
leaked into the stream), logprobs, usage with include_usage, reproducible seeds, the SDK's error
types, the same greedy text as gRPC (ite-client), malformed raw bodies answered 4xx with an
OpenAI error body while the server keeps serving, a client that disconnects mid-generation
(streamed or not) cancelling its request at once (the scheduler's Stats over gRPC show it gone),
and /metrics parsed by prometheus-client moving by known amounts after known traffic.
Exit 77 (ctest: skipped) without openai, prometheus-client, grpcio or the model.
"""
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time

from e2e_util import (BIN, MODEL, Checks, need_model_and_binaries, proto_messages, skip,
                      stop_serve, wait_port_file)

try:
    import grpc
    import openai
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as e:  # openai / prometheus-client / grpcio come from scripts/setup.sh
    skip(e)
need_model_and_binaries("ite-serve", "ite-client")

checks = Checks()
check = checks.check


def stats_client(tmp, addr):
    """Generation.Stats over gRPC."""
    msg = proto_messages(tmp, "proto/ite/v1/generation.proto")
    req, resp = msg("ite.v1.StatsRequest"), msg("ite.v1.StatsResponse")
    channel = grpc.insecure_channel(addr)
    call = channel.unary_unary("/ite.v1.Generation/Stats", request_serializer=req.SerializeToString,
                               response_deserializer=resp.FromString)
    return lambda: call(req(), timeout=10)


def raw_post(host, port, path, body, content_type="application/json"):
    """POSTs raw bytes; returns (status, parsed JSON body or None)."""
    conn = http.client.HTTPConnection(host, port, timeout=60)
    try:
        conn.putrequest("POST", path)
        conn.putheader("Content-Type", content_type)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        try:
            conn.send(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer (and close) before reading a too-large body
        r = conn.getresponse()
        data = r.read()
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, None
    finally:
        conn.close()


def is_error_body(j):
    return (isinstance(j, dict) and isinstance(j.get("error"), dict)
            and isinstance(j["error"].get("message"), str) and j["error"]["message"] != ""
            and "type" in j["error"] and "param" in j["error"] and "code" in j["error"])


def expect_error(exc_type, what, fn, needle):
    try:
        fn()
        check(False, f"{what}: raised {exc_type.__name__}")
    except exc_type as e:
        check(needle in str(e), f"{what}: {exc_type.__name__} naming {needle!r} ({e})")
    except Exception as e:  # noqa: BLE001 - report whatever else came
        check(False, f"{what}: raised {type(e).__name__}: {e}")


def check_disconnect(stats, host, port, path, body):
    """Starts a long generation, drops the connection, and expects it cancelled within 1 s with
    its KV blocks freed (the scheduler's Stats over gRPC)."""
    body = dict(body, max_tokens=4000, ignore_eos=True)
    what = f"disconnect during {'a streamed' if body.get('stream') else 'a whole'} {path}"
    steps0 = stats().steps
    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    if body.get("stream"):
        resp = conn.getresponse()
        got = 0
        while got < 3:
            if resp.fp.readline().startswith(b"data: {"):
                got += 1
    else:
        # Nothing comes back before the end: wait until it runs and has decoded a few steps.
        t0 = time.time()
        while time.time() - t0 < 30:
            s = stats()
            if s.running == 1 and s.steps >= steps0 + 5:
                break
            time.sleep(0.02)
    before = stats()
    conn.sock.shutdown(2)
    conn.close()
    t0 = time.time()
    while stats().running > 0 and time.time() - t0 < 5:
        time.sleep(0.02)
    gone_ms = (time.time() - t0) * 1000
    after = stats()
    check(before.running == 1 and after.running == 0 and after.waiting == 0,
          f"{what}: running {before.running} -> {after.running} within {gone_ms:.0f} ms")
    check(gone_ms < 1000, f"{what}: noticed quickly ({gone_ms:.0f} ms)")
    used = sum(w.used_blocks for w in after.workers)
    check(used == 0, f"{what}: its KV blocks are freed (blocks held by sequences: {used})")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        ready, http_ready = os.path.join(tmp, "port"), os.path.join(tmp, "http_port")
        log_path = os.path.join(tmp, "serve.log")
        log = open(log_path, "w")
        serve = subprocess.Popen([os.path.join(BIN, "ite-serve"), "--model", MODEL, "--port", "0",
                                  "--threads", "1", "--ready-file", ready,
                                  "--http-ready-file", http_ready, "--log-format", "json"],
                                 stderr=log)
        try:
            grpc_port = wait_port_file(ready, serve)
            http_port = wait_port_file(http_ready, serve)
            run_checks(tmp, grpc_port, http_port)
        finally:
            stop_serve(serve, check)
            log.close()
            check_logs(log_path)
    print(f"{len(checks.failures)} failure(s)")
    return 1 if checks.failures else 0


TRACE_ID = "trace-7f3a-e2e"


def check_logs(path):
    """--log-format json: the scheduler's lines are JSON objects; each request has one record."""
    records, scheduler_lines, bad = [], 0, []
    for line in open(path, errors="replace"):
        if '"program":"ite-scheduler"' not in line and '"program":"ite-serve"' not in line:
            continue  # the workers' own lines (text)
        scheduler_lines += 1
        try:
            j = json.loads(line)
        except ValueError:
            bad.append(line)
            continue
        if j.get("event") == "request":
            records.append(j)
    check(scheduler_lines > 0 and not bad,
          f"json logs: {scheduler_lines} scheduler/serve lines, {len(bad)} not JSON {bad[:1]}")
    mine = [r for r in records if r.get("id") == TRACE_ID]
    ok = (len(mine) == 1 and mine[0]["completion_tokens"] == 4 and mine[0]["prompt_tokens"] > 0
          and mine[0]["finish_reason"] == "length" and mine[0]["ttft_ms"] > 0
          and mine[0]["total_ms"] >= mine[0]["ttft_ms"] and "cached_tokens" in mine[0])
    check(ok, f"json logs: one request record for X-Request-Id {TRACE_ID}: {mine}")
    check(len(records) >= 20, f"json logs: a record per generation ({len(records)})")


def scrape(host, port):
    """GET /metrics parsed by prometheus-client's text-format parser: {(name, labels): value}."""
    conn = http.client.HTTPConnection(host, port, timeout=30)
    conn.request("GET", "/metrics")
    r = conn.getresponse()
    text = r.read().decode()
    conn.close()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return r.status, r.getheader("Content-Type", ""), out


def check_metrics(client, model, host, port):
    """Known traffic moves the counters by known amounts."""
    status, ctype, m0 = scrape(host, port)
    check(status == 200 and ctype.startswith("text/plain"), f"/metrics: HTTP {status} {ctype}")
    prompt = "A repeated prefix that the prefix cache keeps for the next request. " * 4
    prompt_tokens = 0
    for i in range(5):
        c = client.completions.create(model=model, prompt=prompt + str(i), max_tokens=4,
                                      temperature=0, extra_body={"ignore_eos": True})
        prompt_tokens += c.usage.prompt_tokens
    _, _, m1 = scrape(host, port)
    d = lambda name, labels=(): m1.get((name, labels), 0) - m0.get((name, labels), 0)
    check(d("ite_requests_total", (("finish_reason", "length"),)) == 5,
          f"metrics: 5 requests finished by length "
          f"({d('ite_requests_total', (('finish_reason', 'length'),))})")
    check(d("ite_generation_tokens_total") == 20,
          f"metrics: 20 generated tokens ({d('ite_generation_tokens_total')})")
    check(d("ite_prompt_tokens_total") == prompt_tokens,
          f"metrics: {prompt_tokens} prompt tokens ({d('ite_prompt_tokens_total')})")
    check(d("ite_prefix_cache_hit_tokens_total") > 0,
          f"metrics: cached tokens after a repeated prefix ({d('ite_prefix_cache_hit_tokens_total')})")
    check(d("ite_time_to_first_token_seconds_count") == 5
          and d("ite_e2e_request_latency_seconds_count") == 5
          and d("ite_inter_token_latency_seconds_count") == 15,
          "metrics: 5 TTFT and end-to-end observations, 15 inter-token ones")
    check(d("ite_time_to_first_token_seconds_bucket", (("le", "+Inf"),)) == 5,
          "metrics: the TTFT histogram's +Inf bucket counts them all")
    check(d("ite_steps_total") >= 20 and d("ite_batch_size_count") >= 20
          and d("ite_step_seconds_count") >= 20, f"metrics: steps ({d('ite_steps_total')})")
    check(m1.get(("ite_requests_running", ())) == 0 and m1.get(("ite_requests_waiting", ())) == 0,
          "metrics: nothing running or waiting afterwards")
    check(m1.get(("ite_worker_up", (("worker", "0"),))) == 1
          and m1.get(("ite_kv_blocks_total", (("worker", "0"),)), 0) > 0,
          "metrics: worker 0 up, its KV pool size")
    rate = m1.get(("ite_prefix_cache_hit_rate", ()), -1)
    check(0 < rate <= 1, f"metrics: prefix-cache hit rate {rate:.3f}")


def run_checks(tmp, grpc_port, http_port):
    host = "127.0.0.1"
    client = openai.OpenAI(base_url=f"http://{host}:{http_port}/v1", api_key="unused",
                           max_retries=0, timeout=120)
    stats = stats_client(tmp, f"{host}:{grpc_port}")

    models = client.models.list().data
    check(len(models) == 1 and models[0].id != "", f"models.list: {[m.id for m in models]}")
    model = models[0].id

    # Greedy completion; the same request through gRPC gives the same text.
    prompt = "The capital of France is"
    c = client.completions.create(model=model, prompt=prompt, max_tokens=16, temperature=0)
    text = c.choices[0].text
    check(len(text) > 0 and c.choices[0].finish_reason in ("stop", "length"),
          f"completion: {text!r} ({c.choices[0].finish_reason})")
    check(c.usage.prompt_tokens > 0 and c.usage.completion_tokens > 0
          and c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens,
          f"completion usage {c.usage}")
    out = subprocess.run([os.path.join(BIN, "ite-client"), "generate", "--addr",
                          f"{host}:{grpc_port}", "--prompt", prompt, "--max-tokens", "16",
                          "--temperature", "0"], capture_output=True, timeout=120)
    check(out.returncode == 0 and out.stdout.decode() == text + "\n",
          f"gRPC (ite-client) gives the same greedy text: {out.stdout.decode()!r}")

    # Streamed completion: the same text, chunk by chunk.
    chunks = list(client.completions.create(model=model, prompt=prompt, max_tokens=16,
                                            temperature=0, stream=True))
    check(len(chunks) >= 2 and "".join(ch.choices[0].text for ch in chunks) == text,
          f"streamed completion ({len(chunks)} chunks) has the same text")

    # Chat, whole and streamed with include_usage.
    messages = [{"role": "system", "content": "You answer in one short sentence."},
                {"role": "user", "content": "What is the capital of France?"}]
    r = client.chat.completions.create(model=model, messages=messages, max_tokens=24,
                                       temperature=0)
    answer = r.choices[0].message.content
    check(r.choices[0].message.role == "assistant" and len(answer) > 0, f"chat: {answer!r}")
    stream = client.chat.completions.create(model=model, messages=messages, max_tokens=24,
                                            temperature=0, stream=True,
                                            stream_options={"include_usage": True})
    parts, last, usage_chunks = [], None, 0
    for ch in stream:
        if ch.usage is not None:
            usage_chunks += 1
            last = ch
        for choice in ch.choices:
            parts.append(choice.delta.content or "")
    check("".join(parts) == answer, f"streamed chat has the same text ({len(parts)} chunks)")
    check(usage_chunks == 1 and last is not None and last.choices == []
          and last.usage.completion_tokens == r.usage.completion_tokens
          and last.usage.prompt_tokens == r.usage.prompt_tokens,
          f"include_usage: one final usage chunk {last.usage if last else None}")

    # n=2: two choices, the prompt counted once.
    r2 = client.chat.completions.create(model=model, messages=messages, max_tokens=12,
                                        temperature=0.9, seed=7, n=2)
    check(sorted(ch.index for ch in r2.choices) == [0, 1]
          and all(ch.message.content for ch in r2.choices)
          and r2.usage.prompt_tokens == r.usage.prompt_tokens,
          f"n=2: {[ch.message.content for ch in r2.choices]} usage {r2.usage}")
    seen = set()
    for ch in client.completions.create(model=model, prompt=prompt, max_tokens=6, n=2,
                                        temperature=0.9, seed=3, stream=True):
        for choice in ch.choices:
            if choice.finish_reason is not None:
                seen.add(choice.index)
    check(seen == {0, 1}, f"n=2 streamed: both choices finish ({sorted(seen)})")

    # Stop strings: the text ends right before the first stop, and the stream never shows it.
    candidates = [" " + w for w in text.split()[1:] if " " + w in text]
    stop = candidates[0] if candidates else text[2:4]
    cut = text[:text.index(stop)]
    s = client.completions.create(model=model, prompt=prompt, max_tokens=16, temperature=0,
                                  stop=[stop, "never-appears"])
    check(s.choices[0].text == cut and s.choices[0].finish_reason == "stop",
          f"stop {stop!r}: {s.choices[0].text!r} (expected {cut!r})")
    streamed = [ch.choices[0].text for ch in client.completions.create(
        model=model, prompt=prompt, max_tokens=16, temperature=0, stop=stop, stream=True)]
    check("".join(streamed) == cut and not any(stop.strip() in p for p in streamed),
          f"streamed stop: {streamed!r}")
    inc = client.completions.create(model=model, prompt=prompt, max_tokens=16, temperature=0,
                                    stop=stop, extra_body={"include_stop_str_in_output": True})
    check(inc.choices[0].text == cut + stop, f"include_stop_str_in_output: {inc.choices[0].text!r}")

    # Logprobs: completions (legacy layout) and chat (top_logprobs).
    lp = client.completions.create(model=model, prompt=prompt, max_tokens=5, temperature=0,
                                   logprobs=2).choices[0].logprobs
    check(lp is not None and len(lp.tokens) == 5 and len(lp.token_logprobs) == 5
          and all(v <= 0 for v in lp.token_logprobs)
          and all(1 <= len(t) <= 2 for t in lp.top_logprobs),
          f"completion logprobs: {lp.tokens if lp else None}")
    cl = client.chat.completions.create(model=model, messages=messages, max_tokens=5,
                                        temperature=0, logprobs=True, top_logprobs=3)
    content = cl.choices[0].logprobs.content if cl.choices[0].logprobs else []
    check(len(content) == cl.usage.completion_tokens
          and all(len(t.top_logprobs) == 3 for t in content)
          and all(t.logprob >= max(a.logprob for a in t.top_logprobs) - 1e-4 for t in content),
          f"chat logprobs: greedy tokens are the most likely ({[t.token for t in content]})")

    # Seeds: the same seed, the same sampled text.
    a = client.completions.create(model=model, prompt="Once upon a time", max_tokens=16,
                                  temperature=1.0, seed=1234).choices[0].text
    b = client.completions.create(model=model, prompt="Once upon a time", max_tokens=16,
                                  temperature=1.0, seed=1234).choices[0].text
    check(a == b, f"seed 1234 twice gives the same text: {a!r}")

    # Errors as the SDK's exception types, with the server's message.
    expect_error(openai.BadRequestError, "max_tokens=0",
                 lambda: client.completions.create(model=model, prompt="hi", max_tokens=0),
                 "max_tokens")
    expect_error(openai.BadRequestError, "top_p=2",
                 lambda: client.completions.create(model=model, prompt="hi", top_p=2.0),
                 "top_p")
    expect_error(openai.BadRequestError, "top_logprobs without logprobs",
                 lambda: client.chat.completions.create(model=model, messages=messages,
                                                        top_logprobs=2), "logprobs")
    expect_error(openai.BadRequestError, "stream_options without stream",
                 lambda: client.chat.completions.create(
                     model=model, messages=messages, stream_options={"include_usage": True}),
                 "stream_options")
    expect_error(openai.BadRequestError, "prompt longer than the context",
                 lambda: client.completions.create(model=model, prompt="word " * 9000,
                                                   max_tokens=4), "context")
    expect_error(openai.NotFoundError, "unknown model",
                 lambda: client.completions.create(model="gpt-4", prompt="hi"), "gpt-4")

    # Malformed raw bodies: each a 4xx with an OpenAI error body; the server keeps serving.
    bodies = {
        "truncated JSON": b'{"prompt": "abc',
        "not an object": b"[1, 2, 3]",
        "wrong type": b'{"prompt": "x", "max_tokens": "five"}',
        "invalid UTF-8": b'{"prompt": "\xff\xfe"}',
        "10 MB body": b'{"prompt": "' + b"a" * (10 << 20) + b'"}',
        "deep nesting": b"[" * 100000 + b"]" * 100000,
    }
    for what, body in bodies.items():
        status, j = raw_post(host, http_port, "/v1/completions", body)
        check(400 <= status < 500 and is_error_body(j),
              f"{what}: HTTP {status} {j['error']['message'][:70] if is_error_body(j) else j}")
    status, j = raw_post(host, http_port, "/v1/chat/completions", b'{"messages": "hi"}')
    check(status == 400 and is_error_body(j) and j["error"]["param"] == "messages",
          f"chat messages of the wrong type: HTTP {status} param {j and j['error']['param']}")
    again = client.completions.create(model=model, prompt=prompt, max_tokens=16, temperature=0)
    check(again.choices[0].text == text, "still serving the same greedy text afterwards")

    # A client that disconnects mid-generation, streamed or not: its request is cancelled at once.
    for path, body in [
            ("/v1/completions", {"prompt": "Tell me a long story.", "stream": True}),
            ("/v1/completions", {"prompt": "Tell me a long story."}),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "A story?"}]})]:
        check_disconnect(stats, host, http_port, path, body)

    check_metrics(client, model, host, http_port)

    # A client-chosen request id follows the request into the scheduler's log record.
    traced = client.completions.with_raw_response.create(
        model=model, prompt=prompt, max_tokens=4, temperature=0,
        extra_body={"ignore_eos": True}, extra_headers={"X-Request-Id": TRACE_ID})
    check(traced.headers.get("x-request-id") == TRACE_ID and traced.parse().id == TRACE_ID,
          f"X-Request-Id echoed and used as the id ({traced.headers.get('x-request-id')})")

    # /tokenize and /detokenize round-trip.
    status, tok = raw_post(host, http_port, "/tokenize", json.dumps({"prompt": prompt}).encode())
    status2, detok = raw_post(host, http_port, "/detokenize",
                              json.dumps({"tokens": tok["tokens"]}).encode())
    check(status == 200 and status2 == 200 and tok["count"] == len(tok["tokens"])
          and prompt in detok["prompt"], f"tokenize/detokenize: {tok} -> {detok}")


if __name__ == "__main__":
    sys.exit(main())
