// End-to-end tests of how ite-scheduler starts beside workers it does not control (a Kubernetes
// worker pod may be scheduled, loading or restarting): it listens and answers health and SIGTERM
// while no worker answers, serves with the workers that answer, takes in one that starts later,
// and resets a worker that served a scheduler before it. Real processes on loopback.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <thread>

#include "tests/e2e/service_harness.h"

namespace ite::e2e {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;
using HealthStatus = grpc::health::v1::HealthCheckResponse;

std::string Loopback(int port) { return "127.0.0.1:" + std::to_string(port); }

HealthStatus::ServingStatus Health(const std::string& address, const std::string& service) {
  return HealthOf(address, service);
}

std::unique_ptr<ite::v1::Generation::Stub> StubAt(const std::string& address) {
  return ite::v1::Generation::NewStub(
      grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
}

ite::v1::StatsResponse Stats(const std::string& address) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
  ite::v1::StatsResponse s;
  EXPECT_TRUE(StubAt(address)->Stats(&ctx, ite::v1::StatsRequest(), &s).ok());
  return s;
}

class SchedulerStartE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    env_ = ReadEnv();
    if (!env_.missing.empty()) GTEST_SKIP() << env_.missing;
  }

  // An ite-worker on `port` (0: the kernel's pick); returns the port it serves on, 0 on failure.
  int StartWorker(ChildProcess* worker, int port, const std::string& name) {
    const std::string ready = dir_.path() + "/" + name + ".port";
    std::filesystem::remove(ready);
    std::vector<std::string> argv = {env_.bin_dir + "/ite-worker",
                                     "--model",
                                     env_.model,
                                     "--port",
                                     std::to_string(port),
                                     "--threads",
                                     "1",
                                     "--ready-file",
                                     ready};
    if (!worker->Start(name, argv).ok()) return 0;
    return WaitForPortFile(ready, worker, seconds(120));
  }

  // ite-scheduler on a port chosen here, so health can be asked before it is ready.
  bool StartScheduler(ChildProcess* scheduler, const std::string& workers) {
    scheduler_port_ = UnusedLoopbackPort();
    ready_ = dir_.path() + "/scheduler.port";
    std::filesystem::remove(ready_);
    std::vector<std::string> argv = {
        env_.bin_dir + "/ite-scheduler", "--model", env_.model, "--workers", workers, "--port",
        std::to_string(scheduler_port_), "--ready-file", ready_,
        // A fixed gRPC port would give the HTTP API its default 8000, which parallel tests share.
        "--http-port", "-1"};
    return scheduler_port_ > 0 && scheduler->Start("ite-scheduler", argv).ok();
  }
  bool SchedulerReady(ChildProcess* scheduler) {
    return WaitForPortFile(ready_, scheduler, seconds(60)) == scheduler_port_;
  }
  std::string scheduler_address() const { return Loopback(scheduler_port_); }

  Env env_;
  TempDir dir_;
  int scheduler_port_ = 0;
  std::string ready_;
};

TEST_F(SchedulerStartE2E, WaitingForAnAbsentWorkerItIsLiveNotReadyAndStopsOnSigterm) {
  ChildProcess scheduler;
  ASSERT_TRUE(StartScheduler(&scheduler, Loopback(UnusedLoopbackPort())));
  const std::string address = scheduler_address();
  ASSERT_TRUE(
      WaitUntil([&] { return Health(address, "liveness") == HealthStatus::SERVING; }, seconds(60)))
      << "the scheduler does not answer health while it waits for its worker";
  EXPECT_EQ(Health(address, ""), HealthStatus::NOT_SERVING);
  EXPECT_EQ(Health(address, "ite.v1.Generation"), HealthStatus::NOT_SERVING);
  GenerateResult r = Generate(*StubAt(address), Greedy("Hello", 2), seconds(10));
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << r.status.error_message();
  EXPECT_FALSE(std::filesystem::exists(ready_)) << "ready before any worker answered";

  auto t0 = Clock::now();
  scheduler.Signal(SIGTERM);
  ASSERT_TRUE(WaitUntil([&] { return scheduler.Exited(); }, seconds(10)));
  const auto took = std::chrono::duration_cast<milliseconds>(Clock::now() - t0);
  EXPECT_LT(took, milliseconds(2000)) << "SIGTERM answered after " << took.count() << " ms";
  EXPECT_EQ(scheduler.exit_description(), "exited with code 0");
}

