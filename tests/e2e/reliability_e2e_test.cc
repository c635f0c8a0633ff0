// End-to-end reliability tests: REAL ite-serve / ite-scheduler / ite-worker processes on
// loopback, the CPU backend and SmolLM2 (ITE_MODEL_GGUF), tried as a hostile client or a failing
// host would: ports taken twice, malformed bytes on the wire, oversized prompts, overload.
// Every wait is bounded; every child is killed when its owner goes out of scope.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/impl/codegen/client_unary_call.h>
#include <grpcpp/impl/codegen/rpc_method.h>
#include <grpcpp/impl/codegen/sync_stream.h>
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "tests/e2e/service_harness.h"

namespace ite::e2e {
namespace {

using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

// Waits (bounded) for `child` to exit; false when it is still running at the deadline.
bool WaitForExit(ChildProcess& child, seconds timeout) {
  return WaitUntil([&child] { return child.Exited(); }, timeout);
}

// A second ite-serve on ports the first holds must fail to start, not share them: with port
// reuse on, the kernel would hand each new connection to either of two unrelated servers.
TEST(PortE2E, SecondServerOnTheSamePortsFailsToStart) {
  Env env = ReadEnv();
  if (!env.missing.empty()) GTEST_SKIP() << env.missing;
  TempDir dir;
  const std::string http_file = dir.path() + "/http.port";
  ServeProcess first;
  ASSERT_TRUE(first.Start(env, 1, {"--http-ready-file", http_file}));
  const int grpc_port = std::stoi(first.address().substr(first.address().rfind(':') + 1));
  int http_port = WaitForPortFile(http_file, &first.process(), seconds(30));
  ASSERT_GT(http_port, 0);

  struct Case {
    const char* what;
    std::vector<std::string> ports;
  };
  const std::vector<Case> cases = {
      {"gRPC", {"--port", std::to_string(grpc_port), "--http-port", "-1"}},
      {"HTTP", {"--port", "0", "--http-port", std::to_string(http_port)}},
  };
  for (const Case& c : cases) {
    std::vector<std::string> argv = {env.bin_dir + "/ite-serve",
                                     "--model",
                                     env.model,
                                     "--workers",
                                     "1",
                                     "--threads",
                                     "1",
                                     "--ready-file",
                                     dir.path() + "/second.port"};
    argv.insert(argv.end(), c.ports.begin(), c.ports.end());
    ChildProcess second;
    ASSERT_TRUE(second.Start("second ite-serve", argv).ok());
    ASSERT_TRUE(WaitForExit(second, seconds(120))) << c.what << ": the second server kept running";
    EXPECT_NE(second.exit_description(), "exited with code 0") << c.what;
    std::ifstream ready(dir.path() + "/second.port");
    int port = 0;
    EXPECT_FALSE(ready >> port && port > 0) << c.what << ": the second server said it was ready";
  }

  // The first server still serves.
  auto stub = first.Stub();
  GenerateResult r = Generate(*stub, Greedy("Hello", 2), seconds(60));
  EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.tokens.size(), 2u);
}

// Sends `bytes` as the whole request message of `method` (no client-side serialization, so
// anything can be sent), reads whatever comes back and returns the call's status.
grpc::Status CallRaw(const std::string& address, const std::string& method, bool streaming,
                     const std::string& bytes) {
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::internal::RpcMethod rpc(method.c_str(), streaming
                                                    ? grpc::internal::RpcMethod::SERVER_STREAMING
                                                    : grpc::internal::RpcMethod::NORMAL_RPC);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + seconds(30));
  grpc::Slice slice(bytes);
  grpc::ByteBuffer request(&slice, 1);
  grpc::ByteBuffer response;
  if (!streaming) {
    return grpc::internal::BlockingUnaryCall(channel.get(), rpc, &ctx, request, &response);
  }
  std::unique_ptr<grpc::ClientReader<grpc::ByteBuffer>> reader(
      grpc::internal::ClientReaderFactory<grpc::ByteBuffer>::Create(channel.get(), rpc, &ctx,
                                                                    request));
  while (reader->Read(&response)) {
  }
  return reader->Finish();
}

