"""A real third-party client against a real ite-serve: Python grpcio, with message classes built
at run time from the .proto files (protoc --descriptor_set_out), so nothing generated is checked
in. Checks streaming Generate, the same greedy text as ite-client, INVALID_ARGUMENT with a
message, and the standard health service. Exit 77 (ctest: skipped) without grpcio or the model.
"""
import os
import subprocess
import sys
import tempfile

from e2e_util import (BIN, MODEL, Checks, need_model_and_binaries, proto_messages, skip,
                      stop_serve, wait_port_file)

try:
    import grpc
except ImportError as e:  # grpcio/protobuf come from scripts/setup.sh
    skip(e)
need_model_and_binaries("ite-serve", "ite-client")


def main():
    checks = Checks()
    check = checks.check
    with tempfile.TemporaryDirectory() as tmp:
        msg = proto_messages(tmp, "proto/ite/v1/generation.proto",
                             "proto/grpc/health/v1/health.proto")
        ready = os.path.join(tmp, "port")
        serve = subprocess.Popen([os.path.join(BIN, "ite-serve"), "--model", MODEL, "--port", "0",
                                  "--threads", "1", "--ready-file", ready],
                                 stderr=subprocess.DEVNULL)
        try:
            addr = f"127.0.0.1:{wait_port_file(ready, serve)}"
            channel = grpc.insecure_channel(addr)
            Req = msg("ite.v1.GenerateRequest")
            Resp = msg("ite.v1.GenerateResponse")
            generate = channel.unary_stream("/ite.v1.Generation/Generate",
                                            request_serializer=Req.SerializeToString,
                                            response_deserializer=Resp.FromString)

            req = Req(prompt="The capital of France is".encode(), max_tokens=12)
            req.sampling.temperature = 0.0
            chunks = list(generate(req, timeout=120))
            text = "".join(c.text for c in chunks)
            check(len(chunks) >= 2, f"streamed {len(chunks)} chunks")
            check(chunks[-1].finish_reason != 0, "last chunk has a finish reason")
            ntok = sum(len(c.token_ids) for c in chunks)
            check(chunks[-1].usage.completion_tokens == ntok, "usage counts the tokens")
            check(chunks[0].request_id != "", "first chunk carries the request id")

            out = subprocess.run([os.path.join(BIN, "ite-client"), "generate", "--addr", addr,
                                  "--prompt", "The capital of France is", "--max-tokens", "12",
                                  "--temperature", "0"], capture_output=True, timeout=120)
            check(out.returncode == 0 and out.stdout.decode() == text + "\n",
                  f"ite-client prints the same greedy text ({text!r})")

            bad = Req(prompt=b"hi", max_tokens=0)
            try:
                list(generate(bad, timeout=30))
                check(False, "max_tokens=0 rejected")
            except grpc.RpcError as e:
                check(e.code() == grpc.StatusCode.INVALID_ARGUMENT and "max_tokens" in e.details(),
                      f"max_tokens=0 -> {e.code().name}: {e.details()}")
            bad = Req(prompt=b"\xff\xfe", max_tokens=4)
            try:
                list(generate(bad, timeout=30))
                check(False, "invalid UTF-8 rejected")
            except grpc.RpcError as e:
                check(e.code() == grpc.StatusCode.INVALID_ARGUMENT and "UTF-8" in e.details(),
                      f"invalid UTF-8 -> {e.code().name}: {e.details()}")

            HReq = msg("grpc.health.v1.HealthCheckRequest")
            HResp = msg("grpc.health.v1.HealthCheckResponse")
            health = channel.unary_unary("/grpc.health.v1.Health/Check",
                                         request_serializer=HReq.SerializeToString,
                                         response_deserializer=HResp.FromString)
            check(health(HReq(), timeout=10).status == 1, "health: SERVING")
            channel.close()
        finally:
            stop_serve(serve, check)
    return 1 if checks.failures else 0


if __name__ == "__main__":
    sys.exit(main())
