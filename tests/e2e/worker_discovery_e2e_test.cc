// End-to-end test of worker discovery by name: real ite-scheduler and ite-worker processes,
// the scheduler given --workers dns:///ite-worker:PORT. The name resolves through the
// scheduler's own /etc/hosts (a file of the test's, bind-mounted in a mount namespace made for
// that process alone, which getaddrinfo reads on every lookup), with the workers on loopback
// addresses 127.0.0.2, 127.0.0.3: the test changes what the name resolves to while requests
// run. Needs root (for the mount namespace); skipped otherwise.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/e2e/service_harness.h"

namespace ite::e2e {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

class WorkerDiscoveryE2E : public ::testing::Test {
 protected:
  void SetUp() override {
    env_ = ReadEnv();
    if (!env_.missing.empty()) GTEST_SKIP() << env_.missing;
    if (::geteuid() != 0) GTEST_SKIP() << "needs root for a mount namespace (unshare)";
    std::string out;
    if (RunCommand("unshare --mount --propagation private true 2>/dev/null", &out) != 0) {
      GTEST_SKIP() << "unshare --mount does not work here";
    }
    hosts_ = dir_.path() + "/hosts";
  }

  // Rewritten in place: the bind mount holds this file's inode, so a rename would not show.
  void Resolve(const std::vector<std::string>& ips) {
    std::ofstream out(hosts_, std::ios::trunc);
    out << "127.0.0.1 localhost\n";
    for (const std::string& ip : ips) out << ip << " ite-worker\n";
  }

  int StartWorker(ChildProcess* worker, const std::string& ip, int port) {
    const std::string ready = dir_.path() + "/worker-" + ip + ".port";
    std::vector<std::string> argv = {
        env_.bin_dir + "/ite-worker", "--model",   env_.model, "--host",       ip,   "--port",
        std::to_string(port),         "--threads", "1",        "--ready-file", ready};
    if (!worker->Start("worker " + ip, argv).ok()) return 0;
    return WaitForPortFile(ready, worker, seconds(120));
  }

  bool StartScheduler(ChildProcess* scheduler, int worker_port) {
    const std::string ready = dir_.path() + "/scheduler.port";
    const std::string command =
        "mount --bind " + hosts_ + " /etc/hosts && exec " + env_.bin_dir +
        "/ite-scheduler --model " + env_.model +
        " --workers dns:///ite-worker:" + std::to_string(worker_port) +
        " --max-workers 4 --worker-resolve-interval-ms 100 --port 0 --ready-file " + ready;
    std::vector<std::string> argv = {"/usr/bin/unshare", "--mount", "--propagation", "private",
                                     "/bin/sh",          "-c",      command};
    if (!scheduler->Start("ite-scheduler", argv).ok()) return false;
    port_ = WaitForPortFile(ready, scheduler, seconds(60));
    return port_ > 0;
  }

  std::unique_ptr<ite::v1::Generation::Stub> Stub() const {
    return ite::v1::Generation::NewStub(grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                                                            grpc::InsecureChannelCredentials()));
  }
  ite::v1::StatsResponse Stats() const {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + seconds(10));
    ite::v1::StatsResponse s;
    EXPECT_TRUE(Stub()->Stats(&ctx, ite::v1::StatsRequest(), &s).ok());
    return s;
  }
  int Healthy() const {
    int n = 0;
    const ite::v1::StatsResponse stats = Stats();
    for (const auto& w : stats.workers()) n += w.healthy() ? 1 : 0;
    return n;
  }

  Env env_;
  TempDir dir_;
  std::string hosts_;
  int port_ = 0;
};

TEST_F(WorkerDiscoveryE2E, WorkersFollowTheNameWhileRequestsRun) {
  // Free on 127.0.0.1 now; the workers listen on it at 127.0.0.2 and 127.0.0.3.
  const int port = UnusedLoopbackPort();
  ChildProcess a, b;
  ASSERT_EQ(StartWorker(&a, "127.0.0.2", port), port);
  ASSERT_EQ(StartWorker(&b, "127.0.0.3", port), port);
  Resolve({"127.0.0.2"});
  ChildProcess scheduler;
  ASSERT_TRUE(StartScheduler(&scheduler, port));
  EXPECT_EQ(Stats().workers_size(), 4);  // --max-workers slots
  EXPECT_EQ(Healthy(), 1);
  GenerateResult first = Generate(*Stub(), Greedy("The capital of France is", 4));
  ASSERT_TRUE(first.status.ok()) << first.status.error_message();

  // The name gains the second worker: it is taken in and runs requests.
  Resolve({"127.0.0.2", "127.0.0.3"});
  ASSERT_TRUE(WaitUntil([&] { return Healthy() == 2; }, seconds(30)))
      << "the worker that joined the name was not taken in";
  // Long requests on both workers; then the first worker leaves the name mid-stream.
  const int n = 6;
  std::vector<GenerateResult> results(n);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      ite::v1::GenerateRequest req = Greedy("Story " + std::to_string(i) + ": once upon", 200);
      req.set_ignore_eos(true);
      results[i] = Generate(*Stub(), req, seconds(120));
    });
  }
  ASSERT_TRUE(WaitUntil(
      [&] {
        const auto s = Stats();
        int on = 0;
        for (const auto& w : s.workers()) on += w.running() > 0 ? 1 : 0;
        return on == 2;
      },
      seconds(30)))
      << "the requests did not spread over both workers";
  // A few steps more on each worker, so that its requests have streamed tokens: requests with
  // nothing streamed yet move to the other worker when theirs goes, these must fail.
  std::vector<int64_t> steps0;
  const auto before = Stats();
  for (const auto& w : before.workers()) steps0.push_back(w.steps());
  ASSERT_TRUE(WaitUntil(
      [&] {
        const auto s = Stats();
        for (int i = 0; i < s.workers_size() && i < static_cast<int>(steps0.size()); ++i) {
          if (s.workers(i).running() > 0 && s.workers(i).steps() < steps0[i] + 3) return false;
        }
        return true;
      },
      seconds(30)))
      << "the running requests made no progress";
  Resolve({"127.0.0.3"});
  auto t0 = Clock::now();
  for (auto& t : threads) t.join();
  EXPECT_LT(Clock::now() - t0, seconds(110)) << "a request hung";
  int failed = 0, finished = 0;
  for (const GenerateResult& r : results) {
    if (r.status.ok()) {
      ++finished;
      EXPECT_EQ(r.tokens.size(), 200u);
    } else {
      ++failed;
      EXPECT_EQ(r.status.error_code(), grpc::StatusCode::UNAVAILABLE) << r.status.error_message();
    }
  }
  EXPECT_GT(failed, 0) << "no request was running on the worker that left";
  EXPECT_GT(finished, 0) << "the requests on the worker that stayed did not finish";
  EXPECT_EQ(Healthy(), 1);
  // New requests go to the worker that stayed; the one that left still runs but gets nothing.
  GenerateResult after = Generate(*Stub(), Greedy("The capital of France is", 4));
  ASSERT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.tokens, first.tokens);
  EXPECT_FALSE(a.Exited());
}

}  // namespace
}  // namespace ite::e2e
