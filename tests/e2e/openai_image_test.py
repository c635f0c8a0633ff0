"""Images through the OpenAI API: the real `openai` Python SDK against a real ite-serve serving
the tiny random LLaVA of tests/data (CPU worker), with `image_url` content parts holding base64
data: URLs of the committed photographs:
  - a greedy chat with an image gives the same text and prompt count as the same image and
    prompt through gRPC (ContentPart images), streamed and not; the same image again is served
    from the prefix cache (cached tokens > 576 image positions), another image is not;
  - a WebP data: URL is served like the others (where the build has libwebp);
  - POST /tokenize with the same messages counts the image as its 576 positions (= usage);
  - http(s) URLs, bad base64, an unsupported or mismatched media type, a corrupt image: 400 with
    an OpenAI error body naming `messages` and saying why, and the server keeps serving;
  - an image sent to a text-only model (the SmolLM2 GGUF): 400 saying it takes no images.
Exit 77 (ctest: skipped) without openai, grpcio or the binaries.
"""
import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile

from e2e_util import (BIN, MODEL, SRC, Checks, proto_messages, skip, stop_serve,
                      wait_port_file)

try:
    import grpc
    import openai
except ImportError as e:  # openai / grpcio come from scripts/setup.sh
    skip(e)
LLAVA = os.path.join(SRC, "tests", "data", "tiny-llava")
IMAGES = os.path.join(SRC, "tests", "data", "images")
for name in ("ite-serve", "ite-scheduler", "ite-worker"):
    if not os.access(os.path.join(BIN, name), os.X_OK):
        skip(f"{BIN}/{name} is not built")

checks = Checks()
check = checks.check
QUESTION = "What is shown?"


def image_bytes(name):
    with open(os.path.join(IMAGES, name), "rb") as f:
        return f.read()


def data_url(data, mime="image/png"):
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def image_messages(url, text=QUESTION):
    return [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}},
                                         {"type": "text", "text": text}]}]


