// The scheduler takes in only workers that serve its model (WorkerInfo.model_fingerprint): at
// Start a worker with another fingerprint is an error naming both and the worker; one that
// answers later, or comes back after a failure, with another model stays down while its requests
// fail UNAVAILABLE or run elsewhere; back with the right model, it is taken in again.
#include <gtest/gtest.h>

#include <thread>

#include "scheduler/scheduler.h"
#include "scheduler/scheduler_test_util.h"

namespace ite {
namespace {

using namespace scheduler_testing;  // NOLINT: the shared test vocabulary

const std::string kOurs(64, 'a');
const std::string kOther(64, 'b');

FakeWorkerOptions Worker(const std::string& fingerprint, const std::string& address) {
  FakeWorkerOptions w;
  w.model_fingerprint = fingerprint;
  w.address = address;
  return w;
}

Status StartWith(SchedulerOptions o, std::vector<FakeWorkerOptions> workers) {
  std::vector<std::unique_ptr<WorkerClient>> clients;
  for (const FakeWorkerOptions& w : workers)
    clients.push_back(std::make_unique<FakeWorkerClient>(w));
  Scheduler scheduler(o, nullptr, std::move(clients));
  return scheduler.Start();
}

TEST(SchedulerFingerprintTest, StartRefusesAWorkerServingAnotherModel) {
  SchedulerOptions o;
  o.model_fingerprint = kOurs;
  Status s = StartWith(o, {Worker(kOurs, "10.0.0.6:50052"), Worker(kOther, "10.0.0.7:50052")});
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  for (const std::string& part : {kOurs, kOther, std::string("worker 1 (10.0.0.7:50052)")}) {
    EXPECT_NE(s.message().find(part), std::string::npos) << s.message();
  }
  // The scheduler's own model against the only worker, too.
  EXPECT_EQ(StartWith(o, {Worker(kOther, "")}).code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(StartWith(o, {Worker(kOurs, ""), Worker(kOurs, "")}).ok());
  // A worker from before fingerprints reports none: only its shape is checked.
  EXPECT_TRUE(StartWith(o, {Worker("", "")}).ok());
}

TEST(SchedulerFingerprintTest, WithoutItsOwnTheSchedulerPinsTheFirstWorkersFingerprint) {
  SchedulerOptions o;  // no model_fingerprint: the scheduler's files had no weights
  Status s = StartWith(o, {Worker(kOurs, "w0:1"), Worker(kOther, "w1:1")});
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find(kOther), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("worker 0 (w0:1)"), std::string::npos) << s.message();

  Harness h(o, {Worker(kOurs, ""), Worker(kOurs, "")});
  EXPECT_EQ(h.scheduler->Stats().model_fingerprint, kOurs);
  EXPECT_EQ(h.scheduler->Stats().workers[1].model_fingerprint, kOurs);
}

// The only worker fails and comes back serving another model of the same shape: it stays down,
// and a request waiting for it fails UNAVAILABLE saying why, without waiting out the grace.
TEST(SchedulerFingerprintTest, AWorkerBackWithAnotherModelStaysDownUntilItServesOursAgain) {
  SchedulerOptions o;
  o.model_fingerprint = kOurs;
  o.probe_interval_ms = 10;
  o.recover_grace_ms = 3000;
  o.down_after_ms = 100;  // the failed worker, idle, is found by the probe
  Harness h(o, {Worker(kOurs, "10.0.0.7:50052")});
  Tokens prompt{4, 5, 6};
  EXPECT_EQ(h.Run(Greedy("before", prompt, 4))->tokens(), FakeModelGenerate(prompt, 4, kVocab));

  h.fakes[0]->Fail(Unavailable("restarting"));
  ASSERT_TRUE(WaitFor([&] { return !h.scheduler->Stats().workers[0].up; }));
  h.fakes[0]->SetModelFingerprint(kOther);
  h.fakes[0]->Heal();
  ASSERT_TRUE(
      WaitFor([&] { return h.scheduler->Stats().workers[0].refused_fingerprint == kOther; }));
  std::this_thread::sleep_for(milliseconds(100));  // ten more probes
  EXPECT_FALSE(h.scheduler->Stats().workers[0].up);
  EXPECT_FALSE(h.scheduler->AnyWorkerUp());

  const int64_t steps = h.fakes[0]->counters().steps;
  const auto t0 = std::chrono::steady_clock::now();
  auto refused = h.Run(Greedy("while refused", prompt, 4));
  EXPECT_EQ(refused->finish(), FinishReason::kError);
  EXPECT_EQ(refused->error().code(), StatusCode::kUnavailable);
  EXPECT_NE(refused->error().message().find(kOther), std::string::npos)
      << refused->error().message();
  EXPECT_TRUE(refused->tokens().empty());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, milliseconds(2000));
  EXPECT_EQ(h.fakes[0]->counters().steps, steps) << "a step was sent to the refused worker";

