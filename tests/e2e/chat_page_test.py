"""The chat page at `/` in a real headless browser (Debian's chromium driven by PyPI playwright)
against a real ite-serve (CPU worker, SmolLM2): a typed question gets a streamed answer with its
TTFT and tokens/s, the conversation and the settings (system prompt, temperature, top-p, max
tokens) go into the next request, Stop cancels the generation on the server, and errors (an
oversized max tokens, then a stopped server) are shown readably. The page loads nothing from
elsewhere. Then against an ite-serve with an API key: the page loads without it, says the key is
needed and shows the 401, and once the key is entered in Settings it sends it, streams an answer
and keeps it across a reload. A screenshot of the end state is kept at argv[1] (in the build
folder).
Exit 77 (ctest: skipped) without playwright, chromium or the model.
"""
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from e2e_util import (BIN, MODEL, Checks, need_model_and_binaries, skip, wait_port_file)

try:
    from playwright.sync_api import sync_playwright
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as e:  # playwright / prometheus-client come from scripts/setup.sh
    skip(e)
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not os.access(CHROMIUM, os.X_OK):
    skip("chromium is not installed (scripts/setup.sh installs it)")
need_model_and_binaries("ite-serve")

checks = Checks()
check = checks.check
SCREENSHOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "chat_page.png")


def metrics(port):
    """The scheduler's /metrics: {(name, labels): value}."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


CANCELLED = ("ite_requests_total", (("finish_reason", "cancelled"),))
RUNNING = ("ite_requests_running", ())


def ask(page, question):
    """Types a question and presses Enter; returns the new answer's locator."""
    n = page.locator(".message.assistant").count()
    page.fill("#prompt", question)
    page.press("#prompt", "Enter")
    answer = page.locator(".message.assistant").nth(n)
    answer.wait_for(timeout=10000)
    return answer


def wait_js(page, expr, timeout_s):
    """Polls a JS expression until it is true (page.wait_for_function evaluates strings, which
    the page's Content-Security-Policy forbids)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if page.evaluate(f"() => Boolean({expr})"):
            return True
        time.sleep(0.05)
    return False


def wait_state(answer, states, timeout_s):
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        state = answer.get_attribute("data-state")
        if state in states:
            return state
        time.sleep(0.05)
    return answer.get_attribute("data-state")


def ask_for_error(page, question):
    """Asks; returns the answer's final state and the text of its error box."""
    answer = ask(page, question)
    state = wait_state(answer, ("error", "done", "stopped"), 30)
    err = answer.locator(".error")
    return state, err.inner_text() if err.count() else ""


def set_settings(page, **values):
    for k, v in values.items():
        page.fill(f"#{k}", str(v))


def run_checks(page, base, http_port, serve):
    bodies, foreign = [], []
    page.on("request", lambda r: foreign.append(r.url) if not r.url.startswith(base) else None)
    page.on("request", lambda r: bodies.append(json.loads(r.post_data))
            if r.url.endswith("/v1/chat/completions") else None)
    resp = page.goto(base + "/")
    check(resp.status == 200 and resp.headers.get("content-type", "").startswith("text/html")
          and "default-src 'self'" in resp.headers.get("content-security-policy", ""),
          f"GET /: HTTP {resp.status} {resp.headers.get('content-type')}")
    wait_js(page, "document.getElementById('model').textContent.includes('context')", 10)
    check("SmolLM2" in page.inner_text("#model"), f"model shown: {page.inner_text('#model')!r}")

    # A streamed answer: record the answer's text lengths as the page updates it.
    page.evaluate("""() => {
        window.lengths = [];
        new MutationObserver(() => {
          const a = [...document.querySelectorAll('.message.assistant')].pop();
          if (a && a.dataset.state === 'streaming')
            window.lengths.push(a.querySelector('.text').textContent.length);
        }).observe(document.getElementById('conversation'),
                   {subtree: true, childList: true, characterData: true});
    }""")
    system = "You are a helpful assistant. Answer in one sentence."
    page.fill("#system", system)
    set_settings(page, temperature=0, top_p=0.9, max_tokens=24)
    answer = ask(page, "What is the capital of France?")
    state = wait_state(answer, ("done", "error", "stopped"), 120)
    first_text = answer.locator(".text").inner_text()
    stats = answer.locator(".stats").inner_text()
    lengths = page.evaluate("window.lengths")
    check(state == "done" and first_text.strip() != "", f"answer: {state} {first_text!r}")
    # Streamed: part of the answer was on the page before all of it. On an idle machine the 8
    # tokens of this answer come within a few ms, and the browser may fold them into 2 updates.
    check(len(set(lengths)) >= 2 and lengths == sorted(lengths) and lengths[0] < len(first_text),
          f"the answer streamed in ({len(set(lengths))} growing updates before the end)")
    check("TTFT" in stats and "tok/s" in stats and "token" in stats, f"stats: {stats!r}")
    b = bodies[-1] if bodies else {}
    check(b.get("stream") is True and b.get("temperature") == 0 and b.get("top_p") == 0.9
          and b.get("max_tokens") == 24 and b.get("messages") == [
              {"role": "system", "content": system},
              {"role": "user", "content": "What is the capital of France?"}],
          f"the request carries the settings and the system prompt: {b}")

    # The conversation goes with the next question.
    answer2 = ask(page, "And of Germany?")
    wait_state(answer2, ("done", "error", "stopped"), 120)
    msgs = bodies[-1].get("messages", []) if bodies else []
    check([m["role"] for m in msgs] == ["system", "user", "assistant", "user"]
          and msgs[2]["content"] == first_text and msgs[3]["content"] == "And of Germany?",
          f"the follow-up carries the conversation: {[m['role'] for m in msgs]}")

    # Stop: the browser aborts the fetch, and the server cancels the generation.
    set_settings(page, temperature=0.8, max_tokens=4000)
    cancelled0 = metrics(http_port).get(CANCELLED, 0)
    answer3 = ask(page, "Write a very long story about a dragon.")
    wait_js(page, "(() => { const a = [...document.querySelectorAll('.message.assistant')].pop();"
            " return a.dataset.state === 'streaming' && a.innerText.length > 20; })()", 60)
    running = metrics(http_port).get(RUNNING, 0)
    check(page.is_enabled("#stop") and not page.is_enabled("#send"),
          "while streaming: Stop enabled, Send disabled")
    page.click("#stop")
    state = wait_state(answer3, ("stopped", "done", "error"), 10)
    t0 = time.time()
    while metrics(http_port).get(RUNNING, 1) > 0 and time.time() - t0 < 5:
        time.sleep(0.05)
    gone_ms = (time.time() - t0) * 1000
    m = metrics(http_port)
    check(state == "stopped" and "stopped" in answer3.inner_text(), f"Stop: the answer is {state}")
    check(running == 1 and m.get(RUNNING) == 0 and gone_ms < 2000
          and m.get(CANCELLED, 0) == cancelled0 + 1,
          f"Stop: the server cancelled it (running {running} -> {m.get(RUNNING)} in "
          f"{gone_ms:.0f} ms, cancelled {cancelled0} -> {m.get(CANCELLED)})")
    check(page.is_enabled("#send") and not page.is_enabled("#stop"), "after Stop: Send enabled")

    # An error the server reports: max tokens beyond the context.
    set_settings(page, max_tokens=100000)
    state, err_text = ask_for_error(page, "hi")
    check(state == "error" and "400" in err_text and "context length" in err_text,
          f"oversized max tokens: the server's error is shown: {err_text!r}")

    page.screenshot(path=SCREENSHOT.replace(".png", "_error.png"), full_page=True)

    # The server goes away: the page says so.
    serve.send_signal(signal.SIGTERM)
    serve.wait(timeout=60)
    set_settings(page, max_tokens=16)
    state, err_text = ask_for_error(page, "Are you still there?")
    check(state == "error" and "Cannot reach the server" in err_text,
          f"stopped server: shown as {err_text!r}")
    check(not foreign, f"nothing loaded from elsewhere: {foreign}")
    page.screenshot(path=SCREENSHOT, full_page=True)
    print(f"screenshots: {SCREENSHOT} and {SCREENSHOT.replace('.png', '_error.png')}")