// The wire bytes of `m` with the ASCII `marker` replaced by invalid UTF-8 of the same length.
std::string WithInvalidUtf8(const google::protobuf::Message& m, const std::string& marker) {
  std::string wire = m.SerializeAsString();
  size_t at = wire.find(marker);
  if (at != std::string::npos) wire.replace(at, marker.size(), std::string("\xC3(\xFF\xFE", 4));
  return wire;
}

// Invalid UTF-8 in a string field, or bytes that are no message at all, must get
// INVALID_ARGUMENT naming the field, and the server must go on serving.
TEST(HostileInputE2E, MalformedBytesGetInvalidArgumentNamingTheField) {
  Env env = ReadEnv();
  if (!env.missing.empty()) GTEST_SKIP() << env.missing;
  ServeProcess serve;
  ASSERT_TRUE(serve.Start(env, 1));
  const std::string generate = "/ite.v1.Generation/Generate";
  const std::string tokenize = "/ite.v1.Generation/Tokenize";

  struct Case {
    std::string field;
    std::function<void(ite::v1::GenerateRequest*)> fill;
  };
  const std::vector<Case> cases = {
      {"stop[0]", [](auto* r) { r->add_stop("MARK"); }},
      {"request_id", [](auto* r) { r->set_request_id("MARK"); }},
      {"model", [](auto* r) { r->set_model("MARK"); }},
      {"chat.messages[0].role",
       [](auto* r) {
         auto* m = r->mutable_chat()->add_messages();
         m->set_role("MARK");
         m->set_content("hi");
       }},
  };
  for (const Case& c : cases) {
    ite::v1::GenerateRequest req = Greedy("Hello", 2);
    if (c.field.rfind("chat", 0) == 0) req.clear_prompt();
    c.fill(&req);
    grpc::Status s = CallRaw(serve.address(), generate, true, WithInvalidUtf8(req, "MARK"));
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << c.field;
    EXPECT_EQ(s.error_message(), c.field + ": not valid UTF-8");
  }

  ite::v1::TokenizeRequest tok;
  tok.mutable_chat()->add_messages()->set_role("MARK");
  grpc::Status s = CallRaw(serve.address(), tokenize, false, WithInvalidUtf8(tok, "MARK"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message(), "chat.messages[0].role: not valid UTF-8");

  const std::string garbage("\x0f\x01\xff\xff\xff", 5);
  for (const std::string& method : {generate, tokenize}) {
    grpc::Status g = CallRaw(serve.address(), method, method == generate, garbage);
    EXPECT_EQ(g.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method;
    EXPECT_NE(g.error_message().find("not a valid ite.v1."), std::string::npos)
        << method << ": " << g.error_message();
  }

  auto stub = serve.Stub();
  GenerateResult ok = Generate(*stub, Greedy("Hello", 2), seconds(60));
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
}

// A worker past its restarts must not leave a service that looks alive and fails every request
// after a wait: ite-serve shuts down and exits non-zero, leaving no child behind.
TEST(FaultE2E, WorkerPastItsRestartsEndsIteServeWithAnError) {
  Env env = ReadEnv();
  if (!env.missing.empty()) GTEST_SKIP() << env.missing;
  ServeProcess serve;
  ASSERT_TRUE(serve.Start(env, 1, {"--max-restarts", "1"}));
  auto worker_pid = [&serve]() {
    for (int pid : serve.ChildPids()) {
      if (ProcessName(pid) == "ite-worker") return pid;
    }
    return 0;
  };
  std::vector<int> children = serve.ChildPids();
  // The first death is restarted...
  int first = worker_pid();
  ASSERT_GT(first, 0);
  ::kill(first, SIGKILL);
  auto deadline = Clock::now() + seconds(60);
  int second = 0;
  while (Clock::now() < deadline && (second == 0 || second == first)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    second = worker_pid();
  }
  ASSERT_GT(second, 0);
  ASSERT_NE(second, first) << "the first death was not restarted";
  children.push_back(second);
  // ...the second is one too many.
  ::kill(second, SIGKILL);
  const auto killed = Clock::now();
  ASSERT_TRUE(WaitForExit(serve.process(), seconds(60))) << "ite-serve kept running";
  EXPECT_EQ(serve.process().exit_description(), "exited with code 1");
  EXPECT_LT(Clock::now() - killed, seconds(30));
  for (int pid : children) EXPECT_EQ(ProcessName(pid), "") << "orphan pid " << pid;
}

}  // namespace
}  // namespace ite::e2e
