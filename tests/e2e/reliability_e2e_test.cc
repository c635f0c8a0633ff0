// End-to-end reliability tests: REAL ite-serve / ite-scheduler / ite-worker processes on
// loopback, the CPU backend and SmolLM2 (ITE_MODEL_GGUF), tried as a hostile client or a failing
// host would: ports taken twice, malformed bytes on the wire, oversized prompts, overload.
// Every wait is bounded; every child is killed when its owner goes out of scope.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
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