API_KEY = "chat-page-test-key"


def http_status(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", path)
    status = conn.getresponse().status
    conn.close()
    return status


def run_key_checks(page, base, http_port):
    auth = []
    page.on("request", lambda r: auth.append(r.headers.get("authorization"))
            if r.url.endswith("/v1/chat/completions") else None)
    statuses = [http_status(http_port, p) for p in ("/", "/chat.js", "/chat.css", "/v1/models")]
    check(statuses == [200, 200, 200, 401],
          f"with a key: the page's files public, the API not (/, js, css, models: {statuses})")
    page.goto(base + "/")
    wait_js(page, "document.getElementById('model').textContent.includes('API key')", 10)
    check("needs an API key" in page.inner_text("#model"),
          f"without a key the page says so: {page.inner_text('#model')!r}")
    set_settings(page, temperature=0, max_tokens=8)
    state, err_text = ask_for_error(page, "hello")
    check(state == "error" and "401" in err_text and "API key" in err_text,
          f"a question without the key: the 401 is shown: {err_text!r}")
    page.fill("#api_key", API_KEY)
    page.dispatch_event("#api_key", "change")
    check(wait_js(page, "document.getElementById('model').textContent.includes('context')", 10),
          f"with the key the model loads: {page.inner_text('#model')!r}")
    answer = ask(page, "What is the capital of France?")
    state = wait_state(answer, ("done", "error", "stopped"), 120)
    text = answer.locator(".text").inner_text()
    check(state == "done" and text.strip() != "" and auth[-1:] == [f"Bearer {API_KEY}"],
          f"with the key: {state} {text!r}, sent as {auth[-1:]}")
    page.reload()
    check(wait_js(page, "document.getElementById('model').textContent.includes('context')", 10)
          and page.input_value("#api_key") == API_KEY, "the key is kept across a reload")


def serve_and_check(tmp, extra, checks_fn):
    """Runs checks_fn(page, base, http_port, serve) against a fresh ite-serve + chromium."""
    ready, http_ready = os.path.join(tmp, "port"), os.path.join(tmp, "http_port")
    for f in (ready, http_ready):
        if os.path.exists(f):
            os.remove(f)
    log = open(os.path.join(tmp, "serve.log"), "a")
    serve = subprocess.Popen([os.path.join(BIN, "ite-serve"), "--model", MODEL, "--port", "0",
                              "--ready-file", ready, "--http-ready-file", http_ready, *extra],
                             stderr=log)
    try:
        wait_port_file(ready, serve)
        http_port = wait_port_file(http_ready, serve)
        base = f"http://127.0.0.1:{http_port}"
        with sync_playwright() as p:
            # No sandbox: the tests may run as root in a container, where chromium's needs
            # user namespaces it does not get.
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            try:
                checks_fn(page, base, http_port, serve)
            finally:
                browser.close()
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        log.close()


def main():
    with tempfile.TemporaryDirectory() as tmp:
        serve_and_check(tmp, [], run_checks)
        serve_and_check(tmp, ["--api-key", API_KEY],
                        lambda page, base, port, _: run_key_checks(page, base, port))
    return checks.done()


if __name__ == "__main__":
    sys.exit(main())
