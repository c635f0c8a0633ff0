// End-to-end reliability tests: REAL ite-serve / ite-scheduler / ite-worker processes on
// loopback, the CPU backend and SmolLM2 (ITE_MODEL_GGUF), tried as a hostile client or a failing
// host would: ports taken twice, malformed bytes on the wire, oversized prompts, overload.
// Every wait is bounded; every child is killed when its owner goes out of scope.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
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
  auto deadline = Clock::now() + timeout;
  while (!child.Exited() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return !child.running();
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

}  // namespace
}  // namespace ite::e2e
