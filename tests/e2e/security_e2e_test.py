"""TLS, mTLS and API keys through a real ite-serve, with certificates made here by the openssl
command (a CA, a certificate from it for every process, a self-signed impostor):
- gRPC and HTTPS serve a client that trusts the CA and sends a right key; a client without a
  key or with a wrong one gets UNAUTHENTICATED / 401 with an OpenAI error body; health is open.
- a client trusting another CA, or speaking plaintext, is refused at the handshake.
- a worker takes a caller with a certificate from the CA and refuses one without a certificate
  or with a self-signed one.
- keys over plaintext: served on loopback, refused at start on a non-loopback address.
- no key appears in the logs of the run.
Exit 77 (ctest: skipped) without grpcio, openssl or the model.
"""
import json
import os
import re
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request

from e2e_util import (MODEL, Checks, Serve, bin_path, need_model_and_binaries, need_tool,
                      proto_messages, run, skip)

try:
    import grpc
except ImportError as e:
    skip(e)
need_model_and_binaries("ite-serve", "ite-client")
need_tool("openssl")

KEY_FLAG = "flag-key-7f3a9c2e"
KEY_FILE = "file-key-51be04d8"
KEY_ENV = "env-key-c0ffee11"


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certs(d):
    """ca.pem; node.pem/.key from the CA (for localhost and 127.0.0.1); rogue.pem/.key
    self-signed for the same names."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    p = lambda name: os.path.join(d, name)
    openssl("req", "-x509", *ec, "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "1",
            "-subj", "/CN=ite test CA")
    openssl("req", *ec, "-keyout", p("node.key"), "-out", p("node.csr"), "-subj", "/CN=ite-node")
    with open(p("ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:ite-node,DNS:localhost,IP:127.0.0.1\n"
                "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n")
    openssl("x509", "-req", "-in", p("node.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"),
            "-CAcreateserial", "-out", p("node.pem"), "-days", "1", "-extfile", p("ext.cnf"))
    openssl("req", "-x509", *ec, "-keyout", p("rogue.key"), "-out", p("rogue.pem"), "-days", "1",
            "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    return p


def read(path):
    with open(path, "rb") as f:
        return f.read()


def code_of(call):
    try:
        call()
        return grpc.StatusCode.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details() or ""


def http_get(url, ctx, key=None, body=None):
    """(status, parsed JSON body or text); status -1 and the reason when the connection fails."""
    req = urllib.request.Request(url, data=body)
    if key is not None:
        req.add_header("Authorization", f"Bearer {key}")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=60) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    except (urllib.error.URLError, ssl.SSLError, ConnectionError) as e:
        return -1, str(e)
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def check_grpc(check, msg, p, addr):
    ca = read(p("ca.pem"))
    good = grpc.secure_channel(addr, grpc.ssl_channel_credentials(ca))
    Req, Resp = msg("ite.v1.TokenizeRequest"), msg("ite.v1.TokenizeResponse")
    tokenize = good.unary_unary("/ite.v1.Generation/Tokenize",
                                request_serializer=Req.SerializeToString,
                                response_deserializer=Resp.FromString)
    req = Req(text=b"Hello there")
    for key in (KEY_FLAG, KEY_FILE, KEY_ENV):
        code, _ = code_of(lambda: tokenize(req, timeout=30,
                                           metadata=[("authorization", f"Bearer {key}")]))
        check(code == grpc.StatusCode.OK, f"gRPC over TLS with a right key is served ({key[:4]})")
    code, details = code_of(lambda: tokenize(req, timeout=30))
    check(code == grpc.StatusCode.UNAUTHENTICATED and "API key" in details,
          "gRPC without a key: UNAUTHENTICATED", f"{code} {details}")
    code, details = code_of(lambda: tokenize(req, timeout=30,
                                             metadata=[("authorization", "Bearer wrong")]))
    check(code == grpc.StatusCode.UNAUTHENTICATED and "wrong" not in details,
          "gRPC with a wrong key: UNAUTHENTICATED, the key not echoed", f"{code} {details}")
    code, _ = code_of(lambda: tokenize(req, timeout=30,
                                       metadata=[("authorization", KEY_FLAG)]))
    check(code == grpc.StatusCode.UNAUTHENTICATED, "a key without 'Bearer ' is refused")

    HReq, HResp = msg("grpc.health.v1.HealthCheckRequest"), msg("grpc.health.v1.HealthCheckResponse")
    health = good.unary_unary("/grpc.health.v1.Health/Check",
                              request_serializer=HReq.SerializeToString,
                              response_deserializer=HResp.FromString)
    try:
        status = health(HReq(), timeout=30).status
    except grpc.RpcError as e:
        status = e.code()
    check(status == HResp.SERVING, "health answers SERVING without a key", status)

    rogue = grpc.secure_channel(addr, grpc.ssl_channel_credentials(read(p("rogue.pem"))))
    code, _ = code_of(lambda: rogue.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=10))
    check(code == grpc.StatusCode.UNAVAILABLE, "a client trusting another CA is refused", code)
    plain = grpc.insecure_channel(addr)
    code, _ = code_of(lambda: plain.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=10))
    check(code == grpc.StatusCode.UNAVAILABLE, "a plaintext client gets no answer", code)


def check_http(check, p, port):
    url = f"https://127.0.0.1:{port}"
    ctx = ssl.create_default_context(cafile=p("ca.pem"))
    status, body = http_get(url + "/v1/models", ctx, KEY_FILE)
    check(status == 200 and body["data"][0]["id"], "HTTPS with a right key is served", body)
    status, body = http_get(url + "/v1/models", ctx)
    check(status == 401 and body["error"]["code"] == "invalid_api_key",
          "HTTPS without a key: 401 with an OpenAI error body", body)
    chat = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).encode()
    status, body = http_get(url + "/v1/chat/completions", ctx, "wrong-key", chat)
    check(status == 401 and "wrong-key" not in json.dumps(body),
          "HTTPS with a wrong key: 401, the key not echoed", body)
    status, body = http_get(url + "/v1/chat/completions", ctx, KEY_ENV, chat)
    check(status == 200 and body["choices"][0]["message"] is not None,
          "HTTPS chat with a right key is served", body)
    status, _ = http_get(url + "/health", ctx)
    check(status == 200, "HTTPS /health without a key", status)
    status, why = http_get(f"http://127.0.0.1:{port}/health", None)
    check(status == -1, "plaintext HTTP on the HTTPS port gets no answer", why)
    status, why = http_get(url + "/health", ssl.create_default_context(cafile=p("rogue.pem")))
    check(status == -1 and "CERTIFICATE_VERIFY_FAILED" in why,
          "HTTPS trusting another CA fails verification", why)


def check_worker(check, p, worker_port):
    addr = f"127.0.0.1:{worker_port}"
    ca = read(p("ca.pem"))
    opts = [("grpc.ssl_target_name_override", "ite-node")]

    def info(creds):
        ch = grpc.secure_channel(addr, creds, options=opts)
        return code_of(lambda: ch.unary_unary("/ite.v1.Worker/Info")(b"", timeout=10))[0]

    check(info(grpc.ssl_channel_credentials(ca, read(p("node.key")), read(p("node.pem"))))
          == grpc.StatusCode.OK, "the worker serves a caller with a certificate from the CA")
    check(info(grpc.ssl_channel_credentials(ca)) == grpc.StatusCode.UNAVAILABLE,
          "the worker refuses a caller without a client certificate")
    check(info(grpc.ssl_channel_credentials(ca, read(p("rogue.key")), read(p("rogue.pem"))))
          == grpc.StatusCode.UNAVAILABLE, "the worker refuses a self-signed client certificate")
    code, _ = code_of(lambda: grpc.insecure_channel(addr).unary_unary("/ite.v1.Worker/Info")(
        b"", timeout=10))
    check(code == grpc.StatusCode.UNAVAILABLE, "the worker refuses a plaintext caller")


def check_client(check, p, addr):
    gen = [bin_path("ite-client"), "generate", "--addr", addr, "--prompt", "Hi",
           "--max-tokens", "3", "--temperature", "0"]
    rc, out, err, _ = run(gen + ["--tls-ca", p("ca.pem"), "--api-key", KEY_FLAG])
    check(rc == 0 and out.strip(), "ite-client --tls-ca --api-key is served", err)
    env = dict(os.environ, ITE_API_KEY=KEY_FILE)
    rc, out, err, _ = run(gen + ["--tls-ca", p("ca.pem")], env=env)
    check(rc == 0, "ite-client takes the key from ITE_API_KEY", err)
    no_key = {k: v for k, v in os.environ.items() if k != "ITE_API_KEY"}
    rc, _, err, _ = run(gen + ["--tls-ca", p("ca.pem")], env=no_key)
    check(rc != 0 and "UNAUTHENTICATED" in err, "ite-client without a key is refused", err)
    rc, _, err, _ = run(gen + ["--tls-ca", p("rogue.pem"), "--api-key", KEY_FLAG])
    check(rc == 3 and "TLS" in err, "ite-client trusting another CA cannot connect (exit 3)", err)


def main():
    checks = Checks()
    check = checks.check
    with tempfile.TemporaryDirectory() as tmp:
        p = make_certs(tmp)
        msg = proto_messages(tmp, "proto/ite/v1/generation.proto",
                             "proto/grpc/health/v1/health.proto")
        with open(p("keys.txt"), "w") as f:
            f.write(f"# keys of the test\n{KEY_FILE}\n")
        os.environ["ITE_API_KEY"] = KEY_ENV  # read by ite-serve (and passed on in a file)
        try:
            with Serve("--threads", "1", "--http-port", "0", "--http-ready-file", p("http.port"),
                       "--tls-cert", p("node.pem"), "--tls-key", p("node.key"),
                       "--tls-ca", p("ca.pem"), "--api-key", KEY_FLAG,
                       "--api-key-file", p("keys.txt")) as s:
                check_grpc(check, msg, p, s.addr)
                check_http(check, p, int(open(p("http.port")).read()))
                m = re.search(r"worker 0 \(pid \d+\) serving on 127\.0\.0\.1:(\d+)", s.log_text())
                if check(m is not None, "the worker's port is in the log"):
                    check_worker(check, p, int(m.group(1)))
                check_client(check, p, s.addr)
                serve_pid = s.proc.pid
                cmdlines = []
                for pid in os.listdir("/proc"):
                    try:
                        if pid.isdigit() and open(f"/proc/{pid}/stat").read().split()[3] == str(
                                serve_pid):
                            cmdlines.append(read(f"/proc/{pid}/cmdline").decode(errors="replace"))
                    except OSError:
                        pass
                check(cmdlines and not any(KEY_FLAG in c or KEY_ENV in c for c in cmdlines),
                      "no key on the command line of ite-serve's children", cmdlines)
                log = s.log_text()
                check("API keys: 3" in log and not any(k in log for k in (KEY_FLAG, KEY_FILE,
                                                                          KEY_ENV)),
                      "the TLS run's log (every process) names no key")
            del os.environ["ITE_API_KEY"]
            # Client certificates required on the public APIs too.
            with Serve("--threads", "1", "--http-port", "0", "--http-ready-file", p("http2.port"),
                       "--tls-cert", p("node.pem"), "--tls-key", p("node.key"),
                       "--tls-ca", p("ca.pem"), "--tls-require-client-cert") as s:
                ca = read(p("ca.pem"))
                for what, creds, want in [
                        ("without", grpc.ssl_channel_credentials(ca), grpc.StatusCode.UNAVAILABLE),
                        ("with", grpc.ssl_channel_credentials(ca, read(p("node.key")),
                                                              read(p("node.pem"))),
                         grpc.StatusCode.OK)]:
                    ch = grpc.secure_channel(s.addr, creds)
                    code, _ = code_of(lambda: ch.unary_unary("/ite.v1.Generation/ModelInfo")(
                        b"", timeout=30))
                    check(code == want, f"--tls-require-client-cert: gRPC {what} a client "
                          f"certificate: {want}", code)
                url = f"https://127.0.0.1:{int(open(p('http2.port')).read())}/v1/models"
                ctx = ssl.create_default_context(cafile=p("ca.pem"))
                check(http_get(url, ctx)[0] == -1,
                      "--tls-require-client-cert: HTTPS without a client certificate refused")
                ctx.load_cert_chain(p("node.pem"), p("node.key"))
                check(http_get(url, ctx)[0] == 200,
                      "--tls-require-client-cert: HTTPS with one served")
            # Keys over plaintext on loopback: still checked.
            with Serve("--threads", "1", "--http-port", "-1", "--api-key", KEY_FLAG, "-v") as s:
                ch = grpc.insecure_channel(s.addr)
                call = ch.unary_unary("/ite.v1.Generation/ModelInfo")
                code, _ = code_of(lambda: call(b"", timeout=30))
                check(code == grpc.StatusCode.UNAUTHENTICATED, "plaintext loopback: no key refused")
                code, _ = code_of(lambda: call(b"", timeout=30, metadata=[
                    ("authorization", f"Bearer {KEY_FLAG}")]))
                check(code == grpc.StatusCode.OK, "plaintext loopback: the key is served", code)
                code, _ = code_of(lambda: ch.unary_unary("/grpc.health.v1.Health/Check")(
                    b"", timeout=30))
                check(code == grpc.StatusCode.OK, "plaintext loopback: health open", code)
                log = s.log_text()
                check(KEY_FLAG not in log, "the debug log of the plaintext run names no key")
        except RuntimeError as e:
            check(False, "ite-serve starts", e)
        rc, _, err, _ = run([bin_path("ite-serve"), "--model", MODEL, "--host", "0.0.0.0",
                             "--port", "0", "--api-key", KEY_FLAG], timeout=60)
        check(rc != 0 and "plaintext" in err and KEY_FLAG not in err,
              "keys over plaintext off loopback: ite-serve refuses to start", err)
        rc, _, err, _ = run([bin_path("ite-serve"), "--model", MODEL, "--port", "0",
                             "--tls-cert", p("node.pem"), "--tls-key", p("node.key")], timeout=60)
        check(rc == 2 and "--tls-ca" in err, "TLS without a CA: a usage error", err)
    return checks.done()


if __name__ == "__main__":
    raise SystemExit(main())
