// Health that tells the truth, with REAL ite-serve / ite-scheduler / ite-worker processes: a
// worker that stops answering (SIGSTOP: the process and its sockets stay, nothing is answered,
// so neither a closed connection nor, while idle, a step timeout can notice) is marked down by
// the scheduler's probe within --worker-down-after-ms; with no worker left grpc.health.v1 says
// NOT_SERVING (for "" and "ite.v1.Generation", while "liveness" stays SERVING); its requests fail
// UNAVAILABLE or move to another worker; on SIGCONT it is taken back and health turns SERVING.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <thread>

#include "tests/e2e/service_harness.h"

namespace ite::e2e {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;
using Health = grpc::health::v1::HealthCheckResponse;

constexpr int kDownAfterMs = 1500;

int64_t MillisSince(Clock::time_point t) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - t).count();
}

// Continues a stopped process whatever the test's outcome, so that teardown can stop it.
class Resume {
 public:
  explicit Resume(int pid) : pid_(pid) {}
  ~Resume() { ::kill(pid_, SIGCONT); }

 private:
  int pid_;
};

std::vector<int> WorkerPids(const ServeProcess& serve) {
  std::vector<int> pids;
  for (int pid : serve.ChildPids()) {
    if (ProcessName(pid) == "ite-worker") pids.push_back(pid);
  }
  return pids;
}

ite::v1::StatsResponse Stats(const ServeProcess& serve) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
  ite::v1::StatsResponse s;
  EXPECT_TRUE(serve.Stub()->Stats(&ctx, ite::v1::StatsRequest(), &s).ok());
  return s;
}

bool Ready(const ServeProcess& serve, Health::ServingStatus want) {
  return HealthOf(serve.address(), "") == want &&
         HealthOf(serve.address(), "ite.v1.Generation") == want;
}

std::vector<std::string> Flags() {
  return {"--worker-down-after-ms", std::to_string(kDownAfterMs), "--http-port", "-1"};
}

// The only worker stops mid-stream: the stream ends UNAVAILABLE, health turns NOT_SERVING, a new
// request fails UNAVAILABLE; once the worker continues it is taken back and serves again.
TEST(HealthE2E, StoppedOnlyWorkerIsMarkedDownAndTakenBackWhenItContinues) {
  Env env = ReadEnv();
  if (!env.missing.empty()) GTEST_SKIP() << env.missing;
  ServeProcess serve;
  ASSERT_TRUE(serve.Start(env, 1, Flags()));
  EXPECT_TRUE(Ready(serve, Health::SERVING));
  std::vector<int> workers = WorkerPids(serve);
  ASSERT_EQ(workers.size(), 1u);

  // A long stream that has begun.
  std::atomic<int> chunks{0};
  grpc::Status stream_status;
  std::atomic<int64_t> ended_ms{-1};
  Clock::time_point stopped_at;
  std::thread stream([&] {
    ite::v1::GenerateRequest req = Greedy("Tell me a long story about the sea.", 2000);
    req.set_ignore_eos(true);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(120));
    auto stub = serve.Stub();
    auto reader = stub->Generate(&ctx, req);
    ite::v1::GenerateResponse chunk;
    while (reader->Read(&chunk)) ++chunks;
    stream_status = reader->Finish();
    ended_ms = MillisSince(stopped_at);
  });
  ASSERT_TRUE(WaitUntil([&] { return chunks > 0; }, seconds(60)));
  stopped_at = Clock::now();
  ASSERT_EQ(::kill(workers[0], SIGSTOP), 0);
  Resume resume(workers[0]);

  stream.join();
  EXPECT_EQ(stream_status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << stream_status.error_message();
  std::cout << "stream failed " << ended_ms << " ms after SIGSTOP\n";
  EXPECT_LT(ended_ms, kDownAfterMs + 4000);
  ASSERT_TRUE(WaitUntil([&] { return Ready(serve, Health::NOT_SERVING); }, seconds(10)));
  std::cout << "health NOT_SERVING " << MillisSince(stopped_at) << " ms after SIGSTOP\n";
  EXPECT_EQ(HealthOf(serve.address(), "liveness"), Health::SERVING);
  EXPECT_FALSE(Stats(serve).workers(0).healthy());

  GenerateResult refused = Generate(*serve.Stub(), Greedy("Hello", 2), seconds(30));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::UNAVAILABLE)
      << refused.status.error_message();

  const auto continued_at = Clock::now();
  ::kill(workers[0], SIGCONT);
  ASSERT_TRUE(WaitUntil([&] { return Ready(serve, Health::SERVING); }, seconds(20)))
      << "the worker was not taken back";
  std::cout << "health SERVING " << MillisSince(continued_at) << " ms after SIGCONT\n";
  GenerateResult ok = Generate(*serve.Stub(), Greedy("Hello", 4), seconds(60));
  ASSERT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.tokens.size(), 4u);
  EXPECT_EQ(WorkerPids(serve), workers) << "the worker was restarted, not taken back";
}

// One of two workers stops while idle: the probe marks it down, health stays SERVING, requests go
// to the other; after SIGCONT the first is healthy again and runs requests.
TEST(HealthE2E, WorkerStoppedWhileIdleIsMarkedDownWithinTheBound) {
  Env env = ReadEnv();
  if (!env.missing.empty()) GTEST_SKIP() << env.missing;
  ServeProcess serve;
  ASSERT_TRUE(serve.Start(env, 2, Flags()));
  std::vector<int> workers = WorkerPids(serve);
  ASSERT_EQ(workers.size(), 2u);
  auto healthy = [&serve] {
    int n = 0;
    const ite::v1::StatsResponse s = Stats(serve);
    for (const auto& w : s.workers()) n += w.healthy();
    return n;
  };
  ASSERT_TRUE(WaitUntil([&] { return healthy() == 2; }, seconds(30)));

  const auto stopped_at = Clock::now();
  ASSERT_EQ(::kill(workers[0], SIGSTOP), 0);
  Resume resume(workers[0]);
  ASSERT_TRUE(WaitUntil([&] { return healthy() == 1; }, seconds(15)))
      << "the stopped worker still counts as healthy";
  const int64_t marked_ms = MillisSince(stopped_at);
  std::cout << "idle worker marked down " << marked_ms << " ms after SIGSTOP\n";
  EXPECT_LT(marked_ms, kDownAfterMs + 3000);
  EXPECT_TRUE(Ready(serve, Health::SERVING));
  for (int i = 0; i < 4; ++i) {
    GenerateResult r =
        Generate(*serve.Stub(), Greedy("Request " + std::to_string(i) + " says", 3), seconds(60));
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_EQ(r.tokens.size(), 3u);
  }

  ::kill(workers[0], SIGCONT);
  ASSERT_TRUE(WaitUntil([&] { return healthy() == 2; }, seconds(20)))
      << "the continued worker was not taken back";
  // Both run requests again: different prompts at once spread over the two.
  std::vector<std::thread> threads;
  std::vector<GenerateResult> results(6);
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&, i] {
      results[i] = Generate(*serve.Stub(), Greedy("Prompt " + std::to_string(i) + ":", 3));
    });
  }
  for (auto& t : threads) t.join();
  for (const GenerateResult& r : results) EXPECT_TRUE(r.status.ok()) << r.status.error_message();
  ite::v1::StatsResponse s = Stats(serve);
  ASSERT_EQ(s.workers_size(), 2);
  EXPECT_GT(s.workers(0).steps(), 0);
  EXPECT_GT(s.workers(1).steps(), 0);
}

}  // namespace
}  // namespace ite::e2e