  h.fakes[0]->SetModelFingerprint(kOurs);
  ASSERT_TRUE(WaitFor([&] { return h.scheduler->Stats().workers[0].up; }));
  EXPECT_EQ(h.scheduler->Stats().workers[0].refused_fingerprint, "");
  EXPECT_EQ(h.Run(Greedy("after", prompt, 4))->tokens(), FakeModelGenerate(prompt, 4, kVocab));
}

// Restarted while idle (its client saw the state go, no step failed): found by the probe, not at
// the next request, so it shows down at once; it is taken back when it serves our model again.
TEST(SchedulerFingerprintTest, AWorkerRestartedWhileIdleWithAnotherModelIsRefusedWithoutARequest) {
  SchedulerOptions o;
  o.model_fingerprint = kOurs;
  o.probe_interval_ms = 10;
  Harness h(o, {Worker(kOurs, "")});
  Tokens prompt{9, 8, 7};
  EXPECT_EQ(h.Run(Greedy("before", prompt, 3))->tokens(), FakeModelGenerate(prompt, 3, kVocab));
  const int64_t steps = h.fakes[0]->counters().steps;
  h.fakes[0]->SetModelFingerprint(kOther);
  h.fakes[0]->LoseState();
  ASSERT_TRUE(WaitFor([&] {
    const SchedulerStats s = h.scheduler->Stats();
    return !s.workers[0].up && s.workers[0].refused_fingerprint == kOther;
  }));
  EXPECT_EQ(h.fakes[0]->counters().steps, steps);
  h.fakes[0]->SetModelFingerprint(kOurs);
  ASSERT_TRUE(WaitFor([&] { return h.scheduler->Stats().workers[0].up; }));
  EXPECT_EQ(h.Run(Greedy("after", prompt, 3))->tokens(), FakeModelGenerate(prompt, 3, kVocab));
}

// A worker that answers only after Start (a pod discovery adds, a listed one that starts late)
// with another model is never taken in; the requests run on the worker that serves ours.
TEST(SchedulerFingerprintTest, AWorkerThatAnswersLaterWithAnotherModelIsNotTakenIn) {
  SchedulerOptions o;
  o.probe_interval_ms = 10;
  std::vector<FakeWorkerOptions> workers = {Worker(kOurs, "w0:1"), Worker(kOther, "w1:1")};
  auto late = std::make_unique<FakeWorkerClient>(workers[1]);
  late->Fail(Unavailable("not started yet"));
  FakeWorkerClient* late_fake = late.get();
  std::vector<std::unique_ptr<WorkerClient>> clients;
  clients.push_back(std::make_unique<FakeWorkerClient>(workers[0]));
  clients.push_back(std::move(late));
  Scheduler scheduler(o, nullptr, std::move(clients));
  ASSERT_TRUE(scheduler.Start().ok());
  EXPECT_EQ(scheduler.Stats().model_fingerprint, kOurs);  // pinned from worker 0

  late_fake->Heal();
  ASSERT_TRUE(WaitFor([&] { return scheduler.Stats().workers[1].refused_fingerprint == kOther; }));
  EXPECT_FALSE(scheduler.Stats().workers[1].up);
  for (int i = 0; i < 4; ++i) {
    Collector c;
    Tokens prompt{7, 8, static_cast<int32_t>(i)};
    ASSERT_TRUE(scheduler.Submit(Greedy("r" + std::to_string(i), prompt, 3), c.Callback()).ok());
    ASSERT_TRUE(c.Wait());
    EXPECT_EQ(c.tokens(), FakeModelGenerate(prompt, 3, kVocab));
  }
  EXPECT_EQ(late_fake->counters().steps, 0);
  scheduler.Shutdown(false);
}

}  // namespace
}  // namespace ite