def raw_post(port, path, body):
    """POSTs a JSON body; returns (status, parsed JSON or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
        r = conn.getresponse()
        data = r.read()
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, None
    finally:
        conn.close()


class Server:
    """ite-serve on free gRPC and HTTP ports for `model`."""

    def __init__(self, tmp, model, tag):
        self.ready = os.path.join(tmp, tag + ".port")
        self.http_ready = os.path.join(tmp, tag + ".http_port")
        self.log = open(os.path.join(tmp, tag + ".log"), "w")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "ite-serve"), "--model", model, "--port", "0", "--threads", "1",
             "--ready-file", self.ready, "--http-ready-file", self.http_ready],
            stderr=self.log, stdout=subprocess.DEVNULL)
        self.grpc_port = wait_port_file(self.ready, self.proc)
        self.http_port = wait_port_file(self.http_ready, self.proc)
        self.client = openai.OpenAI(base_url=f"http://127.0.0.1:{self.http_port}/v1",
                                    api_key="unused", max_retries=0, timeout=120)
        self.model = self.client.models.list().data[0].id

    def stop(self):
        stop_serve(self.proc, check)
        self.log.close()


def grpc_generate(tmp, port, image, max_tokens):
    """The same chat through gRPC with ContentPart images: (text, prompt_tokens, cached)."""
    msg = proto_messages(tmp, "proto/ite/v1/generation.proto")
    req_cls, resp_cls = msg("ite.v1.GenerateRequest"), msg("ite.v1.GenerateResponse")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    generate = channel.unary_stream("/ite.v1.Generation/Generate",
                                    request_serializer=req_cls.SerializeToString,
                                    response_deserializer=resp_cls.FromString)
    req = req_cls(max_tokens=max_tokens)
    req.sampling.temperature = 0.0
    m = req.chat.messages.add(role="user")
    m.parts.add().image.data = image
    m.parts.add().text = QUESTION
    chunks = list(generate(req, timeout=120))
    channel.close()
    usage = chunks[-1].usage
    return "".join(c.text for c in chunks), usage.prompt_tokens, usage.cached_tokens


def expect_bad_request(server, what, messages, needle):
    """The SDK raises BadRequestError with the server's message; the raw body is OpenAI's."""
    try:
        server.client.chat.completions.create(model=server.model, messages=messages, max_tokens=2)
        check(False, f"{what}: refused")
        return
    except openai.BadRequestError as e:
        check(needle in str(e), f"{what}: BadRequestError saying {needle!r}", str(e)[:300])
    except Exception as e:  # noqa: BLE001 - report whatever else came
        check(False, f"{what}: raised {type(e).__name__}: {e}")
        return
    status, j = raw_post(server.http_port, "/v1/chat/completions",
                         {"messages": messages, "max_tokens": 2})
    err = j.get("error", {}) if isinstance(j, dict) else {}
    check(status == 400 and err.get("type") == "invalid_request_error"
          and err.get("param") == "messages" and needle in err.get("message", ""),
          f"{what}: HTTP 400 error body, param messages", f"{status} {j}")


def run_llava(tmp, s):
    model = s.model
    astronaut = image_bytes("astronaut.png")

    r = s.client.chat.completions.create(model=model, messages=image_messages(data_url(astronaut)),
                                         max_tokens=12, temperature=0)
    text = r.choices[0].message.content
    g_text, g_prompt, _ = grpc_generate(tmp, s.grpc_port, astronaut, 12)
    check(r.usage.prompt_tokens == 593 and r.usage.prompt_tokens == g_prompt,
          f"image chat: {r.usage.prompt_tokens} prompt tokens, gRPC {g_prompt} "
          "(576 image positions + 17 text)")
    check(r.usage.completion_tokens == 12 and text == g_text and text != "",
          f"image chat: the same greedy text as gRPC: {text!r} vs {g_text!r}")

    again = s.client.chat.completions.create(
        model=model, messages=image_messages(data_url(astronaut)), max_tokens=12, temperature=0,
        stream=True, stream_options={"include_usage": True})
    parts, usage = [], None
    for ch in again:
        usage = ch.usage or usage
        parts.extend(c.delta.content or "" for c in ch.choices)
    cached = usage.prompt_tokens_details.cached_tokens if usage else -1
    check("".join(parts) == text, f"streamed: the same text ({len(parts)} chunks)")
    check(cached > 576, f"the same image again: {cached} cached prompt tokens (> 576)")

    other = s.client.chat.completions.create(
        model=model, messages=image_messages(data_url(image_bytes("coffee_square.png"))),
        max_tokens=12, temperature=0)
    o_cached = other.usage.prompt_tokens_details.cached_tokens
    check(o_cached < 16 and other.choices[0].message.content != text,
          f"another image: {o_cached} cached tokens, other text "
          f"{other.choices[0].message.content!r}")

    jpeg = image_bytes("chelsea.jpg")
    j = s.client.chat.completions.create(model=model,
                                         messages=image_messages(data_url(jpeg, "image/jpeg")),
                                         max_tokens=4, temperature=0)
    check(j.usage.prompt_tokens == 593, f"a JPEG data: URL ({j.usage.prompt_tokens} tokens)")

    webp = os.path.join(SRC, "tests", "data", "fuzz", "image", "lossless.webp")
    with open(webp, "rb") as f:
        status, w = raw_post(s.http_port, "/v1/chat/completions", {
            "messages": image_messages(data_url(f.read(), "image/webp")), "max_tokens": 2})
    webp_ok = status == 200 and w["usage"]["prompt_tokens"] == 593
    webp_off = status == 400 and "not supported by this build" in json.dumps(w)
    check(webp_ok or webp_off, f"a WebP data: URL: HTTP {status} "
          f"({'decoded' if webp_ok else 'this build has no libwebp' if webp_off else w})")

    status, tok = raw_post(s.http_port, "/tokenize",
                           {"messages": image_messages(data_url(astronaut))})
    check(status == 200 and tok["count"] == r.usage.prompt_tokens == len(tok["tokens"])
          and tok["tokens"].count(401) == 576,
          f"/tokenize counts the image as 576 positions: {tok.get('count') if tok else tok}")

    # An http URL naming a port we listen on: refused, and nothing ever connects to it.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    local = f"http://127.0.0.1:{listener.getsockname()[1]}/cat.png"
    png = image_bytes("coffee.png")
    bad = {
        "an https URL": ("https://example.com/cat.png", "only data: URLs are accepted"),
        "an http URL": (local, "does not fetch images from the network"),
        "bad base64": ("data:image/png;base64,iVBOR!w0K", "invalid base64"),
        "not base64": ("data:image/png,rawbytes", "not base64"),
        "an unsupported media type": ("data:image/bmp;base64,Qk0=",
                                      "unsupported image type 'image/bmp'"),
        "a mismatched media type": (data_url(png, "image/jpeg"), "holds image/png data"),
        "a truncated PNG": (data_url(png[:len(png) // 2]), "corrupt or truncated"),
        "text as an image": (data_url(b"hello there, not an image"), "unrecognised signature"),
    }
    for what, (url, needle) in bad.items():
        expect_bad_request(s, what, image_messages(url), needle)
    try:
        listener.accept()
        fetched = True
    except BlockingIOError:
        fetched = False
    listener.close()
    check(not fetched, "the server never connected to the http URL it was given")
    status, j = raw_post(s.http_port, "/tokenize",
                         {"messages": image_messages(data_url(png[:100]))})
    check(status == 400 and "image" in j["error"]["message"],
          f"/tokenize with a corrupt image: HTTP {status}")

    still = s.client.chat.completions.create(
        model=model, messages=image_messages(data_url(astronaut)), max_tokens=12, temperature=0)
    check(still.choices[0].message.content == text, "still serving the same text afterwards")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        s = Server(tmp, LLAVA, "llava")
        try:
            run_llava(tmp, s)
        finally:
            s.stop()
        if os.path.exists(MODEL):
            t = Server(tmp, MODEL, "text")
            try:
                expect_bad_request(t, "an image for a text-only model",
                                   image_messages(data_url(image_bytes("coffee.png"))),
                                   "takes no images")
                ok = t.client.chat.completions.create(
                    model=t.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2)
                check(ok.usage.completion_tokens > 0, "the text-only model keeps serving")
            finally:
                t.stop()
        else:
            print("skip: the text-only check (ITE_MODEL_GGUF missing)")
    return checks.done()


if __name__ == "__main__":
    sys.exit(main())