TEST_F(SchedulerStartE2E, AWorkerThatStartsLaterIsTakenInAndUsed) {
  ChildProcess first;
  const int first_port = StartWorker(&first, 0, "worker0");
  ASSERT_GT(first_port, 0);
  const int later_port = UnusedLoopbackPort();
  ChildProcess scheduler;
  ASSERT_TRUE(StartScheduler(&scheduler, Loopback(first_port) + "," + Loopback(later_port)));
  ASSERT_TRUE(SchedulerReady(&scheduler)) << "did not start with the one worker that answers";
  const std::string address = scheduler_address();
  EXPECT_EQ(Health(address, ""), HealthStatus::SERVING);
  EXPECT_EQ(Health(address, "ite.v1.Generation"), HealthStatus::SERVING);
  EXPECT_EQ(Health(address, "liveness"), HealthStatus::SERVING);
  ite::v1::StatsResponse stats = Stats(address);
  ASSERT_EQ(stats.workers_size(), 2);
  EXPECT_TRUE(stats.workers(0).healthy());
  EXPECT_FALSE(stats.workers(1).healthy());
  GenerateResult alone = Generate(*StubAt(address), Greedy("The capital of France is", 6));
  ASSERT_TRUE(alone.status.ok()) << alone.status.error_message();
  EXPECT_EQ(alone.tokens.size(), 6u);

  ChildProcess later;
  ASSERT_EQ(StartWorker(&later, later_port, "worker1"), later_port);
  ASSERT_TRUE(WaitUntil([&] { return Stats(address).workers(1).healthy(); }, seconds(30)))
      << "the worker that started later was not taken in";
  // Different prompts at once spread over both workers (no shared prefix to follow).
  std::vector<std::thread> threads;
  std::vector<GenerateResult> results(6);
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      results[i] =
          Generate(*StubAt(address), Greedy("Request number " + std::to_string(i) + " says", 6));
    });
  }
  for (auto& t : threads) t.join();
  for (const GenerateResult& r : results) {
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.tokens.size(), 6u);
  }
  EXPECT_GT(Stats(address).workers(1).steps(), 0) << "the new worker ran nothing";
}

TEST_F(SchedulerStartE2E, ASchedulerRestartedWhileItsWorkerRunsResetsItCleanly) {
  ChildProcess worker;
  const int worker_port = StartWorker(&worker, 0, "worker0");
  ASSERT_GT(worker_port, 0);
  ite::v1::GenerateRequest req = Greedy("Count from one to fifty:", 24);
  req.set_ignore_eos(true);

  ChildProcess first;
  ASSERT_TRUE(StartScheduler(&first, Loopback(worker_port)));
  ASSERT_TRUE(SchedulerReady(&first));
  GenerateResult reference = Generate(*StubAt(scheduler_address()), req);
  ASSERT_TRUE(reference.status.ok()) << reference.status.error_message();
  {
    // Killed mid-stream: the worker still holds that scheduler's sequences and blocks.
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(60));
    auto reader = StubAt(scheduler_address())->Generate(&ctx, req);
    ite::v1::GenerateResponse chunk;
    ASSERT_TRUE(reader->Read(&chunk));
    first.Signal(SIGKILL);
    while (reader->Read(&chunk)) {
    }
    EXPECT_FALSE(reader->Finish().ok());
  }
  ASSERT_TRUE(WaitUntil([&] { return first.Exited(); }, seconds(10)));

  ChildProcess second;
  ASSERT_TRUE(StartScheduler(&second, Loopback(worker_port)));
  ASSERT_TRUE(SchedulerReady(&second));
  for (int i = 0; i < 2; ++i) {
    GenerateResult again = Generate(*StubAt(scheduler_address()), req);
    ASSERT_TRUE(again.status.ok()) << again.status.error_message();
    EXPECT_EQ(again.tokens, reference.tokens);
  }
  EXPECT_FALSE(worker.Exited()) << worker.exit_description();
}

}  // namespace
}  // namespace ite::e2e
