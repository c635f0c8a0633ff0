// Tensor parallelism through the real processes, on the CPU (ranks as threads of one worker):
// SmolLM2-135M (9 heads, 3 KV heads) split 3 ways gives the greedy text of one rank (in fp32:
// as stored, the Q4_1 matmuls' activation quantization turns the split's fp32 rounding into
// quantization noise, tensor_parallel_cpu_test measures it); a
// killed group fails its requests UNAVAILABLE and comes back as one worker; impossible splits
// stop ite-worker and ite-serve at start with a message that says why.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <thread>

#include "tests/e2e/service_harness.h"

namespace ite::e2e {
namespace {

using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

// Exit code and output (stderr included) of a shell command.
int RunWithStderr(const std::string& command, std::string* out) {
  return RunCommand(command + " 2>&1", out);
}

TEST(TensorParallelE2E, CpuGroupOfThreeGivesTheTextOfOneRank) {
  Env env = ReadEnv();
  if (!env.missing.empty()) GTEST_SKIP() << env.missing;
  const auto req = Greedy("The capital of France is", 10);
  GenerateResult one, three;
  {
    ServeProcess serve;
    ASSERT_TRUE(serve.Start(env, 1, {"--dtype", "f32"}));
    one = Generate(*serve.Stub(), req);
  }
  {
    ServeProcess serve;
    ASSERT_TRUE(serve.Start(env, 1, {"--dtype", "f32", "--tensor-parallel-size", "3"}));
    auto stub = serve.Stub();
    three = Generate(*stub, req);
    EXPECT_EQ(GetStats(*stub).workers_size(), 1);
  }
  ASSERT_TRUE(one.status.ok()) << one.status.error_message();
  ASSERT_TRUE(three.status.ok()) << three.status.error_message();
  EXPECT_EQ(three.tokens, one.tokens);
  EXPECT_EQ(three.text, one.text);
  EXPECT_EQ(one.tokens.size(), 10u);
}

// The group is one process: killing it fails its running request UNAVAILABLE, and ite-serve
// restarts all its ranks as one worker that serves again.
TEST(TensorParallelE2E, KilledGroupFailsItsRequestsAndRestartsWhole) {
  Env env = ReadEnv();
  if (!env.missing.empty()) GTEST_SKIP() << env.missing;
  ServeProcess serve;
  ASSERT_TRUE(serve.Start(env, 1, {"--tensor-parallel-size", "3"}));
  auto stub = serve.Stub();
  int worker = -1;
  for (int pid : serve.ChildPids()) {
    if (ProcessName(pid) == "ite-worker") worker = pid;
  }
  ASSERT_GT(worker, 0);
  auto running = std::async(std::launch::async, [&] {
    ite::v1::GenerateRequest req = Greedy("Once upon a time", 200);
    req.set_ignore_eos(true);
    auto s = serve.Stub();
    return Generate(*s, req, seconds(300));
  });
  const auto deadline = Clock::now() + seconds(60);
  bool streaming = false;
  while (!streaming && Clock::now() < deadline) {
    ite::v1::StatsResponse s = GetStats(*stub);
    streaming = s.workers_size() == 1 && s.workers(0).running() > 0 && s.workers(0).steps() >= 3;
    if (!streaming) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(streaming);
  ASSERT_EQ(::kill(worker, SIGKILL), 0);
  const auto killed = Clock::now();
  GenerateResult r = running.get();
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << r.status.error_message();
  EXPECT_LT(Clock::now() - killed, seconds(10));

  bool back = false;
  const auto restart_deadline = Clock::now() + seconds(120);
  while (!back && Clock::now() < restart_deadline) {
    ite::v1::StatsResponse s = GetStats(*stub);
    back = s.workers_size() == 1 && s.workers(0).healthy();
    if (!back) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(back) << "the group was not restarted";
  GenerateResult after = Generate(*stub, Greedy("After the restart", 4));
  EXPECT_TRUE(after.status.ok()) << after.status.error_message();
}

TEST(TensorParallelE2E, ImpossibleSplitsStopAtStartWithTheReason) {
  Env env = ReadEnv();
  if (!env.missing.empty()) GTEST_SKIP() << env.missing;
  const std::string worker = env.bin_dir + "/ite-worker --model " + env.model + " --threads 1";
  std::string out;
  EXPECT_EQ(RunWithStderr(worker + " --tensor-parallel-size 2", &out), 1) << out;
  EXPECT_NE(out.find("does not divide the 9 attention heads"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(RunWithStderr(worker + " --tensor-parallel-size 0", &out), 2) << out;

  // More ranks than GPUs: no GPU at all here, or fewer than asked on a GPU host.
  std::string devices;
  RunCommand(env.bin_dir + "/ite-worker --list-devices 2>/dev/null", &devices);
  const int gpus = static_cast<int>(std::count(devices.begin(), devices.end(), '\n'));
  out.clear();
  const std::string ask = std::to_string(gpus + 1);
  EXPECT_EQ(RunWithStderr(worker + " --device cuda --tensor-parallel-size " + ask, &out), 1) << out;
  if (gpus == 0) {
    EXPECT_NE(out.find("--device cuda"), std::string::npos) << out;
  } else {
    EXPECT_NE(out.find("--tensor-parallel-size " + ask), std::string::npos) << out;
    EXPECT_NE(out.find(std::to_string(gpus) + " visible"), std::string::npos) << out;
  }

  // ite-serve groups GPUs before starting anything.
  const std::string serve =
      env.bin_dir + "/ite-serve --model " + env.model + " --port 0 --http-port -1 --device cuda";
  out.clear();
  EXPECT_EQ(RunWithStderr(serve + " --gpus 0,1 --tensor-parallel-size 3", &out), 2) << out;
  EXPECT_NE(out.find("does not divide the 2 GPU(s)"), std::string::npos) << out;
  out.clear();
  EXPECT_EQ(RunWithStderr(serve + " --gpus 0,2 --tensor-parallel-size 2", &out), 2) << out;
  EXPECT_NE(out.find("must be consecutive"), std::string::npos) << out;
}

}  // namespace
}  // namespace ite::e2e
